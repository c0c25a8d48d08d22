//! Internal repartition topics: a keyed step whose key is not the input's
//! partitioning (see `tributary_crds::stages`) reads its records from a
//! topic they were re-keyed into, as Kafka Streams does for `groupBy`.
//!
//! A pipeline is cut into stages at each repartition. Stage 0 reads the
//! source topics; stage `s > 0` reads `<group>-step<at>-repartition`. Each
//! stage's tasks run their steps, then write what comes out to the next
//! stage's topic: value as JSON, Kafka timestamp = event time, the
//! partition chosen by a hash of the key, the original key and headers
//! kept. Under `exactlyOnce` those writes are in the checkpoint's
//! transaction like any output, so the hop adds no duplicate.
//!
//! Watermarks cross the hop as control records (empty value, header
//! `tributary.wm` = `<upstream>=<ms>`), sent by each upstream task to
//! every partition when its watermark moves. A downstream task's watermark
//! is the minimum over its upstream tasks — every partition of the topics
//! it is fed from, each at the task's restored watermark until it speaks —
//! as Flink takes the minimum over its input channels. An upstream task
//! idle for the source's `idleTimeout` sends `idle` and is left out of the
//! minimum until it sends a watermark again. Nothing is sent while
//! nothing moves, so an idle pipeline's topics drain.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::{ClientConfig, Message};
use serde_json::Value;

use crate::expr::Expr;
use crate::record::{Position, Record};
use crate::sink::{DeadLetter, SinkError, key_string};

use super::sink::{Client, SharedProducer, flush_checked};

/// Header of a control record: `<upstream>=<watermark ms>` or `<upstream>=idle`.
pub const WATERMARK_HEADER: &str = "tributary.wm";
/// Header keeping a re-keyed record's original Kafka key.
const KEY_HEADER: &str = "tributary.key";
/// Header naming the source partition a re-keyed record was read from and
/// its place there: `<upstream>@<offset>.<k>` (the `k`-th output of that
/// input record). A downstream task drops what it has seen (an upstream
/// task re-sending after a crash under `atLeastOnce`).
const SEQ_HEADER: &str = "tributary.seq";
/// Header marking a record of a join's `with` side (`right`): the task
/// behind the repartition hands it to the join as its second input.
const SIDE_HEADER: &str = "tributary.side";
/// How long creating a topic or reading its metadata may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Repartition topics keep a week: a restore replays a task's partition
/// from its low-water offset, which must still be there.
const RETENTION_MS: &str = "604800000";

/// The name of the repartition topic in front of step `at`.
#[must_use]
pub fn topic_name(group: &str, at: usize) -> String {
    format!("{group}-step{at}-repartition")
}

/// The partition of a key among `partitions`: FNV-1a, stable across
/// builds and hosts (every replica must agree).
#[must_use]
pub fn partition_of(key: &str, partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // `partitions` is positive, so the remainder fits an i32.
    i32::try_from(h % partitions.max(1).unsigned_abs()).unwrap_or(0)
}

