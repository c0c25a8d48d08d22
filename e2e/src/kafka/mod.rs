//! Kafka helpers for the pipeline tests and the load program: topics,
//! producers, readers that read a topic to its end, consumer-group
//! positions, and the toxiproxy switch in front of the broker.
//!
//! # Layout
//!
//! - this file: clients and admin calls;
//! - [`workload`]: numbered, keyed events and the brute-force expected
//!   window counts;
//! - [`pipeline`]: the `StreamPipeline` YAML the tests run;
//! - [`output`]: reading results and dead letters back, and the checkers.

pub mod output;
pub mod pipeline;
pub mod workload;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

use crate::env::TestBed;

/// How long one broker call may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Errors talking to Kafka or toxiproxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client call failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Creating a topic failed.
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: String,
    },
    /// A topic has no metadata (it does not exist).
    #[error("topic {0} is unknown to the broker")]
    NoTopic(String),
    /// Producing a record failed.
    #[error("producing to {topic}: {source}")]
    Produce {
        /// The topic.
        topic: String,
        /// Why.
        #[source]
        source: KafkaError,
    },
    /// The toxiproxy REST API refused or answered something else.
    #[error("toxiproxy: {0}")]
    Toxiproxy(String),
    /// An HTTP call failed.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The test bed does not describe what is needed.
    #[error(transparent)]
    Env(#[from] crate::env::Error),
    /// A condition did not hold in time.
    #[error(transparent)]
    Timeout(#[from] crate::poll::Timeout),
}

/// Result of the Kafka helpers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client config bootstrapped on `bootstrap`.
#[must_use]
pub fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates `name` with `partitions` partitions (replication 1: one broker).
///
/// # Errors
///
/// When the broker refuses (the topic exists, …).
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await?;
    admin_results(results)
}

/// Grows `name` to `total` partitions.
///
/// # Errors
///
/// When the broker refuses (fewer partitions than now, …).
pub async fn add_partitions(bootstrap: &str, name: &str, total: usize) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create()?;
    let results = admin
        .create_partitions(
            &[rdkafka::admin::NewPartitions::new(name, total)],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await?;
    admin_results(results)
}

/// Deletes the records of `topic` below `below[p]` on every partition `p`
/// (`DeleteRecords`: the broker moves the partition's low watermark
/// there) and returns the low watermarks the broker reports after it.
///
/// # Errors
///
/// When the broker refuses for any partition (an offset past its high
/// watermark, …).
pub async fn delete_records(bootstrap: &str, topic: &str, below: &[i64]) -> Result<Vec<i64>> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in (0..).zip(below) {
        tpl.add_partition_offset(topic, p, Offset::Offset(*offset))?;
    }
    let done = admin
        .delete_records(&tpl, &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await?;
    (0..)
        .zip(below)
        .map(|(p, _)| {
            let e = done
                .find_partition(topic, p)
                .ok_or_else(|| Error::NoTopic(format!("{topic}/{p}")))?;
            e.error()?;
            Ok(match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            })
        })
        .collect()
}

/// The configuration of `topic` as the broker describes it (every entry
/// with a value, defaults included), by name.
///
/// # Errors
///
/// [`Error::NoTopic`] when the topic does not exist; when the broker does
/// not answer.
pub async fn topic_config(
    bootstrap: &str,
    topic: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create()?;
    let results = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(TIMEOUT)),
        )
        .await?;
    let mut out = std::collections::BTreeMap::new();
    for r in results {
        let resource = r.map_err(|code| match code {
            RDKafkaErrorCode::UnknownTopicOrPartition => Error::NoTopic(topic.to_owned()),
            code => KafkaError::AdminOp(code).into(),
        })?;
        out.extend(
            resource
                .entries
                .into_iter()
                .filter_map(|e| Some((e.name, e.value?))),
        );
    }
    // Some brokers describe an unknown topic as one without entries.
    if out.is_empty() {
        return Err(Error::NoTopic(topic.to_owned()));
    }
    Ok(out)
}

/// The first refusal among an admin call's per-topic results.
fn admin_results(results: Vec<rdkafka::admin::TopicResult>) -> Result<()> {
    for r in results {
        r.map_err(|(topic, code)| Error::CreateTopic {
            topic,
            code: code.to_string(),
        })?;
    }
    Ok(())
}

