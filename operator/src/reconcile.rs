//! One reconcile of one `StreamPipeline`: validate, server-side apply the
//! children, write status, record events. Everything it decides comes from
//! the pure functions in [`children`](crate::children) and
//! [`conditions`](crate::conditions); this module only does I/O.

mod apply;
mod events;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tributary_crds::{FieldError, StreamPipeline, StreamPipelineStatus};

use crate::children::{self, Children};
use crate::metrics::Metrics;
use crate::{Config, Error, FIELD_MANAGER, Result, conditions};

/// How often a settled pipeline is looked at again (drift the watches
/// missed, e.g. while the operator was down).
pub const RESYNC: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    /// The apiserver.
    pub client: Client,
    /// What shapes the children.
    pub config: Config,
    /// Publishes `events.k8s.io` Events.
    pub recorder: Recorder,
    /// Reconcile counters and durations.
    pub metrics: Metrics,
    /// Consecutive failures per pipeline (`namespace/name`), for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for a controller.
    #[must_use]
    pub fn new(client: Client, config: Config, recorder: Recorder, metrics: Metrics) -> Self {
        Self {
            client,
            config,
            recorder,
            metrics,
            failures: Mutex::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `namespace/name`, for logs and per-pipeline maps.
pub(crate) fn key(sp: &StreamPipeline) -> String {
    format!("{}/{}", sp.namespace().unwrap_or_default(), sp.name_any())
}

/// What a successful reconcile found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Applied,
    Invalid,
}

/// Reconciles `sp`; counts and times it.
///
/// # Errors
/// When an apiserver call fails; the controller retries after
/// [`error_policy`]'s backoff.
pub async fn reconcile(sp: Arc<StreamPipeline>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let result = reconcile_inner(&sp, &ctx).await;
    ctx.metrics.duration.observe(start.elapsed().as_secs_f64());
    let label = match &result {
        Ok(Outcome::Applied) => "ok",
        Ok(Outcome::Invalid) => "invalid",
        Err(e) => {
            ctx.metrics
                .failures
                .with_label_values(&[e.metric_label()])
                .inc();
            "error"
        }
    };
    ctx.metrics.reconciles.with_label_values(&[label]).inc();
    if result.is_ok() {
        ctx.failures().remove(&key(&sp));
    }
    result.map(|_| Action::requeue(RESYNC))
}

/// The delay before retry `n` (1-based): 1 s, 2 s, 4 s, … capped at [`RESYNC`].
#[must_use]
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1 << n.clamp(1, 10).saturating_sub(1)).min(RESYNC)
}

