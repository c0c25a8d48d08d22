//! The whole path, for real: a Kafka → filter → window → Kafka pipeline
//! applied with kubectl is rendered by the operator into a Deployment of two
//! processor pods, the pod runner runs each as a local `tributary` process
//! from the operator's ConfigMap and env, and the records produced to the
//! input topic come out of the output topic as the spec says (every
//! per-user window count exactly once, compared with a brute-force count).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use tributary_e2e::fixture::unique;
use tributary_e2e::kafka::output::{Check, read_to_end};
use tributary_e2e::kafka::pipeline::PipelineSpec;
use tributary_e2e::kafka::workload::Workload;
use tributary_e2e::kafka::{create_topic, lag, producer};
use tributary_e2e::operator::harness::Harness;
use tributary_e2e::poll::Deadline;
use tributary_e2e::runner::handle::alive;

const PARTITIONS: i32 = 2;
const REPLICAS: usize = 2;
const WAIT: Duration = Duration::from_secs(90);

/// The pipeline as a user applies it: the Kafka test pipeline with two
/// replicas, in whatever namespace `kubectl apply -n` says.
fn pipeline(spec: &PipelineSpec) -> Result<String> {
    let mut sp: serde_yaml_ng::Value = serde_yaml_ng::from_str(&spec.yaml())?;
    let meta = sp["metadata"]
        .as_mapping_mut()
        .context("metadata is a mapping")?;
    meta.remove("namespace");
    sp["spec"]["replicas"] = serde_yaml_ng::Value::from(REPLICAS as u64);
    Ok(serde_yaml_ng::to_string(&sp)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_pipeline_applied_with_kubectl_computes_its_windows() -> Result<()> {
    let h = Harness::start("op-runs").await?;
    let bootstrap = h.bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let topics = unique("op-runs");
    let spec = PipelineSpec {
        name: "clicks-per-user".into(),
        brokers: bootstrap.clone(),
        input: format!("{topics}-in"),
        output: format!("{topics}-out"),
        dead_letter: format!("{topics}-dlq"),
        group: Some(format!("{topics}-group")),
        guarantee: "exactlyOnce",
        checkpoint: "1s",
        window: "1s",
        repartition: false,
    };
    create_topic(&bootstrap, &spec.input, PARTITIONS).await?;
    create_topic(&bootstrap, &spec.output, 1).await?;
    create_topic(&bootstrap, &spec.dead_letter, 1).await?;

    h.apply(&pipeline(&spec)?)?;
    h.wait_ready(&spec.name).await?;

    let work = tempfile::tempdir()?;
    let runner = h.pod_runner(
        std::path::Path::new(env!("CARGO_BIN_EXE_pod-runner")),
        work.path(),
    )?;
    let deadline = Deadline::new(&format!("{REPLICAS} processors to run"), WAIT);
    loop {
        runner.check()?;
        let procs = runner.running()?;
        if procs.len() == REPLICAS && procs.iter().all(|p| alive(p.pid)) {
            break;
        }
        deadline
            .check(&procs)
            .map_err(|e| anyhow!("{e}\n{}", runner.log_text()))?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // 20 s of event time over 10 users in 1 s windows, then one flush event
    // per partition so every window closes.
    let workload = Workload::new(4_000, 10, 5, 1_000);
    let p = producer(&bootstrap)?;
    workload
        .produce(&p, &spec.input, 0..workload.events, 0.0)
        .await?;
    workload.produce_flush(&p, &spec.input, PARTITIONS).await?;

    let group = spec.group();
    let deadline = Deadline::new(&format!("{group} to consume {}", spec.input), WAIT);
    loop {
        runner.check()?;
        let left = lag(&bootstrap, &group, &spec.input)?;
        if left == 0 {
            break;
        }
        if let Err(e) = deadline.check(left) {
            let logs: Vec<String> = runner
                .running()?
                .iter()
                .map(|r| {
                    let log =
                        std::fs::read_to_string(r.workdir.join("stderr.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    format!(
                        "--- {}:\n{}",
                        r.pod,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    )
                })
                .collect();
            anyhow::bail!(
                "{e}\n{}\n--- runner:\n{}",
                logs.join("\n"),
                runner.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let records = read_to_end(&bootstrap, &spec.output, true, Duration::from_secs(60)).await?;
    let check = Check::new(&workload.expected(), &records);
    eprintln!("operator-run pipeline: {check}");
    ensure!(check.exactly_once(), "window results: {check}");
    Ok(())
}
