//! The Kafka engine: tasks per assigned partition, checkpoints (one Kafka
//! transaction, or a producer flush then an offset commit), restores on
//! assignment and rewinds after a failed checkpoint.
//!
//! It lives in the consumer's context (`context`) behind a mutex, so the
//! rebalance callback — which librdkafka runs inside `poll`, on the engine
//! thread — can checkpoint and drop revoked tasks before their partitions move.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, TopicPartitionList};
use tributary_crds::{StartFrom, StreamPipelineSpec};

use crate::RunError;
use crate::record::Position;
use crate::runtime::Metrics;
use crate::runtime::chain::Outputs;
use crate::sink::DeadLetter;
use crate::source::{BATCH, Decoder, now_ms};
use crate::step;

use super::KafkaError;
use super::changelog::{Changelog, TaskState};
use super::checkpoint::Restore;
use super::context::KafkaConsumer;
use super::metrics::KafkaMetrics;
use super::postgres::PgCommit;
use super::repartition::{self, Inbound, Role, Stages};
use super::sink::SharedProducer;
use super::task::Task;

/// Timeout of group-coordinator calls (committed offsets, commits).
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of transaction calls.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between attempts while the brokers are unreachable.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Everything the engine thread owns.
pub struct Engine {
    spec: Arc<StreamPipelineSpec>,
    decoder: Decoder,
    bound: i64,
    max_bytes: usize,
    start_from: StartFrom,
    tasks: BTreeMap<(Arc<str>, i32), Task>,
    topics: HashMap<String, Arc<str>>,
    outputs: Outputs,
    /// The transactional producer (`exactlyOnce` into Kafka).
    txn: Option<SharedProducer>,
    /// The database checkpoint (`exactlyOnce` into PostgreSQL).
    pg: Option<PgCommit>,
    metrics: Arc<Metrics>,
    kafka: KafkaMetrics,
    /// Something happened since the last checkpoint.
    dirty: bool,
    /// Kafka timestamps (ms → records) of the records read since the last
    /// checkpoint: their end-to-end latency is known when it commits.
    /// Keyed by millisecond, so its size is bounded by the checkpoint
    /// interval, not the throughput.
    uncommitted: HashMap<i64, u64>,
    /// An error raised inside a callback, for the poll loop to return.
    failed: Option<RunError>,
    /// Shutting down: revocations drop tasks without a checkpoint (the
    /// final one ran already).
    closing: bool,
    /// Set by Ctrl-C / SIGTERM: ends retries.
    stop: Arc<AtomicBool>,
    /// The stages and their repartition topics.
    stages: Stages,
    /// The source's `idleTimeout`: a task without records that long tells
    /// the next stage it is idle.
    idle: Option<Duration>,
    /// Where tasks write their state at each checkpoint (`None`: restore
    /// by replay only).
    changelog: Option<Changelog>,
}

/// The parts an [`Engine`] is made of.
pub struct Parts {
    /// The spec (steps are built per task).
    pub spec: Arc<StreamPipelineSpec>,
    /// Payload decoder.
    pub decoder: Decoder,
    /// Largest record value accepted.
    pub max_bytes: usize,
    /// The sinks.
    pub outputs: Outputs,
    /// The transactional producer under `exactlyOnce`, with a transaction begun.
    pub txn: Option<SharedProducer>,
    /// The database checkpoint under `exactlyOnce` with PostgreSQL sinks.
    pub pg: Option<PgCommit>,
    /// Engine counters.
    pub metrics: Arc<Metrics>,
    /// Kafka collectors.
    pub kafka: KafkaMetrics,
    /// The run's stop flag.
    pub stop: Arc<AtomicBool>,
    /// The stages (one unless keyed steps are repartitioned).
    pub stages: Stages,
    /// The state changelog, unless the pipeline restores by replay only.
    pub changelog: Option<Changelog>,
}

fn fatal(e: &RdError) -> bool {
    matches!(e, RdError::Transaction(t) if t.is_fatal())
}

