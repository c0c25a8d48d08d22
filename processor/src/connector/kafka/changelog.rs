//! The changelog: each task's step state, written at every checkpoint into
//! a compacted topic, so that a task moved by a rebalance (or restarted)
//! resumes at its committed offset instead of re-reading its input.
//!
//! # Layout
//! Topic `<group>-changelog`, `cleanup.policy=compact`. Task
//! `topic:partition` writes to changelog partition `partition % n`, under
//! the keys `topic:partition#0`, `#1`, … (a large state is cut into
//! [`CHUNK`]-byte records, as brokers take 1 MiB by default). Compaction
//! keeps the latest of each key; a snapshot that shrank tombstones the
//! chunks it no longer has.
//!
//! # Consistency
//! Every snapshot has a fresh id, and the offset metadata committed with
//! the task's position names it (`Meta::snap`). Under `exactlyOnce` the
//! chunks are in the checkpoint's transaction, so they are visible to a
//! `read_committed` reader exactly when the position is; under
//! `atLeastOnce` they are flushed before the offsets commit. A restore
//! takes only the chunks of the id its committed metadata names: a
//! snapshot from an aborted transaction, a crash between flush and commit,
//! or an older run is never mixed in. When the snapshot cannot be read (a
//! topic deleted, a spec whose steps changed), the task restores by replay
//! from the low-water offset, which every checkpoint still records.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::producer::BaseRecord;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tributary_crds::StreamPipelineSpec;

use super::repartition::Upstream;
use super::sink::{SharedProducer, flush_checked, send_waiting};
use crate::sink::SinkError;
use crate::step::{Snapshot, Step};

/// Bumped when the encoding of a task's state changes incompatibly: an
/// older snapshot is then ignored and the task restores by replay.
const VERSION: u32 = 1;
/// Largest chunk of a snapshot, in bytes.
pub const CHUNK: usize = 512 * 1024;
/// How long a restore may read the changelog before it gives up on the
/// snapshots it has not found and replays instead.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Low bits of a snapshot id that are not its write time.
const ID_BITS: u32 = 20;
/// A restore reads from this long before a snapshot's write time: a
/// snapshot's chunks are written within one checkpoint.
const READ_MARGIN_MS: i64 = 10_000;

/// When the snapshot `id` was written (epoch ms).
#[must_use]
pub fn written_at(id: u64) -> i64 {
    i64::try_from(id >> ID_BITS).unwrap_or(i64::MAX)
}

/// Set to `off` to write no changelog (restore by replay only).
pub const ENV: &str = "TRIBUTARY_CHANGELOG";

/// Compaction keeps the latest snapshot of each task; small segments let
/// the cleaner reach it soon, so a restore reads little besides it.
const TOPIC_SETTINGS: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("segment.ms", "600000"),
    ("segment.bytes", "67108864"),
    ("min.cleanable.dirty.ratio", "0.1"),
    ("delete.retention.ms", "3600000"),
];

/// Creates (unless it exists) the changelog of consumer group `group`
/// reading `topics`, with as many partitions as the widest of them, and
/// a writer into it.
///
/// # Errors
/// When the brokers refuse the topic or its metadata.
pub fn open(
    admin: &ClientConfig,
    group: &str,
    topics: &[String],
    producer: SharedProducer,
    reader: ClientConfig,
    fingerprints: Vec<u64>,
    bytes: prometheus::IntCounter,
) -> Result<Changelog, String> {
    let client: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = admin
        .create()
        .map_err(|e| format!("creating an admin client: {e}"))?;
    let md = client
        .inner()
        .fetch_metadata(None, Duration::from_secs(30))
        .map_err(|e| format!("reading the topics' metadata: {e}"))?;
    let widest = md
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|n| n == t.name()))
        .map(|t| t.partitions().len())
        .max()
        .unwrap_or(1);
    let widest = i32::try_from(widest).unwrap_or(i32::MAX).max(1);
    let name = topic(group);
    let partitions =
        super::repartition::admin::ensure_topic_with(admin, &name, widest, TOPIC_SETTINGS)?;
    Ok(Changelog::new(
        name,
        partitions,
        producer,
        reader,
        fingerprints,
        bytes,
    ))
}

