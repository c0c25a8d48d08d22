//! `spec.metrics.cloudWatch` against moto: the real `tributary` binary runs
//! a bounded generator pipeline that publishes every second, and the
//! datapoints read back with `GetMetricData` add up to exactly what the
//! run counted (counters are published per interval, and the last
//! interval is published at shutdown). A wrong endpoint costs the metrics,
//! never the pipeline.

mod aws_common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, DimensionFilter, Metric, MetricDataQuery, MetricStat};
use tributary_e2e::fixture::{install_crypto_provider, testbed as bed, unique};
use tributary_e2e::net::{free_addr, get};
use tributary_e2e::poll::{self, Deadline};
use tributary_e2e::process::tributary_bin;

/// Generated records: at 2000/s the run spans several 1 s intervals.
const COUNT: u64 = 6000;
const RATE: u64 = 2000;
const PIPELINE: &str = "cw-export";
const REPLICA: &str = "cw-replica-0";

/// The pipeline: a validate step that dead-letters purchases of 150 or
/// more, a filter that keeps clicks, file sinks for both.
fn pipeline(namespace: &str) -> String {
    format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: {PIPELINE}}}
spec:
  source:
    generator: {{profile: clickstream, count: {COUNT}, rate: {RATE}, keys: 50, seed: 7}}
  steps:
    - validate:
        rules: [{{name: cheap, check: 'event.amount < 150.0'}}]
        onFailure: deadLetter
    - filter: \"event.action == 'click'\"
  sinks: [{{name: out, file: {{path: out.jsonl}}}}]
  deadLetter: {{file: {{path: dead.jsonl}}}}
  metrics:
    cloudWatch: {{namespace: '{namespace}', interval: 1s}}
"
    )
}

fn lines(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(text.lines().filter(|l| !l.trim().is_empty()).count() as u64)
}

fn dimensions() -> Vec<Dimension> {
    vec![
        Dimension::builder()
            .name("Pipeline")
            .value(PIPELINE)
            .build(),
        Dimension::builder().name("Replica").value(REPLICA).build(),
    ]
}

/// Every datapoint value of `metric` with `stat` over 60 s periods, from an
/// hour ago to a minute ahead.
async fn values(cw: &Client, namespace: &str, metric: &str, stat: &str) -> Result<Vec<f64>> {
    let now = SystemTime::now();
    let query = MetricDataQuery::builder()
        .id("q")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(namespace)
                        .metric_name(metric)
                        .set_dimensions(Some(dimensions()))
                        .build(),
                )
                .period(60)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build();
    let out = cw
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(DateTime::from(now - Duration::from_secs(3600)))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .send()
        .await?;
    Ok(out
        .metric_data_results()
        .iter()
        .flat_map(|r| r.values().iter().copied())
        .collect())
}

async fn sum(cw: &Client, namespace: &str, metric: &str) -> Result<f64> {
    Ok(values(cw, namespace, metric, "Sum").await?.iter().sum())
}

/// Starts the pipeline in a scratch folder (as replica `REPLICA`, logs in
/// `run.log`) with `env` on top of the test bed's; returns the folder and
/// the running process.
fn run(
    yaml: &str,
    env: &[(&str, &str)],
    metrics: Option<std::net::SocketAddr>,
) -> Result<(tempfile::TempDir, std::process::Child)> {
    let bed = bed();
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("pipeline.yaml"), yaml)?;
    let log = std::fs::File::create(dir.path().join("run.log"))?;
    let mut cmd = std::process::Command::new(tributary_bin());
    cmd.args(["run", "-q", "-f", "pipeline.yaml"])
        .current_dir(dir.path())
        .envs(bed.vars())
        .env("POD_NAME", REPLICA)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    if let Some(addr) = metrics {
        cmd.args(["--metrics-addr", &addr.to_string()]);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("spawn {}", tributary_bin().display()))?;
    Ok((dir, child))
}

/// Waits for `child` to exit (at most two minutes) and requires success.
async fn exited_ok(child: &mut std::process::Child, dir: &Path) -> Result<()> {
    let deadline = Deadline::new("tributary run to exit", Duration::from_secs(120));
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if let Err(e) = deadline.check("still running") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
    ensure!(
        status.success(),
        "tributary run exited with {status}:\n{log}"
    );
    Ok(())
}