/// Creates the topic with `partitions` unless it exists; returns its
/// partition count (an existing topic keeps its own).
///
/// # Errors
/// When the brokers refuse the creation or the metadata.
pub fn ensure_topic(config: &ClientConfig, topic: &str, partitions: i32) -> Result<i32, String> {
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("creating an admin client: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime for the admin client: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))
        .set("retention.ms", RETENTION_MS)
        .set("cleanup.policy", "delete");
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = rt
        .block_on(admin.create_topics([&new], &opts))
        .map_err(|e| format!("creating topic {topic}: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(format!("creating topic {t}: {code}")),
        }
    }
    partition_count(admin.inner(), topic)
}

/// Sets up the repartition topics of `spec` (consumer group `group`):
/// creates each topic with as many partitions as the largest source topic
/// has, and a writer into it through `producer`. One stage when `spec`
/// needs no repartition.
///
/// # Errors
/// When a topic cannot be created or a key does not compile.
pub fn stages(
    spec: &tributary_crds::StreamPipelineSpec,
    group: &str,
    admin: &ClientConfig,
    producer: impl Fn() -> Result<SharedProducer, String>,
    max_bytes: usize,
) -> Result<Stages, String> {
    let cuts = spec.repartitions();
    if cuts.is_empty() {
        return Ok(Stages::new(spec.steps.len(), Vec::new()));
    }
    let Some(src) = &spec.source.kafka else {
        return Ok(Stages::new(spec.steps.len(), Vec::new()));
    };
    let client: AdminClient<DefaultClientContext> = admin
        .create()
        .map_err(|e| format!("creating an admin client: {e}"))?;
    let mut source_ids = Vec::new();
    let mut widest = 1;
    for t in &src.topics {
        let n = partition_count(client.inner(), t)?;
        source_ids.extend(ids(t, n));
        widest = widest.max(n);
    }
    let env = crate::expr::env();
    let producer = producer()?;
    let mut upstream = source_ids;
    let mut out = Vec::with_capacity(cuts.len());
    for c in cuts {
        let topic = topic_name(group, c.at);
        let partitions = ensure_topic(admin, &topic, widest)?;
        let key = c
            .key
            .iter()
            .map(|e| Expr::compile(e, &env))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("spec.steps[{}]: the key does not compile: {e}", c.at))?;
        let step = spec.steps[c.at].display_name(c.at);
        tracing::info!(%topic, partitions, step = %step, key = ?c.key, "re-keying through a repartition topic");
        let mut writers = upstream;
        let side = match spec.steps[c.at].join.as_ref() {
            Some(join) => {
                let with = side_input(
                    spec, join, &client, &topic, partitions, &producer, max_bytes, &step,
                )?;
                writers.extend(ids(
                    &with.topic,
                    partition_count(client.inner(), &with.topic)?,
                ));
                Some(with)
            }
            None => None,
        };
        upstream = ids(&topic, partitions);
        out.push(Cut {
            at: c.at,
            topic: topic.clone(),
            upstream: writers,
            shuffle: Shuffle::new(topic, partitions, key, producer.clone(), max_bytes),
            step,
            side,
        });
    }
    Ok(Stages::new(spec.steps.len(), out))
}

/// The ids of the tasks of `topic`'s `partitions`: `topic:partition`.
fn ids(topic: &str, partitions: i32) -> Vec<Arc<str>> {
    (0..partitions)
        .map(|p| Arc::from(format!("{topic}:{p}")))
        .collect()
}

/// The `with` topic of `join`, re-keyed by `on.right` into `topic`.
#[allow(clippy::too_many_arguments)]
fn side_input(
    spec: &tributary_crds::StreamPipelineSpec,
    join: &tributary_crds::JoinStep,
    client: &AdminClient<DefaultClientContext>,
    topic: &str,
    partitions: i32,
    producer: &SharedProducer,
    max_bytes: usize,
    step: &str,
) -> Result<SideInput, String> {
    let Some(k) = &join.with.kafka else {
        return Err(format!(
            "{step}: after a kafka source a join's with side must be a kafka topic"
        ));
    };
    // Fails early, naming the topic, when it does not exist.
    partition_count(client.inner(), &k.topic)?;
    let decoder = crate::source::Decoder::new(&crate::runtime::side_spec(&spec.source, &join.with))
        .map_err(|e| format!("{step}.with: {e}"))?;
    let key = Expr::compile_as(&join.on.right, &crate::expr::env(), "other")
        .map_err(|e| format!("{step}: on.right does not compile: {e}"))?;
    let shuffle = Shuffle::new(
        topic.to_owned(),
        partitions,
        vec![key],
        producer.clone(),
        max_bytes,
    )
    .for_other_side();
    tracing::info!(with = %k.topic, into = %topic, "the join's with topic is read by the group and re-keyed by on.right");
    Ok(SideInput {
        topic: Arc::from(k.topic.as_str()),
        decoder,
        start_from: k.start_from,
        shuffle: (shuffle, step.to_owned()),
    })
}

