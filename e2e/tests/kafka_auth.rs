//! Kafka behind TLS and SASL, as managed services run it: the test bed's
//! broker has a `SASL_SSL` listener signed by the test bed's CA, with a
//! SCRAM-SHA-512 user and a PLAIN user named `$ConnectionString` (the
//! shape of Azure Event Hubs' Kafka endpoint). Pipelines read and write
//! through that listener with secrets passed as env references, and a wrong
//! password is reported, not retried in silence.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::producer::FutureRecord;
use tributary_e2e::env::TestBed;
use tributary_e2e::fixture::{testbed, unique};
use tributary_e2e::kafka::output::read_to_end;
use tributary_e2e::kafka::{create_topic, high_watermarks, producer};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::{Fleet, tributary_bin};

const RECORDS: u32 = 300;

/// Creates `input` with `RECORDS` numbered events (through the plaintext
/// listener, so only the pipeline uses the secure one) and an output topic.
async fn seed(bed: &TestBed, input: &str, output: &str) -> Result<()> {
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?;
    create_topic(bootstrap, input, 2).await?;
    create_topic(bootstrap, output, 2).await?;
    let p = producer(bootstrap)?;
    for n in 0..RECORDS {
        let key = format!("k{}", n % 7);
        let value = format!(r#"{{"n": {n}, "user": "{key}"}}"#);
        p.send(
            FutureRecord::to(input).key(&key).payload(&value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("producing record {n} to {input}"))?;
    }
    Ok(())
}

/// A pipeline reading `input` and writing `output` on the secure listener,
/// with `mechanism` and the credentials in env vars `KAFKA_USER`/`KAFKA_PASSWORD`
/// and the CA in `KAFKA_CA`.
fn pipeline(
    bed: &TestBed,
    name: &str,
    input: &str,
    output: &str,
    mechanism: &str,
) -> Result<String> {
    Ok(format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: {name}}}
spec:
  source:
    kafka:
      brokers: '{brokers}'
      topics: ['{input}']
      group: '{name}'
      auth:
        sasl: {{mechanism: {mechanism}, username: {{env: KAFKA_USER}}, password: {{env: KAFKA_PASSWORD}}}}
        tls: {{ca: {{env: KAFKA_CA}}}}
  steps:
    - map: {{set: {{secure: 'true'}}}}
  sinks:
    - {{name: out, kafka: {{topic: '{output}', key: event.user}}}}
  guarantee: atLeastOnce
  checkpoint: {{interval: 1s}}
",
        brokers = bed.var("KAFKA_BOOTSTRAP_SECURE")?,
    ))
}

/// Runs the pipeline with the given credentials until every input record is
/// in the output topic, then checks each arrived once with its key.
async fn round_trip(mechanism: &str, user: &str, password: &str) -> Result<()> {
    let bed = testbed();
    let name = unique(&format!("auth-{}", mechanism.to_lowercase()));
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    seed(&bed, &input, &output).await?;
    let ca = std::fs::read_to_string(bed.var("KAFKA_CA_FILE")?)?;
    let mut fleet = Fleet::new(
        &tributary_bin(),
        &pipeline(&bed, &name, &input, &output, mechanism)?,
        &[
            ("KAFKA_USER", user),
            ("KAFKA_PASSWORD", password),
            ("KAFKA_CA", &ca),
        ],
    )?;
    fleet.add()?;
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?;
    let deadline = Deadline::new(
        &format!("{RECORDS} records through the {mechanism} listener"),
        Duration::from_secs(90),
    );
    loop {
        let landed: i64 = high_watermarks(bootstrap, &output)?.iter().sum();
        if landed >= i64::from(RECORDS) {
            break;
        }
        fleet.check_alive()?;
        if let Err(e) = deadline.check(landed) {
            let logs = fleet.log_tails(30);
            return Err(anyhow::Error::new(e).context(logs));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let failed = fleet.stop_all(Duration::from_secs(30)).await?;
    ensure!(failed.is_empty(), "replica exited badly: {failed:?}");
    let records = read_to_end(bootstrap, &output, false, Duration::from_secs(30)).await?;
    let mut seen = BTreeSet::new();
    for r in &records {
        let v: serde_json::Value = serde_json::from_str(&r.value)?;
        let n = v["n"].as_u64().context("n")?;
        ensure!(v["secure"] == true, "record {n} was not mapped: {v}");
        ensure!(
            r.key.as_deref() == v["user"].as_str(),
            "record {n} has key {:?}, expected {}",
            r.key,
            v["user"]
        );
        seen.insert(n);
    }
    ensure!(
        seen.len() == RECORDS as usize && records.len() == RECORDS as usize,
        "{} records, {} distinct, expected {RECORDS} once each",
        records.len(),
        seen.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_over_tls_reads_and_writes() -> Result<()> {
    let bed = testbed();
    round_trip(
        "SCRAM-SHA-512",
        bed.var("KAFKA_SCRAM_USER")?,
        bed.var("KAFKA_SCRAM_PASSWORD")?,
    )
    .await
}

/// Event Hubs' Kafka endpoint: SASL PLAIN over TLS, user `$ConnectionString`,
/// the namespace's connection string as the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_hubs_style_plain_over_tls_reads_and_writes() -> Result<()> {
    let bed = testbed();
    let user = bed.var("KAFKA_PLAIN_USER")?;
    ensure!(user == "$ConnectionString", "test bed PLAIN user is {user}");
    round_trip("PLAIN", user, bed.var("KAFKA_PLAIN_PASSWORD")?).await
}

/// A wrong password is an authentication failure the logs name, and no
/// record is read or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_and_nothing_moves() -> Result<()> {
    let bed = testbed();
    let name = unique("auth-wrong");
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    seed(&bed, &input, &output).await?;
    let ca = std::fs::read_to_string(bed.var("KAFKA_CA_FILE")?)?;
    let mut fleet = Fleet::new(
        &tributary_bin(),
        &pipeline(&bed, &name, &input, &output, "SCRAM-SHA-512")?,
        &[
            ("KAFKA_USER", bed.var("KAFKA_SCRAM_USER")?),
            ("KAFKA_PASSWORD", "not-the-password"),
            ("KAFKA_CA", &ca),
        ],
    )?;
    fleet.add()?;
    let deadline = Deadline::new(
        "an authentication error in the log",
        Duration::from_secs(60),
    );
    loop {
        let log = fleet.log_tails(200);
        if log.contains("Authentication failed") || log.contains("SASL authentication error") {
            break;
        }
        if let Err(e) = deadline.check(()) {
            return Err(anyhow::Error::new(e).context(log));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let landed: i64 = high_watermarks(bed.var("KAFKA_BOOTSTRAP")?, &output)?
        .iter()
        .sum();
    fleet.stop_all(Duration::from_secs(30)).await?;
    ensure!(
        landed == 0,
        "{landed} records written with a wrong password"
    );
    Ok(())
}
