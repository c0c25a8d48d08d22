//! `StreamPipeline` objects as the tests see them: through `kubectl` (what a
//! user runs) and the dynamic API (to read status), with waits on their
//! conditions.

use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::Value;

use super::Result;
use crate::env::TestBed;
use crate::poll;
use crate::tools;

/// How often status is polled.
pub const EVERY: Duration = Duration::from_millis(250);

/// Runs `kubectl` with the admin kubeconfig, `stdin` fed in.
///
/// # Errors
///
/// When kubectl cannot run or exits non-zero (the error carries its stderr).
pub fn kubectl(bed: &TestBed, args: &[&str], stdin: Option<&str>) -> Result<tools::Output> {
    let kubeconfig = bed.kubeconfig()?;
    let mut all = vec!["--kubeconfig".to_owned(), kubeconfig.display().to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    Ok(tools::run(&bed.bin("kubectl")?, all, stdin)?)
}

/// `kubectl apply -n NAMESPACE -f -` of `yaml`.
///
/// # Errors
///
/// When the API server refuses it (the error carries kubectl's stderr).
pub fn apply(bed: &TestBed, namespace: &str, yaml: &str) -> Result<tools::Output> {
    kubectl(bed, &["apply", "-n", namespace, "-f", "-"], Some(yaml))
}

/// A pipeline `name` on an unbounded clickstream generator (10 events/s)
/// with `steps` (a YAML flow sequence) and a stdout sink: under kwok it
/// never runs, so only the spec matters.
#[must_use]
pub fn generator_pipeline(name: &str, steps: &str) -> String {
    format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: {name}}}
spec:
  source: {{generator: {{profile: clickstream, rate: 10, keys: 5, seed: 1}}}}
  steps: {steps}
  sinks: [{{name: out, stdout: {{}}}}]
"
    )
}

/// A tumbling count window of `size`, as a one-step YAML flow sequence.
#[must_use]
pub fn count_window(size: &str) -> String {
    format!(
        "[{{window: {{type: tumbling, size: {size}, aggregate: [{{name: clicks, fn: count}}]}}}}]"
    )
}

/// The `StreamPipeline` resource for the dynamic API.
#[must_use]
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tributary.dev", "v1alpha1", "StreamPipeline"),
        "streampipelines",
    )
}

/// The `StreamPipeline`s of `namespace`.
#[must_use]
pub fn api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource())
}

/// The condition `type_` of a pipeline's status, if set.
#[must_use]
pub fn condition<'a>(sp: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    sp.data
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// `status` and `reason` of condition `type_`, for messages and checks.
#[must_use]
pub fn condition_state(sp: &DynamicObject, type_: &str) -> Option<(String, String)> {
    let c = condition(sp, type_)?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// Waits until the pipeline `name` satisfies `check`, and returns it. The
/// timeout names `what` and shows the last status seen.
///
/// # Errors
///
/// [`poll::Timeout`] (as an [`anyhow`-friendly](super::Error) error) when
/// the deadline passes.
pub async fn wait_for<F>(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: F,
) -> Result<DynamicObject>
where
    F: Fn(&DynamicObject) -> bool,
{
    let check = &check;
    poll::until(what, timeout, EVERY, || async move {
        let sp = api.get(name).await.map_err(|e| e.to_string())?;
        if check(&sp) {
            Ok(Some(sp))
        } else {
            Err(format!(
                "status: {}",
                sp.data.get("status").unwrap_or(&Value::Null)
            ))
        }
    })
    .await
    .map_err(|e| super::Error::Unexpected(e.to_string()))
}

/// Waits until condition `type_` has `status` (and `reason`, when given) for
/// the pipeline's current generation.
///
/// # Errors
///
/// When the deadline passes first; the error shows the last status.
pub async fn wait_condition(
    api: &Api<DynamicObject>,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> Result<DynamicObject> {
    let what = format!(
        "{name}: {type_}={status}{}",
        reason.map(|r| format!(" reason={r}")).unwrap_or_default()
    );
    wait_for(api, name, &what, timeout, |sp| {
        let current = sp.metadata.generation.is_some()
            && sp
                .data
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64)
                == sp.metadata.generation;
        current
            && condition_state(sp, type_)
                .is_some_and(|(s, r)| s == status && reason.is_none_or(|want| want == r))
    })
    .await
}