/// The changelog topic of consumer group `group`.
#[must_use]
pub fn topic(group: &str) -> String {
    format!("{group}-changelog")
}

/// Why a pipeline writes no changelog, or `None` when it does: every step
/// must be able to write its state, else its tasks restore by replay (and
/// then every step of a task must, since a replay rebuilds them all).
#[must_use]
pub fn unsupported(steps: &[Box<dyn Step>]) -> Option<String> {
    if std::env::var(ENV).is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
        return Some(format!("{ENV}=off"));
    }
    steps
        .iter()
        .find(|s| s.snapshot() == Snapshot::Unsupported)
        .map(|s| {
            format!(
                "step {} cannot write its state to a changelog yet",
                s.name()
            )
        })
}

/// A fingerprint per step of `spec`: a snapshot is taken back only by the
/// same step (a changed window size or key makes the state meaningless).
#[must_use]
pub fn fingerprints(spec: &StreamPipelineSpec) -> Vec<u64> {
    spec.steps
        .iter()
        .map(|s| {
            let json = serde_json::to_string(s).unwrap_or_default();
            let mut h = rustc_hash::FxHasher::default();
            h.write(json.as_bytes());
            h.finish()
        })
        .collect()
}

/// One task's state at a checkpoint.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaskState {
    /// [`VERSION`] of the writer.
    pub version: u32,
    /// The task's watermark.
    pub wm: i64,
    /// Behind a repartition topic: what the task heard from upstream.
    pub upstream: Option<Upstream>,
    /// Per step of the task's chain, in order.
    pub steps: Vec<StepState>,
}

/// One step's part of a [`TaskState`].
#[derive(Debug, Serialize, Deserialize)]
pub struct StepState {
    /// The step's fingerprint (see [`fingerprints`]).
    pub fingerprint: u64,
    /// The encoded state; `None` for a stateless step.
    #[serde(with = "serde_bytes")]
    pub state: Option<Vec<u8>>,
}

impl TaskState {
    /// The state of `steps`, or `None` when one of them cannot write it.
    #[must_use]
    pub fn of(
        steps: &[Box<dyn Step>],
        fingerprints: &[u64],
        wm: i64,
        upstream: Option<&Upstream>,
    ) -> Option<TaskState> {
        let mut out = Vec::with_capacity(steps.len());
        for (i, s) in steps.iter().enumerate() {
            let state = match s.snapshot() {
                Snapshot::Stateless => None,
                Snapshot::State(b) => Some(b),
                Snapshot::Unsupported => return None,
            };
            out.push(StepState {
                fingerprint: fingerprints.get(i).copied().unwrap_or_default(),
                state,
            });
        }
        Some(TaskState {
            version: VERSION,
            wm,
            upstream: upstream.cloned(),
            steps: out,
        })
    }

    /// A hash of the state, to tell whether it changed since the last
    /// snapshot.
    #[must_use]
    pub fn hash(&self) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        h.write_i64(self.wm);
        for s in &self.steps {
            h.write_u64(s.fingerprint);
            if let Some(b) = &s.state {
                h.write_usize(b.len());
                h.write(b);
            }
        }
        if let Some(u) = &self.upstream {
            u.hash_into(&mut h);
        }
        h.finish()
    }

    /// Puts the state back into freshly built `steps`.
    ///
    /// # Errors
    /// What does not fit: another version, other steps, a state that does
    /// not decode. The steps are then partly restored and must be rebuilt.
    pub fn restore_into(
        &self,
        steps: &mut [Box<dyn Step>],
        fingerprints: &[u64],
    ) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!(
                "written by state version {}, this is {VERSION}",
                self.version
            ));
        }
        if self.steps.len() != steps.len() {
            return Err(format!(
                "{} steps in the snapshot, {} in the spec",
                self.steps.len(),
                steps.len()
            ));
        }
        for (i, (step, saved)) in steps.iter_mut().zip(&self.steps).enumerate() {
            if fingerprints.get(i) != Some(&saved.fingerprint) {
                return Err(format!("step {} changed since the snapshot", step.name()));
            }
            if let Some(bytes) = &saved.state {
                step.restore(bytes)
                    .map_err(|e| format!("step {}: {e}", step.name()))?;
            }
        }
        Ok(())
    }
}

