//! `exactlyOnce` from Kinesis into PostgreSQL against moto and the test
//! bed's PostgreSQL: two replicas share four shards while a chaos loop
//! kill -9s and restarts one every few seconds; afterwards every numbered
//! input must be exactly one row of a table without a key (a repeat would
//! be a second row), and the positions the replicas resumed from must be
//! the ones stored next to the rows.

mod aws_common;
mod postgres_common;

use std::time::Duration;

use anyhow::{Result, ensure};
use aws_sdk_kinesis::Client;
use postgres_common::{client, table};
use serde_json::json;
use tributary_e2e::fixture::{testbed as bed, unique};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::{Fleet, chaos, tributary_bin};

const SHARDS: i32 = 4;
const TOTAL: u64 = 6_000;

/// Writes `{"n": i}` for `range`, partition key `k<i % 16>`, in calls of 50.
async fn put(kinesis: &Client, stream: &str, range: std::ops::Range<u64>) -> Result<()> {
    let entries = range
        .map(|n| (format!("k{}", n % 16), json!({"n": n}).to_string()))
        .collect();
    aws_common::put_records(kinesis, stream, entries, 50).await
}

fn pipeline(
    bed: &tributary_e2e::env::TestBed,
    stream: &str,
    leases: &str,
    out: &str,
) -> Result<String> {
    let endpoint = bed.var("AWS_ENDPOINT_URL")?;
    let region = bed.var("AWS_REGION")?;
    Ok(format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: {stream}, namespace: e2e}}
spec:
  source:
    kinesis: {{stream: {stream}, region: {region}, endpoint: '{endpoint}', leaseTable: {leases}, leaseDuration: 3s}}
  steps:
    - filter: \"event.n >= 0\"
    - map: {{set: {{doubled: \"event.n * 2\"}}}}
  sinks:
    - {{name: out, postgres: {{connection: {{env: PG_URL}}, table: {out}}}}}
  guarantee: exactlyOnce
  checkpoint: {{interval: 500ms}}
"
    ))
}

/// `(rows, distinct n)` in the results table.
async fn counts(db: &tokio_postgres::Client, out: &str) -> Result<(i64, i64)> {
    let row = db
        .query_one(
            &format!("SELECT count(*), count(DISTINCT n) FROM {out}"),
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_from_kinesis_into_postgres_holds_while_replicas_are_killed() -> Result<()> {
    let bed = bed();
    let kinesis = Client::new(&aws_common::config(&bed).await?);
    let (stream, leases) = (unique("kin-eos"), unique("kin-eos-leases"));
    aws_common::create_stream(&kinesis, &stream, SHARDS).await?;
    let url = bed.var("POSTGRES_URL")?.to_owned();
    let out = table("kin_eos");
    let db = client(&url).await?;
    db.batch_execute(&format!("CREATE TABLE {out} (n bigint, doubled bigint)"))
        .await?;
    let vars: Vec<(&str, &str)> = bed.vars().collect();
    let mut env = vars;
    env.extend([("RUST_LOG", "info"), ("PG_URL", url.as_str())]);
    let mut fleet = Fleet::new(
        &tributary_bin(),
        &pipeline(&bed, &stream, &leases, &out)?,
        &env,
    )?;
    fleet.add()?;
    fleet.add()?;
    // 6,000 records over about 15 s while a replica dies every 3 s.
    let produce = async {
        for start in (0..TOTAL).step_by(100) {
            put(&kinesis, &stream, start..start + 100).await?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = produce => r?,
        r = chaos(&mut fleet, Duration::from_secs(3)) => r?,
    }
    let kills = fleet.kills;
    let deadline = Deadline::new("every record in postgres", Duration::from_secs(150));
    loop {
        let (_, distinct) = counts(&db, &out).await?;
        if u64::try_from(distinct)? == TOTAL {
            break;
        }
        fleet.check_alive()?;
        deadline.check(format!("{distinct} of {TOTAL} distinct rows"))?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let a late duplicate land, if the sink would write one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let crashed = fleet.crashes.clone();
    fleet.stop_all(Duration::from_secs(30)).await?;
    let (rows, distinct) = counts(&db, &out).await?;
    let repeated: Vec<(i64, i64)> = db
        .query(
            &format!(
                "SELECT n, count(*) FROM {out} GROUP BY n HAVING count(*) > 1 ORDER BY n LIMIT 10"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let wrong: i64 = db
        .query_one(
            &format!("SELECT count(*) FROM {out} WHERE doubled <> 2 * n"),
            &[],
        )
        .await?
        .get(0);
    eprintln!(
        "kinesis → postgres exactlyOnce: N={TOTAL}, {kills} kills (kill -9), {rows} rows, {distinct} distinct, repeated (first 10): {repeated:?}"
    );
    ensure!(
        crashed.is_empty(),
        "replicas exited on their own: {crashed:?}\n{}",
        fleet.log_tails(20)
    );
    ensure!(kills >= 3, "the chaos loop killed only {kills} replicas");
    ensure!(wrong == 0, "{wrong} rows were not mapped");
    ensure!(
        rows == distinct && u64::try_from(rows)? == TOTAL,
        "not exactly once: {rows} rows for {distinct} distinct of {TOTAL}; repeated {repeated:?}"
    );
    let positions: i64 = db
        .query_one(
            "SELECT count(*) FROM tributary_shard_positions WHERE stream = $1",
            &[&stream],
        )
        .await?
        .get(0);
    ensure!(
        positions == i64::from(SHARDS),
        "{positions} shard positions stored, want {SHARDS}"
    );
    Ok(())
}