/// The number of partitions of `topic`, waiting for a new topic's metadata.
///
/// # Errors
/// When the metadata cannot be read or the topic has no partitions.
pub fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<i32, String> {
    let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
    loop {
        let md = client
            .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
            .map_err(|e| format!("reading the metadata of {topic}: {e}"))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        if n > 0 {
            return i32::try_from(n).map_err(|e| e.to_string());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "topic {topic} has no partitions after {ADMIN_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The stages of a pipeline as the engine runs them; one stage when
/// nothing is repartitioned.
pub struct Stages {
    /// Per stage: the steps its tasks run.
    ranges: Vec<std::ops::Range<usize>>,
    /// Per stage `s ≥ 1` (at `s - 1`): the topic it reads and the ids of
    /// the upstream tasks that write into it.
    inputs: Vec<(Arc<str>, Vec<Arc<str>>)>,
    /// Per stage `s` before the last (at `s`): the writer into the next
    /// stage's topic, and the name of the step it feeds (dead letters).
    shuffles: Vec<(Shuffle, String)>,
    /// The `with` topics of joins.
    sides: Vec<SideInput>,
}

/// A join's `with` topic after a Kafka main source: its partitions are
/// tasks of the group without steps, whose records are re-keyed by
/// `on.right` into the join's repartition topic.
pub struct SideInput {
    /// The topic.
    pub topic: Arc<str>,
    /// Its decoder (`with.format`, `with.eventTime`).
    pub decoder: crate::source::Decoder,
    /// Where a partition without a committed offset starts.
    pub start_from: tributary_crds::StartFrom,
    /// The writer into the join's topic, and the join's name.
    pub shuffle: (Shuffle, String),
}

/// What reads a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A source topic or a repartition topic: the tasks of stage `n`.
    Stage(usize),
    /// The `with` topic `n` of a join.
    Side(usize),
}

/// One repartition as `run` set it up.
pub struct Cut {
    /// The first step behind it.
    pub at: usize,
    /// Its topic.
    pub topic: String,
    /// The ids (`topic:partition`) of the tasks that write into it.
    pub upstream: Vec<Arc<str>>,
    /// The writer into it.
    pub shuffle: Shuffle,
    /// The name of step `at`.
    pub step: String,
    /// The join's `with` topic, when step `at` is a join.
    pub side: Option<SideInput>,
}

impl Stages {
    /// Stages of `steps` steps cut at `cuts` (in step order).
    #[must_use]
    pub fn new(steps: usize, cuts: Vec<Cut>) -> Self {
        let mut ranges = Vec::with_capacity(cuts.len() + 1);
        let mut inputs = Vec::with_capacity(cuts.len());
        let mut shuffles = Vec::with_capacity(cuts.len());
        let mut sides = Vec::new();
        let mut start = 0;
        for c in cuts {
            ranges.push(start..c.at);
            start = c.at;
            inputs.push((Arc::from(c.topic.as_str()), c.upstream));
            shuffles.push((c.shuffle, c.step));
            sides.extend(c.side);
        }
        ranges.push(start..steps);
        Self {
            ranges,
            inputs,
            shuffles,
            sides,
        }
    }

    /// What reads `topic`.
    #[must_use]
    pub fn role(&self, topic: &str) -> Role {
        match self.sides.iter().position(|s| &*s.topic == topic) {
            Some(i) => Role::Side(i),
            None => Role::Stage(self.stage_of(topic)),
        }
    }

    /// The `with` topic `i`.
    #[must_use]
    pub fn side(&self, i: usize) -> Option<&SideInput> {
        self.sides.get(i)
    }

    /// The writer out of the tasks reading `topic`, the step it feeds, and
    /// whether they read a topic outside the pipeline (their records carry
    /// their place: see `SEQ_HEADER`); `None` for the last stage.
    pub fn writer(&mut self, topic: &str) -> Option<(&mut Shuffle, &str, bool)> {
        match self.role(topic) {
            Role::Side(i) => self
                .sides
                .get_mut(i)
                .map(|s| (&mut s.shuffle.0, s.shuffle.1.as_str(), true)),
            Role::Stage(n) => self
                .shuffles
                .get_mut(n)
                .map(|(w, step)| (w, step.as_str(), n == 0)),
        }
    }

    /// The stage reading `topic` (0: a source topic).
    #[must_use]
    pub fn stage_of(&self, topic: &str) -> usize {
        self.inputs
            .iter()
            .position(|(t, _)| &**t == topic)
            .map_or(0, |i| i + 1)
    }

    /// The steps stage `s` runs.
    #[must_use]
    pub fn range(&self, s: usize) -> std::ops::Range<usize> {
        self.ranges.get(s).cloned().unwrap_or(0..0)
    }

    /// The ids of the upstream tasks that write into stage `s` (`None`
    /// for stage 0).
    #[must_use]
    pub fn upstream(&self, s: usize) -> Option<&[Arc<str>]> {
        s.checked_sub(1)
            .and_then(|i| self.inputs.get(i))
            .map(|(_, ids)| ids.as_slice())
    }

    /// The topics the group reads besides the source's: repartition
    /// topics and joins' `with` topics.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .map(|(t, _)| &**t)
            .chain(self.sides.iter().map(|s| &*s.topic))
    }

    /// Waits for every repartition write (`atLeastOnce`).
    ///
    /// # Errors
    /// When a flush fails.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.shuffles
            .iter_mut()
            .map(|(s, _)| s)
            .chain(self.sides.iter_mut().map(|s| &mut s.shuffle.0))
            .try_for_each(Shuffle::flush)
    }
}

