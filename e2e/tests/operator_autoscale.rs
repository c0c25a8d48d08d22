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
/// A fresh topic of `partitions` partitions, named after `prefix`, holding
/// `events` keyed records over `keys` keys: the backlog each test scales on.
/// Returns the bootstrap servers and the topic.
async fn backlog(
    h: &Harness,
    prefix: &str,
    partitions: i32,
    events: u64,
    keys: u64,
) -> Result<(String, String)> {
    let bootstrap = h.bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let topic = unique(prefix);
    create_topic(&bootstrap, &topic, partitions).await?;
    let workload = Workload::new(events, keys, 1, 1_000);
    workload
        .produce(&producer(&bootstrap)?, &topic, 0..workload.events, 0.0)
        .await?;
    Ok((bootstrap, topic))
}

async fn replicas(h: &Harness, name: &str) -> Result<i64> {
    let sp = h.pipelines().get(name).await?;
    sp.data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .context("spec.replicas")
}

/// One `Autoscaled` event series: the action, its occurrences (the
/// recorder folds repeats of one action into a series with a count), and
/// the note of its first occurrence.
#[derive(Debug)]
struct Autoscaled {
    action: String,
    count: i32,
    note: String,
}

/// The `Autoscaled` events of pipeline `name`.
async fn autoscaled_events(h: &Harness, name: &str) -> Result<Vec<Autoscaled>> {
    let events = h.api::<Event>().list(&ListParams::default()).await?;
    Ok(events
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("Autoscaled")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .map(|e| Autoscaled {
            count: e.series.as_ref().map_or(1, |s| s.count),
            action: e.action.unwrap_or_default(),
            note: e.note.unwrap_or_default(),
        })
        .collect())
}

fn occurrences(events: &[Autoscaled]) -> i32 {
    events.iter().map(|e| e.count).sum()
}

fn occurrences_of(events: &[Autoscaled], action: &str) -> i32 {
    events
        .iter()
        .filter(|e| e.action == action)
        .map(|e| e.count)
        .sum()
}

