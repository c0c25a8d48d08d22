//! The lag autoscaler on the test bed: real Kafka lag, the operator's
//! decision, `spec.replicas` patched, the Deployment following, and — with
//! the pod runner — real processors draining the backlog until the
//! autoscaler brings them back to one.

mod aws_common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use serde_json::Value;
use tributary_e2e::fixture::unique;
use tributary_e2e::kafka::workload::Workload;
use tributary_e2e::kafka::{create_topic, lag, producer};
use tributary_e2e::operator::harness::{Harness, wait_leading};
use tributary_e2e::operator::pipeline::condition;
use tributary_e2e::operator::process::{Operator, Options};
use tributary_e2e::poll::Deadline;

/// A map step that costs a few milliseconds of CPU per record (a 20×20×5
/// CEL comprehension), so that one processor cannot keep up with a backlog.
const SLOW_MAP: &str = "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20].map(a, [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20].map(b, [1,2,3,4,5].map(c, a * b * c))).size()";

fn pipeline(name: &str, bootstrap: &str, topic: &str, autoscaling: &str, slow: bool) -> String {
    let steps = if slow {
        format!("  steps:\n    - map: {{set: {{work: \"{SLOW_MAP}\"}}}}\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: {name}}}
spec:
  source: {{kafka: {{brokers: '{bootstrap}', topics: ['{topic}'], group: '{topic}'}}}}
{steps}  sinks: [{{name: out, blackhole: {{}}}}]
  checkpoint: {{interval: 1s}}
  replicas: 1
  autoscaling:
{autoscaling}"
    )
}

async fn replicas(h: &Harness, name: &str) -> Result<i64> {
    let sp = h.pipelines().get(name).await?;
    sp.data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .context("spec.replicas")
}

/// The `Autoscaled` events of pipeline `name` as (action, occurrences):
/// the recorder folds repeats of one action into a series with a count.
async fn autoscaled_events(h: &Harness, name: &str) -> Result<Vec<(String, i32)>> {
    let events = h.api::<Event>().list(&ListParams::default()).await?;
    Ok(events
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("Autoscaled")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .map(|e| {
            let n = e.series.as_ref().map_or(1, |s| s.count);
            (e.action.unwrap_or_default(), n)
        })
        .collect())
}

fn occurrences(events: &[(String, i32)]) -> i32 {
    events.iter().map(|(_, n)| *n).sum()
}

/// A backlog on 12 partitions that one slowed processor cannot drain fast
/// enough: replicas rise (never above maxReplicas 6), the processors drain
/// the lag, and after the scale-down window the count returns to 1 — up
/// moves, then down moves, never up again (no oscillation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_scales_processors_up_then_back_to_one_without_flapping() -> Result<()> {
    let h = Harness::start("op-scale").await?;
    let bootstrap = h.bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let topic = unique("op-scale");
    create_topic(&bootstrap, &topic, 12).await?;
    let workload = Workload::new(6_000, 24, 1, 1_000);
    workload
        .produce(&producer(&bootstrap)?, &topic, 0..workload.events, 0.0)
        .await?;
    h.apply(&pipeline(
        "backlog",
        &bootstrap,
        &topic,
        "    enabled: true
    minReplicas: 1
    maxReplicas: 6
    targetLagPerReplica: 500
    catchUp: 20s
    pollInterval: 2s
    scaleUp: {stabilizationWindow: 0s, maxStep: 4}
    scaleDown: {stabilizationWindow: 10s, maxStep: 6}
    cooldown: 5s
",
        true,
    ))?;
    let work = tempfile::tempdir()?;
    let runner = h.pod_runner(
        std::path::Path::new(env!("CARGO_BIN_EXE_pod-runner")),
        work.path(),
    )?;

    let started = Instant::now();
    let mut timeline: Vec<(u64, i64)> = vec![(0, 1)];
    let deadline = Deadline::new(
        "the backlog to drain and replicas to return to 1",
        Duration::from_secs(240),
    );
    loop {
        runner.check()?;
        let n = replicas(&h, "backlog").await?;
        if timeline.last().map(|(_, r)| *r) != Some(n) {
            timeline.push((started.elapsed().as_secs(), n));
        }
        let left = lag(&bootstrap, &topic, &topic)?;
        let scaled_up = timeline.iter().any(|(_, r)| *r > 1);
        if scaled_up && left == 0 && n == 1 {
            break;
        }
        deadline
            .check(format!(
                "lag {left}, replicas over time (s, n): {timeline:?}"
            ))
            .map_err(|e| anyhow!("{}", h.explain(e)))?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("autoscaler timeline (seconds, spec.replicas): {timeline:?}");
    let counts: Vec<i64> = timeline.iter().map(|(_, r)| *r).collect();
    let peak = counts.iter().copied().max().unwrap_or(1);
    ensure!(peak <= 6, "above maxReplicas: {timeline:?}");
    let top = counts.iter().position(|r| *r == peak).unwrap_or(0);
    ensure!(
        counts[..=top].windows(2).all(|w| w[0] < w[1])
            && counts[top..].windows(2).all(|w| w[0] > w[1]),
        "replicas went up after going down (flapping): {timeline:?}"
    );
    let changes = i32::try_from(counts.len() - 1)?;
    let events = h
        .until("an Autoscaled event for every change", || async {
            let events = autoscaled_events(&h, "backlog").await?;
            anyhow::Ok((occurrences(&events) == changes).then_some(events))
        })
        .await?;
    ensure!(
        events.iter().any(|(a, _)| a == "ScaleDown") && events.iter().any(|(a, _)| a == "ScaleUp"),
        "Autoscaled events: {events:?}"
    );
    let sp = h.pipelines().get("backlog").await?;
    let cond = condition(&sp, "Autoscaling").context("no Autoscaling condition")?;
    eprintln!("Autoscaling condition: {cond}");
    Ok(())
}

/// `maxReplicas` above the partition count: capped at the partitions, and
/// the condition says why. An operator restart in the middle then resumes
/// without a spurious action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_at_the_partition_count_and_a_restart_does_not_act() -> Result<()> {
    let h = Harness::start_with("op-cap", Duration::from_secs(3)).await?;
    let bootstrap = h.bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let topic = unique("op-cap");
    create_topic(&bootstrap, &topic, 4).await?;
    let workload = Workload::new(2_000, 8, 1, 1_000);
    workload
        .produce(&producer(&bootstrap)?, &topic, 0..workload.events, 0.0)
        .await?;
    // No processor runs: the lag stays.
    h.apply(&pipeline(
        "capped",
        &bootstrap,
        &topic,
        "    enabled: true
    maxReplicas: 10
    targetLagPerReplica: 100
    pollInterval: 1s
    cooldown: 0s
",
        false,
    ))?;
    h.until("spec.replicas capped at the 4 partitions", || async {
        let sp = h.pipelines().get("capped").await?;
        let n = sp.data.pointer("/spec/replicas").and_then(Value::as_i64);
        let reason = condition(&sp, "Autoscaling")
            .and_then(|c| c.get("reason"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        anyhow::Ok((n == Some(4) && reason.as_deref() == Some("CappedAtPartitions")).then_some(()))
    })
    .await?;
    let before = autoscaled_events(&h, "capped").await?;
    ensure!(!before.is_empty(), "no Autoscaled event for the scale-up");

    // Restart: kill the leader, a new operator takes the Lease and resumes.
    h.operator.kill9();
    let second = Operator::start(&h.release, &Options::new(&h.namespace, "second"))?;
    wait_leading(&second).await?;
    let observed = |sp: &kube::api::DynamicObject| {
        sp.data
            .pointer("/status/lag/observedAt")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Deadline::new("five decisions by the new leader", Duration::from_secs(60));
    while seen.len() < 6 {
        let sp = h.pipelines().get("capped").await?;
        if let Some(at) = observed(&sp) {
            seen.insert(at);
        }
        let n = replicas(&h, "capped").await?;
        ensure!(n == 4, "the restarted autoscaler changed replicas to {n}");
        deadline
            .check(&seen)
            .map_err(|e| anyhow!("{e}\n{}", second.log_tail(30)))?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let after = autoscaled_events(&h, "capped").await?;
    ensure!(
        occurrences(&after) == occurrences(&before),
        "a spurious action after the restart: {after:#?}"
    );
    second.terminate(Duration::from_secs(10));
    Ok(())
}

/// The CloudWatch path against moto: a synthetic Kinesis
/// `GetRecords.IteratorAgeMilliseconds` series drives the decision — up
/// while the iterator age is high (lag per replica in the metric's unit),
/// back to one once it is zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudwatch_iterator_age_series_drives_the_replicas() -> Result<()> {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let h = Harness::start("op-cw").await?;
    let config = aws_common::config(&h.bed).await?;
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let stream = unique("clicks");
    let put = |age: f64| {
        let cw = cw.clone();
        let stream = stream.clone();
        async move {
            cw.put_metric_data()
                .namespace("AWS/Kinesis")
                .metric_data(
                    MetricDatum::builder()
                        .metric_name("GetRecords.IteratorAgeMilliseconds")
                        .dimensions(
                            Dimension::builder()
                                .name("StreamName")
                                .value(&stream)
                                .build(),
                        )
                        .timestamp(std::time::SystemTime::now().into())
                        .value(age)
                        .build(),
                )
                .send()
                .await
        }
    };
    put(45_000.0).await?;
    h.apply(&format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: kinesis-age}}
spec:
  source: {{generator: {{profile: clickstream, rate: 10}}}}
  sinks: [{{name: out, blackhole: {{}}}}]
  replicas: 1
  autoscaling:
    enabled: true
    maxReplicas: 8
    metric:
      cloudWatch:
        namespace: AWS/Kinesis
        metricName: GetRecords.IteratorAgeMilliseconds
        dimensions: {{StreamName: {stream}}}
        statistic: Maximum
        period: 1s
    targetLagPerReplica: 10000
    pollInterval: 1s
    scaleUp: {{maxStep: 4}}
    scaleDown: {{stabilizationWindow: 5s, maxStep: 8}}
    cooldown: 0s
"
    ))?;
    // 45 s of iterator age over 10 s per replica: 5 replicas (1 + maxStep 4).
    // The autoscaler patches `spec.replicas` before `status.lag`, so wait
    // for both rather than reading the status right after the scale.
    h.until("the iterator age to scale the pipeline to 5", || async {
        let sp = h.pipelines().get("kinesis-age").await?;
        let replicas = sp.data.pointer("/spec/replicas").and_then(Value::as_i64);
        let lag = sp
            .data
            .pointer("/status/lag/records")
            .and_then(Value::as_i64);
        anyhow::Ok((replicas == Some(5) && lag == Some(45_000)).then_some(()))
    })
    .await?;
    // The stream caught up: the age drops to zero and the replicas follow.
    put(0.0).await?;
    h.until(
        "a zero iterator age to scale the pipeline back to 1",
        || async { anyhow::Ok((replicas(&h, "kinesis-age").await? == 1).then_some(())) },
    )
    .await?;
    Ok(())
}