/// An upstream task's watermark as carried by a control record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Event time has reached this (epoch ms).
    At(i64),
    /// No record for `idleTimeout`: leave it out of the minimum.
    Idle,
}

/// Writes a stage's output into the next stage's topic.
pub struct Shuffle {
    topic: String,
    partitions: i32,
    key: Vec<Expr>,
    producer: SharedProducer,
    max_bytes: usize,
    buf: Vec<u8>,
    /// Delivery failures already reported.
    failures_seen: u64,
    /// It writes a join's `with` side.
    other: bool,
}

impl Shuffle {
    /// A writer into `topic` (of `partitions`), keyed by `key`.
    #[must_use]
    pub fn new(
        topic: String,
        partitions: i32,
        key: Vec<Expr>,
        producer: SharedProducer,
        max_bytes: usize,
    ) -> Self {
        Self {
            topic,
            partitions,
            key,
            producer,
            max_bytes,
            buf: Vec::with_capacity(1024),
            failures_seen: 0,
            other: false,
        }
    }

    /// The same writer for a join's `with` side: its records are marked so
    /// the join takes them as its second input.
    #[must_use]
    pub fn for_other_side(self) -> Self {
        Self {
            other: true,
            ..self
        }
    }

    fn key_of(&self, value: &Value) -> Result<String, String> {
        let mut out = String::new();
        for (i, e) in self.key.iter().enumerate() {
            let v = e.eval(value).map_err(|e| format!("repartition key: {e}"))?;
            if i > 0 {
                out.push('\u{1f}');
            }
            out.push_str(&key_string(&v).unwrap_or_default());
        }
        Ok(out)
    }