/// The run's own summary of a counter (`"records_in":6000` in the JSON
/// "run finished" log line).
fn logged(log: &str, field: &str) -> Result<f64> {
    let line = log
        .lines()
        .find(|l| l.contains("run finished"))
        .context("no \"run finished\" line in the log")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    v["fields"][field]
        .as_f64()
        .with_context(|| format!("no {field} in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_counts_add_up_to_the_run_and_latency_is_published() -> Result<()> {
    install_crypto_provider();
    let bed = bed();
    let cw = Client::new(&aws_common::config(&bed).await?);
    let namespace = unique("Tributary/e2e");
    let (dir, mut child) = run(&pipeline(&namespace), &[], None)?;
    exited_ok(&mut child, dir.path()).await?;
    let out = lines(&dir.path().join("out.jsonl"))?;
    let dead = lines(&dir.path().join("dead.jsonl"))?;
    ensure!(
        out > 0 && dead > 0,
        "the pipeline wrote {out} records and {dead} dead letters"
    );
    let log = std::fs::read_to_string(dir.path().join("run.log"))?;
    ensure!(
        !log.contains("PutMetricData failed"),
        "a publish to moto failed:\n{log}"
    );

    // Everything was published before the process exited; the poll only
    // absorbs moto's bookkeeping.
    let records_in = poll::until(
        "RecordsIn to add up to the generator count",
        Duration::from_secs(20),
        Duration::from_millis(500),
        || async {
            let s = sum(&cw, &namespace, "RecordsIn").await?;
            anyhow::Ok((s >= COUNT as f64).then_some(s))
        },
    )
    .await?;
    ensure!(
        records_in == COUNT as f64,
        "RecordsIn sums to {records_in}, the generator made {COUNT}"
    );
    let records_out = sum(&cw, &namespace, "RecordsOut").await?;
    ensure!(
        records_out == out as f64 && records_out == logged(&log, "records_out")?,
        "RecordsOut sums to {records_out}; {out} lines were written"
    );
    let dead_letters = sum(&cw, &namespace, "DeadLetters").await?;
    ensure!(
        dead_letters == dead as f64,
        "DeadLetters sums to {dead_letters}; {dead} dead letters were written"
    );
    // Published per interval, not once: a 3 s run at 1 s publishes several
    // datapoints of each metric.
    let samples: f64 = values(&cw, &namespace, "RecordsIn", "SampleCount")
        .await?
        .iter()
        .sum();
    ensure!(samples >= 2.0, "only {samples} RecordsIn datapoints");
    for metric in ["ProcessingLatencyP50", "ProcessingLatencyP99", "InputRate"] {
        let v = values(&cw, &namespace, metric, "Maximum").await?;
        ensure!(
            v.iter().any(|x| *x > 0.0),
            "{metric}: no positive datapoint ({v:?})"
        );
    }
    // Both dimensions, on every metric the run published; no lag metric
    // for a generator (it reports none).
    let listed = cw
        .list_metrics()
        .namespace(&namespace)
        .dimensions(
            DimensionFilter::builder()
                .name("Replica")
                .value(REPLICA)
                .build(),
        )
        .send()
        .await?;
    let mut names: Vec<&str> = listed
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name())
        .collect();
    names.sort_unstable();
    names.dedup();
    ensure!(
        names
            == [
                "DeadLetters",
                "InputRate",
                "ProcessingLatencyP50",
                "ProcessingLatencyP99",
                "RecordsDropped",
                "RecordsIn",
                "RecordsOut"
            ],
        "metrics listed: {names:?}"
    );
    for m in listed.metrics() {
        let dims: Vec<(&str, &str)> = m
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap_or_default(), d.value().unwrap_or_default()))
            .collect();
        ensure!(
            dims.contains(&("Pipeline", PIPELINE)) && dims.contains(&("Replica", REPLICA)),
            "{:?} has dimensions {dims:?}",
            m.metric_name()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cloudwatch_costs_the_metrics_not_the_pipeline() -> Result<()> {
    let namespace = unique("Tributary/e2e-down");
    let metrics = free_addr()?;
    // Nothing listens on port 1: every PutMetricData fails at once.
    let (dir, mut child) = run(
        &pipeline(&namespace),
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:1")],
        Some(metrics),
    )?;
    let failures = poll::until(
        "a counted publish failure",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let text = get(metrics, "/metrics")?;
            let n = text
                .lines()
                .find(|l| l.starts_with("tributary_cloudwatch_publish_failures_total"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            anyhow::Ok((n >= 1.0).then_some(n))
        },
    )
    .await?;
    exited_ok(&mut child, dir.path()).await?;
    let log = std::fs::read_to_string(dir.path().join("run.log"))?;
    ensure!(
        log.contains("PutMetricData failed"),
        "{failures} failures counted but none logged:\n{log}"
    );
    // The output is complete: the same records as a run without export.
    ensure!(
        logged(&log, "records_in")? == COUNT as f64,
        "the run did not read every record:\n{log}"
    );
    let out = lines(&dir.path().join("out.jsonl"))?;
    let dead = lines(&dir.path().join("dead.jsonl"))?;
    ensure!(
        out as f64 == logged(&log, "records_out")? && out > 0 && dead > 0,
        "{out} records written, {dead} dead letters:\n{log}"
    );
    Ok(())
}
