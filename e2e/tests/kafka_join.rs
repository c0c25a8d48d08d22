//! A `join` after a Kafka main source, black box: orders (6 partitions)
//! joined with payments (3 partitions), both keyed by their own `id` so
//! neither is partitioned by the join key. Two `exactlyOnce` replicas read
//! both topics in one consumer group and meet in the join's repartition
//! topic; one is killed (`kill -9`) every few seconds and restarted. The
//! output, read `read_committed`, must be exactly the left join a nested
//! loop computes here: every pair once, every unmatched order once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::future::try_join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use tributary_e2e::fixture::{testbed, unique};
use tributary_e2e::kafka::output::read_to_end;
use tributary_e2e::kafka::workload::pace;
use tributary_e2e::kafka::{create_topic, producer};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::{Fleet, chaos, tributary_bin};

const BASE: i64 = 1_700_000_000_000;
const WITHIN_MS: i64 = 200;
const ORDERS: i64 = 6_000;
const PAYMENTS: i64 = 9_000;
/// Order keys `k0`..`k49`; payments only `k0`..`k39`, so the orders of
/// `k40`..`k49` never match.
const ORDER_KEYS: i64 = 50;
const PAYMENT_KEYS: i64 = 40;

fn orders() -> Vec<Value> {
    (0..ORDERS)
        .map(|i| json!({"id": format!("o{i}"), "k": format!("k{}", i % ORDER_KEYS), "ts": BASE + i * 10}))
        .collect()
}

/// Payments run up to 1.5 s backwards in places (within the 2 s bound).
fn payments() -> Vec<Value> {
    (0..PAYMENTS)
        .map(|j| {
            let jitter = (j * 37) % 1_500;
            json!({"id": format!("p{j}"), "k": format!("k{}", j % PAYMENT_KEYS), "ts": BASE + j * 7 - jitter})
        })
        .collect()
}

fn ts(v: &Value) -> i64 {
    v["ts"].as_i64().unwrap_or(0)
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or("?")
}

/// `order/payment` of every pair of a nested-loop left join, and
/// `order/-` for an order that pairs with nothing.
fn nested_loop(left: &[Value], right: &[Value]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for l in left {
        let mut matched = false;
        for r in right {
            if l["k"] == r["k"] && (ts(l) - ts(r)).abs() <= WITHIN_MS {
                matched = true;
                *out.entry(format!("{}/{}", id(l), id(r))).or_default() += 1;
            }
        }
        if !matched {
            *out.entry(format!("{}/-", id(l))).or_default() += 1;
        }
    }
    out
}

/// What the output holds, as [`nested_loop`] writes it; the flush
/// records' own output is left out.
fn shown(values: &[String]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for v in values {
        let Ok(v) = serde_json::from_str::<Value>(v) else {
            *out.entry(format!("unparsable: {v}")).or_default() += 1;
            continue;
        };
        let l = v["id"].as_str().unwrap_or("-");
        if l.starts_with("flush") {
            continue;
        }
        let r = v["other"]["id"].as_str().unwrap_or("-");
        *out.entry(format!("{l}/{r}")).or_default() += 1;
    }
    out
}

