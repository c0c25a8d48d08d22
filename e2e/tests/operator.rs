//! The operator on the real control plane: a pipeline applied with kubectl
//! gets its ConfigMap, Deployment, Service and PodDisruptionBudget, becomes
//! Ready once kwok makes the Deployment available, rolls on a spec edit,
//! follows `kubectl scale`, repairs deleted or edited children, and its
//! children are garbage-collected with it.
//!
//! Each test installs the chart into its own namespace and runs the operator
//! as a local process with the chart's ServiceAccount token.

use std::collections::BTreeSet;

use anyhow::{Context, Result, anyhow, ensure};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, DynamicObject, ListParams};
use serde_json::Value;
use tributary_e2e::operator::harness::Harness;
use tributary_e2e::operator::pipeline::{self, count_window, generator_pipeline};
use tributary_e2e::operator::workspace_root;

/// The examples applied in the first test: every cluster example (under
/// kwok nothing runs, so a Kafka one needs no broker; the spec is what
/// matters).
const EXAMPLES: &str = "deploy/examples/cluster";

/// The labels every child carries (the contract in the operator brief).
fn expected_labels(name: &str) -> [(&'static str, String); 4] {
    [
        ("app.kubernetes.io/name", "tributary-processor".to_owned()),
        ("app.kubernetes.io/instance", name.to_owned()),
        ("app.kubernetes.io/component", "processor".to_owned()),
        (
            "app.kubernetes.io/managed-by",
            "tributary-operator".to_owned(),
        ),
    ]
}

/// Fails unless `meta` is a child of the pipeline `uid`: a controller owner
/// reference that blocks the owner's deletion, and the processor labels.
fn check_child(kind: &str, meta: &ObjectMeta, name: &str, uid: &str) -> Result<()> {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    ensure!(
        owners.iter().any(|o| o.kind == "StreamPipeline"
            && o.api_version == "tributary.dev/v1alpha1"
            && o.name == name
            && o.uid == uid
            && o.controller == Some(true)
            && o.block_owner_deletion == Some(true)),
        "{kind} {:?} is not controlled by StreamPipeline {name} ({uid}): {owners:?}",
        meta.name
    );
    let labels = meta.labels.clone().unwrap_or_default();
    for (k, v) in expected_labels(name) {
        ensure!(
            labels.get(k) == Some(&v),
            "{kind} {:?}: label {k} should be {v}, labels: {labels:?}",
            meta.name
        );
    }
    Ok(())
}

/// Whether every field of `part` is in `whole` with the same value (the
/// operator may add defaults, never drop or change what the user wrote).
fn within(part: &Value, whole: &Value) -> bool {
    match (part, whole) {
        (Value::Object(p), Value::Object(w)) => p
            .iter()
            .all(|(k, v)| w.get(k).is_some_and(|wv| within(v, wv))),
        (Value::Array(p), Value::Array(w)) => {
            p.len() == w.len() && p.iter().zip(w).all(|(a, b)| within(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => part == whole,
    }
}

fn status_i64(sp: &DynamicObject, field: &str) -> Option<i64> {
    sp.data.pointer(&format!("/status/{field}"))?.as_i64()
}

fn config_hash(d: &Deployment) -> Option<String> {
    d.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("tributary.dev/config-hash")
        .cloned()
}

/// The Deployment's `processor` container.
fn processor(d: &Deployment) -> Result<&Container> {
    d.spec
        .template
        .spec
        .as_ref()
        .context("pod spec")?
        .containers
        .iter()
        .find(|c| c.name == "processor")
        .context("container processor")
}

/// `lastTransitionTime` of the Ready condition.
fn ready_transition(sp: &DynamicObject) -> Result<String> {
    pipeline::condition(sp, "Ready")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no Ready.lastTransitionTime: {}", sp.data["status"]))
}

/// Waits until the Deployment `name` asks for `n` replicas.
async fn wait_deployment_replicas(h: &Harness, name: &str, n: i32) -> Result<()> {
    let deployments = h.api::<Deployment>();
    h.until(&format!("Deployment {name} to have {n} replicas"), || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get(name).await?;
            anyhow::Ok((d.spec.replicas == Some(n)).then_some(()))
        }
    })
    .await?;
    Ok(())
}

/// The status an available pipeline of `replicas` must show.
fn check_ready_status(sp: &DynamicObject, name: &str, replicas: i32) -> Result<()> {
    let status = &sp.data["status"];
    let replicas = Some(i64::from(replicas));
    ensure!(status_i64(sp, "replicas") == replicas, "status: {status}");
    ensure!(
        status_i64(sp, "readyReplicas") == replicas,
        "status: {status}"
    );
    ensure!(
        status["selector"].as_str() == Some(&format!("app.kubernetes.io/instance={name}")),
        "status.selector: {status}"
    );
    for (t, s) in [("Progressing", "False"), ("Degraded", "False")] {
        let state = pipeline::condition_state(sp, t);
        ensure!(
            state.as_ref().is_some_and(|(st, _)| st == s),
            "{t} should be {s}: {state:?}"
        );
    }
    Ok(())
}

/// The ConfigMap holds the resource the processor runs: what was applied
/// (plus defaults), without status.
async fn check_config_map(h: &Harness, name: &str, uid: &str, applied: &Value) -> Result<()> {
    let cm = h
        .api::<ConfigMap>()
        .get(&format!("{name}-pipeline"))
        .await?;
    check_child("ConfigMap", &cm.metadata, name, uid)?;
    let rendered = cm
        .data
        .as_ref()
        .and_then(|d| d.get("pipeline.yaml"))
        .context("ConfigMap key pipeline.yaml")?;
    let rendered: Value = serde_yaml_ng::from_str(rendered)?;
    ensure!(rendered["kind"] == "StreamPipeline" && rendered["metadata"]["name"] == name);
    ensure!(
        rendered.get("status").is_none(),
        "status leaked into {rendered}"
    );
    // `replicas` is the cluster's business, not the processor's: leaving it
    // out keeps the config hash (and the pods) unchanged when scaling.
    let mut spec = applied["spec"].clone();
    if let Some(spec) = spec.as_object_mut() {
        spec.remove("replicas");
    }
    ensure!(
        within(&spec, &rendered["spec"]),
        "the rendered spec lost or changed a field of the applied one:\n{spec}\nvs\n{rendered}"
    );
    Ok(())
}

/// The Deployment runs that ConfigMap with the processor's command, a
/// config hash on the pod template and a restricted security context (the
/// namespace enforces the `restricted` PSS, so Ready proves the pods pass).
async fn check_deployment(h: &Harness, name: &str, uid: &str, applied: &Value) -> Result<()> {
    let replicas = applied["spec"]["replicas"]
        .as_i64()
        .map_or(Ok(1), i32::try_from)?;
    let d = h.api::<Deployment>().get(name).await?;
    check_child("Deployment", &d.metadata, name, uid)?;
    let hash = config_hash(&d).context("pod template has tributary.dev/config-hash")?;
    ensure!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "config hash {hash:?} is not a sha256 hex digest"
    );
    ensure!(
        d.spec.replicas == Some(replicas),
        "replicas {:?}",
        d.spec.replicas
    );
    let pod = d.spec.template.spec.as_ref().context("pod spec")?;
    let c = processor(&d)?;
    ensure!(
        c.command.as_deref() == Some(&["tributary".to_owned()][..]),
        "{:?}",
        c.command
    );
    ensure!(
        c.args.as_deref()
            == Some(&["run", "-f", "/etc/tributary/pipeline.yaml"].map(str::to_owned)[..]),
        "{:?}",
        c.args
    );
    let sc = c
        .security_context
        .as_ref()
        .context("container securityContext")?;
    ensure!(
        sc.read_only_root_filesystem == Some(true) && sc.allow_privilege_escalation == Some(false)
    );
    ensure!(
        pod.volumes.iter().flatten().any(|v| v
            .config_map
            .as_ref()
            .is_some_and(|cm| cm.name == format!("{name}-pipeline"))),
        "no volume of ConfigMap {name}-pipeline"
    );
    // Pod knobs from spec.processor.
    let processor_spec = &applied["spec"]["processor"];
    if let Some(resources) = processor_spec.get("resources") {
        let got = serde_json::to_value(&c.resources)?;
        ensure!(
            within(resources, &got),
            "resources {got} are not spec.processor.resources {resources}"
        );
    }
    let image = processor_spec["image"]
        .as_str()
        .unwrap_or("ghcr.io/tributary/processor:0.1.0");
    ensure!(c.image.as_deref() == Some(image), "image {:?}", c.image);
    Ok(())
}

/// The pipeline namespace enforces the `restricted` Pod Security Standard,
/// so Ready means the processor pods passed it: a pod that breaks it is
/// refused there.
fn check_namespace_enforces_restricted(h: &Harness) -> Result<()> {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: not-restricted}\n\
               spec: {containers: [{name: c, image: busybox}]}\n";
    match h.apply(pod) {
        Ok(out) => anyhow::bail!(
            "a pod breaking the restricted PSS was admitted: {}",
            out.stdout
        ),
        Err(e) => ensure!(
            e.to_string().contains("PodSecurity"),
            "refused for another reason: {e}"
        ),
    }
    Ok(())
}