/// An idempotent producer that batches for throughput (acks=all, so a
/// delivered record is in the log).
///
/// # Errors
///
/// When the client cannot be created.
pub fn producer(bootstrap: &str) -> Result<FutureProducer> {
    Ok(config(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000")
        .create()?)
}

/// A consumer outside any pipeline's group (`group` should be unique) that
/// reads from the beginning; `read_committed` hides aborted and open
/// transactions, as a downstream consumer of exactly-once output must.
///
/// # Errors
///
/// When the client cannot be created.
pub fn reader(bootstrap: &str, group: &str, read_committed: bool) -> Result<StreamConsumer> {
    Ok(config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()?)
}

/// A plain consumer for metadata, watermarks and committed offsets of
/// `group` (it never joins the group).
fn observer(bootstrap: &str, group: &str) -> Result<BaseConsumer> {
    Ok(config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?)
}

/// The number of partitions of `topic`.
///
/// # Errors
///
/// When the topic does not exist or the broker does not answer.
pub fn partitions(bootstrap: &str, topic: &str) -> Result<i32> {
    partition_count(&observer(bootstrap, "tributary-e2e-observer")?, topic)
}

fn partition_count(c: &BaseConsumer, topic: &str) -> Result<i32> {
    let md = c.fetch_metadata(Some(topic), TIMEOUT)?;
    let n = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if n == 0 {
        return Err(Error::NoTopic(topic.to_owned()));
    }
    Ok(i32::try_from(n).unwrap_or(i32::MAX))
}

/// The high watermark (next offset to be written) of every partition of
/// `topic`, by partition.
///
/// # Errors
///
/// When the broker does not answer.
pub fn high_watermarks(bootstrap: &str, topic: &str) -> Result<Vec<i64>> {
    Ok(positions(bootstrap, "tributary-e2e-observer", topic)?.0)
}

/// The low watermarks (the oldest offset still held) of every partition
/// of `topic`, by partition.
///
/// # Errors
///
/// When the broker does not answer.
pub fn low_watermarks(bootstrap: &str, topic: &str) -> Result<Vec<i64>> {
    let c = observer(bootstrap, "tributary-e2e-observer")?;
    let n = partition_count(&c, topic)?;
    (0..n)
        .map(|p| Ok(c.fetch_watermarks(topic, p, TIMEOUT)?.0))
        .collect()
}

/// The offsets `group` committed on every partition of `topic`, by
/// partition (0 where it committed none).
///
/// # Errors
///
/// When the broker does not answer.
pub fn committed(bootstrap: &str, group: &str, topic: &str) -> Result<Vec<i64>> {
    Ok(positions(bootstrap, group, topic)?.1)
}

/// `group`'s total lag on `topic`: records written but not yet committed.
///
/// # Errors
///
/// When the broker does not answer.
pub fn lag(bootstrap: &str, group: &str, topic: &str) -> Result<i64> {
    let (high, done) = positions(bootstrap, group, topic)?;
    Ok(high.iter().zip(&done).map(|(h, c)| (h - c).max(0)).sum())
}

/// High watermarks and `group`'s committed offsets of every partition of
/// `topic`, with one client and one metadata request (tests poll this).
fn positions(bootstrap: &str, group: &str, topic: &str) -> Result<(Vec<i64>, Vec<i64>)> {
    let c = observer(bootstrap, group)?;
    let n = partition_count(&c, topic)?;
    let high = (0..n)
        .map(|p| Ok(c.fetch_watermarks(topic, p, TIMEOUT)?.1))
        .collect::<Result<Vec<_>>>()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, TIMEOUT)?;
    let done = (0..n)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        })
        .collect();
    Ok((high, done))
}

/// Enables or disables the test bed's toxiproxy proxy in front of Kafka
/// (`KAFKA_BOOTSTRAP_PROXIED`); disabled, it refuses and drops every
/// connection through it.
///
/// # Errors
///
/// When toxiproxy refuses or does not reach the wanted state.
pub async fn set_proxy(bed: &TestBed, enabled: bool) -> Result<()> {
    let url = format!(
        "{}/proxies/{}",
        bed.var("TOXIPROXY_URL")?,
        bed.var("TOXIPROXY_KAFKA_PROXY")?
    );
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({ "enabled": enabled }))
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(Error::Toxiproxy(format!("POST {url}: {}", resp.status())));
    }
    let state: serde_json::Value = reqwest::get(&url).await?.json().await?;
    if state["enabled"] != enabled {
        return Err(Error::Toxiproxy(format!("{url} is {state}")));
    }
    Ok(())
}
