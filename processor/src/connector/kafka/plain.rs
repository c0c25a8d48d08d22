//! A Kafka topic read as a plain source: the `with` side of a `join`
//! whose main source is not Kafka. Every partition is assigned (no
//! consumer group membership, nothing committed) from `startFrom`, and its
//! records are decoded and timestamped exactly as a file's would be. SASL
//! and TLS come from `with.kafka.auth`, as for the main source.
//!
//! # Guarantees
//! At-least-once for the join's output as a whole: the topic is re-read
//! from `startFrom` on every run, so nothing it held is lost, and a
//! restarted run repeats pairs it already emitted.
//!
//! # New partitions
//! Every `TRIBUTARY_PARTITION_DISCOVERY_MS` (default 30 s) the topic's
//! metadata is read again; partitions added since are assigned from their
//! beginning (everything in them is new to the run), as Flink's Kafka
//! source discovers partitions. Until a new partition shows its first
//! record it does not hold the watermark back, so records written to it
//! before it was discovered may be late.
//!
//! # Caveats
//! The topic is unbounded: the run ends only when stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tributary_crds::{JoinKafka, StartFrom};

use crate::flow::{Batch, Message, Queue};
use crate::record::Position;
use crate::source::{BATCH, Decoder, Running, SourceError, now_ms};

/// Broker round trips (metadata).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one poll waits; also how quickly the thread sees `stop`.
const POLL: Duration = Duration::from_millis(100);
/// Overrides how often the topic is checked for new partitions (ms).
pub const DISCOVERY_ENV: &str = "TRIBUTARY_PARTITION_DISCOVERY_MS";
/// How often the topic is checked for new partitions by default.
const DISCOVERY: Duration = Duration::from_secs(30);

/// The partition discovery interval: [`DISCOVERY_ENV`], else 30 s.
fn discovery_interval() -> Duration {
    crate::runtime::env_millis(DISCOVERY_ENV, DISCOVERY)
}

/// The partitions of `topic` in the brokers' metadata.
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, String> {
    let md = consumer
        .fetch_metadata(Some(topic), CALL_TIMEOUT)
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// The partitions of `now` not in `known`, in order.
#[must_use]
pub fn added(known: &[i32], now: &[i32]) -> Vec<i32> {
    let mut new: Vec<i32> = now.iter().copied().filter(|p| !known.contains(p)).collect();
    new.sort_unstable();
    new
}

fn connect(message: String) -> SourceError {
    SourceError::Connect {
        kind: "join.with.kafka",
        message,
    }
}

/// Assigns every partition of `k.topic` from `k.startFrom` and starts a
/// thread that pushes its records into `queue` until `stop` is set.
///
/// # Errors
/// [`SourceError::Connect`] when the client cannot be created or the topic
/// does not exist.
pub fn start(
    k: &JoinKafka,
    decoder: Decoder,
    queue: Arc<Queue>,
    stop: Arc<AtomicBool>,
) -> Result<Running, SourceError> {
    let brokers = k.brokers.as_deref().unwrap_or_default();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // librdkafka wants a group id; nothing joins or commits under it.
        .set("group.id", format!("tributary-join-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    super::config::apply_auth_at(&mut config, k.auth.as_ref(), "join.with.kafka.auth")
        .map_err(|e| connect(e.to_string()))?;
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| connect(format!("brokers: cannot create a Kafka client: {e}")))?;
    let topic = k.topic.clone();
    let partitions = partitions_of(&consumer, &topic)
        .map_err(|e| connect(format!("topic: {e} on {brokers}")))?;
    if partitions.is_empty() {
        return Err(connect(format!(
            "topic: {topic} does not exist on {brokers} (create it first)"
        )));
    }
    let from = match k.start_from {
        StartFrom::Earliest => Offset::Beginning,
        StartFrom::Latest => Offset::End,
    };
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(&topic, p, from)
            .map_err(|e| connect(format!("topic: {e}")))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| connect(format!("topic: assign {topic}: {e}")))?;
    let known = partitions.clone();
    let handle = std::thread::Builder::new()
        .name("join-kafka".into())
        .spawn(move || run(&consumer, &topic, known, &decoder, &queue, &stop))
        .map_err(|source| SourceError::Open {
            path: "join kafka thread".into(),
            source,
        })?;
    Ok(Running {
        handle,
        partitions,
        bounded: false,
        acker: None,
    })
}

/// Assigns partitions added to `topic` since `known`, from their beginning.
fn discover(consumer: &BaseConsumer, topic: &str, known: &mut Vec<i32>) {
    let now = match partitions_of(consumer, topic) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%topic, error = %e, "join input: cannot check for new partitions; retrying later");
            return;
        }
    };
    let new = added(known, &now);
    if new.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for &p in &new {
        if let Err(e) = tpl.add_partition_offset(topic, p, Offset::Beginning) {
            tracing::warn!(%topic, partition = p, error = %e, "join input: cannot add a new partition");
            return;
        }
    }
    match consumer.incremental_assign(&tpl) {
        Ok(()) => {
            tracing::info!(%topic, partitions = ?new, "join input: new partitions assigned from their beginning");
            known.extend(new);
        }
        Err(e) => {
            tracing::warn!(%topic, error = %e, "join input: cannot assign new partitions; retrying later")
        }
    }
}

