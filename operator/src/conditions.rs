//! Status as a pure function of what the operator observed: the pipeline's
//! generation and spec, its Deployment, the previous status and the time.
//!
//! # Guarantees
//! A condition's `lastTransitionTime` changes only when its `status`
//! changes (as Strimzi and Stackable do), so `kubectl wait` and alerting on
//! transitions see real transitions; conditions of other types (the
//! autoscaler's) are kept as they are.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use tributary_crds::{FieldError, StreamPipelineStatus};

/// `Ready`: the processors are all up on the current spec.
pub const READY: &str = "Ready";
/// `Progressing`: a rollout or a scale is under way.
pub const PROGRESSING: &str = "Progressing";
/// `Degraded`: something needs a human.
pub const DEGRADED: &str = "Degraded";
/// The reason of every condition when the spec is invalid.
pub const INVALID_SPEC: &str = "InvalidSpec";

fn condition(type_: &str, ok: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: None,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// The conditions for a spec that `validate` refused: not ready, not
/// progressing (nothing was changed), degraded.
#[must_use]
pub fn invalid(errors: &[FieldError]) -> Vec<Condition> {
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    vec![
        condition(READY, false, INVALID_SPEC, message.clone()),
        condition(
            PROGRESSING,
            false,
            INVALID_SPEC,
            "the spec is invalid; the processors were left as they were".to_owned(),
        ),
        condition(DEGRADED, true, INVALID_SPEC, message),
    ]
}

/// What the Deployment says about the processors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Pods of any revision.
    pub replicas: i32,
    /// Pods of the current revision.
    pub updated: i32,
    /// Ready pods.
    pub ready: i32,
    /// Available pods.
    pub available: i32,
    /// The Deployment controller has seen the current Deployment spec.
    pub current: bool,
    /// The Deployment's `Available` condition is True.
    pub available_condition: bool,
}

impl Observed {
    /// Reads a Deployment (as returned by an apply).
    #[must_use]
    pub fn of(d: &Deployment) -> Self {
        let s = d.status.clone().unwrap_or_default();
        let cond = |t: &str| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_.as_deref() == Some(t) && c.status.as_deref() == Some("True"))
        };
        Self {
            replicas: s.replicas.unwrap_or(0),
            updated: s.updated_replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            current: s.observed_generation >= d.metadata.generation,
            available_condition: cond("Available"),
        }
    }
}

/// Why a Deployment needs a human, from its own conditions.
fn degraded_reason(d: &Deployment) -> Option<(String, String)> {
    let conds = d.status.as_ref()?.conditions.as_ref()?;
    conds.iter().find_map(|c| {
        let reason = c.reason.clone().unwrap_or_default();
        let failed = (c.type_.as_deref() == Some("ReplicaFailure")
            && c.status.as_deref() == Some("True"))
            || reason == "ProgressDeadlineExceeded";
        let reason = if reason.is_empty() {
            "ReplicaFailure".to_owned()
        } else {
            reason
        };
        failed.then(|| (reason, c.message.clone().unwrap_or_default()))
    })
}

/// The conditions for a valid spec whose Deployment is `d`, wanting
/// `desired` replicas.
#[must_use]
pub fn from_deployment(d: &Deployment, desired: i32) -> Vec<Condition> {
    let o = Observed::of(d);
    let complete = o.current && o.updated >= desired && o.replicas == o.updated;
    let ready = complete && o.available_condition && o.ready >= desired && o.available >= desired;
    let counts = format!("{}/{desired} processors ready", o.ready);
    let moving = if o.replicas > o.updated || (!o.current && o.replicas == desired) {
        "RollingOut"
    } else {
        "Scaling"
    };
    let ready_cond = if ready {
        condition(READY, true, "Available", counts.clone())
    } else if !complete {
        condition(READY, false, "Progressing", counts.clone())
    } else {
        condition(READY, false, "Unavailable", counts.clone())
    };
    let progressing = if complete {
        condition(
            PROGRESSING,
            false,
            "Complete",
            format!("{} processors on the current spec", o.updated),
        )
    } else {
        let what = format!(
            "{} of {desired} processors updated, {} in total",
            o.updated, o.replicas
        );
        condition(PROGRESSING, true, moving, what)
    };
    let degraded = match degraded_reason(d) {
        Some((reason, message)) => condition(DEGRADED, true, &reason, message),
        None => condition(DEGRADED, false, "AsExpected", String::new()),
    };
    vec![ready_cond, progressing, degraded]
}

/// Merges freshly computed conditions into the previous ones: each gets
/// `generation`, keeps its old `lastTransitionTime` when its status did
/// not change and takes `now` otherwise; other condition types are kept.
#[must_use]
pub fn merge(
    old: &[Condition],
    new: Vec<Condition>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = new
        .into_iter()
        .map(|mut c| {
            c.observed_generation = generation;
            c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
                Some(o) if o.status == c.status => o.last_transition_time.clone(),
                _ => now.clone(),
            };
            c
        })
        .collect();
    let extra: Vec<Condition> = old
        .iter()
        .filter(|o| !out.iter().any(|c| c.type_ == o.type_))
        .cloned()
        .collect();
    out.extend(extra);
    out
}

/// The status after a reconcile: counts and selector from the Deployment
/// when there is one (else the previous ones), merged conditions, and
/// the fields other loops own (lag, last scale time) kept.
#[must_use]
pub fn status(
    old: Option<&StreamPipelineStatus>,
    generation: Option<i64>,
    conditions: Vec<Condition>,
    counts: Option<(i32, i32)>,
    selector: String,
    now: &Time,
) -> StreamPipelineStatus {
    let old = old.cloned().unwrap_or_default();
    StreamPipelineStatus {
        observed_generation: generation,
        conditions: merge(&old.conditions, conditions, generation, now),
        replicas: counts.map(|c| c.0).or(old.replicas),
        ready_replicas: counts.map(|c| c.1).or(old.ready_replicas),
        selector: Some(selector),
        ..old
    }
}

#[cfg(test)]
mod tests;