    /// Writes `records`; those whose key fails or that are too large come
    /// back as dead letters (`step` names the keyed step). `source` is the
    /// sending task's `(id, topic, partition)` when it reads a source topic:
    /// records read there carry their place in it (see `SEQ_HEADER`).
    ///
    /// # Errors
    /// When the producer refuses a record.
    pub fn write(
        &mut self,
        records: &[Record],
        step: &str,
        source: Option<(&str, &str, i32)>,
    ) -> Result<Vec<DeadLetter>, SinkError> {
        let producer = self.producer.get();
        let mut dead = Vec::new();
        let mut last = (i64::MIN, 0_u32);
        for r in records.iter().filter(|r| !r.replay) {
            let key = match self.key_of(&r.value) {
                Ok(k) => k,
                Err(e) => {
                    dead.push(DeadLetter::new(step, e, r.clone()));
                    continue;
                }
            };
            self.buf.clear();
            serde_json::to_writer(&mut self.buf, &r.value).map_err(|e| self.err(e))?;
            if self.buf.len() > self.max_bytes {
                let msg = format!(
                    "record of {} bytes exceeds the limit of {} bytes",
                    self.buf.len(),
                    self.max_bytes
                );
                dead.push(DeadLetter::new(step, msg, r.clone()));
                continue;
            }
            let mut h = OwnedHeaders::new_with_capacity(r.headers.len() + 1);
            for (k, v) in &r.headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            if let Some(k) = &r.key {
                h = h.insert(Header {
                    key: KEY_HEADER,
                    value: Some(k.as_bytes()),
                });
            }
            if self.other {
                h = h.insert(Header {
                    key: SIDE_HEADER,
                    value: Some(b"right"),
                });
            }
            if let Some((id, topic, partition)) = source
                && *r.position.source == *topic
                && r.position.partition == partition
            {
                let offset = r.position.offset;
                last = if last.0 == offset {
                    (offset, last.1 + 1)
                } else {
                    (offset, 0)
                };
                let seq = format!("{id}@{offset}.{}", last.1);
                h = h.insert(Header {
                    key: SEQ_HEADER,
                    value: Some(seq.as_bytes()),
                });
            }
            let partition = partition_of(&key, self.partitions);
            let rec = BaseRecord::to(&self.topic)
                .partition(partition)
                .key(key.as_str())
                .payload(self.buf.as_slice())
                .timestamp(r.event_time)
                .headers(h);
            send(&producer, rec, &self.topic)?;
        }
        Ok(dead)
    }

    /// Tells every partition of the next stage that `upstream` reached `mark`.
    ///
    /// # Errors
    /// When the producer refuses a record.
    pub fn broadcast(&self, upstream: &str, mark: Mark) -> Result<(), SinkError> {
        let producer = self.producer.get();
        let value = match mark {
            Mark::At(ms) => format!("{upstream}={ms}"),
            Mark::Idle => format!("{upstream}=idle"),
        };
        for partition in 0..self.partitions {
            let h = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: WATERMARK_HEADER,
                value: Some(value.as_bytes()),
            });
            let empty: &[u8] = &[];
            let rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.topic)
                .partition(partition)
                .key(upstream)
                .payload(empty)
                .headers(h);
            send(&producer, rec, &self.topic)?;
        }
        Ok(())
    }

    /// Waits for every write to be acknowledged (`atLeastOnce`; under
    /// `exactlyOnce` the transaction's commit does it).
    ///
    /// # Errors
    /// When a delivery failed.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        flush_checked(&self.producer.get(), &mut self.failures_seen).map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::Broker {
            name: self.topic.clone(),
            message: e.to_string(),
        }
    }
}

fn send<K: rdkafka::message::ToBytes + ?Sized>(
    producer: &Client,
    mut rec: BaseRecord<'_, K, [u8]>,
    topic: &str,
) -> Result<(), SinkError> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                r,
            )) => {
                rec = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => {
                return Err(SinkError::Broker {
                    name: topic.to_owned(),
                    message: format!("producing to {topic}: {e}"),
                });
            }
        }
    }
}