/// The `Autoscaling` condition's reason.
async fn autoscaling_reason(h: &Harness, name: &str) -> Result<Option<String>> {
    let sp = h.pipelines().get(name).await?;
    Ok(condition(&sp, "Autoscaling")
        .and_then(|c| c.get("reason"))
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// The lag a decision used, from its message (`… lag 123 records …`).
fn lag_in(note: &str) -> Option<i64> {
    let rest = &note[note.find("lag ")? + 4..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A backlog on 12 partitions that one slowed processor cannot drain fast
/// enough: replicas rise (never above maxReplicas 6), the processors drain
/// the lag, and after the scale-down window the count returns to 1 — up
/// moves, then down moves, never up again (no oscillation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_scales_processors_up_then_back_to_one_without_flapping() -> Result<()> {
    let h = Harness::start("op-scale").await?;
    let (bootstrap, topic) = backlog(&h, "op-scale", 12, 6_000, 24).await?;
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
    // (ms since the start, spec.replicas) at each change.
    let mut timeline: Vec<(u128, i64)> = vec![(0, 1)];
    let deadline = Deadline::new(
        "the backlog to drain and replicas to return to 1",
        Duration::from_secs(240),
    );
    loop {
        runner.check()?;
        let n = replicas(&h, "backlog").await?;
        if timeline.last().map(|(_, r)| *r) != Some(n) {
            timeline.push((started.elapsed().as_millis(), n));
        }
        let left = lag(&bootstrap, &topic, &topic)?;
        let scaled_up = timeline.iter().any(|(_, r)| *r > 1);
        if scaled_up && left == 0 && n == 1 {
            break;
        }
        deadline
            .check(format!(
                "lag {left}, replicas over time (ms, n): {timeline:?}"
            ))
            .map_err(|e| anyhow!("{}", h.explain(e)))?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("autoscaler timeline (ms, spec.replicas): {timeline:?}");
    let counts: Vec<i64> = timeline.iter().map(|(_, r)| *r).collect();
    let peak = counts.iter().copied().max().unwrap_or(1);
    ensure!(peak <= 6, "above maxReplicas: {timeline:?}");
    let top = counts.iter().position(|r| *r == peak).unwrap_or(0);
    ensure!(
        counts[..=top].windows(2).all(|w| w[0] < w[1])
            && counts[top..].windows(2).all(|w| w[0] > w[1]),
        "replicas went up after going down (flapping): {timeline:?}"
    );
    // The first scale-down waited for the 10 s scale-down window: the
    // recommendation at the last scale-up asked for the peak, so no
    // scale-down can come within a window of it. The slack is for this
    // loop seeing the scale-up late; without the window the 5 s cooldown
    // would allow one 5 s after it.
    let first_down = timeline[top + 1].0;
    ensure!(
        first_down >= timeline[top].0 + 8_000,
        "scaled down within the stabilization window: {timeline:?}"
    );
    let changes = i32::try_from(counts.len() - 1)?;
    let events = h
        .until("an Autoscaled event for every change", || async {
            let events = autoscaled_events(&h, "backlog").await?;
            anyhow::Ok((occurrences(&events) == changes).then_some(events))
        })
        .await?;
    ensure!(
        occurrences_of(&events, "ScaleUp") == i32::try_from(top)?
            && occurrences_of(&events, "ScaleDown") == changes - i32::try_from(top)?,
        "Autoscaled events: {events:?}"
    );
    // The first scale-down's event says what it saw: the backlog drained
    // (a scale-down needs a lag under targetLagPerReplica that is no
    // longer falling).
    let down = events
        .iter()
        .find(|e| e.action == "ScaleDown")
        .context("no ScaleDown event")?;
    ensure!(
        down.note.starts_with("ScaleDown: ") && lag_in(&down.note).is_some_and(|l| l <= 500),
        "scaled down with a backlog: {down:?}"
    );
    // At one replica with nothing behind, the decision is steady.
    h.until("the Autoscaling condition to say Steady", || async {
        anyhow::Ok(
            (autoscaling_reason(&h, "backlog").await?.as_deref() == Some("Steady")).then_some(()),
        )
    })
    .await?;
    Ok(())
}

/// `maxReplicas` above the partition count: capped at the partitions, and
/// the condition says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_at_the_partition_count_with_the_reason() -> Result<()> {
    let h = Harness::start("op-cap").await?;
    let (bootstrap, topic) = backlog(&h, "op-cap", 4, 2_000, 8).await?;
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
        let n = replicas(&h, "capped").await?;
        let reason = autoscaling_reason(&h, "capped").await?;
        anyhow::Ok((n == 4 && reason.as_deref() == Some("CappedAtPartitions")).then_some(()))
    })
    .await?;
    let events = autoscaled_events(&h, "capped").await?;
    ensure!(
        occurrences_of(&events, "ScaleUp") >= 1 && occurrences_of(&events, "ScaleDown") == 0,
        "Autoscaled events: {events:?}"
    );
    Ok(())
}

/// An operator restart in the middle of a drain: two slowed processors
/// work through a backlog that the lag-per-replica rule alone would give
/// twelve replicas, but with `catchUp: 10m` their measured capacity is
/// enough. The new leader knows no rate at first; it must not read the
/// backlog alone as a reason to scale (no action while the lag falls), and
/// once the lag drained it scales down as the lag requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_drain_resumes_without_a_spurious_action() -> Result<()> {
    let h = Harness::start_with("op-restart", Duration::from_secs(3)).await?;
    let (bootstrap, topic) = backlog(&h, "op-restart", 12, 12_000, 24).await?;
    h.apply(&pipeline(
        "drain",
        &bootstrap,
        &topic,
        "    enabled: true
    minReplicas: 1
    maxReplicas: 6
    targetLagPerReplica: 500
    catchUp: 10m
    pollInterval: 2s
    scaleUp: {stabilizationWindow: 0s, maxStep: 1}
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
    // The cold start takes one step (maxStep 1): 1 → 2; then the measured
    // capacity says two are enough, and the backlog holds the scale-down.
    h.until("two replicas draining, their rate measured", || async {
        runner.check()?;
        let n = replicas(&h, "drain").await?;
        let reason = autoscaling_reason(&h, "drain").await?;
        anyhow::Ok((n == 2 && reason.as_deref() == Some("BacklogDraining")).then_some(()))
    })
    .await?;
    let left = lag(&bootstrap, &topic, &topic)?;
    ensure!(
        left > 2_000,
        "the backlog drained before the restart (lag {left}); the test needs a slower step"
    );
    let before = autoscaled_events(&h, "drain").await?;

    // Restart mid-drain: kill the leader, a new operator takes the Lease.
    h.operator.kill9();
    let second = Operator::start(&h.release, &Options::new(&h.namespace, "second"))?;
    wait_leading(&second).await?;
    let observed = |sp: &kube::api::DynamicObject| {
        sp.data
            .pointer("/status/lag/observedAt")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    // While the lag falls no action is needed: the count stays at 2 and
    // no event is added, through every decision of the new leader.
    let mut decisions = std::collections::BTreeSet::new();
    let deadline = Deadline::new(
        "the backlog to drain under the new leader",
        Duration::from_secs(240),
    );
    loop {
        runner.check()?;
        let sp = h.pipelines().get("drain").await?;
        if let Some(at) = observed(&sp) {
            decisions.insert(at);
        }
        // The count first: with no input the lag only falls, so a lag
        // read after it above zero was above zero when the count was read.
        let n = replicas(&h, "drain").await?;
        let left = lag(&bootstrap, &topic, &topic)?;
        if left == 0 {
            break;
        }
        ensure!(
            n == 2,
            "the restarted autoscaler changed replicas to {n} mid-drain (lag {left})\n{}",
            second.log_tail(30)
        );
        deadline
            .check(format!("lag {left}, {} decisions", decisions.len()))
            .map_err(|e| anyhow!("{e}\n{}", second.log_tail(30)))?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ensure!(
        decisions.len() >= 3,
        "the new leader made only {} decisions during the drain",
        decisions.len()
    );
    // The loop ends when it reads the lag at zero; the autoscaler may have
    // read it first and already taken the scale-down the drain allows
    // (2 → 1 at lag 0) — the action expected next, not a spurious one.
    // Nothing else may have been added.
    ensure!(
        occurrences_of(&before, "ScaleDown") == 0,
        "scaled down before the restart: {before:#?}"
    );
    let during = autoscaled_events(&h, "drain").await?;
    let drained = |e: &Autoscaled| {
        e.action != "ScaleDown"
            || (e.note.starts_with("ScaleDown: 2 → 1 replicas") && lag_in(&e.note) == Some(0))
    };
    ensure!(
        occurrences_of(&during, "ScaleUp") == occurrences_of(&before, "ScaleUp")
            && occurrences_of(&during, "ScaleDown") <= 1
            && during.iter().all(drained),
        "a spurious action after the restart: {during:#?}"
    );
    // Drained: the scale-down the lag now allows.
    h.until("the drained pipeline to return to 1", || async {
        runner.check()?;
        anyhow::Ok((replicas(&h, "drain").await? == 1).then_some(()))
    })
    .await?;
    second.terminate(Duration::from_secs(10));
    Ok(())
}

/// The CloudWatch path against moto: a synthetic Kinesis
/// `GetRecords.IteratorAgeMilliseconds` series 45 s → 20 s → 0 drives the
/// decision — up while the iterator age is high (lag per replica in the
/// metric's unit), held while it falls, back to one once it is zero — with
/// the reason in the condition and an event for each change.
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
    let reason = autoscaling_reason(&h, "kinesis-age").await?;
    ensure!(
        matches!(reason.as_deref(), Some("ScaleUp" | "Steady")),
        "after the scale-up: {reason:?}"
    );
    let events = h
        .until("the ScaleUp event", || async {
            let e = autoscaled_events(&h, "kinesis-age").await?;
            anyhow::Ok((occurrences(&e) == 1).then_some(e))
        })
        .await?;
    ensure!(
        events[0].action == "ScaleUp" && events[0].note.starts_with("ScaleUp: 1 → 5 replicas"),
        "{events:?}"
    );
    // The stream is catching up: 20 s of age would need 2 replicas, but the
    // age is falling, so the five are held (no change, no event).
    put(20_000.0).await?;
    h.until("a falling iterator age to hold the replicas", || async {
        let sp = h.pipelines().get("kinesis-age").await?;
        let lag = sp
            .data
            .pointer("/status/lag/records")
            .and_then(Value::as_i64);
        let reason = autoscaling_reason(&h, "kinesis-age").await?;
        anyhow::Ok(
            (lag == Some(20_000) && reason.as_deref() == Some("BacklogDraining")).then_some(()),
        )
    })
    .await?;
    ensure!(
        replicas(&h, "kinesis-age").await? == 5,
        "scaled down mid-drain"
    );
    ensure!(
        occurrences(&autoscaled_events(&h, "kinesis-age").await?) == 1,
        "an event without a change"
    );
    // The stream caught up: the age drops to zero and the replicas follow.
    put(0.0).await?;
    h.until(
        "a zero iterator age to scale the pipeline back to 1",
        || async { anyhow::Ok((replicas(&h, "kinesis-age").await? == 1).then_some(())) },
    )
    .await?;
    let events = h
        .until("the ScaleDown event", || async {
            let e = autoscaled_events(&h, "kinesis-age").await?;
            anyhow::Ok((occurrences(&e) == 2).then_some(e))
        })
        .await?;
    let down = events
        .iter()
        .find(|e| e.action == "ScaleDown")
        .context("no ScaleDown event")?;
    ensure!(
        down.note.starts_with("ScaleDown: 5 → 1 replicas") && lag_in(&down.note) == Some(0),
        "{events:?}"
    );
    // As after the scale-up, the status comes after `spec.replicas` and the
    // event: until it lands the condition still shows the decision before
    // (`Stabilizing`, the scale-down window), so wait for it.
    h.until(
        "the Autoscaling condition to follow the scale-down",
        || async {
            let reason = autoscaling_reason(&h, "kinesis-age").await?;
            anyhow::Ok(matches!(reason.as_deref(), Some("ScaleDown" | "Steady")).then_some(()))
        },
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
    let (bootstrap, topic) = backlog(&h, "op-start", 2, 1_000, 8).await?;
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
