//! A `join` whose `with` side is a topic on the test bed's Kafka, read as a
//! plain consumer, and whose main source is a file: the output is checked
//! against a nested-loop join of both inputs computed here — once through
//! the plaintext listener, once through the SASL_SSL one (SCRAM-SHA-512,
//! the test bed's CA, secrets from env references) — and once with the
//! topic grown from 1 to 3 partitions mid-run, the later payments written
//! only to the new partitions, which the run must discover and read.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};
use tributary_e2e::fixture::{testbed, unique};
use tributary_e2e::kafka::{add_partitions, create_topic, partitions, producer};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::{Fleet, tributary_bin};

const WAIT: Duration = Duration::from_secs(120);
const BASE: i64 = 1_700_000_000_000;
const WITHIN_MS: i64 = 2_000;

/// Orders (left): key `k<i % 7>`, one a second.
fn orders() -> Vec<Value> {
    (0..60)
        .map(|i: i64| json!({"id": format!("o{i}"), "k": format!("k{}", i % 7), "ts": BASE + i * 1_000}))
        .collect()
}

/// Payments (right): keys `k0`..`k4` only (orders of `k5`, `k6` match
/// nothing), times that interleave with the orders' and run backwards in
/// places.
fn payments() -> Vec<Value> {
    (0..90)
        .map(|j: i64| {
            let jitter = (j * 37) % 1_500;
            json!({"id": format!("p{j}"), "k": format!("k{}", j % 5), "ts": BASE + j * 700 - jitter})
        })
        .collect()
}

/// `left id / right id` of every pair of a nested-loop inner join.
fn nested_loop(left: &[Value], right: &[Value]) -> BTreeMap<String, u32> {
    let mut pairs = BTreeMap::new();
    for l in left {
        for r in right {
            let near =
                (l["ts"].as_i64().unwrap_or(0) - r["ts"].as_i64().unwrap_or(0)).abs() <= WITHIN_MS;
            if l["k"] == r["k"] && near {
                *pairs
                    .entry(format!(
                        "{}/{}",
                        l["id"].as_str().unwrap_or("?"),
                        r["id"].as_str().unwrap_or("?")
                    ))
                    .or_default() += 1;
            }
        }
    }
    pairs
}