/// Where a re-keyed record came from: the upstream task, and its place in
/// that task's source partition (offset, then output index).
pub type Seq = (Arc<str>, (i64, u32));

/// What a message of a repartition topic holds.
pub enum Inbound {
    /// A re-keyed record, with its origin when it was read from a source,
    /// and whether it is a join's `with` side.
    Record(Record, Option<Seq>, bool),
    /// An upstream task's watermark, read at an offset.
    Mark(i64, Arc<str>, Mark),
    /// Bytes that are not ours (written by someone else): a dead letter.
    Foreign(Box<DeadLetter>),
}

/// Reads a message of a repartition topic read at `position`.
#[must_use]
pub fn decode(msg: &BorrowedMessage<'_>, position: Position) -> Inbound {
    let mut headers = Vec::new();
    let mut key = None;
    let mut seq = None;
    let mut other = false;
    if let Some(hs) = msg.headers() {
        for h in hs.iter() {
            let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
            match h.key {
                WATERMARK_HEADER => {
                    if let Some(mark) = parse_mark(&v) {
                        return Inbound::Mark(position.offset, mark.0.into(), mark.1);
                    }
                }
                KEY_HEADER => key = Some(Arc::from(v.as_ref())),
                SEQ_HEADER => seq = parse_seq(&v),
                SIDE_HEADER => other = true,
                _ => headers.push((h.key.to_owned(), v.into_owned())),
            }
        }
    }
    let ts = msg.timestamp().to_millis().unwrap_or(0);
    let payload = msg.payload().unwrap_or_default();
    match serde_json::from_slice::<Value>(payload) {
        Ok(value) => Inbound::Record(
            Record {
                key,
                value,
                headers,
                event_time: ts,
                position,
                replay: false,
            },
            seq,
            other,
        ),
        Err(e) => {
            let raw = String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned();
            let rec = Record {
                position,
                ..Record::new(serde_json::json!({ "raw": raw }), ts)
            };
            Inbound::Foreign(Box::new(DeadLetter::new(
                "repartition",
                format!("not a record of this pipeline's repartition topic: {e}"),
                rec,
            )))
        }
    }
}

/// Parses `<upstream>@<offset>.<k>`.
#[must_use]
pub fn parse_seq(s: &str) -> Option<Seq> {
    let (who, place) = s.rsplit_once('@')?;
    let (offset, k) = place.split_once('.')?;
    Some((who.into(), (offset.parse().ok()?, k.parse().ok()?)))
}

/// Parses `<upstream>=<ms>` or `<upstream>=idle`.
#[must_use]
pub fn parse_mark(s: &str) -> Option<(&str, Mark)> {
    let (who, what) = s.rsplit_once('=')?;
    let mark = if what == "idle" {
        Mark::Idle
    } else {
        Mark::At(what.parse().ok()?)
    };
    Some((who, mark))
}

/// What a downstream task heard from its upstream tasks.
#[derive(Clone, Debug, Default)]
pub struct Upstream {
    marks: HashMap<Arc<str>, Mark>,
    /// The furthest place seen per upstream task (see `SEQ_HEADER`).
    seen: HashMap<Arc<str>, (i64, u32)>,
}

impl Upstream {
    /// The upstream tasks `ids`, each taken to be at `wm` (the restored
    /// watermark: every upstream task had passed it at the checkpoint; or
    /// `i64::MIN`) until it speaks.
    #[must_use]
    pub fn new(ids: &[Arc<str>], wm: i64) -> Self {
        Self {
            marks: ids.iter().map(|id| (id.clone(), Mark::At(wm))).collect(),
            seen: HashMap::new(),
        }
    }

    /// Whether a record from `seq` is new: past the furthest place seen
    /// from its upstream task (a re-sent one is not).
    pub fn fresh(&mut self, seq: Seq) -> bool {
        let (from, place) = seq;
        match self.seen.get_mut(&from) {
            Some(furthest) if place <= *furthest => false,
            Some(furthest) => {
                *furthest = place;
                true
            }
            None => {
                self.seen.insert(from, place);
                true
            }
        }
    }

