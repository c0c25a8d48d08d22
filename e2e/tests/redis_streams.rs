//! Redis Streams pipelines on the test bed, black box: two replicas share a
//! consumer group and one is killed mid-run (the survivor claims its
//! pending entries: nothing is lost), and the sink waits out a Redis outage
//! without losing a record.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use tributary_e2e::fixture::{testbed as bed, unique};
use tributary_e2e::numbered::duplicates_if_complete;
use tributary_e2e::poll;
use tributary_e2e::process::{Fleet, tributary_bin};
use tributary_e2e::redis_stream::{self, connect, pending};
use tributary_e2e::server::{Server, free_port};

/// Adds `{"n": i}` entries for `range`, `per_second` at most.
async fn produce(
    url: &str,
    stream: &str,
    range: std::ops::Range<u64>,
    per_second: u64,
) -> Result<()> {
    let data: Vec<String> = range.map(|i| format!(r#"{{"n": {i}}}"#)).collect();
    let per_second = usize::try_from(per_second)?;
    redis_stream::add_paced(url, stream, &data, per_second, &[("origin", "e2e")]).await
}

/// How many times each `n` appears in the `data` fields of `stream`.
async fn numbers(con: &mut MultiplexedConnection, stream: &str) -> Result<BTreeMap<u64, u32>> {
    let mut seen = BTreeMap::new();
    for data in redis_stream::data(con, stream).await? {
        let v: Value = serde_json::from_str(&data)?;
        let n = v["n"].as_u64().with_context(|| format!("no n in {data}"))?;
        *seen.entry(n).or_insert(0) += 1;
    }
    Ok(seen)
}

/// Waits until every number of `0..n` is in `stream`; returns the duplicates.
async fn every_number(url: &str, stream: &str, n: u64, fleet: &Fleet) -> Result<u32> {
    poll::until(
        "every number in the output",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async move {
            let mut c = connect(url).await?;
            anyhow::Ok(duplicates_if_complete(&numbers(&mut c, stream).await?, n))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", fleet.log_tails(30)))
}

/// Waits until `group` has no pending entry.
async fn all_acknowledged(con: &MultiplexedConnection, stream: &str, group: &str) -> Result<()> {
    poll::until(
        "no entry pending in the group",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            let mut con = con.clone();
            anyhow::Ok((pending(&mut con, stream, group, "").await?.0 == 0).then_some(()))
        },
    )
    .await?;
    Ok(())
}

fn pipeline(source_url: &str, stream: &str, group: &str, sink_url: &str, out: &str) -> String {
    format!(
        r"
source:
  redisStreams: {{url: '{source_url}', stream: {stream}, group: {group}, claimIdle: 4s, batchSize: 200}}
steps:
  - filter: 'event.n >= 0'
sinks:
  - {{name: out, redisStreams: {{url: '{sink_url}', stream: {out}}}}}
checkpoint: {{interval: 1s}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_s_entries_are_claimed_by_the_survivor() -> Result<()> {
    let bed = bed();
    let url = bed.var("REDIS_URL")?.to_owned();
    let stream = unique("rs-in");
    let out = unique("rs-out");
    let group = unique("rs-group");
    let n: u64 = 5000;
    let mut fleet = Fleet::new(
        &tributary_bin(),
        &pipeline(&url, &stream, &group, &url, &out),
        &[],
    )?;
    fleet.add()?;
    fleet.add()?;
    let mut con = connect(&url).await?;
    let producing = tokio::spawn({
        let (url, stream) = (url.clone(), stream.clone());
        async move { produce(&url, &stream, 0..n, 500).await }
    });
    // Kill replica-0 once a third of the input went through.
    poll::until(
        "a third of the records in the output",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let mut con = con.clone();
            let out = out.clone();
            async move {
                let len: u64 = redis::cmd("XLEN").arg(&out).query_async(&mut con).await?;
                anyhow::Ok((len >= n / 3).then_some(()))
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", fleet.log_tails(20)))?;
    fleet.kill9(0)?;
    let (_, orphaned) = pending(&mut con, &stream, &group, "replica-0").await?;
    eprintln!("redis: replica-0 killed with {orphaned} entries pending");
    ensure!(
        orphaned > 0,
        "replica-0 had nothing pending when killed: the test did not kill it mid-run"
    );
    producing.await??;

    let duplicates = every_number(&url, &out, n, &fleet).await?;
    eprintln!("redis: all {n} records out, {duplicates} duplicates (at-least-once)");
    // The survivor acknowledges everything, the claimed entries included.
    all_acknowledged(&con, &stream, &group).await?;
    fleet.check_alive()?;
    let failed = fleet.stop_all(Duration::from_secs(30)).await?;
    ensure!(failed.is_empty(), "replicas failed: {failed:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_waits_for_redis_to_come_back_and_loses_nothing() -> Result<()> {
    let bed = bed();
    let url = bed.var("REDIS_URL")?.to_owned();
    let port = free_port()?.to_string();
    let mut own = Server::start(
        "redis-server",
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--dir",
            "{dir}",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ],
    )?;
    let sink_url = format!("redis://127.0.0.1:{port}");
    let stream = unique("rs-src");
    let out = unique("rs-sink");
    let group = unique("rs-sink-group");
    let n: u64 = 3000;
    let up = |what: &'static str| {
        let sink_url = sink_url.clone();
        poll::until(
            what,
            Duration::from_secs(20),
            Duration::from_millis(100),
            move || {
                let sink_url = sink_url.clone();
                async move { connect(&sink_url).await.map(|_| Some(())) }
            },
        )
    };
    up("the test's own redis-server to accept connections").await?;
    let mut fleet = Fleet::new(
        &tributary_bin(),
        &pipeline(&url, &stream, &group, &sink_url, &out),
        &[],
    )?;
    fleet.add()?;
    produce(&url, &stream, 0..n / 2, 2000).await?;
    poll::until(
        "the first half in the sink's stream",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let (sink_url, out) = (sink_url.clone(), out.clone());
            async move {
                let mut c = connect(&sink_url).await?;
                anyhow::Ok((numbers(&mut c, &out).await?.len() as u64 == n / 2).then_some(()))
            }
        },
    )
    .await?;

    own.kill9();
    produce(&url, &stream, n / 2..n, 2000).await?;
    // While Redis is down nothing is acknowledged at the source.
    let mut con = connect(&url).await?;
    poll::until(
        "the second half read and held (pending) at the source",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let mut con = con.clone();
            let (stream, group) = (stream.clone(), group.clone());
            async move {
                anyhow::Ok((pending(&mut con, &stream, &group, "").await?.0 > 0).then_some(()))
            }
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (held, _) = pending(&mut con, &stream, &group, "").await?;
    eprintln!("redis sink: {held} entries held at the source after 20 s of outage");
    fleet.check_alive()?;
    own.restart()?;
    up("the test's own redis-server to come back").await?;

    let duplicates = every_number(&sink_url, &out, n, &fleet).await?;
    eprintln!("redis sink: all {n} records landed after the outage, {duplicates} duplicates");
    all_acknowledged(&con, &stream, &group).await?;
    let failed = fleet.stop_all(Duration::from_secs(30)).await?;
    ensure!(failed.is_empty(), "replicas failed: {failed:?}");
    Ok(())
}

/// `maxLen` trims with `XADD ... MAXLEN ~ n`: after 5,000 records the
/// stream keeps at least the newest 500 — in order, none missing — and
/// not many more (Redis trims whole nodes of up to 100 entries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_trims_the_stream_to_about_max_len() -> Result<()> {
    const TOTAL: u64 = 5_000;
    const MAX_LEN: u64 = 500;
    let bed = bed();
    let url = bed.var("REDIS_URL")?.to_owned();
    let out = unique("rs-maxlen");
    let dir = tempfile::tempdir()?;
    let lines: String = (0..TOTAL).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), lines)?;
    let yaml = dir.path().join("trim.yaml");
    std::fs::write(
        &yaml,
        format!(
            "source: {{file: {{path: in.jsonl}}}}\nsinks:\n  - {{name: out, redisStreams: {{url: '{url}', stream: {out}, maxLen: {MAX_LEN}}}}}\n"
        ),
    )?;
    let run = std::process::Command::new(tributary_bin())
        .args(["run", "-f"])
        .arg(&yaml)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running the pipeline")?;
    ensure!(
        run.status.success(),
        "the run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut con = connect(&url).await?;
    let len: u64 = redis::cmd("XLEN").arg(&out).query_async(&mut con).await?;
    let kept: Vec<u64> = numbers(&mut con, &out).await?.into_keys().collect();
    eprintln!("redis maxLen ~{MAX_LEN}: {TOTAL} written, {len} kept");
    ensure!(
        (MAX_LEN..=MAX_LEN + 200).contains(&len),
        "XLEN {len} after {TOTAL} records with maxLen ~{MAX_LEN}"
    );
    let newest: Vec<u64> = (TOTAL - len..TOTAL).collect();
    ensure!(
        kept == newest,
        "the stream does not hold the newest {len} records in order: first {:?}, last {:?}",
        kept.first(),
        kept.last()
    );
    Ok(())
}