impl Engine {
    /// An engine with no tasks yet.
    #[must_use]
    pub fn new(p: Parts) -> Self {
        let src = &p.spec.source;
        Self {
            bound: src.watermark.max_out_of_orderness.as_millis_i64(),
            start_from: src.kafka.as_ref().map(|k| k.start_from).unwrap_or_default(),
            spec: p.spec.clone(),
            decoder: p.decoder,
            max_bytes: p.max_bytes,
            tasks: BTreeMap::new(),
            topics: HashMap::new(),
            outputs: p.outputs,
            txn: p.txn,
            pg: p.pg,
            metrics: p.metrics,
            kafka: p.kafka,
            dirty: false,
            uncommitted: HashMap::new(),
            failed: None,
            closing: false,
            stop: p.stop,
            stages: p.stages,
            idle: src.watermark.idle_timeout.map(|d| d.0),
            changelog: p.changelog,
        }
    }

    /// Counts a rebalance callback.
    pub(super) fn note_rebalance(&self) {
        self.kafka.rebalances.inc();
    }

    /// Keeps the first error a callback raised, for the poll loop.
    pub(super) fn fail(&mut self, e: RunError) {
        if self.failed.is_none() {
            self.failed = Some(e);
        }
    }

    /// Takes an error a callback raised.
    pub fn take_failure(&mut self) -> Option<RunError> {
        self.failed.take()
    }

    /// From now on revocations only drop tasks.
    pub fn close(&mut self) {
        self.closing = true;
    }

    fn intern(&mut self, topic: &str) -> Arc<str> {
        if let Some(t) = self.topics.get(topic) {
            return t.clone();
        }
        let t: Arc<str> = topic.into();
        self.topics.insert(topic.to_owned(), t.clone());
        t
    }

