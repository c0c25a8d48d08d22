//! Invalid pipelines: what the CRD schema can express is refused by the API
//! server with a message naming the field; what only `validate` catches
//! ends in `Ready=False, reason=InvalidSpec` naming the field, with no child
//! created or changed (a sidecar that breaks the `restricted` Pod Security
//! Standard among them).

use anyhow::{Result, anyhow, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DynamicObject, ListParams};
use tributary_e2e::operator::harness::Harness;
use tributary_e2e::operator::pipeline;

fn pipeline_yaml(name: &str, source: &str, steps: &str, replicas: i32) -> String {
    format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: {name}}}
spec:
  source: {source}
  steps: {steps}
  sinks: [{{name: out, stdout: {{}}}}]
  replicas: {replicas}
"
    )
}

const GENERATOR: &str = "{generator: {profile: clickstream, rate: 10, keys: 5, seed: 1}}";
const COUNT_WINDOW: &str =
    "[{window: {type: tumbling, size: 10s, aggregate: [{name: clicks, fn: count}]}}]";

#[tokio::test]
async fn the_schema_refuses_what_it_can_express_naming_the_field() -> Result<()> {
    let h = Harness::start("op-schema").await?;
    let cases = [
        (
            "two-sources",
            pipeline_yaml(
                "two-sources",
                "{generator: {profile: clickstream}, stdin: {}}",
                "[]",
                1,
            ),
            "spec.source",
        ),
        (
            "negative-replicas",
            pipeline_yaml("negative-replicas", GENERATOR, "[]", -1),
            "spec.replicas",
        ),
        (
            "unknown-aggregate",
            pipeline_yaml(
                "unknown-aggregate",
                GENERATOR,
                "[{window: {type: tumbling, size: 10s, aggregate: [{name: m, fn: median}]}}]",
                1,
            ),
            "spec.steps[0].window.aggregate[0].fn",
        ),
    ];
    for (name, yaml, field) in cases {
        let err = match h.apply(&yaml) {
            Ok(out) => return Err(anyhow!("{name} was accepted: {}", out.stdout)),
            Err(e) => e.to_string(),
        };
        ensure!(
            err.contains(field),
            "refusing {name}, the API server should name {field}: {err}"
        );
        ensure!(
            h.pipelines().get_opt(name).await?.is_none(),
            "{name} was stored although refused"
        );
    }
    Ok(())
}

/// Waits for `Ready=False, reason=InvalidSpec` and checks the three
/// conditions and that the message names `field`.
async fn expect_invalid(h: &Harness, name: &str, field: &str) -> Result<DynamicObject> {
    let sp = h
        .wait_condition(name, "Ready", "False", Some("InvalidSpec"))
        .await?;
    let ready = pipeline::condition(&sp, "Ready")
        .cloned()
        .unwrap_or_default();
    let message = ready["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains(field),
        "the InvalidSpec message should name {field}: {message:?}"
    );
    let event = h.wait_event(name, "InvalidSpec").await?;
    ensure!(
        event.type_.as_deref() == Some("Warning"),
        "the InvalidSpec event should be a Warning: {event:?}"
    );
    for (t, s) in [("Progressing", "False"), ("Degraded", "True")] {
        let state = pipeline::condition_state(&sp, t);
        ensure!(
            state == Some((s.to_owned(), "InvalidSpec".to_owned())),
            "{t} should be {s}/InvalidSpec: {state:?}"
        );
    }
    Ok(sp)
}

#[tokio::test]
async fn specs_only_validate_catches_are_invalid_and_change_no_child() -> Result<()> {
    let h = Harness::start("op-invalid").await?;
    let cases = [
        (
            "slide-over-size",
            "[{window: {type: sliding, size: 10s, slide: 1m, aggregate: [{name: c, fn: count}]}}]",
            "spec.steps[0].window.slide",
        ),
        (
            "bad-cel",
            "[{filter: \"event.action == \"}]",
            "spec.steps[0].filter",
        ),
    ];
    for (name, steps, field) in cases {
        h.apply(&pipeline_yaml(name, GENERATOR, steps, 1))?;
        expect_invalid(&h, name, field).await?;
    }
    // A sidecar that contradicts the `restricted` Pod Security Standard the
    // namespace enforces: refused by name, not left as a Deployment whose
    // pods the namespace never admits.
    let name = "privileged-sidecar";
    h.apply(&format!(
        "{}  processor:\n    sidecars:\n      - {{name: udf, image: example.com/udf:1, securityContext: {{privileged: true}}}}\n",
        pipeline_yaml(name, GENERATOR, COUNT_WINDOW, 1)
    ))?;
    expect_invalid(
        &h,
        name,
        "spec.processor.sidecars[0].securityContext.privileged",
    )
    .await?;
    // No children for pipelines that never were valid.
    let selector = "app.kubernetes.io/managed-by=tributary-operator";
    let cms = h
        .api::<ConfigMap>()
        .list(&ListParams::default().labels(selector))
        .await?;
    let ds = h
        .api::<Deployment>()
        .list(&ListParams::default().labels(selector))
        .await?;
    ensure!(
        cms.items.is_empty() && ds.items.is_empty(),
        "invalid pipelines got children: {:?} {:?}",
        cms.items
            .iter()
            .map(|c| c.metadata.name.clone())
            .collect::<Vec<_>>(),
        ds.items
            .iter()
            .map(|d| d.metadata.name.clone())
            .collect::<Vec<_>>()
    );

    // A valid pipeline made invalid keeps its children exactly as they were.
    let name = "turns-invalid";
    h.apply(&pipeline_yaml(name, GENERATOR, COUNT_WINDOW, 1))?;
    h.wait_ready(name).await?;
    let cm_before = h
        .api::<ConfigMap>()
        .get(&format!("{name}-pipeline"))
        .await?;
    let d_before = h.api::<Deployment>().get(name).await?;
    h.apply(&pipeline_yaml(
        name,
        GENERATOR,
        "[{window: {type: sliding, size: 10s, slide: 1m, aggregate: [{name: c, fn: count}]}}]",
        2,
    ))?;
    expect_invalid(&h, name, "spec.steps[0].window.slide").await?;
    let cm_after = h
        .api::<ConfigMap>()
        .get(&format!("{name}-pipeline"))
        .await?;
    let d_after = h.api::<Deployment>().get(name).await?;
    ensure!(
        cm_after.metadata.resource_version == cm_before.metadata.resource_version,
        "the ConfigMap changed although the spec is invalid"
    );
    ensure!(
        d_after.spec == d_before.spec,
        "the Deployment's spec changed although the spec is invalid"
    );
    Ok(())
}
