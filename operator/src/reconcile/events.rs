//! Events for every decision a reconcile makes: `Created`, `Rolled`,
//! `Scaled`, `RepairedDrift`, `InvalidSpec`. A failure to publish one is
//! logged and never fails the reconcile.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tributary_crds::{FieldError, StreamPipeline};

use super::Context;
use super::apply::AppliedChildren;
use crate::children::Children;
use crate::children::configmap::HASH_ANNOTATION;

/// The action of each reason (events.k8s.io wants both; kube's recorder
/// folds repeats of the same reason and action into one series).
fn action(reason: &str) -> &'static str {
    match reason {
        "Created" => "Create",
        "Rolled" => "Roll",
        "Scaled" => "Scale",
        "RepairedDrift" => "Repair",
        _ => "Validate",
    }
}

async fn publish(ctx: &Context, sp: &StreamPipeline, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action(reason).to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&ev, &sp.object_ref(&())).await {
        tracing::warn!(%error, reason, "could not publish an event");
    }
}

/// `InvalidSpec` (Warning), naming every bad field.
pub async fn invalid(ctx: &Context, sp: &StreamPipeline, errors: &[FieldError]) {
    let note = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    publish(ctx, sp, EventType::Warning, "InvalidSpec", note).await;
}

fn hash(d: &Deployment) -> Option<&str> {
    let template = d.spec.template.metadata.as_ref()?;
    template
        .annotations
        .as_ref()?
        .get(HASH_ANNOTATION)
        .map(String::as_str)
}

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.replicas
}

/// One Event to publish about the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Normal or Warning.
    pub type_: EventType,
    /// `Created`, `Rolled`, `Scaled` or `RepairedDrift`.
    pub reason: &'static str,
    /// What happened, for `kubectl describe`.
    pub note: String,
}

fn normal(reason: &'static str, note: String) -> Decision {
    Decision {
        type_: EventType::Normal,
        reason,
        note,
    }
}

/// What an apply did, as Events: a pure function of the children before
/// and after the apply and of what was desired.
///
/// `spec_changed` says the pipeline's generation moved since the last
/// status: only then does a different config hash mean `Rolled` and a
/// different replica count `Scaled`; any other change is drift.
#[must_use]
pub fn decide(applied: &AppliedChildren, desired: &Children, spec_changed: bool) -> Vec<Decision> {
    let missing: Vec<&str> = [
        ("ConfigMap", applied.configmap.before.is_none()),
        ("Deployment", applied.deployment.before.is_none()),
        ("Service", applied.service.before.is_none()),
        ("PodDisruptionBudget", applied.pdb.before.is_none()),
    ]
    .into_iter()
    .filter_map(|(kind, gone)| gone.then_some(kind))
    .collect();
    if missing.len() == 4 {
        let note = "created ConfigMap, Deployment, Service and PodDisruptionBudget".to_owned();
        return vec![normal("Created", note)];
    }
    let mut out = Vec::new();
    let mut rolled = false;
    let mut scaled = false;
    if let Some(before) = &applied.deployment.before {
        let (old, new) = (hash(before), hash(&desired.deployment));
        if spec_changed && old != new {
            rolled = true;
            let note = format!(
                "the pipeline config changed (hash {} → {}); rolling the processors",
                short(old),
                short(new)
            );
            out.push(normal("Rolled", note));
        }
        let (old, new) = (replicas(before), replicas(&desired.deployment));
        if spec_changed && old != new {
            scaled = true;
            let note = format!(
                "scaled the processors from {} to {}",
                old.unwrap_or(1),
                new.unwrap_or(1)
            );
            out.push(normal("Scaled", note));
        }
    }
    let mut drifted: Vec<String> = missing.iter().map(|k| format!("{k} (missing)")).collect();
    let edited = [
        (
            "ConfigMap",
            applied.configmap.before.is_some()
                && applied.configmap.changed(&desired.configmap)
                && !rolled,
        ),
        (
            "Deployment",
            applied.deployment.before.is_some()
                && applied.deployment.changed(&desired.deployment)
                && !rolled
                && !scaled,
        ),
        (
            "Service",
            applied.service.before.is_some() && applied.service.changed(&desired.service),
        ),
        (
            "PodDisruptionBudget",
            applied.pdb.before.is_some() && applied.pdb.changed(&desired.pdb),
        ),
    ];
    drifted.extend(
        edited
            .iter()
            .filter(|(_, e)| *e)
            .map(|(k, _)| format!("{k} (edited)")),
    );
    if !drifted.is_empty() {
        out.push(normal(
            "RepairedDrift",
            format!("restored {}", drifted.join(", ")),
        ));
    }
    out
}

/// Publishes what [`decide`] says about an apply.
pub async fn after_apply(
    ctx: &Context,
    sp: &StreamPipeline,
    applied: &AppliedChildren,
    desired: &Children,
    spec_changed: bool,
) {
    for d in decide(applied, desired, spec_changed) {
        publish(ctx, sp, d.type_, d.reason, d.note).await;
    }
}

fn short(hash: Option<&str>) -> &str {
    hash.map_or("none", |h| h.get(..12).unwrap_or(h))
}

#[cfg(test)]
mod tests;
