//! Least privilege, measured: the operator runs with a token of the chart's
//! ServiceAccount through a scenario that exercises every decision
//! (create, roll, repair, invalid spec, repeated events, autoscaling, lease
//! handover),
//! then the API server's audit log shows what it really called. Every
//! request must have been allowed, everything it called must be granted,
//! and every verb the chart grants must have been used.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DeleteParams;
use serde_json::Value;
use tributary_e2e::fixture::unique;
use tributary_e2e::kafka::workload::Workload;
use tributary_e2e::kafka::{create_topic, producer};
use tributary_e2e::operator::audit::{self, Permission};
use tributary_e2e::operator::harness::Harness;
use tributary_e2e::operator::pipeline::{self, EVERY, count_window, generator_pipeline};
use tributary_e2e::poll;

/// The audited pipeline: a tumbling window of `size`, or a sliding one
/// with `slide` (invalid when `slide` > `size`).
fn pipeline_yaml(size: &str, slide: Option<&str>) -> String {
    let steps = match slide {
        Some(slide) => format!(
            "[{{window: {{type: sliding, size: {size}, slide: {slide}, aggregate: [{{name: c, fn: count}}]}}}}]"
        ),
        None => count_window(size),
    };
    generator_pipeline("audited", &steps)
}

/// The autoscaler patches `spec.replicas`: a Kafka pipeline whose group
/// lags 400 records over 4 partitions, 100 records per replica, scales up.
async fn autoscale(h: &Harness) -> Result<()> {
    let bootstrap = h.bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let topic = unique("op-rbac-lag");
    create_topic(&bootstrap, &topic, 4).await?;
    let workload = Workload::new(400, 8, 1, 1_000);
    workload
        .produce(&producer(&bootstrap)?, &topic, 0..workload.events, 0.0)
        .await?;
    h.apply(&format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: autoscaled}}
spec:
  source: {{kafka: {{brokers: '{bootstrap}', topics: ['{topic}'], group: '{topic}'}}}}
  sinks: [{{name: out, stdout: {{}}}}]
  replicas: 1
  autoscaling:
    enabled: true
    minReplicas: 1
    maxReplicas: 4
    targetLagPerReplica: 100
    pollInterval: 1s
    scaleUp: {{stabilizationWindow: 0s, maxStep: 4}}
    cooldown: 0s
"
    ))?;
    let sps = h.pipelines();
    let replicas = h
        .until("the autoscaler to raise spec.replicas", || {
            let sps = sps.clone();
            async move {
                let sp = sps.get("autoscaled").await?;
                let n = sp.data.pointer("/spec/replicas").and_then(Value::as_i64);
                anyhow::Ok(n.filter(|n| *n > 1))
            }
        })
        .await?;
    eprintln!("autoscaler: lag 400 on 4 partitions -> {replicas} replicas");
    Ok(())
}

/// The rules of every ClusterRole and Role of the release, as permissions.
fn chart_grants(h: &Harness) -> Result<BTreeSet<Permission>> {
    let selector = format!("app.kubernetes.io/instance={}", h.release.name);
    let mut granted = BTreeSet::new();
    for args in [
        vec!["get", "clusterroles", "-l", &selector, "-o", "json"],
        vec![
            "get",
            "roles",
            "-n",
            &h.release.namespace,
            "-l",
            &selector,
            "-o",
            "json",
        ],
    ] {
        let list: Value = serde_json::from_str(&pipeline::kubectl(&h.bed, &args, None)?.stdout)?;
        let items = list["items"].as_array().context("items")?;
        ensure!(!items.is_empty(), "the release has no {}", args[1]);
        for role in items {
            granted.extend(audit::granted(&role["rules"]));
        }
    }
    Ok(granted)
}