/// A group without committed offsets counts its lag from where it would
/// start: with `startFrom: latest` a topic full of old records is no
/// backlog, so nothing scales; the same topic read from `earliest` is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_without_offsets_counts_lag_from_start_from() -> Result<()> {
    let h = Harness::start("op-start").await?;
    let bootstrap = h.bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let topic = unique("op-start");
    create_topic(&bootstrap, &topic, 2).await?;
    let workload = Workload::new(1_000, 8, 1, 1_000);
    workload
        .produce(&producer(&bootstrap)?, &topic, 0..workload.events, 0.0)
        .await?;
    for (name, start) in [("latest", "latest"), ("earliest", "earliest")] {
        h.apply(&format!(
            "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: {name}}}
spec:
  source: {{kafka: {{brokers: '{bootstrap}', topics: ['{topic}'], group: '{topic}-{name}', startFrom: {start}}}}}
  sinks: [{{name: out, blackhole: {{}}}}]
  replicas: 1
  autoscaling: {{enabled: true, maxReplicas: 2, targetLagPerReplica: 100, pollInterval: 1s, cooldown: 0s}}
"
        ))?;
    }
    let lag_of = |sp: &kube::api::DynamicObject| {
        sp.data
            .pointer("/status/lag/records")
            .and_then(Value::as_i64)
    };
    h.until("both pipelines to report their lag", || async {
        let latest = lag_of(&h.pipelines().get("latest").await?);
        let earliest = lag_of(&h.pipelines().get("earliest").await?);
        anyhow::Ok((latest.is_some() && earliest == Some(1_000)).then_some(()))
    })
    .await?;
    ensure!(
        lag_of(&h.pipelines().get("latest").await?) == Some(0),
        "startFrom latest must read as no lag"
    );
    ensure!(
        replicas(&h, "latest").await? == 1,
        "startFrom latest scaled without a backlog"
    );
    h.until(
        "startFrom earliest to scale on the retained records",
        || async { anyhow::Ok((replicas(&h, "earliest").await? == 2).then_some(())) },
    )
    .await?;
    Ok(())
}
