//! The PostgreSQL sink, black box: real `tributary run` processes writing
//! to the test bed's PostgreSQL (and to a private server that the outage
//! test stops).
//!
//! - at-least-once from a file: rows land under their keys, a later record
//!   updates its row (upsert), a type mismatch becomes a dead letter;
//! - exactly-once from Kafka: a tumbling count per user into an INSERT-only
//!   table (no key, so a repeat would show as a second row) while replicas
//!   are killed with SIGKILL and restarted; every result row exactly once;
//! - the server down for 20 s mid-run: nothing lost, nothing repeated.

mod kafka_common;
mod postgres_common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kafka_common::Scenario;
use postgres_common::{OwnPostgres, client, table};
use tributary_e2e::kafka::output::{Check, OutRecord};
use tributary_e2e::kafka::pipeline::NAMESPACE;
use tributary_e2e::kafka::workload::Workload;
use tributary_e2e::process::chaos;
use tributary_e2e::process::{Fleet, tributary_bin};

#[tokio::test]
async fn at_least_once_upserts_land_under_their_keys_and_bad_rows_are_dead_letters() -> Result<()> {
    let bed = tributary_e2e::fixture::testbed();
    let url = bed.var("POSTGRES_URL")?.to_owned();
    let db = client(&url).await?;
    let t = table("pg_upsert");
    db.batch_execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount double precision, seen timestamptz, tags jsonb)"
    ))
    .await?;
    let dir = tempfile::tempdir()?;
    let mut lines = Vec::new();
    for i in 0..100 {
        lines.push(serde_json::json!({"id": i, "name": format!("n{i}"), "amount": i, "ts": 1_700_000_000_000_i64 + i, "ignored": true}));
    }
    // Updates of ids 0..10 (the upsert), one with a timestamp and jsonb.
    for i in 0..10 {
        lines.push(serde_json::json!({"id": i, "name": format!("updated{i}"), "seen": 1_700_000_000_000_i64, "tags": {"i": i}}));
    }
    // A type mismatch: a bigint column given a fraction.
    lines.push(serde_json::json!({"id": 1.5, "name": "bad"}));
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), input)?;
    let yaml = format!(
        "source: {{file: {{path: in.jsonl}}}}
steps: []
sinks:
  - {{name: pg, postgres: {{connection: {{env: PG_URL}}, table: {t}, upsertKey: [id]}}}}
deadLetter: {{file: {{path: dead.jsonl}}}}
guarantee: atLeastOnce
"
    );
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, yaml)?;
    let out = std::process::Command::new(tributary_bin())
        .args(["run", "-f"])
        .arg(&file)
        .env("PG_URL", &url)
        .output()?;
    ensure!(
        out.status.success(),
        "tributary run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = db
        .query(
            &format!("SELECT id, name, amount, tags::text, seen IS NOT NULL FROM {t} ORDER BY id"),
            &[],
        )
        .await?;
    ensure!(rows.len() == 100, "expected 100 rows, got {}", rows.len());
    for r in &rows {
        let id: i64 = r.get(0);
        let name: String = r.get(1);
        let amount: Option<f64> = r.get(2);
        ensure!(amount == Some(id as f64), "row {id}: amount {amount:?}");
        if id < 10 {
            ensure!(
                name == format!("updated{id}"),
                "row {id} not updated: {name}"
            );
            let tags: Option<String> = r.get(3);
            ensure!(
                tags == Some(format!("{{\"i\": {id}}}")),
                "row {id}: tags {tags:?}"
            );
            ensure!(r.get::<_, bool>(4), "row {id}: seen not set");
        } else {
            ensure!(name == format!("n{id}"), "row {id}: {name}");
        }
    }
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl"))?;
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(dead.len() == 1, "expected one dead letter: {dead:?}");
    let error = dead[0]["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("bigint") && dead[0]["step"] == "sink:pg",
        "{dead:?}"
    );
    Ok(())
}

/// The count-per-user pipeline of the Kafka tests, into `table`.
fn eos_yaml(s: &Scenario, table: &str) -> String {
    format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: '{name}', namespace: {NAMESPACE}}}
spec:
  source:
    kafka: {{brokers: '{brokers}', topics: ['{input}'], startFrom: earliest, group: '{group}', partitionedBy: [event.user]}}
    format: {{type: json}}
    eventTime: {{field: event.ts, format: epochMillis}}
    watermark: {{maxOutOfOrderness: 1s}}
  steps:
    - filter: \"event.kind == 'click'\"
    - window:
        type: tumbling
        size: 1s
        keyBy: [event.user]
        aggregate: [{{name: clicks, fn: count}}]
  sinks:
    - {{name: out, postgres: {{connection: {{env: PG_URL}}, table: {table}}}}}
  guarantee: exactlyOnce
  checkpoint: {{interval: 1s}}