fn show(set: &BTreeSet<Permission>) -> String {
    set.iter()
        .map(|(g, r, v)| format!("  {g:>16} {r:<32} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Changes an annotation so the operator reconciles the (unchanged) spec
/// again; an invalid spec then repeats its InvalidSpec event.
fn touch(h: &Harness, n: usize) -> Result<()> {
    h.kubectl(&[
        "annotate",
        "--overwrite",
        "sp/audited",
        &format!("e2e.tributary.dev/touch={n}"),
    ])?;
    Ok(())
}

#[tokio::test]
async fn the_operator_uses_exactly_the_permissions_the_chart_grants() -> Result<()> {
    // A short lease: renewals (update) happen within the scenario.
    let h = Harness::start_with("op-rbac", Duration::from_secs(3)).await?;
    let log = h
        .bed
        .var("KUBE_AUDIT_LOG")
        .context(
            "the API server writes no audit log; restart the test bed (e2e/testbed down && up)",
        )?
        .to_owned();
    let log = std::path::PathBuf::from(log);
    ensure!(
        log.is_file(),
        "audit log {} does not exist: the API server was started by an `e2e/testbed up` \
         from before audit logging; restart the test bed (e2e/testbed down && e2e/testbed up)",
        log.display()
    );

    // Create, roll, repair twice (a repeated event is patched), go invalid
    // and reconcile the invalid spec twice more.
    h.apply(&pipeline_yaml("10s", None))?;
    h.wait_ready("audited").await?;
    h.apply(&pipeline_yaml("20s", None))?;
    h.wait_ready("audited").await?;
    let cms = h.api::<ConfigMap>();
    for _ in 0..2 {
        let uid = cms.get("audited-pipeline").await?.metadata.uid;
        cms.delete("audited-pipeline", &DeleteParams::default())
            .await?;
        h.until("the ConfigMap to come back", || {
            let (cms, uid) = (cms.clone(), uid.clone());
            async move {
                let back = cms
                    .get_opt("audited-pipeline")
                    .await?
                    .map(|c| c.metadata.uid);
                anyhow::Ok(back.filter(|u| *u != uid).map(|_| ()))
            }
        })
        .await?;
    }
    h.apply(&pipeline_yaml("10s", Some("1m")))?;
    h.wait_condition("audited", "Ready", "False", Some("InvalidSpec"))
        .await?;
    touch(&h, 1)?;
    touch(&h, 2)?;
    autoscale(&h).await?;

    // Wait (bounded) for the log to catch up; the checks below say what is
    // missing if it never does. Then a clean stop releases the Lease.
    let granted = chart_grants(&h)?;
    let username = h.release.username();
    let caught_up = poll::until(
        "the audit log to show every granted permission in use",
        Duration::from_secs(20),
        EVERY,
        || {
            let (log, username, granted) = (log.clone(), username.clone(), granted.clone());
            async move {
                let used = audit::used(&audit::requests_of(&log, &username)?);
                if granted.is_subset(&used) {
                    anyhow::Ok(Some(()))
                } else {
                    Err(anyhow!(
                        "granted but not (yet) used:\n{}",
                        show(&granted.difference(&used).cloned().collect())
                    ))
                }
            }
        },
    )
    .await;
    if let Err(e) = caught_up {
        eprintln!("{e}");
    }
    let status = h.operator.terminate(Duration::from_secs(20));
    let requests = audit::requests_of(&log, &username)?;
    ensure!(
        !requests.is_empty(),
        "the audit log {} has no request of {username}",
        log.display()
    );
    let denied: Vec<_> = requests.iter().filter(|r| r.code == Some(403)).collect();
    let used = audit::used(&requests);
    let ungranted: BTreeSet<Permission> = used.difference(&granted).cloned().collect();
    let unused: BTreeSet<Permission> = granted.difference(&used).cloned().collect();
    eprintln!(
        "{} requests by {username}; used:\n{}",
        requests.len(),
        show(&used)
    );
    ensure!(
        denied.is_empty(),
        "requests denied (403): {denied:#?}\n{}",
        h.explain("")
    );
    ensure!(
        ungranted.is_empty(),
        "used without a grant (should have been denied):\n{}",
        show(&ungranted)
    );
    ensure!(
        unused.is_empty(),
        "granted by the chart but never used (not least privilege):\n{}",
        show(&unused)
    );
    ensure!(
        status.is_some_and(|s| s.success()),
        "the operator did not exit cleanly on SIGTERM: {status:?}"
    );
    Ok(())
}