/// The metrics Service and the PodDisruptionBudget.
async fn check_service_and_pdb(h: &Harness, name: &str, uid: &str) -> Result<()> {
    let svc = h.api::<Service>().get(name).await?;
    check_child("Service", &svc.metadata, name, uid)?;
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    ensure!(
        ports
            .iter()
            .any(|p| p.port == 9090 && p.name.as_deref() == Some("metrics")),
        "Service ports: {ports:?}"
    );
    let pdb = h.api::<PodDisruptionBudget>().get(name).await?;
    check_child("PodDisruptionBudget", &pdb.metadata, name, uid)?;
    ensure!(
        pdb.spec.as_ref().and_then(|s| s.max_unavailable.clone())
            == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)),
        "PDB spec: {:?}",
        pdb.spec
    );
    Ok(())
}

/// `kubectl get sp` shows the printer columns and the Ready status.
fn check_columns(h: &Harness, name: &str) -> Result<()> {
    let out = h.kubectl(&["get", "sp", name])?.stdout;
    let mut lines = out.lines();
    let header: BTreeSet<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for col in ["NAME", "READY", "REPLICAS", "LAG", "AGE"] {
        ensure!(
            header.contains(col),
            "kubectl get sp lacks column {col}:\n{out}"
        );
    }
    let row = lines.next().unwrap_or_default();
    ensure!(
        row.starts_with(name) && row.split_whitespace().any(|c| c == "True"),
        "kubectl get sp row: {out}"
    );
    Ok(())
}