",
        name = s.spec.name,
        brokers = s.spec.brokers,
        input = s.spec.input,
        group = s.spec.group(),
    )
}

/// Result rows read back as the Kafka checker's records.
async fn results(url: &str, table: &str) -> Result<Vec<OutRecord>> {
    let db = client(url).await?;
    let rows = db
        .query(
            &format!(r#"SELECT json_build_object('windowStart', "windowStart", 'windowEnd', "windowEnd", 'user', "user", 'clicks', clicks)::text FROM {table}"#),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(i, r)| OutRecord {
            partition: 0,
            offset: i64::try_from(i).unwrap_or_default(),
            key: None,
            value: r.get(0),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect())
}

async fn create_results(url: &str, table: &str) -> Result<()> {
    client(url)
        .await?
        .batch_execute(&format!(
            r#"CREATE TABLE {table} ("windowStart" bigint, "windowEnd" bigint, "user" text, clicks bigint)"#
        ))
        .await
        .context("creating the results table")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_into_postgres_holds_while_replicas_are_killed() -> Result<()> {
    let s = Scenario::new(
        "pg-eos",
        Workload::new(60_000, 40, 2, 1_000),
        "exactlyOnce",
        false,
    )
    .await?;
    let url = s.bed.var("POSTGRES_URL")?.to_owned();
    let t = table("pg_eos");
    create_results(&url, &t).await?;
    let env = [
        ("RUST_LOG", "info"),
        ("TRIBUTARY_KAFKA_SESSION_TIMEOUT_MS", "6000"),
        ("PG_URL", url.as_str()),
    ];
    let mut fleet = Fleet::new(&tributary_bin(), &eos_yaml(&s, &t), &env)?;
    for _ in 0..2 {
        fleet.add()?;
    }
    tokio::select! {
        r = s.produce(3_000.0) => r?,
        r = chaos(&mut fleet, Duration::from_secs(4)) => r?,
    }
    let kills = fleet.kills;
    s.wait_consumed(&s.spec.group(), &mut fleet, Duration::from_secs(150))
        .await?;
    let crashed = fleet.crashes.clone();
    s.stop(&mut fleet).await?;
    let check = Check::new(&s.workload.expected(), &results(&url, &t).await?);
    eprintln!(
        "postgres exactlyOnce checker: N={} events, {kills} kills (kill -9), {}: {check}",
        s.workload.events,
        if check.exactly_once() { "PASS" } else { "FAIL" }
    );
    ensure!(
        crashed.is_empty(),
        "replicas exited on their own: {crashed:?}\n{}",
        fleet.log_tails(20)
    );
    ensure!(kills >= 3, "the chaos loop killed only {kills} replicas");
    ensure!(check.exactly_once(), "exactly-once does not hold: {check}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_20s_loses_and_repeats_nothing() -> Result<()> {
    let pg = OwnPostgres::start()?;
    let url = pg.url();
    let s = Scenario::new(
        "pg-outage",
        Workload::new(40_000, 40, 2, 1_000),
        "exactlyOnce",
        false,
    )
    .await?;
    let t = table("pg_outage");
    create_results(&url, &t).await?;
    let env = [("RUST_LOG", "info"), ("PG_URL", url.as_str())];
    let mut fleet = Fleet::new(&tributary_bin(), &eos_yaml(&s, &t), &env)?;
    fleet.add()?;
    let outage = async {
        s.wait_progress(&s.spec.group(), s.workload.events / 4, &mut fleet)
            .await?;
        pg.down()?;
        eprintln!("postgres: down for 20 s");
        tokio::time::sleep(Duration::from_secs(20)).await;
        pg.up()?;
        eprintln!("postgres: up again");
        anyhow::Ok(fleet)
    };
    let (produced, outage) = tokio::join!(s.produce(2_000.0), outage);
    produced?;
    let mut fleet = match outage {
        Ok(f) => f,
        Err(e) => {
            let _ = pg.up();
            return Err(e);
        }
    };
    s.wait_consumed(&s.spec.group(), &mut fleet, Duration::from_secs(180))
        .await?;
    let crashed = fleet.crashes.clone();
    s.stop(&mut fleet).await?;
    let check = Check::new(&s.workload.expected(), &results(&url, &t).await?);
    eprintln!(
        "postgres outage: N={} events, {}: {check}",
        s.workload.events,
        if check.exactly_once() { "PASS" } else { "FAIL" }
    );
    ensure!(
        crashed.is_empty(),
        "the replica exited during the outage: {crashed:?}\n{}",
        fleet.log_tails(20)
    );
    ensure!(
        check.exactly_once(),
        "not exactly once after the outage: {check}"
    );
    Ok(())
}