/// Polls until `stop`, handing over one batch per partition whenever
/// [`BATCH`] records are buffered or the consumer has nothing more ready;
/// checks for new partitions every [`discovery_interval`].
fn run(
    consumer: &BaseConsumer,
    topic: &str,
    mut known: Vec<i32>,
    decoder: &Decoder,
    queue: &Queue,
    stop: &AtomicBool,
) {
    let name: Arc<str> = topic.into();
    let mut pending: BTreeMap<i32, Batch> = BTreeMap::new();
    let mut buffered = 0usize;
    let every = discovery_interval();
    let mut checked = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if checked.elapsed() >= every {
            checked = std::time::Instant::now();
            discover(consumer, topic, &mut known);
        }
        // Wait for the first record, then take what is ready at once.
        let wait = if buffered == 0 { POLL } else { Duration::ZERO };
        match consumer.poll(wait) {
            Some(Ok(m)) => {
                let position = Position {
                    source: name.clone(),
                    partition: m.partition(),
                    offset: m.offset(),
                };
                let ts = m.timestamp().to_millis().unwrap_or_else(now_ms);
                let decoded = decoder.decode_at(m.payload().unwrap_or_default(), position, ts);
                let key = m.key().map(|k| Arc::from(String::from_utf8_lossy(k)));
                let batch = pending.entry(m.partition()).or_insert_with(|| Batch {
                    partition: m.partition(),
                    records: Vec::with_capacity(BATCH),
                    dead: Vec::new(),
                    created: Some(std::time::Instant::now()),
                });
                match decoded {
                    Ok(mut rec) => {
                        rec.key = key;
                        batch.records.push(rec);
                    }
                    Err(mut dl) => {
                        dl.record.key = key;
                        batch.dead.push(*dl);
                    }
                }
                buffered += 1;
                if buffered < BATCH {
                    continue;
                }
            }
            Some(Err(e)) => {
                // librdkafka retries by itself (broker down, leader moved).
                tracing::warn!(%topic, error = %e, "join input read failed; retrying");
            }
            None => {}
        }
        for (_, b) in std::mem::take(&mut pending) {
            queue.push(Message::Batch(b));
        }
        buffered = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partitions_not_known_are_added_in_order() {
        assert_eq!(added(&[0, 1, 2], &[2, 0, 1]), Vec::<i32>::new());
        assert_eq!(added(&[0, 1], &[4, 0, 1, 3, 2]), vec![2, 3, 4]);
    }
}