#[tokio::test]
async fn applied_examples_get_their_children_and_become_ready() -> Result<()> {
    let h = Harness::start("op-children").await?;
    let mut paths: Vec<_> = std::fs::read_dir(workspace_root().join(EXAMPLES))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    paths.sort();
    ensure!(!paths.is_empty(), "no example in {EXAMPLES}");
    check_namespace_enforces_restricted(&h)?;
    for path in paths {
        let yaml = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        let applied: Value = serde_yaml_ng::from_str(&yaml)?;
        let name = applied["metadata"]["name"]
            .as_str()
            .context("example has a name")?;
        let replicas = applied["spec"]["replicas"]
            .as_i64()
            .map_or(Ok(1), i32::try_from)?;
        h.apply(&yaml)?;

        let sp = h
            .wait_condition(name, "Ready", "True", Some("Available"))
            .await
            .with_context(|| path.display().to_string())?;
        let uid = sp.metadata.uid.clone().context("uid")?;
        check_ready_status(&sp, name, replicas)?;
        check_config_map(&h, name, &uid, &applied).await?;
        check_deployment(&h, name, &uid, &applied).await?;
        check_service_and_pdb(&h, name, &uid).await?;
        check_columns(&h, name)?;
        h.wait_event(name, "Created").await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_spec_edit_rolls_the_deployment_and_kubectl_scale_is_followed() -> Result<()> {
    let h = Harness::start("op-roll").await?;
    let name = "rolling";
    h.apply(&generator_pipeline(name, &count_window("10s")))?;
    let sp = h.wait_ready(name).await?;
    let deployments = h.api::<Deployment>();
    let before = config_hash(&deployments.get(name).await?).context("hash")?;
    let gen_before = sp.metadata.generation.context("generation")?;

    h.apply(&generator_pipeline(name, &count_window("20s")))?;
    let after = h
        .until("the config hash to change", || {
            let deployments = deployments.clone();
            let before = before.clone();
            async move {
                let hash = config_hash(&deployments.get(name).await?);
                anyhow::Ok(hash.filter(|h| *h != before))
            }
        })
        .await?;
    // The ConfigMap carries the new spec; the hash is a new pod template,
    // so the Deployment rolls out a second ReplicaSet.
    let rendered = h.rendered(name).await?;
    ensure!(
        rendered.contains("20s"),
        "ConfigMap not updated:\n{rendered}"
    );
    let replica_sets = h.api::<ReplicaSet>();
    h.until("a second ReplicaSet (the rollout)", || {
        let replica_sets = replica_sets.clone();
        async move {
            let selector = format!("app.kubernetes.io/instance={name}");
            let n = replica_sets
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .len();
            anyhow::Ok((n >= 2).then_some(()))
        }
    })
    .await?;
    let sp = h.wait_ready(name).await?;
    ensure!(sp.metadata.generation > Some(gen_before));
    h.wait_event(name, "Rolled").await?;

    // `kubectl scale` goes through the scale subresource to spec.replicas.
    h.kubectl(&["scale", &format!("sp/{name}"), "--replicas=3"])?;
    wait_deployment_replicas(&h, name, 3).await?;
    pipeline::wait_for(
        &h.pipelines(),
        name,
        "status.replicas and readyReplicas 3 and Ready",
        tributary_e2e::operator::harness::WAIT,
        |sp| {
            status_i64(sp, "replicas") == Some(3)
                && status_i64(sp, "readyReplicas") == Some(3)
                && pipeline::condition_state(sp, "Ready").is_some_and(|(s, _)| s == "True")
        },
    )
    .await
    .map_err(|e| anyhow!(h.explain(e)))?;
    h.wait_event(name, "Scaled").await?;
    // Scaling is not a new configuration: the pods are not rolled.
    let hash = config_hash(&deployments.get(name).await?);
    ensure!(
        hash.as_ref() == Some(&after),
        "scaling changed the config hash from {after} to {hash:?}"
    );
    Ok(())
}

#[tokio::test]
async fn deleted_or_edited_children_are_repaired_and_collected_with_the_pipeline() -> Result<()> {
    let h = Harness::start("op-drift").await?;
    let name = "drifting";
    h.apply(&generator_pipeline(name, &count_window("10s")))?;
    let ready_since = ready_transition(&h.wait_ready(name).await?)?;
    let reconciled = h
        .operator
        .metric_sum("tributary_operator_reconciles_total")?;
    let cm_name = format!("{name}-pipeline");

    // Deleted children come back (as new objects).
    let cms = h.api::<ConfigMap>();
    let services = h.api::<Service>();
    let old_cm = cms.get(&cm_name).await?.metadata.uid;
    let old_svc = services.get(name).await?.metadata.uid;
    cms.delete(&cm_name, &DeleteParams::default()).await?;
    services.delete(name, &DeleteParams::default()).await?;
    h.until("the ConfigMap and Service to come back", || {
        let (cms, services, cm_name) = (cms.clone(), services.clone(), cm_name.clone());
        let (old_cm, old_svc) = (old_cm.clone(), old_svc.clone());
        async move {
            let cm = cms.get_opt(&cm_name).await?.map(|c| c.metadata.uid);
            let svc = services.get_opt(name).await?.map(|s| s.metadata.uid);
            let back = cm.is_some_and(|u| u != old_cm) && svc.is_some_and(|u| u != old_svc);
            anyhow::Ok(back.then_some(()))
        }
    })
    .await?;
    // The repair reconciled without a transition of Ready: its
    // lastTransitionTime stays.
    h.until("a reconcile after the repair", || async {
        let n = h
            .operator
            .metric_sum("tributary_operator_reconciles_total")?;
        anyhow::Ok((n > reconciled).then_some(()))
    })
    .await?;
    let sp = h.wait_ready(name).await?;
    ensure!(
        ready_transition(&sp)? == ready_since,
        "Ready's lastTransitionTime moved without a transition: {}",
        sp.data["status"]
    );

    // An edited child is set back: someone scales the Deployment by hand.
    h.kubectl(&["scale", &format!("deployment/{name}"), "--replicas=4"])?;
    wait_deployment_replicas(&h, name, 1).await?;
    h.wait_event(name, "RepairedDrift").await?;

    // Deleting the pipeline leaves the children to the garbage collector.
    h.kubectl(&["delete", &format!("sp/{name}"), "--wait=true"])?;
    let deployments = h.api::<Deployment>();
    let pdbs = h.api::<PodDisruptionBudget>();
    h.until("the garbage collector to remove every child", || {
        let (cms, services, deployments, pdbs) = (
            cms.clone(),
            services.clone(),
            deployments.clone(),
            pdbs.clone(),
        );
        let cm_name = cm_name.clone();
        async move {
            let left = [
                cms.get_opt(&cm_name).await?.map(|_| "ConfigMap"),
                services.get_opt(name).await?.map(|_| "Service"),
                deployments.get_opt(name).await?.map(|_| "Deployment"),
                pdbs.get_opt(name).await?.map(|_| "PodDisruptionBudget"),
            ];
            let left: Vec<_> = left.into_iter().flatten().collect();
            if left.is_empty() {
                anyhow::Ok(Some(()))
            } else {
                Err(anyhow!("still there: {left:?}"))
            }
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn secrets_stay_references_in_the_config_and_reach_the_pod_as_env() -> Result<()> {
    let h = Harness::start("op-secrets").await?;
    let name = "with-secrets";
    let yaml = format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: {name}}}
spec:
  source:
    kafka:
      brokers: kafka:9092
      topics: [clicks]
      auth:
        sasl:
          mechanism: PLAIN
          username: {{secretKeyRef: {{name: kafka-user, key: username}}}}
          password: {{secretKeyRef: {{name: kafka-user, key: password}}}}
  sinks: [{{name: out, stdout: {{}}}}]
"
    );
    h.apply(&yaml)?;
    h.wait_ready(name).await?;
    let rendered = h.rendered(name).await?;
    ensure!(
        !rendered.contains("secretKeyRef") && !rendered.contains("kafka-user"),
        "the ConfigMap names the Secret:\n{rendered}"
    );
    let rendered: Value = serde_yaml_ng::from_str(&rendered)?;
    let sasl = &rendered["spec"]["source"]["kafka"]["auth"]["sasl"];
    let vars = [&sasl["username"]["env"], &sasl["password"]["env"]];
    let d = h.api::<Deployment>().get(name).await?;
    let c = processor(&d)?;
    for (var, key) in vars.iter().zip(["username", "password"]) {
        let var = var
            .as_str()
            .with_context(|| format!("sasl {key} is not an env reference: {sasl}"))?;
        let env = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == var)
            .with_context(|| format!("the processor has no env {var}"))?;
        let from = env
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref())
            .with_context(|| format!("{var} is not from a Secret: {env:?}"))?;
        ensure!(
            from.name == "kafka-user" && from.key == key,
            "{var} comes from {}/{}",
            from.name,
            from.key
        );
    }
    Ok(())
}
