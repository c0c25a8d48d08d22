//! A compacted Kafka topic as a lookup table: read to its end before the
//! step starts, then followed on a background thread (latest value per key;
//! a null value, a tombstone, deletes the key), as a Kafka Streams
//! `GlobalKTable` is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use serde_json::Value;

/// How long reading the topic to its end may take before the step fails.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Broker round trips (metadata, end offsets).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll interval of the follower; also how quickly it stops.
const POLL: Duration = Duration::from_millis(100);

type Rows = Arc<RwLock<FxHashMap<String, Value>>>;

/// The rows of a topic by record key, kept current by a follower thread.
pub struct KafkaTable {
    rows: Rows,
    stop: Arc<AtomicBool>,
    follower: Option<JoinHandle<()>>,
}

/// Tables by (brokers, topic), shared by every build of the steps in this
/// process: the Kafka runtime builds a chain per partition task (and once
/// more for the step names), and each should not read and follow the topic
/// again. A pipeline process runs one pipeline, so a table lives as long as
/// the process.
static SHARED: OnceLock<Mutex<Tables>> = OnceLock::new();

/// Started tables by (brokers, topic).
type Tables = FxHashMap<(String, String), Arc<KafkaTable>>;

impl KafkaTable {
    /// The process's table for `topic` on `brokers`, started (read to its
    /// end) on first use.
    ///
    /// # Errors
    /// As [`KafkaTable::start`].
    pub fn shared(brokers: &str, topic: &str) -> Result<Arc<Self>, String> {
        let mut tables = SHARED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = (brokers.to_owned(), topic.to_owned());
        if let Some(t) = tables.get(&id) {
            return Ok(t.clone());
        }
        let t = Arc::new(Self::start(brokers, topic)?);
        tables.insert(id, t.clone());
        Ok(t)
    }

    /// Reads `topic` on `brokers` to its end, then follows it.
    ///
    /// # Errors
    /// When the topic does not exist or is not read to its end in time.
    pub fn start(brokers: &str, topic: &str) -> Result<Self, String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set(
                "group.id",
                format!("tributary-enrich-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| format!("Kafka client for table {topic}: {e}"))?;
        let ends = assign_all(&consumer, topic)?;
        let rows: Rows = Arc::default();
        read_to_end(&consumer, topic, &rows, ends)?;
        let stop = Arc::new(AtomicBool::new(false));
        let follower = {
            let (rows, stop, topic) = (rows.clone(), stop.clone(), topic.to_owned());
            std::thread::Builder::new()
                .name("enrich-table".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match consumer.poll(POLL) {
                            Some(Ok(m)) => apply(&rows, &m),
                            Some(Err(e)) => {
                                tracing::warn!(%topic, error = %e, "enrich table read failed; retrying");
                            }
                            None => {}
                        }
                    }
                })
                .map_err(|e| format!("cannot start the table follower: {e}"))?
        };
        Ok(Self {
            rows,
            stop,
            follower: Some(follower),
        })
    }

    /// The row with `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.read().get(key).cloned()
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, FxHashMap<String, Value>> {
        // A poisoned lock only means the follower panicked mid-insert; the
        // map itself is still a valid map.
        self.rows
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for KafkaTable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.follower.take() {
            let _ = t.join();
        }
    }
}

/// Assigns every partition from the beginning; returns each partition's
/// end offset at this moment (what "read to the end" means).
fn assign_all(consumer: &BaseConsumer, topic: &str) -> Result<Vec<(i32, i64)>, String> {
    let md = consumer
        .fetch_metadata(Some(topic), CALL_TIMEOUT)
        .map_err(|e| format!("metadata of table topic {topic}: {e}"))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| {
            t.partitions()
                .iter()
                .map(rdkafka::metadata::MetadataPartition::id)
        })
        .collect();
    if parts.is_empty() {
        return Err(format!("table topic {topic} does not exist on the brokers"));
    }
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::with_capacity(parts.len());
    for p in parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        let (low, high) = consumer
            .fetch_watermarks(topic, p, CALL_TIMEOUT)
            .map_err(|e| format!("end offset of {topic}/{p}: {e}"))?;
        // An empty partition has nothing to read before the step starts.
        if high > low {
            ends.push((p, high));
        }
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("assign {topic}: {e}"))?;
    Ok(ends)
}

/// Polls until every partition's position reached its end offset.
fn read_to_end(
    consumer: &BaseConsumer,
    topic: &str,
    rows: &Rows,
    mut pending: Vec<(i32, i64)>,
) -> Result<(), String> {
    let started = Instant::now();
    // `position` is the next offset to read: a partition is done once it
    // reaches the end offset taken before reading.
    let done = |pending: &mut Vec<(i32, i64)>, consumer: &BaseConsumer| {
        let Ok(pos) = consumer.position() else { return };
        pending.retain(|&(p, end)| {
            let at = pos
                .find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(0);
            at < end
        });
    };
    while !pending.is_empty() {
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "table topic {topic} not read to its end within {READY_TIMEOUT:?} (partitions left: {pending:?})"
            ));
        }
        match consumer.poll(POLL) {
            Some(Ok(m)) => apply(rows, &m),
            Some(Err(e)) => return Err(format!("reading table topic {topic}: {e}")),
            None => {}
        }
        done(&mut pending, consumer);
    }
    Ok(())
}

/// Applies one record: a JSON value sets the key's row, a null value deletes it.
fn apply(rows: &Rows, m: &BorrowedMessage<'_>) {
    let Some(key) = m.key().map(|k| String::from_utf8_lossy(k).into_owned()) else {
        return;
    };
    let mut rows = rows
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match m.payload() {
        None => {
            rows.remove(&key);
        }
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Null) => {
                rows.remove(&key);
            }
            Ok(v) => {
                rows.insert(key, v);
            }
            Err(e) => {
                tracing::warn!(topic = m.topic(), offset = m.offset(), error = %e, "enrich table row is not JSON; skipped");
            }
        },
    }
}