/// Retries a failed pipeline after 1 s, 2 s, 4 s, … up to [`RESYNC`].
pub fn error_policy(sp: Arc<StreamPipeline>, err: &Error, ctx: Arc<Context>) -> Action {
    let n = {
        let mut failures = ctx.failures();
        let n = failures.entry(key(&sp)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(n);
    tracing::warn!(pipeline = %key(&sp), error = %err, attempt = n, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Every check the processor would make before running (the shared
/// `validate` rules, the rendered config loading back), and what the
/// Deployment needs: sidecar names that do not clash.
fn check(sp: &StreamPipeline) -> Result<(), Vec<FieldError>> {
    let mut errors = tributary_crds::validate(&sp.spec).err().unwrap_or_default();
    let sidecars = sp.spec.processor.iter().flat_map(|p| &p.sidecars);
    let mut names = vec![children::deployment::CONTAINER];
    for (i, c) in sidecars.enumerate() {
        if names.contains(&c.name.as_str()) {
            errors.push(FieldError::new(
                format!("spec.processor.sidecars[{i}].name"),
                format!(
                    "{:?} is taken (the processor container or another sidecar)",
                    c.name
                ),
            ));
        }
        names.push(&c.name);
    }
    if errors.is_empty() {
        let rendered = children::configmap::render(sp);
        tributary_crds::load_pipeline(&rendered).map_err(|e| vec![e])?;
        Ok(())
    } else {
        Err(errors)
    }
}

async fn reconcile_inner(sp: &StreamPipeline, ctx: &Context) -> Result<Outcome> {
    let ns = sp.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    if sp.metadata.uid.is_none() {
        return Err(Error::MissingMetadata("uid"));
    }
    if sp.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the children through their owner references.
        return Ok(Outcome::Applied);
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = sp.metadata.generation;
    let old = sp.status.as_ref();
    if let Err(errors) = check(sp) {
        let invalid = conditions::invalid(&errors);
        let selector = children::selector_string(sp);
        let status = |old: Option<&StreamPipelineStatus>| {
            conditions::status(
                old,
                generation,
                invalid.clone(),
                None,
                selector.clone(),
                &now,
            )
        };
        if patch_status(sp, &ns, ctx, status).await? {
            events::invalid(ctx, sp, &errors).await;
        }
        return Ok(Outcome::Invalid);
    }
    let desired = Children::desired(sp, &ctx.config);
    let applied = apply::all(&ctx.client, &ns, &desired).await?;
    let spec_changed = old.and_then(|s| s.observed_generation) != generation;
    events::after_apply(ctx, sp, &applied, &desired, spec_changed).await;
    let d = &applied.deployment.after;
    let counts = (
        d.status
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(sp.spec.replicas),
        d.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    );
    let computed = conditions::from_deployment(d, sp.spec.replicas);
    let selector = children::selector_string(sp);
    let status = |old: Option<&StreamPipelineStatus>| {
        conditions::status(
            old,
            generation,
            computed.clone(),
            Some(counts),
            selector.clone(),
            &now,
        )
    };
    patch_status(sp, &ns, ctx, status).await?;
    Ok(Outcome::Applied)
}

/// Writes the fields of the status the reconciler owns, when they changed
/// (`status` computes them from the previous status). Returns whether it
/// wrote.
async fn patch_status(
    sp: &StreamPipeline,
    ns: &str,
    ctx: &Context,
    status: impl Fn(Option<&StreamPipelineStatus>) -> StreamPipelineStatus,
) -> Result<bool> {
    let api: Api<StreamPipeline> = Api::namespaced(ctx.client.clone(), ns);
    let name = sp.name_any();
    let wrote = write_status(&api, sp, FIELD_MANAGER, |fresh| {
        let old = fresh.status.as_ref();
        let new = status(old);
        (old != Some(&new)).then(|| {
            json!({
                "observedGeneration": new.observed_generation,
                "conditions": new.conditions,
                "replicas": new.replicas,
                "readyReplicas": new.ready_replicas,
                "selector": new.selector,
            })
        })
    })
    .await
    .map_err(Error::kube(format!("patching status of {ns}/{name}")))?;
    if wrote {
        tracing::debug!(pipeline = %key(sp), "status updated");
    }
    Ok(wrote)
}

/// Status writes that lost a race before one gives up.
const STATUS_ATTEMPTS: u32 = 5;

/// Merge-patches `status` as `build` makes it from the pipeline, on the
/// condition that the pipeline is still the one it was made from.
///
/// The reconciler and the autoscaler both write `status.conditions`, one
/// list that a merge patch replaces whole, and each keeps the other's
/// conditions as its copy of the pipeline shows them. A copy older than
/// the other writer's last write (the controller's cache lags every
/// write) would drop or revert what that writer wrote — the reconciler
/// reacting to the autoscaler's `spec.replicas` patch used to erase the
/// `Autoscaling` condition the autoscaler wrote right after it. So the
/// patch carries the copy's `resourceVersion`; on a conflict the pipeline
/// is read afresh and the status built again from it. `build` returns
/// `None` when there is nothing to write. Returns whether it wrote.
pub(crate) async fn write_status(
    api: &Api<StreamPipeline>,
    base: &StreamPipeline,
    field_manager: &str,
    build: impl Fn(&StreamPipeline) -> Option<serde_json::Value>,
) -> kube::Result<bool> {
    let name = base.name_any();
    let params = PatchParams {
        field_manager: Some(field_manager.to_owned()),
        ..PatchParams::default()
    };
    let mut fresh: Option<StreamPipeline> = None;
    let mut attempt = 1;
    loop {
        let sp = fresh.as_ref().unwrap_or(base);
        let Some(status) = build(sp) else {
            return Ok(false);
        };
        let mut patch = json!({ "status": status });
        if let Some(version) = sp.resource_version() {
            patch["metadata"] = json!({ "resourceVersion": version });
        }
        match api
            .patch_status(&name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < STATUS_ATTEMPTS => {
                attempt += 1;
                fresh = Some(api.get(&name).await?);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::fixture;

    #[test]
    fn failures_back_off_exponentially_up_to_the_resync_period() {
        let delays: Vec<u64> = (1..=5).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16]);
        assert_eq!(backoff(20), RESYNC);
        assert_eq!(backoff(0), Duration::from_secs(1));
    }

    #[test]
    fn a_valid_pipeline_passes_every_check() {
        assert_eq!(check(&fixture::pipeline()), Ok(()));
        assert_eq!(check(&fixture::with_sidecar()), Ok(()));
    }

    #[test]
    fn a_sidecar_named_like_the_processor_is_an_invalid_spec() {
        let mut sp = fixture::with_sidecar();
        let p = sp.spec.processor.as_mut().unwrap();
        p.sidecars[0].name = "processor".to_owned();
        let errors = check(&sp).unwrap_err();
        assert_eq!(errors[0].path, "spec.processor.sidecars[0].name");
    }
}
