//! Kinesis pipelines against moto: numbered records through the source
//! with two replicas sharing a DynamoDB lease table (one SIGKILLed mid-run),
//! a reshard mid-run, and the `PutRecords` sink read back with
//! `GetRecords`.
//!
//! Every test checks each number arrived (at least once) and, per
//! partition key, that the first arrivals keep the order they were written
//! in; duplicates are counted and printed (at-least-once allows them).

mod aws_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ScalingType, ShardIteratorType};
use serde_json::{Value, json};
use tributary_e2e::env::TestBed;
use tributary_e2e::fixture::{testbed as bed, unique};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::{Fleet, tributary_bin};

const WAIT: Duration = Duration::from_secs(120);
const KEYS: u64 = 32;

async fn clients(bed: &TestBed) -> Result<(Client, aws_sdk_dynamodb::Client)> {
    let config = aws_common::config(bed).await?;
    Ok((Client::new(&config), aws_sdk_dynamodb::Client::new(&config)))
}

fn key_of(n: u64) -> String {
    format!("k{}", n % KEYS)
}

/// Writes records `range` (`{"n": i, "key": "k<i % 32>"}`, partition key
/// `k<i % 32>`) in calls of 100.
async fn put_numbers(kinesis: &Client, stream: &str, range: std::ops::Range<u64>) -> Result<()> {
    let entries = range
        .map(|n| (key_of(n), json!({"n": n, "key": key_of(n)}).to_string()))
        .collect();
    aws_common::put_records(kinesis, stream, entries, 100).await
}

/// One record read back from a stream.
#[derive(Debug, Clone)]
struct Landed {
    shard: String,
    partition_key: String,
    value: Value,
}

/// Every record of every shard of `stream`, in shard order.
async fn read_all(kinesis: &Client, stream: &str) -> Result<Vec<Landed>> {
    let shards = kinesis.list_shards().stream_name(stream).send().await?;
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut it = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await?
            .shard_iterator()
            .map(str::to_owned);
        while let Some(i) = it {
            let page = kinesis
                .get_records()
                .shard_iterator(i)
                .limit(10_000)
                .send()
                .await?;
            if page.records().is_empty() {
                break;
            }
            for r in page.records() {
                out.push(Landed {
                    shard: shard.shard_id().to_owned(),
                    partition_key: r.partition_key().unwrap_or_default().to_owned(),
                    value: serde_json::from_slice(r.data().as_ref())
                        .with_context(|| format!("record {:?} is not JSON", r.data()))?,
                });
            }
            it = page.next_shard_iterator().map(str::to_owned);
        }
    }
    Ok(out)
}

/// What arrived: how many distinct numbers, how many duplicates.
#[derive(Debug, Default)]
struct Arrivals {
    distinct: BTreeSet<u64>,
    duplicates: usize,
    /// Per partition key, the numbers in first-arrival order.
    order: BTreeMap<String, Vec<u64>>,
}

fn arrivals(landed: &[Landed]) -> Result<Arrivals> {
    let mut a = Arrivals::default();
    for l in landed {
        let n = l.value["n"]
            .as_u64()
            .with_context(|| format!("no n in {}", l.value))?;
        if a.distinct.insert(n) {
            a.order.entry(l.partition_key.clone()).or_default().push(n);
        } else {
            a.duplicates += 1;
        }
    }
    Ok(a)
}

/// Per partition key, numbers first arrived in the order they were written.
fn check_order(a: &Arrivals) -> Result<()> {
    for (key, ns) in &a.order {
        if let Some(w) = ns.windows(2).find(|w| w[0] >= w[1]) {
            bail!("partition key {key}: {} arrived before {}", w[0], w[1]);
        }
    }
    Ok(())
}