    /// Decodes one message into its task's queue (or the dead-letter sink).
    ///
    /// # Errors
    /// When a step or sink fails.
    pub fn on_message(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), RunError> {
        let topic = self.intern(msg.topic());
        let key = (topic.clone(), msg.partition());
        let position = Position {
            source: topic.clone(),
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let decoder = match self.stages.role(&topic) {
            Role::Stage(0) => &self.decoder,
            Role::Stage(_) => {
                return self.on_repartitioned(&key, repartition::decode(msg, position));
            }
            Role::Side(i) => match self.stages.side(i) {
                Some(side) => &side.decoder,
                None => return Ok(()),
            },
        };
        let Some(task) = self.tasks.get_mut(&key) else {
            return Ok(()); // fetched before a revocation
        };
        let payload = msg.payload().unwrap_or_default();
        let ts = msg.timestamp().to_millis().unwrap_or_else(now_ms);
        let rec_key = msg.key().map(|k| Arc::from(String::from_utf8_lossy(k)));
        let decoded = if payload.len() > self.max_bytes {
            let mut raw = String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned();
            raw.push('…');
            let rec = crate::record::Record {
                position,
                ..crate::record::Record::new(serde_json::json!({ "raw": raw }), 0)
            };
            Err(Box::new(DeadLetter::new(
                "decode",
                format!(
                    "record of {} bytes exceeds the limit of {} bytes",
                    payload.len(),
                    self.max_bytes
                ),
                rec,
            )))
        } else {
            decoder.decode_at(payload, position, ts)
        };
        self.dirty = true;
        match decoded {
            Ok(mut rec) => {
                rec.key = rec_key;
                if let Some(h) = msg.headers() {
                    rec.headers = h
                        .iter()
                        .map(|h| {
                            let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                            (h.key.to_owned(), v.into_owned())
                        })
                        .collect();
                }
                if task.add(rec) == Some(false) {
                    Metrics::add(&self.metrics.records_in, 1);
                    *self.uncommitted.entry(ts).or_insert(0) += 1;
                }
                if task.pending_len() >= BATCH {
                    self.drive(&key, Task::process)?;
                }
            }
            Err(mut dl) => {
                dl.record.key = rec_key;
                if let Some(replay) = task.skip(dl.record.position.offset) {
                    dl.record.replay = replay;
                    if !replay {
                        Metrics::add(&self.metrics.records_in, 1);
                        *self.uncommitted.entry(ts).or_insert(0) += 1;
                    }
                    self.outputs.dead_letter(*dl, &self.metrics)?;
                }
            }
        }
        Ok(())
    }

    /// A message of a repartition topic: a record for the task, or an
    /// upstream watermark that may move the task's own.
    fn on_repartitioned(
        &mut self,
        key: &(Arc<str>, i32),
        inbound: Inbound,
    ) -> Result<(), RunError> {
        let Some(task) = self.tasks.get_mut(key) else {
            return Ok(());
        };
        self.dirty = true;
        match inbound {
            Inbound::Record(rec, seq, other) => {
                if !task.fresh(seq) {
                    // Re-sent by an upstream task that restarted from its
                    // last checkpoint (`atLeastOnce`): seen already.
                    task.skip(rec.position.offset);
                    return Ok(());
                }
                if other {
                    task.add_other(rec);
                } else {
                    task.add(rec);
                }
                if task.pending_len() >= BATCH {
                    self.drive(key, Task::process)?;
                }
            }
            Inbound::Mark(offset, from, mark) => {
                // Every record its sender wrote before it is queued
                // already (one partition keeps order): process them, then
                // the watermark may move.
                if task.note_mark(offset, from, mark).is_some() {
                    self.drive(key, Task::process)?;
                }
            }
            Inbound::Foreign(dl) => {
                if let Some(replay) = task.skip(dl.record.position.offset) {
                    let mut dl = *dl;
                    dl.record.replay = replay;
                    self.outputs.dead_letter(dl, &self.metrics)?;
                }
            }
        }
        Ok(())
    }

    /// Runs `f` on a task. A task of a stage before the last hands what
    /// reaches the end of its steps to the next stage's topic instead of
    /// the sinks.
    fn drive(
        &mut self,
        key: &(Arc<str>, i32),
        f: impl FnOnce(&mut Task, &mut Outputs, &Metrics) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        let Some(task) = self.tasks.get_mut(key) else {
            return Ok(());
        };
        let Some((shuffle, step, outside)) = self.stages.writer(&task.topic) else {
            return f(task, &mut self.outputs, &self.metrics);
        };
        self.outputs.divert = Some(Vec::new());
        let result = f(task, &mut self.outputs, &self.metrics);
        let records = self.outputs.divert.take().unwrap_or_default();
        result?;
        let id = task.id();
        let source = outside.then_some((id.as_str(), &*task.topic, task.partition));
        for d in shuffle.write(&records, step, source)? {
            self.outputs.dead_letter(d, &self.metrics)?;
        }
        Ok(())
    }

    /// Processes every task's queued records.
    ///
    /// # Errors
    /// When a step or sink fails.
    pub fn flush_pending(&mut self) -> Result<(), RunError> {
        let keys: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.has_pending())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.drive(&key, Task::process)?;
        }
        self.publish();
        Ok(())
    }

    /// Tells the next stage the watermarks that changed; whether it told
    /// any (they must be committed, even without other output).
    fn tell_watermarks(&mut self) -> Result<bool, RunError> {
        let mut told = false;
        for task in self.tasks.values_mut() {
            let Some((shuffle, _, _)) = self.stages.writer(&task.topic) else {
                continue;
            };
            if let Some(mark) = task.mark_to_tell(self.idle) {
                shuffle.broadcast(&task.id(), mark)?;
                told = true;
            }
        }
        Ok(told)
    }

    /// Triggers, then the watermark, state, readiness and lag gauges.
    ///
    /// # Errors
    /// When a step or sink fails.
    pub fn tick(&mut self, consumer: &KafkaConsumer) -> Result<(), RunError> {
        let keys: Vec<_> = self.tasks.keys().cloned().collect();
        for key in keys {
            self.drive(&key, Task::tick)?;
        }
        if self.tell_watermarks()? {
            self.dirty = true;
        }
        self.publish();
        self.update_lag(consumer);
        Ok(())
    }

    /// Updates the gauges the engine owns.
    fn publish(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.metrics;
        if let Some(wm) = self
            .tasks
            .values()
            .map(Task::watermark)
            .filter(|&w| w != i64::MIN)
            .min()
        {
            m.watermark.store(wm, Relaxed);
        }
        m.state_size.store(
            self.tasks.values().map(|t| t.state_size() as u64).sum(),
            Relaxed,
        );
        // Not ready while a task rebuilds its state.
        m.ready
            .store(!self.tasks.values().any(Task::replaying), Relaxed);
    }

    /// Commits what is done: the output since the last checkpoint and each
    /// task's position with its metadata, in one transaction under
    /// `exactlyOnce`; a producer flush then an offset commit otherwise. A
    /// failed checkpoint aborts and rewinds every task to the last one.
    ///
    /// # Errors
    /// When the pipeline cannot go on (a fatal producer error, a fenced
    /// producer, a step failure).
    pub fn checkpoint(&mut self, consumer: &KafkaConsumer) -> Result<(), RunError> {
        self.flush_pending()?;
        if self.tell_watermarks()? {
            self.dirty = true;
        }
        if !self.dirty {
            return Ok(());
        }
        let started = Instant::now();
        let mut tpl = TopicPartitionList::new();
        let mut positions = Vec::new();
        let read = consumer.position().ok();
        for task in self.tasks.values_mut() {
            if let Some((processed, mut meta)) = task.checkpoint() {
                if let Some(changelog) = self.changelog.as_mut() {
                    meta.snap = task.snapshot(changelog);
                }
                let pos = done_up_to(read.as_ref(), task, processed);
                let mut e = tpl.add_partition(&task.topic, task.partition);
                e.set_offset(Offset::Offset(pos)).map_err(kafka_err)?;
                e.set_metadata(meta.encode());
                positions.push((task.topic.to_string(), task.partition, pos, meta));
            }
        }
        let committed = match self.txn.clone() {
            Some(txn) => self.commit_transaction(consumer, &txn, &tpl)?,
            None if self.pg.is_some() => self.commit_postgres(consumer, &tpl, &positions)?,
            None => self.commit_offsets(consumer, &tpl)?,
        };
        if committed {
            self.stages.purge(&positions);
            self.dirty = false;
            self.kafka
                .checkpoint
                .observe(started.elapsed().as_secs_f64());
            self.observe_end_to_end();
        }
        Ok(())
    }

    /// The records read since the last checkpoint are visible now.
    fn observe_end_to_end(&mut self) {
        let now = now_ms();
        for (ts, n) in self.uncommitted.drain() {
            let ms = u64::try_from(now.saturating_sub(ts)).unwrap_or(0);
            self.metrics
                .end_to_end
                .record_n(Duration::from_millis(ms), n);
        }
    }

    /// `exactlyOnce`: offsets into the transaction, commit, begin the next.
    fn commit_transaction(
        &mut self,
        consumer: &KafkaConsumer,
        handle: &SharedProducer,
        tpl: &TopicPartitionList,
    ) -> Result<bool, RunError> {
        let txn = handle.get();
        let result = (|| {
            if tpl.count() > 0 {
                let group = consumer
                    .group_metadata()
                    .ok_or_else(|| RdError::Subscription("no consumer group metadata".into()))?;
                txn.send_offsets_to_transaction(tpl, &group, TXN_TIMEOUT)?;
            }
            txn.commit_transaction(TXN_TIMEOUT)
        })();
        match result.and_then(|()| txn.begin_transaction()) {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint transaction failed; aborting it and rewinding every task to the last checkpoint");
                self.abort(Some(&e));
                self.rewind(consumer)?;
                Ok(false)
            }
        }
    }

    /// `exactlyOnce` into PostgreSQL: other sinks flush, then the rows and
    /// positions commit in one database transaction; the group's offsets
    /// follow, best effort, for lag only.
    fn commit_postgres(
        &mut self,
        consumer: &KafkaConsumer,
        tpl: &TopicPartitionList,
        positions: &[(String, i32, i64, super::checkpoint::Meta)],
    ) -> Result<bool, RunError> {
        let Some(pg) = self.pg.as_mut() else {
            return Ok(false);
        };
        let result = match self.outputs.flush(&self.metrics) {
            Ok(()) => pg.commit(positions).map_err(|e| e.message),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(refused) => {
                for d in refused {
                    self.outputs.dead_letter(d, &self.metrics)?;
                }
                if tpl.count() > 0
                    && let Err(e) = consumer.commit(tpl, CommitMode::Async)
                {
                    tracing::debug!(error = %e, "committing group offsets (for lag only) failed");
                }
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint transaction failed; rolling back and rewinding every task to the positions stored in postgres");
                self.abort(None);
                self.rewind(consumer)?;
                Ok(false)
            }
        }
    }

    /// Aborts the open transaction; when the producer cannot (a fatal
    /// error: fenced after its transaction timed out in a network cut),
    /// replaces it by a new one, retrying until the brokers answer.
    fn abort(&mut self, cause: Option<&RdError>) {
        if let Some(pg) = &self.pg {
            self.kafka.aborts.inc();
            pg.discard();
        }
        let Some(handle) = self.txn.clone() else {
            return;
        };
        self.kafka.aborts.inc();
        let current = handle.get();
        if !cause.is_some_and(fatal)
            && current.abort_transaction(TXN_TIMEOUT).is_ok()
            && current.begin_transaction().is_ok()
        {
            return;
        }
        drop(current);
        while !self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            let fresh = match handle.replace() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot create a transactional producer");
                    std::thread::sleep(RETRY_PAUSE);
                    continue;
                }
            };
            match fresh
                .init_transactions(TXN_TIMEOUT)
                .and_then(|()| fresh.begin_transaction())
            {
                Ok(()) => {
                    tracing::info!("a new transactional producer replaced the failed one");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the new transactional producer cannot start yet; retrying");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    /// `atLeastOnce`: every sink acknowledges, then the offsets commit.
    fn commit_offsets(
        &mut self,
        consumer: &KafkaConsumer,
        tpl: &TopicPartitionList,
    ) -> Result<bool, RunError> {
        if let Err(e) = self
            .outputs
            .flush(&self.metrics)
            .and_then(|()| self.stages.flush())
            .and_then(|()| self.changelog.as_mut().map_or(Ok(()), Changelog::flush))
        {
            tracing::warn!(error = %e, "a sink failed to acknowledge; rewinding every task to the last checkpoint (output may repeat)");
            self.rewind(consumer)?;
            return Ok(false);
        }
        if tpl.count() > 0
            && let Err(e) = consumer.commit(tpl, CommitMode::Sync)
        {
            // A rebalance in progress, a coordinator move: the next
            // checkpoint commits a later position.
            tracing::warn!(error = %e, "committing offsets failed; the next checkpoint retries");
            return Ok(false);
        }
        Ok(true)
    }

    fn update_lag(&self, consumer: &KafkaConsumer) {
        let Ok(stable) = consumer.context().stable.lock() else {
            return;
        };
        let read = consumer.position().ok();
        for task in self.tasks.values() {
            let (Some(pos), Some(&end)) = (
                task.position(),
                stable.get(&(task.topic.to_string(), task.partition)),
            ) else {
                continue;
            };
            let pos = done_up_to(read.as_ref(), task, pos);
            if end >= 0 {
                self.kafka
                    .lag
                    .with_label_values(&[&*task.topic, &task.partition.to_string()])
                    .set((end - pos).max(0));
            }
        }
    }

    /// Restore plans for `tpl`'s partitions from their committed offsets.
    fn plans(
        &mut self,
        consumer: &KafkaConsumer,
        tpl: &TopicPartitionList,
    ) -> Result<Vec<(String, i32, Restore)>, RunError> {
        if let Some(pg) = self.pg.as_mut() {
            let parts: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let plans = pg.plans(&parts, &self.stop).map_err(|e| {
                RunError::SourceFailed(format!("reading positions from postgres: {e}"))
            })?;
            return Ok(parts
                .into_iter()
                .zip(plans)
                .map(|((t, p), r)| (t, p, r))
                .collect());
        }
        loop {
            match consumer.committed_offsets(tpl.clone(), COORDINATOR_TIMEOUT) {
                Ok(c) => {
                    return Ok(c
                        .elements()
                        .iter()
                        .map(|e| {
                            let committed = match e.offset() {
                                Offset::Offset(o) => Some(o),
                                _ => None,
                            };
                            (
                                e.topic().to_owned(),
                                e.partition(),
                                Restore::plan(committed, e.metadata()),
                            )
                        })
                        .collect());
                }
                // The coordinator is unreachable: a restore cannot start
                // without the checkpoint, so wait for it (or for a stop).
                Err(e) if self.stop.load(std::sync::atomic::Ordering::Relaxed) => {
                    return Err(kafka_err(e));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read committed offsets yet; retrying");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    /// Starts the task of `topic:partition` per `restore`, its state from
    /// `saved` (its changelog snapshot) when given and it fits; returns the
    /// plan it started with (a replay when the snapshot did not fit).
    fn start_task(
        &mut self,
        topic: &str,
        partition: i32,
        restore: Restore,
        saved: Option<TaskState>,
    ) -> Result<Restore, RunError> {
        let topic = self.intern(topic);
        let (task, restore) = match self.stages.role(&topic) {
            // A join's `with` topic: no steps, its records go to the join.
            Role::Side(_) => {
                let restore = restore.by_replay();
                let task = Task::new(topic.clone(), partition, Vec::new(), restore, self.bound);
                (task, restore)
            }
            Role::Stage(stage) => {
                let range = self.stages.range(stage);
                let from = range.start;
                let build =
                    || step::build_stage(&self.spec, std::path::Path::new("."), range.clone());
                let mut steps = build()?;
                let mut plan = restore.by_replay();
                let mut upstream = None;
                if let Some((saved, changelog)) = saved.zip(self.changelog.as_ref()) {
                    match saved.restore_into(&mut steps, &changelog.fingerprints) {
                        Ok(()) => {
                            plan = restore.from_snapshot();
                            upstream = saved.upstream;
                        }
                        Err(e) => {
                            tracing::warn!(%topic, partition, error = %e, "the changelog snapshot does not fit the steps; restoring by replay");
                            steps = build()?;
                        }
                    }
                }
                let task = Task::new(topic.clone(), partition, steps, plan, self.bound);
                let mut task = match self.stages.upstream(stage) {
                    Some(ids) => task.behind_repartition(from, ids),
                    None => task,
                };
                task.restore_upstream(upstream);
                (task, plan)
            }
        };
        let from = if restore.snap.is_some() {
            tracing::info!(%topic, partition, at = restore.seek, "state restored from the changelog");
            "changelog"
        } else if restore.replay_until > restore.seek.unwrap_or(i64::MAX) {
            tracing::info!(%topic, partition, from = restore.seek, to = restore.replay_until, "restoring state by replay");
            "replay"
        } else {
            "none"
        };
        self.kafka.restores.with_label_values(&[from]).inc();
        self.tasks.insert((topic, partition), task);
        Ok(restore)
    }

    /// Reads the changelog snapshots the plans name, each beside its plan
    /// (`None`: not found, or no changelog).
    fn read_snapshots(
        &mut self,
        plans: Vec<(String, i32, Restore)>,
    ) -> Vec<(String, i32, Restore, Option<TaskState>)> {
        let Some(changelog) = self.changelog.as_mut() else {
            return plans.into_iter().map(|(t, p, r)| (t, p, r, None)).collect();
        };
        let wanted: HashMap<String, (i32, u64)> = plans
            .iter()
            .filter_map(|(t, p, r)| r.snap.map(|id| (format!("{t}:{p}"), (*p, id))))
            .collect();
        let started = Instant::now();
        let mut found = match changelog.read(&wanted, &self.stop) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the changelog; restoring by replay");
                HashMap::new()
            }
        };
        if !wanted.is_empty() {
            tracing::info!(wanted = wanted.len(), found = found.len(), took = ?started.elapsed(), topic = changelog.topic(), "read the changelog");
        }
        plans
            .into_iter()
            .map(|(t, p, r)| {
                let saved = found.remove(&format!("{t}:{p}"));
                (t, p, r, saved)
            })
            .collect()
    }

    fn start_offset(&self, topic: &str, restore: &Restore) -> Offset {
        let start_from = match self.stages.role(topic) {
            Role::Side(i) => self
                .stages
                .side(i)
                .map_or(self.start_from, |s| s.start_from),
            // A repartition topic is read from its start: nothing in it
            // is older than the pipeline.
            Role::Stage(n) if n > 0 => StartFrom::Earliest,
            Role::Stage(_) => self.start_from,
        };
        match (restore.seek, start_from) {
            (Some(o), _) => Offset::Offset(o),
            (None, StartFrom::Earliest) => Offset::Beginning,
            (None, StartFrom::Latest) => Offset::End,
        }
    }

    /// New partitions: restore plans, tasks, and the offsets to read from.
    pub(super) fn assign(
        &mut self,
        consumer: &KafkaConsumer,
        tpl: &TopicPartitionList,
    ) -> Result<TopicPartitionList, RunError> {
        // Not ready while the new tasks read their state back.
        self.metrics
            .ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let out = self.start_tasks(consumer, tpl)?;
        self.publish();
        Ok(out)
    }

    /// Starts a task per partition of `tpl` from its checkpoint (through
    /// its changelog snapshot, else by replay); the offsets to read from.
    fn start_tasks(
        &mut self,
        consumer: &KafkaConsumer,
        tpl: &TopicPartitionList,
    ) -> Result<TopicPartitionList, RunError> {
        let mut out = TopicPartitionList::new();
        let plans = self.plans(consumer, tpl)?;
        for (topic, partition, restore, saved) in self.read_snapshots(plans) {
            let restore = self.start_task(&topic, partition, restore, saved)?;
            out.add_partition_offset(&topic, partition, self.start_offset(&topic, &restore))
                .map_err(kafka_err)?;
        }
        Ok(out)
    }

    /// Partitions leave: checkpoint (unless they were lost, or closing),
    /// then drop their tasks.
    pub(super) fn revoke(
        &mut self,
        consumer: &KafkaConsumer,
        tpl: &TopicPartitionList,
    ) -> Result<(), RunError> {
        if consumer.assignment_lost() {
            tracing::warn!("partitions lost (session timeout?); dropping their uncommitted work");
            self.abort(None);
            self.drop_tasks(tpl);
            return self.rewind(consumer);
        }
        if !self.closing {
            self.checkpoint(consumer)?;
        }
        self.drop_tasks(tpl);
        Ok(())
    }

    fn drop_tasks(&mut self, tpl: &TopicPartitionList) {
        for e in tpl.elements() {
            let topic = self.intern(e.topic());
            self.tasks.remove(&(topic, e.partition()));
            let _ = self
                .kafka
                .lag
                .remove_label_values(&[e.topic(), &e.partition().to_string()]);
        }
        self.publish();
    }

    /// Drops every task and restores it from the last checkpoint, reading
    /// again from its low-water offset (after an aborted checkpoint).
    fn rewind(&mut self, consumer: &KafkaConsumer) -> Result<(), RunError> {
        // Re-read records are timed again when they commit.
        self.uncommitted.clear();
        if self.tasks.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in self.tasks.keys() {
            tpl.add_partition(topic, *partition);
        }
        self.tasks.clear();
        let seek = self.start_tasks(consumer, &tpl)?;
        let result = consumer
            .seek_partitions(seek, COORDINATOR_TIMEOUT)
            .map_err(kafka_err)?;
        for e in result.elements() {
            if let Err(err) = e.error() {
                return Err(kafka_err(err));
            }
        }
        self.dirty = true;
        self.publish();
        Ok(())
    }
}

/// How far `task` is done: its `processed` position, or the consumer's
/// if it is further and the task has nothing queued — past the
/// transaction markers it read (the last offsets of a partition written
/// by transactions are markers, not records). Committing that, as Kafka
/// Streams does, lets an idle pipeline show no lag.
fn done_up_to(read: Option<&TopicPartitionList>, task: &Task, processed: i64) -> i64 {
    if task.has_pending() {
        return processed;
    }
    read.and_then(|r| r.find_partition(&task.topic, task.partition))
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o.max(processed)),
            _ => None,
        })
        .unwrap_or(processed)
}

pub(super) fn kafka_err(e: RdError) -> RunError {
    RunError::Connector(Box::new(KafkaError::Client(e)))
}