/// Produces both inputs in event-time order over about `seconds`, each
/// record keyed by its `id`, then a flush record far in the future (key
/// null: it joins nothing) into every partition of both topics.
async fn produce(
    p: &FutureProducer,
    orders_topic: &str,
    payments_topic: &str,
    seconds: f64,
) -> Result<()> {
    let mut all: Vec<(&str, Value)> = orders()
        .into_iter()
        .map(|v| (orders_topic, v))
        .chain(payments().into_iter().map(|v| (payments_topic, v)))
        .collect();
    all.sort_by_key(|(_, v)| ts(v));
    #[allow(clippy::cast_precision_loss)]
    let rate = all.len() as f64 / seconds;
    let started = Instant::now();
    for (n, chunk) in all.chunks(500).enumerate() {
        let sends = chunk.iter().map(|(topic, v)| {
            let body = v.to_string();
            let key = id(v).to_owned();
            async move {
                p.send(
                    FutureRecord::to(topic).key(&key).payload(&body),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .with_context(|| format!("produce {body} to {topic}"))
            }
        });
        try_join_all(sends).await?;
        pace(started, (n as u64 + 1) * 500, rate).await;
    }
    let far = BASE + 365 * 24 * 3_600_000;
    for (topic, partitions) in [(orders_topic, 6), (payments_topic, 3)] {
        for partition in 0..partitions {
            let body = json!({"id": format!("flush-{topic}-{partition}"), "k": null, "ts": far})
                .to_string();
            p.send(
                FutureRecord::to(topic)
                    .key("flush")
                    .payload(&body)
                    .partition(partition),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .context("produce a flush record")?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_source_left_joins_a_kafka_topic_exactly_once_across_killed_replicas() -> Result<()>
{
    let bed = testbed();
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let name = unique("kjoin");
    let (orders_topic, payments_topic, output) = (
        format!("{name}-orders"),
        format!("{name}-payments"),
        format!("{name}-out"),
    );
    create_topic(&bootstrap, &orders_topic, 6).await?;
    create_topic(&bootstrap, &payments_topic, 3).await?;
    create_topic(&bootstrap, &output, 3).await?;
    let want = nested_loop(&orders(), &payments());
    let pairs = want.keys().filter(|k| !k.ends_with("/-")).count();
    ensure!(
        pairs > 3_000 && want.len() > pairs,
        "the fixture must pair a lot and leave orders alone: {pairs} pairs of {}",
        want.len()
    );

    let yaml = format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: '{name}'}}
spec:
  source:
    kafka: {{brokers: '{bootstrap}', topics: ['{orders_topic}'], group: '{name}', startFrom: earliest}}
    eventTime: {{field: event.ts}}
    watermark: {{maxOutOfOrderness: 2s}}
  steps:
    - join:
        with: {{kafka: {{topic: '{payments_topic}', startFrom: earliest}}}}
        type: left
        on: {{left: event.k, right: other.k}}
        within: {WITHIN_MS}ms
  sinks: [{{name: out, kafka: {{topic: '{output}'}}}}]
  guarantee: exactlyOnce
  checkpoint: {{interval: 1s}}
"
    );
    let env = [
        ("RUST_LOG", "info"),
        ("TRIBUTARY_KAFKA_SESSION_TIMEOUT_MS", "6000"),
    ];
    let mut fleet = Fleet::new(&tributary_bin(), &yaml, &env)?;
    fleet.add()?;
    fleet.add()?;
    let p = producer(&bootstrap)?;
    tokio::select! {
        r = produce(&p, &orders_topic, &payments_topic, 20.0) => r?,
        r = chaos(&mut fleet, Duration::from_secs(4)) => r?,
    }
    let kills = fleet.kills;

    // Wait until every expected line is there, then stop and compare all.
    let expected: u32 = want.values().sum();
    let deadline = Deadline::new(
        "every row of the nested-loop left join",
        Duration::from_secs(180),
    );
    loop {
        fleet.check_alive()?;
        let got = read_to_end(&bootstrap, &output, true, Duration::from_secs(60)).await?;
        let values: Vec<String> = got.into_iter().map(|r| r.value).collect();
        let have = shown(&values);
        if want.keys().all(|k| have.contains_key(k)) {
            break;
        }
        let count: u32 = have.values().sum();
        let missing: Vec<&String> = want
            .keys()
            .filter(|k| !have.contains_key(*k))
            .take(5)
            .collect();
        if let Err(e) = deadline.check(format!(
            "{count} of {expected} rows, missing e.g. {missing:?}"
        )) {
            anyhow::bail!("{e}\n{}", fleet.log_tails(20));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let failed = fleet.stop_all(Duration::from_secs(30)).await?;
    ensure!(failed.is_empty(), "replicas exited non-zero: {failed:?}");
    let got = read_to_end(&bootstrap, &output, true, Duration::from_secs(60)).await?;
    let values: Vec<String> = got.into_iter().map(|r| r.value).collect();
    let have = shown(&values);
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, n)| have.get(*k) != Some(n))
        .map(|(k, n)| format!("{k}: want {n}, got {:?}", have.get(k)))
        .chain(
            have.iter()
                .filter(|(k, _)| !want.contains_key(*k))
                .map(|(k, n)| format!("{k}: unexpected ×{n}")),
        )
        .collect();
    eprintln!(
        "kafka join: {} orders, {} payments, {kills} kills; {} expected rows ({pairs} pairs), {} read, {} wrong",
        ORDERS,
        PAYMENTS,
        expected,
        values.len(),
        wrong.len()
    );
    ensure!(kills >= 3, "the chaos loop killed only {kills} replicas");
    ensure!(
        wrong.is_empty(),
        "the output is not the nested-loop left join exactly once: {} rows differ, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    Ok(())
}