    /// Notes a control record.
    pub fn note(&mut self, from: Arc<str>, mark: Mark) {
        self.marks.insert(from, mark);
    }

    /// The watermark every upstream task has passed: the minimum over
    /// those not idle; `None` while every one is idle.
    #[must_use]
    pub fn watermark(&self) -> Option<i64> {
        self.marks
            .values()
            .filter_map(|m| match m {
                Mark::At(ms) => Some(*ms),
                Mark::Idle => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("user-1", 6), partition_of("user-1", 6));
        let mut seen = [0_u32; 6];
        for i in 0..6_000 {
            let p = partition_of(&format!("user-{i}"), 6);
            seen[usize::try_from(p).expect("non-negative")] += 1;
        }
        assert!(seen.iter().all(|&n| (700..1300).contains(&n)), "{seen:?}");
        assert_eq!(partition_of("", 1), 0);
    }

    #[test]
    fn records_re_sent_by_an_upstream_task_are_not_fresh() {
        let mut u = Upstream::new(&[], i64::MIN);
        let seq = |s: &str| parse_seq(s).expect("a seq");
        assert!(u.fresh(seq("in:0@10.0")));
        assert!(u.fresh(seq("in:0@10.1")), "a second output of one input");
        assert!(u.fresh(seq("in:0@12.0")));
        assert!(u.fresh(seq("in:1@3.0")), "another upstream task");
        assert!(!u.fresh(seq("in:0@10.1")), "re-sent after a crash");
        assert!(!u.fresh(seq("in:0@12.0")));
        assert!(u.fresh(seq("in:0@13.0")));
        assert_eq!(parse_seq("a:b@c@5.2").map(|s| s.1), Some((5, 2)));
        assert!(parse_seq("in:0@x.1").is_none());
    }

    #[test]
    fn marks_parse_and_garbage_does_not() {
        assert_eq!(parse_mark("in:3=1700"), Some(("in:3", Mark::At(1700))));
        assert_eq!(parse_mark("a=b=idle"), Some(("a=b", Mark::Idle)));
        assert_eq!(parse_mark("in:3=soon"), None);
        assert_eq!(parse_mark("nothing"), None);
    }

    #[test]
    fn the_watermark_is_the_minimum_once_every_upstream_spoke_and_idle_ones_are_left_out() {
        let ids: Vec<Arc<str>> = ["a", "b", "c"].into_iter().map(Arc::from).collect();
        let mut u = Upstream::new(&ids, i64::MIN);
        u.note("a".into(), Mark::At(100));
        u.note("b".into(), Mark::At(50));
        assert_eq!(u.watermark(), Some(i64::MIN), "c has not spoken");
        u.note("c".into(), Mark::Idle);
        assert_eq!(u.watermark(), Some(50));
        u.note("b".into(), Mark::At(300));
        assert_eq!(u.watermark(), Some(100));
        u.note("a".into(), Mark::Idle);
        u.note("b".into(), Mark::Idle);
        assert_eq!(u.watermark(), None, "all idle: hold");
        u.note("c".into(), Mark::At(20));
        assert_eq!(u.watermark(), Some(20), "a returning task counts again");
    }

    #[test]
    fn a_restored_task_holds_its_watermark_until_every_upstream_passes_it() {
        let ids: Vec<Arc<str>> = ["a", "b"].into_iter().map(Arc::from).collect();
        let mut u = Upstream::new(&ids, 1_000);
        assert_eq!(u.watermark(), Some(1_000));
        u.note("a".into(), Mark::At(5_000));
        assert_eq!(u.watermark(), Some(1_000), "b has not spoken since");
        u.note("b".into(), Mark::At(3_000));
        assert_eq!(u.watermark(), Some(3_000));
    }
}