/// One record of the changelog.
#[derive(Serialize, Deserialize)]
struct Chunk<'a> {
    id: u64,
    index: u32,
    count: u32,
    #[serde(with = "serde_bytes", borrow)]
    bytes: std::borrow::Cow<'a, [u8]>,
}

/// Writes snapshots into the changelog topic.
pub struct Changelog {
    topic: String,
    partitions: i32,
    producer: SharedProducer,
    /// A consumer's settings for reading it back.
    reader: ClientConfig,
    /// Per step of the spec.
    pub fingerprints: Vec<u64>,
    /// Per task: the chunks its latest snapshot has (to tombstone leftovers).
    chunks: HashMap<String, u32>,
    /// Random per process: snapshot ids never repeat across replicas.
    seed: std::collections::hash_map::RandomState,
    counter: u64,
    failures_seen: u64,
    /// `tributary_changelog_bytes_total`.
    bytes: prometheus::IntCounter,
}

impl Changelog {
    /// A writer into `topic` of `partitions`.
    #[must_use]
    pub fn new(
        topic: String,
        partitions: i32,
        producer: SharedProducer,
        reader: ClientConfig,
        fingerprints: Vec<u64>,
        bytes: prometheus::IntCounter,
    ) -> Self {
        Self {
            topic,
            partitions: partitions.max(1),
            producer,
            reader,
            fingerprints,
            chunks: HashMap::new(),
            seed: std::collections::hash_map::RandomState::new(),
            counter: 0,
            failures_seen: 0,
            bytes,
        }
    }

    /// The topic's name.
    #[must_use]
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// A fresh snapshot id: the write time in ms (high 44 bits, so a
    /// restore can start reading near it, see [`written_at`]) and 20 bits
    /// from a per-process random sequence, so two replicas writing in the
    /// same millisecond (a zombie and its successor) still differ.
    fn next_id(&mut self) -> u64 {
        self.counter += 1;
        let mut h = self.seed.build_hasher();
        h.write_u64(self.counter);
        let now = u64::try_from(crate::source::now_ms()).unwrap_or(0);
        (now << ID_BITS) | (h.finish() & ((1 << ID_BITS) - 1))
    }

    fn partition_of(&self, partition: i32) -> i32 {
        partition.rem_euclid(self.partitions)
    }