/// The pairs in the output file so far.
fn output(path: &std::path::Path) -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut pairs = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (l, r) = (
            v["id"].as_str().unwrap_or("-"),
            v["other"]["id"].as_str().unwrap_or("-"),
        );
        *pairs.entry(format!("{l}/{r}")).or_default() += 1;
    }
    pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_joined_with_a_kafka_topic_matches_a_nested_loop_join() -> Result<()> {
    join_through(false, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_side_reads_through_sasl_over_tls() -> Result<()> {
    join_through(true, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_to_the_kafka_side_mid_run_are_read() -> Result<()> {
    join_through(false, true).await
}

/// Writes `records` to `topic` (to `partition` when given, else by key).
async fn send_all(
    p: &rdkafka::producer::FutureProducer,
    topic: &str,
    records: &[Value],
    partition: impl Fn(usize) -> Option<i32>,
) -> Result<()> {
    for (i, r) in records.iter().enumerate() {
        let key = r["k"].as_str().unwrap_or_default();
        let body = r.to_string();
        let mut record = FutureRecord::to(topic).key(key).payload(&body);
        if let Some(n) = partition(i) {
            record = record.partition(n);
        }
        p.send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("produce {r} to {topic}"))?;
    }
    Ok(())
}

/// Runs the join with its Kafka side on the secure listener when `secure`;
/// with `grow`, the topic starts with 1 partition and the second half of
/// the payments goes to 2 partitions added once the run is under way.
async fn join_through(secure: bool, grow: bool) -> Result<()> {
    let bed = testbed();
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let topic = unique("join-payments");
    create_topic(&bootstrap, &topic, if grow { 1 } else { 3 }).await?;
    let p = producer(&bootstrap)?;
    let right = payments();
    let half = if grow { right.len() / 2 } else { right.len() };
    send_all(&p, &topic, &right[..half], |_| None).await?;
    let left = orders();
    let want = nested_loop(&left, &right);
    ensure!(want.len() > 20, "the fixture pairs too little: {want:?}");

    let (brokers, auth, ca) = if secure {
        (
            bed.var("KAFKA_BOOTSTRAP_SECURE")?.to_owned(),
            ", auth: {sasl: {mechanism: SCRAM-SHA-512, username: {env: KAFKA_USER}, password: {env: KAFKA_PASSWORD}}, tls: {ca: {env: KAFKA_CA}}}",
            std::fs::read_to_string(bed.var("KAFKA_CA_FILE")?)?,
        )
    } else {
        (bootstrap.clone(), "", String::new())
    };
    let yaml = format!(
        "apiVersion: tributary.dev/v1alpha1\nkind: StreamPipeline\nmetadata: {{name: join-kafka}}\nspec:\n  source:\n    file: {{path: orders.jsonl}}\n    eventTime: {{field: event.ts}}\n    watermark: {{maxOutOfOrderness: 1h, idleTimeout: 2s}}\n  steps:\n    - join:\n        with: {{kafka: {{topic: {topic}, brokers: '{brokers}', startFrom: earliest{auth}}}}}\n        type: inner\n        on: {{left: event.k, right: other.k}}\n        within: {WITHIN_MS}ms\n  sinks: [{{name: out, file: {{path: out.jsonl}}}}]\n"
    );
    let mut env = vec![
        ("RUST_LOG", "warn"),
        ("TRIBUTARY_PARTITION_DISCOVERY_MS", "500"),
    ];
    if secure {
        env.extend([
            ("KAFKA_USER", bed.var("KAFKA_SCRAM_USER")?),
            ("KAFKA_PASSWORD", bed.var("KAFKA_SCRAM_PASSWORD")?),
            ("KAFKA_CA", ca.as_str()),
        ]);
    }
    let mut fleet = Fleet::new(&tributary_bin(), &yaml, &env)?;
    let lines: Vec<String> = left.iter().map(Value::to_string).collect();
    std::fs::write(fleet.dir().join("orders.jsonl"), lines.join("\n") + "\n")?;
    let out = fleet.dir().join("out.jsonl");
    let i = fleet.add()?;
    if grow {
        // Once the first half is joined, grow the topic and write the
        // rest only into the new partitions.
        let first = nested_loop(&left, &right[..half]);
        let deadline = Deadline::new("the pairs of the first partition", WAIT);
        while output(&out).values().sum::<u32>() < first.values().sum::<u32>() {
            fleet.check_alive()?;
            deadline.check("waiting for the first half's pairs")?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        add_partitions(&bootstrap, &topic, 3).await?;
        let deadline = Deadline::new("the new partitions in the metadata", WAIT);
        while partitions(&bootstrap, &topic)? < 3 {
            deadline.check("waiting for the metadata")?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // A fresh producer: the first one's metadata has one partition.
        let p = producer(&bootstrap)?;
        send_all(&p, &topic, &right[half..], |i| {
            Some(1 + i32::from(i % 2 == 1))
        })
        .await?;
    }

    // The topic never ends: wait for as many pairs as expected, then stop
    // the run (SIGTERM flushes) and compare the whole output.
    let expected: u32 = want.values().sum();
    let deadline = Deadline::new("every pair of the nested-loop join", WAIT);
    loop {
        fleet.check_alive()?;
        let got: u32 = output(&out).values().sum();
        if got >= expected {
            break;
        }
        if let Err(e) = deadline.check(format!("{got} of {expected} pairs")) {
            fleet.keep_logs();
            return Err(e.into());
        }
        // Polling interval of the deadline loop.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fleet.stop(i, Duration::from_secs(30)).await?;
    assert_eq!(output(&out), want, "pairs (left/right) with their counts");
    Ok(())
}