/// Waits until the output stream holds every number of `want`.
async fn wait_for(
    kinesis: &Client,
    out: &str,
    want: std::ops::Range<u64>,
    fleet: &mut Fleet,
) -> Result<Vec<Landed>> {
    let deadline = Deadline::new(&format!("numbers {want:?} in {out}"), WAIT);
    loop {
        let landed = read_all(kinesis, out).await?;
        let a = arrivals(&landed)?;
        let mut missing = want.clone().filter(|n| !a.distinct.contains(n)).peekable();
        if missing.peek().is_none() {
            return Ok(landed);
        }
        let missing: Vec<u64> = missing.take(10).collect();
        fleet.check_alive()?;
        if let Err(e) = deadline.check(&missing) {
            fleet.keep_logs();
            bail!("{e}\n{}", fleet.log_tails(30));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn pipeline(bed: &TestBed, input: &str, out: &str, table: &str, extra: &str) -> Result<String> {
    pipeline_from(bed, input, out, table, "", extra)
}

/// A Kinesis → Kinesis pipeline; `from` adds source fields (`, startFrom: LATEST`).
fn pipeline_from(
    bed: &TestBed,
    input: &str,
    out: &str,
    table: &str,
    from: &str,
    extra: &str,
) -> Result<String> {
    let endpoint = bed.var("AWS_ENDPOINT_URL")?;
    let region = bed.var("AWS_REGION")?;
    Ok(format!(
        "apiVersion: tributary.dev/v1alpha1\nkind: StreamPipeline\nmetadata: {{name: {input}, namespace: e2e}}\nspec:\n  \
         source:\n    kinesis: {{stream: {input}, region: {region}, endpoint: '{endpoint}', leaseTable: {table}, leaseDuration: 3s{from}}}\n  \
         sinks:\n    - {{name: out, kinesis: {{stream: {out}, region: {region}, endpoint: '{endpoint}', partitionKey: event.key}}}}\n  \
         guarantee: atLeastOnce\n  checkpoint: {{interval: 500ms}}\n{extra}"
    ))
}

fn fleet(bed: &TestBed, yaml: &str) -> Result<Fleet> {
    let vars: Vec<(&str, &str)> = bed.vars().collect();
    let mut env = vars;
    env.push(("RUST_LOG", "info"));
    env.push(("TRIBUTARY_METRICS_ADDR", "127.0.0.1:0"));
    Ok(Fleet::new(&tributary_bin(), yaml, &env)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_shards_and_a_killed_one_loses_nothing() -> Result<()> {
    let bed = bed();
    let (kinesis, dynamo) = clients(&bed).await?;
    let (input, out, table) = (unique("kin-in"), unique("kin-out"), unique("kin-leases"));
    aws_common::create_stream(&kinesis, &input, 4).await?;
    // Each replica writes to its stdout (its log file per start), not to a
    // shared output stream: moto 5.2.5 drops records when two clients
    // PutRecords to one shard at once (its Shard.put_record is not safe for
    // concurrency; 5 of 4,000 lost in a two-thread probe).
    let yaml = pipeline(&bed, &input, &out, &table, "")?;
    let sink_start = yaml
        .find("    - {name: out, kinesis:")
        .context("sink line")?;
    let sink_end = sink_start + yaml[sink_start..].find('\n').context("sink line end")? + 1;
    let yaml = format!(
        "{}    - {{name: out, stdout: {{}}}}\n{}",
        &yaml[..sink_start],
        &yaml[sink_end..]
    );
    let mut fleet = fleet(&bed, &yaml)?;
    fleet.add()?;
    fleet.add()?;
    // Both replicas hold leases (two each) before any record is written.
    wait_for_balance(&dynamo, &table, &mut fleet).await?;
    let total = 3000;
    // Records keep coming while replica-0 dies: 50 every 50 ms, so it is
    // killed with records read but not yet flushed or checkpointed.
    let writer = {
        let (kinesis, input) = (kinesis.clone(), input.clone());
        tokio::spawn(async move {
            for start in (0..total).step_by(50) {
                put_numbers(&kinesis, &input, start..start + 50).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(())
        })
    };
    let deadline = Deadline::new("a third of the outputs", WAIT);
    while fleet_output(&fleet)?.iter().map(Vec::len).sum::<usize>() < 1000 {
        fleet.check_alive()?;
        deadline.check("fewer than 1000 outputs")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.kill9(0)?;
    writer.await??;
    let a = wait_for_fleet(&mut fleet, 0..total).await?;
    println!(
        "kinesis kill test: {} records written, {} distinct arrived, {} duplicates",
        total,
        a.distinct.len(),
        a.duplicates
    );
    // The survivor took over every lease of the dead replica.
    let l = aws_common::leases(&dynamo, &table).await?;
    let owners: BTreeSet<Option<String>> = l.values().map(|(o, _, _)| o.clone()).collect();
    ensure!(
        owners == BTreeSet::from([Some("replica-1".to_owned())]),
        "leases after the kill: {l:?}"
    );
    // The restarted replica steals its fair share back, one lease a cycle.
    fleet.start(0)?;
    wait_for_balance(&dynamo, &table, &mut fleet).await?;
    put_numbers(&kinesis, &input, total..total + 500).await?;
    wait_for_fleet(&mut fleet, 0..total + 500).await?;
    fleet.stop(0, Duration::from_secs(30)).await?;
    fleet.stop(1, Duration::from_secs(30)).await?;
    // A graceful stop gives the leases back.
    let l = aws_common::leases(&dynamo, &table).await?;
    ensure!(
        l.values().all(|(o, _, _)| o.is_none()),
        "leases after stopping: {l:?}"
    );
    Ok(())
}

/// The records each start of each replica wrote to its stdout, per log
/// file (JSON lines with an `n`; the log lines have none).
fn fleet_output(fleet: &Fleet) -> Result<Vec<Vec<Landed>>> {
    let mut files: Vec<_> = std::fs::read_dir(fleet.dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        out.push(
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v.get("n").is_some())
                .map(|v| Landed {
                    shard: f.display().to_string(),
                    partition_key: v["key"].as_str().unwrap_or_default().to_owned(),
                    value: v,
                })
                .collect(),
        );
    }
    Ok(out)
}

/// Waits until the replicas' stdout holds every number of `want`; checks
/// the order per key within each replica's output.
async fn wait_for_fleet(fleet: &mut Fleet, want: std::ops::Range<u64>) -> Result<Arrivals> {
    let deadline = Deadline::new(&format!("numbers {want:?} on the replicas' stdout"), WAIT);
    loop {
        let per_file = fleet_output(fleet)?;
        let all: Vec<Landed> = per_file.iter().flatten().cloned().collect();
        let a = arrivals(&all)?;
        let missing: Vec<u64> = want
            .clone()
            .filter(|n| !a.distinct.contains(n))
            .take(10)
            .collect();
        if missing.is_empty() {
            for f in &per_file {
                check_order(&arrivals(f)?)?;
            }
            return Ok(a);
        }
        fleet.check_alive()?;
        if let Err(e) = deadline.check(&missing) {
            fleet.keep_logs();
            bail!("{e}\n{}", fleet.log_tails(30));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until both replicas hold two of the four leases.
async fn wait_for_balance(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
    fleet: &mut Fleet,
) -> Result<()> {
    let deadline = Deadline::new("both replicas to hold two leases each", WAIT);
    loop {
        let l = aws_common::leases(dynamo, table).await.unwrap_or_default();
        let mut owners: BTreeMap<String, usize> = BTreeMap::new();
        for (owner, _, _) in l.values() {
            if let Some(o) = owner {
                *owners.entry(o.clone()).or_default() += 1;
            }
        }
        if l.len() == 4 && owners.values().copied().collect::<Vec<_>>() == [2, 2] {
            return Ok(());
        }
        fleet.check_alive()?;
        deadline.check(&owners)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// moto 5.2.5 reshards in its own way: `UpdateShardCount` splits every
/// open shard and closes it, but `Stream.get_shard_for_key` does not skip
/// closed shards, so every later write still lands in the (closed) parent,
/// the children stay empty, and `GetRecords` on the parent never returns a
/// null `NextShardIterator`. On AWS the parent ends and the children take
/// over. The test checks what holds on both: nothing is lost, per key the
/// order is kept, the children are discovered with their parents, and no
/// child is leased while its parent has not reached `SHARD_END`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_mid_run_loses_nothing_and_keeps_the_order_per_key() -> Result<()> {
    let bed = bed();
    let (kinesis, dynamo) = clients(&bed).await?;
    let (input, out, table) = (
        unique("kin-rs-in"),
        unique("kin-rs-out"),
        unique("kin-rs-leases"),
    );
    aws_common::create_stream(&kinesis, &input, 2).await?;
    aws_common::create_stream(&kinesis, &out, 1).await?;
    let dlq = tempfile::NamedTempFile::new()?;
    let extra = format!(
        "  deadLetter: {{file: {{path: '{}'}}}}\n",
        dlq.path().display()
    );
    let mut fleet = fleet(&bed, &pipeline(&bed, &input, &out, &table, &extra)?)?;
    fleet.add()?;
    put_numbers(&kinesis, &input, 0..1000).await?;
    kinesis
        .put_record()
        .stream_name(&input)
        .partition_key("bad")
        .data(Blob::new("{not json"))
        .send()
        .await?;
    let deadline = Deadline::new("the first outputs", WAIT);
    while read_all(&kinesis, &out).await?.len() < 300 {
        fleet.check_alive()?;
        deadline.check("fewer than 300 outputs")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kinesis
        .update_shard_count()
        .stream_name(&input)
        .target_shard_count(4)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await?;
    put_numbers(&kinesis, &input, 1000..2000).await?;
    let landed = wait_for(&kinesis, &out, 0..2000, &mut fleet).await?;
    let a = arrivals(&landed)?;
    println!(
        "kinesis reshard test: 2000 records written, {} distinct arrived, {} duplicates",
        a.distinct.len(),
        a.duplicates
    );
    check_order(&a)?;
    // The children were discovered (within a lease duration) with their
    // parents, and none is leased before its parent ended.
    let deadline = Deadline::new("six leases (2 parents, 4 children)", WAIT);
    let l = loop {
        let l = aws_common::leases(&dynamo, &table).await?;
        if l.len() == 6 {
            break l;
        }
        deadline.check(&l)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for (shard, (owner, checkpoint, parents)) in &l {
        if parents.is_empty() {
            continue;
        }
        let parents_ended = parents.iter().all(|p| {
            l.get(p)
                .is_some_and(|(_, cp, _)| cp.as_deref() == Some("SHARD_END"))
        });
        ensure!(
            parents_ended || (owner.is_none() && checkpoint.is_none()),
            "child {shard} was leased before its parents {parents:?} ended: {l:?}"
        );
    }
    ensure!(
        l.values().filter(|(_, _, p)| !p.is_empty()).count() == 4,
        "{l:?}"
    );
    // MillisBehindLatest of every shard read is a gauge on /metrics.
    let metrics = scrape(&fleet).await?;
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with("tributary_kinesis_millis_behind_latest{") && l.contains(shard))
            .with_context(|| format!("no lag gauge for {shard} in\n{metrics}"))?;
        let value = line.rsplit(' ').next().unwrap_or_default();
        ensure!(value.parse::<f64>().is_ok_and(|v| v >= 0.0), "{line}");
    }
    ensure!(
        metrics
            .lines()
            .any(|l| l.starts_with("tributary_kinesis_leases{") && l.ends_with(" 2")),
        "the replica should hold the 2 parent leases:\n{metrics}"
    );
    // The bad record went to the dead-letter sink, naming its shard and
    // sequence number.
    let dead = std::fs::read_to_string(dlq.path())?;
    let letter: Value = serde_json::from_str(dead.lines().next().context("no dead letter")?)?;
    ensure!(letter["step"] == "decode", "{letter}");
    ensure!(letter["source"]["name"] == input.as_str(), "{letter}");
    ensure!(
        letter["headers"]["kinesis.shardId"]
            .as_str()
            .is_some_and(|s| s.starts_with("shardId-")),
        "{letter}"
    );
    ensure!(
        letter["headers"]["kinesis.sequenceNumber"]
            .as_str()
            .is_some(),
        "{letter}"
    );
    fleet.stop(0, Duration::from_secs(30)).await?;
    Ok(())
}

/// The `/metrics` text of the fleet's first replica (its address is in
/// its log: it binds `TRIBUTARY_METRICS_ADDR=127.0.0.1:0`).
async fn scrape(fleet: &Fleet) -> Result<String> {
    let log = std::fs::read_to_string(fleet.dir().join("replica-0.1.log"))?;
    let bound = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["fields"]["bound"].as_str().map(str::to_owned))
        .with_context(|| format!("no metrics address in the log:\n{log}"))?;
    Ok(reqwest::get(format!("http://{bound}/metrics"))
        .await?
        .text()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_writes_every_record_with_its_partition_key() -> Result<()> {
    let bed = bed();
    let (kinesis, _) = clients(&bed).await?;
    let out = unique("kin-sink");
    aws_common::create_stream(&kinesis, &out, 3).await?;
    let dir = tempfile::tempdir()?;
    let count = 1200u64;
    let lines: Vec<String> = (0..count)
        .map(|n| json!({"n": n, "user": format!("user-{}", n % 7)}).to_string())
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n"))?;
    let yaml = format!(
        "source: {{file: {{path: in.jsonl}}}}\nsinks:\n  - {{name: out, kinesis: {{stream: {out}, region: {}, endpoint: '{}', partitionKey: event.user}}}}\n",
        bed.var("AWS_REGION")?,
        bed.var("AWS_ENDPOINT_URL")?
    );
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, yaml)?;
    let status = std::process::Command::new(tributary_bin())
        .args(["run", "-f"])
        .arg(&file)
        .envs(bed.vars())
        .status()?;
    ensure!(status.success(), "tributary run exited with {status}");
    let landed = read_all(&kinesis, &out).await?;
    let mut seen = BTreeSet::new();
    for l in &landed {
        let n = l.value["n"].as_u64().context("n")?;
        ensure!(seen.insert(n), "record {n} written twice");
        ensure!(
            l.partition_key == format!("user-{}", n % 7),
            "record {n} has partition key {} (shard {})",
            l.partition_key,
            l.shard
        );
    }
    ensure!(
        seen.len() as u64 == count,
        "{} of {count} records landed",
        seen.len()
    );
    let shards: BTreeSet<&str> = landed.iter().map(|l| l.shard.as_str()).collect();
    ensure!(
        shards.len() > 1,
        "7 keys over 3 shards used only {shards:?}"
    );
    Ok(())
}

#[test]
fn the_bundled_example_validates() -> Result<()> {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples/connectors/kinesis.yaml");
    let out = std::process::Command::new(tributary_bin())
        .args(["validate", "-f"])
        .arg(&example)
        .output()?;
    ensure!(
        out.status.success(),
        "{}: {}",
        example.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Numbers of `range` that reached `out`.
async fn arrived(kinesis: &Client, out: &str, range: std::ops::Range<u64>) -> Result<Vec<u64>> {
    let a = arrivals(&read_all(kinesis, out).await?)?;
    Ok(a.distinct.range(range).copied().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_skips_what_came_before_and_at_timestamp_starts_there() -> Result<()> {
    let bed = bed();
    let (kinesis, _) = clients(&bed).await?;
    // LATEST: records written before the start never arrive; once a probe
    // arrived (the shards are being read), everything written after does.
    let (input, out, table) = (
        unique("kin-lt-in"),
        unique("kin-lt-out"),
        unique("kin-lt-leases"),
    );
    aws_common::create_stream(&kinesis, &input, 2).await?;
    aws_common::create_stream(&kinesis, &out, 1).await?;
    put_numbers(&kinesis, &input, 0..100).await?;
    let yaml = pipeline_from(&bed, &input, &out, &table, ", startFrom: LATEST", "")?;
    let mut fleet = fleet(&bed, &yaml)?;
    fleet.add()?;
    let deadline = Deadline::new("a probe written after the start", WAIT);
    let mut probe = 1_000_000;
    while arrived(&kinesis, &out, 1_000_000..2_000_000)
        .await?
        .is_empty()
    {
        put_numbers(&kinesis, &input, probe..probe + 2).await?;
        probe += 2;
        fleet.check_alive()?;
        deadline.check(probe)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    put_numbers(&kinesis, &input, 100..200).await?;
    wait_for(&kinesis, &out, 100..200, &mut fleet).await?;
    let early = arrived(&kinesis, &out, 0..100).await?;
    ensure!(
        early.is_empty(),
        "LATEST delivered records written before the start: {early:?}"
    );
    fleet.stop(0, Duration::from_secs(30)).await?;

    // AT_TIMESTAMP: from the first record written at or after the time.
    let (input, out, table) = (
        unique("kin-at-in"),
        unique("kin-at-out"),
        unique("kin-at-leases"),
    );
    aws_common::create_stream(&kinesis, &input, 2).await?;
    aws_common::create_stream(&kinesis, &out, 1).await?;
    put_numbers(&kinesis, &input, 0..100).await?;
    // A second apart on both sides of the time, so moto's arrival
    // timestamps (float seconds) fall clearly before or after it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at = aws_sdk_kinesis::primitives::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_sdk_kinesis::primitives::DateTimeFormat::DateTime)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    put_numbers(&kinesis, &input, 100..200).await?;
    let from = format!(", startFrom: AT_TIMESTAMP, atTimestamp: '{at}'");
    let mut fleet = self::fleet(&bed, &pipeline_from(&bed, &input, &out, &table, &from, "")?)?;
    fleet.add()?;
    wait_for(&kinesis, &out, 100..200, &mut fleet).await?;
    let early = arrived(&kinesis, &out, 0..100).await?;
    ensure!(
        early.is_empty(),
        "AT_TIMESTAMP {at} delivered earlier records: {early:?}"
    );
    fleet.stop(0, Duration::from_secs(30)).await?;
    Ok(())
}

/// A toxiproxy proxy in front of moto, deleted when dropped.
struct MotoProxy {
    api: String,
    name: String,
    /// `http://host:port` of the proxy's listener.
    endpoint: String,
}

impl MotoProxy {
    async fn create(bed: &TestBed) -> Result<Self> {
        let api = bed.var("TOXIPROXY_URL")?.to_owned();
        let name = unique("moto");
        let upstream = bed
            .var("AWS_ENDPOINT_URL")?
            .trim_start_matches("http://")
            .to_owned();
        let resp = reqwest::Client::new()
            .post(format!("{api}/proxies"))
            .json(&json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true}))
            .send()
            .await?;
        ensure!(
            resp.status().is_success(),
            "creating proxy {name}: {}",
            resp.status()
        );
        let created: Value = resp.json().await?;
        let listen = created["listen"].as_str().context("proxy without listen")?;
        Ok(Self {
            endpoint: format!("http://{listen}"),
            api,
            name,
        })
    }

    async fn set(&self, enabled: bool) -> Result<()> {
        let resp = reqwest::Client::new()
            .post(format!("{}/proxies/{}", self.api, self.name))
            .json(&json!({"enabled": enabled}))
            .send()
            .await?;
        ensure!(
            resp.status().is_success(),
            "toggling {}: {}",
            self.name,
            resp.status()
        );
        Ok(())
    }
}

impl Drop for MotoProxy {
    fn drop(&mut self) {
        let url = format!("{}/proxies/{}", self.api, self.name);
        // Best effort: a leftover proxy only holds a loopback port.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(async { reqwest::Client::new().delete(url).send().await }))
        })
        .join();
    }
}

/// The sink's endpoint goes through a proxy that is cut for 20 s mid-run:
/// the flush retries (the replica waits, it does not fail), and every
/// record lands once the endpoint is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_rides_out_20_seconds_without_its_endpoint() -> Result<()> {
    let bed = bed();
    let (kinesis, _) = clients(&bed).await?;
    let proxy = MotoProxy::create(&bed).await?;
    let (input, out, table) = (
        unique("kin-cut-in"),
        unique("kin-cut-out"),
        unique("kin-cut-leases"),
    );
    aws_common::create_stream(&kinesis, &input, 2).await?;
    aws_common::create_stream(&kinesis, &out, 1).await?;
    let yaml = pipeline(&bed, &input, &out, &table, "")?.replace(
        &format!(
            "stream: {out}, region: {}, endpoint: '{}'",
            bed.var("AWS_REGION")?,
            bed.var("AWS_ENDPOINT_URL")?
        ),
        &format!(
            "stream: {out}, region: {}, endpoint: '{}'",
            bed.var("AWS_REGION")?,
            proxy.endpoint
        ),
    );
    ensure!(
        yaml.contains(&proxy.endpoint),
        "the sink should write through the proxy:\n{yaml}"
    );
    let mut fleet = fleet(&bed, &yaml)?;
    fleet.add()?;
    put_numbers(&kinesis, &input, 0..500).await?;
    wait_for(&kinesis, &out, 0..500, &mut fleet).await?;
    proxy.set(false).await?;
    put_numbers(&kinesis, &input, 500..1000).await?;
    // The outage itself: 20 s during which nothing can land.
    tokio::time::sleep(Duration::from_secs(20)).await;
    fleet.check_alive()?;
    let during = arrived(&kinesis, &out, 500..1000).await?;
    ensure!(
        during.is_empty(),
        "records landed through a cut proxy: {during:?}"
    );
    proxy.set(true).await?;
    let landed = wait_for(&kinesis, &out, 0..1000, &mut fleet).await?;
    let a = arrivals(&landed)?;
    println!(
        "kinesis sink outage test: 1000 records, {} duplicates",
        a.duplicates
    );
    check_order(&a)?;
    fleet.stop(0, Duration::from_secs(30)).await?;
    Ok(())
}