    /// Writes `state` as task `task`'s (of input `partition`) latest
    /// snapshot; returns its id.
    ///
    /// # Errors
    /// When the state does not encode or the producer refuses a record.
    pub fn write(
        &mut self,
        task: &str,
        partition: i32,
        state: &TaskState,
    ) -> Result<u64, SinkError> {
        let err = |message: String| SinkError::Broker {
            name: "changelog".into(),
            message,
        };
        let bytes = rmp_serde::to_vec_named(state).map_err(|e| err(e.to_string()))?;
        let id = self.next_id();
        let count =
            u32::try_from(bytes.len().div_ceil(CHUNK).max(1)).map_err(|e| err(e.to_string()))?;
        let part = self.partition_of(partition);
        let producer = self.producer.get();
        let mut buf = Vec::with_capacity(CHUNK.min(bytes.len()) + 64);
        for (index, piece) in (0..count).zip(bytes.chunks(CHUNK)) {
            let chunk = Chunk {
                id,
                index,
                count,
                bytes: std::borrow::Cow::Borrowed(piece),
            };
            buf.clear();
            rmp_serde::encode::write_named(&mut buf, &chunk).map_err(|e| err(e.to_string()))?;
            let key = format!("{task}#{index}");
            let record = BaseRecord::to(&self.topic)
                .partition(part)
                .key(key.as_bytes())
                .payload(buf.as_slice());
            send_waiting(&producer, record, "changelog", &self.topic)?;
            self.bytes.inc_by(buf.len() as u64);
        }
        let before = self.chunks.insert(task.to_owned(), count).unwrap_or(0);
        for index in count..before {
            let key = format!("{task}#{index}");
            let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic)
                .partition(part)
                .key(key.as_bytes());
            send_waiting(&producer, record, "changelog", &self.topic)?;
        }
        Ok(id)
    }

    /// `atLeastOnce`: waits until every chunk is acknowledged.
    ///
    /// # Errors
    /// When a chunk could not be delivered.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        let producer = self.producer.get();
        flush_checked(&producer, &mut self.failures_seen).map_err(|message| SinkError::Broker {
            name: "changelog".into(),
            message,
        })
    }

    /// Where to start reading each changelog partition `wanted` needs,
    /// and those partitions: from the first record written a margin before
    /// the oldest wanted snapshot (by timestamp), not from the beginning of
    /// a partition compaction has not reached yet.
    fn start_offsets(
        &self,
        consumer: &BaseConsumer,
        wanted: &HashMap<String, (i32, u64)>,
    ) -> Result<(TopicPartitionList, Vec<i32>), String> {
        let mut since: HashMap<i32, i64> = HashMap::new();
        for &(p, id) in wanted.values() {
            let at = written_at(id).saturating_sub(READ_MARGIN_MS);
            since
                .entry(self.partition_of(p))
                .and_modify(|t| *t = (*t).min(at))
                .or_insert(at);
        }
        let mut open: Vec<i32> = since.keys().copied().collect();
        open.sort_unstable();
        let mut by_time = TopicPartitionList::new();
        for &p in &open {
            by_time
                .add_partition_offset(&self.topic, p, Offset::Offset(since[&p]))
                .map_err(|e| e.to_string())?;
        }
        let mut tpl = TopicPartitionList::new();
        match consumer.offsets_for_times(by_time, Duration::from_secs(10)) {
            Ok(found) => {
                for e in found.elements() {
                    // No record that late: the snapshot is not there.
                    let at = match e.offset() {
                        Offset::Offset(o) => Offset::Offset(o),
                        _ => Offset::End,
                    };
                    tpl.add_partition_offset(&self.topic, e.partition(), at)
                        .map_err(|e| e.to_string())?;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "no offsets by time; reading the changelog from its start");
                for &p in &open {
                    tpl.add_partition_offset(&self.topic, p, Offset::Beginning)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok((tpl, open))
    }

    /// Reads the snapshots `wanted` (task → (input partition, snapshot
    /// id)) back; a task whose snapshot is not found is left out (it
    /// restores by replay).
    ///
    /// # Errors
    /// When the changelog cannot be read at all.
    pub fn read(
        &mut self,
        wanted: &HashMap<String, (i32, u64)>,
        stop: &AtomicBool,
    ) -> Result<HashMap<String, TaskState>, String> {
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        let consumer: BaseConsumer = self
            .reader
            .create()
            .map_err(|e| format!("creating a changelog reader: {e}"))?;
        let (tpl, mut open) = self.start_offsets(&consumer, wanted)?;
        consumer
            .assign(&tpl)
            .map_err(|e| format!("reading {}: {e}", self.topic))?;
        let mut found: HashMap<&str, Vec<Option<Vec<u8>>>> = HashMap::new();
        let deadline = Instant::now() + READ_TIMEOUT;
        while !open.is_empty() && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let Some((task, &(_, id))) = m
                        .key()
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .and_then(|k| k.rsplit_once('#'))
                        .and_then(|(task, _)| wanted.get_key_value(task))
                    else {
                        continue;
                    };
                    let Some(chunk) = m
                        .payload()
                        .and_then(|p| rmp_serde::from_slice::<Chunk<'_>>(p).ok())
                    else {
                        continue;
                    };
                    if chunk.id != id {
                        continue;
                    }
                    let slots = found
                        .entry(task.as_str())
                        .or_insert_with(|| vec![None; chunk.count as usize]);
                    if let Some(slot) = slots.get_mut(chunk.index as usize) {
                        *slot = Some(chunk.bytes.into_owned());
                    }
                    // Done early once every wanted snapshot is whole.
                    if found.len() == wanted.len()
                        && found.values().all(|s| s.iter().all(Option::is_some))
                    {
                        break;
                    }
                }
                Some(Err(RdError::PartitionEOF(p))) => open.retain(|&q| q != p),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic = %self.topic, "reading the changelog")
                }
                None => {}
            }
        }
        let mut out = HashMap::new();
        for (task, slots) in found {
            let Some(parts) = slots.into_iter().collect::<Option<Vec<_>>>() else {
                tracing::warn!(
                    task,
                    "the changelog snapshot is incomplete; restoring by replay"
                );
                continue;
            };
            match rmp_serde::from_slice::<TaskState>(&parts.concat()) {
                Ok(state) => {
                    self.chunks
                        .insert(task.to_owned(), u32::try_from(parts.len()).unwrap_or(0));
                    out.insert(task.to_owned(), state);
                }
                Err(e) => {
                    tracing::warn!(task, error = %e, "the changelog snapshot does not decode; restoring by replay")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::build;

    fn spec(window: &str) -> StreamPipelineSpec {
        serde_yaml_ng::from_str(&format!(
            "source: {{kafka: {{brokers: b, topics: [t]}}}}\n\
             steps:\n- filter: \"true\"\n- window: {{type: tumbling, size: {window}, keyBy: [event.k], aggregate: [{{name: n, fn: count}}]}}\n\
             sinks: [{{name: out, stdout: {{}}}}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_snapshot_is_taken_back_only_by_the_same_steps() {
        let s = spec("10s");
        let steps = build(&s).unwrap();
        let fps = fingerprints(&s);
        assert_eq!(unsupported(&steps), None);
        let state = TaskState::of(&steps, &fps, 5, None).unwrap();
        let bytes = rmp_serde::to_vec_named(&state).unwrap();
        let back: TaskState = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.hash(), state.hash());
        back.restore_into(&mut build(&s).unwrap(), &fps).unwrap();

        let other = spec("20s");
        let err = back
            .restore_into(&mut build(&other).unwrap(), &fingerprints(&other))
            .unwrap_err();
        assert!(err.contains("changed since the snapshot"), "{err}");
        let mut fewer = build(&s).unwrap();
        fewer.pop();
        assert!(back.restore_into(&mut fewer, &fps).is_err());
        let old = TaskState { version: 0, ..back };
        assert!(old.restore_into(&mut build(&s).unwrap(), &fps).is_err());
    }

    #[test]
    fn ids_differ_and_tell_when_they_were_written() {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        let producer = super::super::sink::ProducerHandle::create(config.clone()).unwrap();
        let bytes = prometheus::IntCounter::new("bytes", "bytes").unwrap();
        let mut c = Changelog::new("t-changelog".into(), 3, producer, config, Vec::new(), bytes);
        let before = crate::source::now_ms();
        let ids: Vec<u64> = (0..100).map(|_| c.next_id()).collect();
        let after = crate::source::now_ms();
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ids.len());
        assert!(
            ids.iter()
                .all(|&id| (before..=after).contains(&written_at(id)))
        );
        assert_eq!(
            c.partition_of(7),
            1,
            "task partition 7 of a 3-partition changelog"
        );
    }
}
