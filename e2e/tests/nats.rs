//! NATS JetStream pipelines on the test bed, black box: two replicas pull
//! from one durable consumer and one is killed mid-run (its unacknowledged
//! messages are redelivered to the survivor after ackWait: nothing is
//! lost), and the sink waits out a server outage without losing a record.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use serde_json::Value;
use tributary_e2e::fixture::{testbed as bed, unique};
use tributary_e2e::numbered::duplicates_if_complete;
use tributary_e2e::poll;
use tributary_e2e::process::{Fleet, tributary_bin};
use tributary_e2e::server::{Server, free_port};

/// A stream capturing `<name>.>`.
async fn create_stream(js: &jetstream::Context, name: &str) -> Result<()> {
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Publishes `{"n": i}` to `subject` for `range`, `per_second` at most.
async fn produce(
    js: &jetstream::Context,
    subject: &str,
    range: std::ops::Range<u64>,
    per_second: u64,
) -> Result<()> {
    let chunk = (per_second / 10).max(1);
    let mut next = range.start;
    while next < range.end {
        let end = (next + chunk).min(range.end);
        let mut acks = Vec::new();
        for i in next..end {
            acks.push(
                js.publish(subject.to_owned(), format!(r#"{{"n": {i}}}"#).into())
                    .await?,
            );
        }
        for a in acks {
            a.await?;
        }
        next = end;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// How many times each `n` appears in `stream`, read from the start with
/// an ephemeral consumer.
async fn numbers(js: &jetstream::Context, stream: &str) -> Result<BTreeMap<u64, u32>> {
    let s = js.get_stream(stream).await?;
    let total = s.cached_info().state.messages;
    let mut seen = BTreeMap::new();
    if total == 0 {
        return Ok(seen);
    }
    let c = s
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = c.messages().await?;
    let mut read = 0;
    while read < total {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("reading the output stream timed out")?
            .context("the output stream ended")??;
        let v: Value = serde_json::from_slice(&msg.payload)?;
        let n = v["n"].as_u64().with_context(|| format!("no n in {v}"))?;
        *seen.entry(n).or_insert(0) += 1;
        read += 1;
    }
    Ok(seen)
}

async fn out_len(js: &jetstream::Context, stream: &str) -> Result<u64> {
    Ok(js.get_stream(stream).await?.cached_info().state.messages)
}

/// Waits until every number of `0..n` is in `stream`; returns the duplicates.
async fn every_number(js: &jetstream::Context, stream: &str, n: u64, fleet: &Fleet) -> Result<u32> {
    poll::until(
        "every number in the output",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async move {
            if out_len(js, stream).await? < n {
                return anyhow::Ok(None);
            }
            anyhow::Ok(duplicates_if_complete(&numbers(js, stream).await?, n))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", fleet.log_tails(30)))
}

/// The durable consumer `name` of `stream`.
async fn durable(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
) -> Result<consumer::PullConsumer> {
    js.get_stream(stream)
        .await?
        .get_consumer::<consumer::pull::Config>(name)
        .await
        .map_err(|e| anyhow::anyhow!("consumer {name}: {e}"))
}

fn pipeline(
    source_url: &str,
    stream: &str,
    durable: &str,
    sink_url: &str,
    subject: &str,
) -> String {
    format!(
        r"
source:
  nats: {{url: '{source_url}', stream: {stream}, durable: {durable}, ackWait: 4s, batchSize: 200}}
steps:
  - filter: 'event.n >= 0'
sinks:
  - {{name: out, nats: {{url: '{sink_url}', subject: '{subject}'}}}}
checkpoint: {{interval: 1s}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_s_messages_are_redelivered_to_the_survivor() -> Result<()> {
    let bed = bed();
    let url = bed.var("NATS_URL")?.to_owned();
    let js = jetstream::new(async_nats::connect(&url).await?);
    let input = unique("NIN").replace('-', "_");
    let output = unique("NOUT").replace('-', "_");
    create_stream(&js, &input).await?;
    create_stream(&js, &output).await?;
    let n: u64 = 5000;
    let yaml = pipeline(&url, &input, "workers", &url, &format!("{output}.results"));
    let mut fleet = Fleet::new(&tributary_bin(), &yaml, &[])?;
    fleet.add()?;
    fleet.add()?;
    let producing = tokio::spawn({
        let (js, subject) = (js.clone(), format!("{input}.events"));
        async move { produce(&js, &subject, 0..n, 500).await }
    });
    poll::until(
        "a third of the records in the output",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let (js, output) = (js.clone(), output.clone());
            async move { anyhow::Ok((out_len(&js, &output).await? >= n / 3).then_some(())) }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", fleet.log_tails(20)))?;
    fleet.kill9(0)?;
    let info = durable(&js, &input, "workers").await?.cached_info().clone();
    eprintln!(
        "nats: replica-0 killed; {} messages delivered and unacknowledged in the consumer",
        info.num_ack_pending
    );
    ensure!(
        info.num_ack_pending > 0,
        "nothing was unacknowledged when replica-0 was killed: not mid-run"
    );
    producing.await??;

    let duplicates = every_number(&js, &output, n, &fleet).await?;
    eprintln!("nats: all {n} records out, {duplicates} duplicates (at-least-once)");
    poll::until(
        "every input message acknowledged",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (js, input) = (js.clone(), input.clone());
            async move {
                let mut c = durable(&js, &input, "workers").await?;
                let info = c.info().await?;
                anyhow::Ok((info.num_ack_pending == 0 && info.num_pending == 0).then_some(()))
            }
        },
    )
    .await?;
    fleet.check_alive()?;
    let failed = fleet.stop_all(Duration::from_secs(30)).await?;
    ensure!(failed.is_empty(), "replicas failed: {failed:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_waits_for_the_server_to_come_back_and_loses_nothing() -> Result<()> {
    let bed = bed();
    let url = bed.var("NATS_URL")?.to_owned();
    let port = free_port()?.to_string();
    let mut own = Server::start(
        "nats-server",
        &["-a", "127.0.0.1", "-p", &port, "-js", "-sd", "{dir}"],
    )?;
    let sink_url = format!("nats://127.0.0.1:{port}");
    let input = unique("NSRC").replace('-', "_");
    let output = unique("NSINK").replace('-', "_");
    // Ready when JetStream serves the output stream (created the first time).
    let connect_own = || {
        let (sink_url, output) = (sink_url.clone(), output.clone());
        poll::until(
            "the test's own nats-server",
            Duration::from_secs(20),
            Duration::from_millis(100),
            move || {
                let (sink_url, output) = (sink_url.clone(), output.clone());
                async move {
                    let js = jetstream::new(async_nats::connect(&sink_url).await?);
                    js.get_or_create_stream(stream::Config {
                        name: output.clone(),
                        subjects: vec![format!("{output}.>")],
                        ..Default::default()
                    })
                    .await?;
                    anyhow::Ok(Some(js))
                }
            },
        )
    };
    let own_js = connect_own().await?;
    let js = jetstream::new(async_nats::connect(&url).await?);
    create_stream(&js, &input).await?;
    let n: u64 = 3000;
    let yaml = pipeline(
        &url,
        &input,
        "sinker",
        &sink_url,
        &format!("{output}.results"),
    );
    let mut fleet = Fleet::new(&tributary_bin(), &yaml, &[])?;
    fleet.add()?;
    let subject = format!("{input}.events");
    produce(&js, &subject, 0..n / 2, 2000).await?;
    poll::until(
        "the first half in the sink's stream",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let (js, output) = (own_js.clone(), output.clone());
            async move { anyhow::Ok((out_len(&js, &output).await? >= n / 2).then_some(())) }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", fleet.log_tails(20)))?;
    drop(own_js);

    own.kill9();
    produce(&js, &subject, n / 2..n, 2000).await?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let info = durable(&js, &input, "sinker").await?.cached_info().clone();
    eprintln!(
        "nats sink: {} messages unacknowledged at the source after 20 s of outage",
        info.num_ack_pending
    );
    ensure!(
        info.num_ack_pending > 0,
        "the source acknowledged input the sink could not write"
    );
    fleet.check_alive()?;
    own.restart()?;
    let own_js = connect_own().await?;

    let duplicates = every_number(&own_js, &output, n, &fleet).await?;
    eprintln!("nats sink: all {n} records landed after the outage, {duplicates} duplicates");
    let failed = fleet.stop_all(Duration::from_secs(30)).await?;
    ensure!(failed.is_empty(), "replicas failed: {failed:?}");
    Ok(())
}
