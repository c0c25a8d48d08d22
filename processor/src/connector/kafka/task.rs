//! A task: one assigned input partition with its own step chain, its own
//! watermark and its own state, as in Kafka Streams. A rebalance moves
//! tasks, and with them their state (through the changelog, else rebuilt
//! by replay; see `checkpoint`).

use std::sync::Arc;

use crate::record::Record;
use crate::runtime::Metrics;
use crate::runtime::chain::{self, Outputs};
use crate::step::Step;
use crate::{RunError, source};

use super::changelog::{Changelog, TaskState};
use super::checkpoint::{self, Meta, Restore};
use super::repartition::{Mark, Upstream};

/// One input partition's processing.
pub struct Task {
    /// Input topic.
    pub topic: Arc<str>,
    /// Input partition.
    pub partition: i32,
    steps: Vec<Box<dyn Step>>,
    /// Next offset to process (the position `P` a checkpoint commits);
    /// -1 before the first record of a partition without a checkpoint.
    next: i64,
    /// Records below this offset are replays.
    replay_until: i64,
    bound: i64,
    max_ts: i64,
    wm: i64,
    /// Whether the steps have seen the restored watermark.
    primed: bool,
    pending: Vec<Record>,
    /// Records of a join's `with` side, for the first step's second input.
    pending_other: Vec<Record>,
    /// When the oldest pending record was read (the latency histogram).
    pending_since: Option<std::time::Instant>,
    /// The first step this task runs (a later stage of a repartitioned
    /// pipeline starts behind its repartition topic).
    from: usize,
    /// Behind a repartition topic: the upstream tasks' watermarks, whose
    /// minimum is this task's watermark.
    upstream: Option<Upstream>,
    /// When the latest batch of records began to arrive (idleness).
    last_input: std::time::Instant,
    /// The watermark last told to the next stage.
    told: Option<Mark>,
    /// The latest snapshot written to the changelog: its id and a hash of
    /// its bytes (an unchanged state is not written again).
    snapped: Option<(u64, u64)>,
}

impl Task {
    /// A task restored per `restore`; `bound` is `maxOutOfOrderness` (ms).
    #[must_use]
    pub fn new(
        topic: Arc<str>,
        partition: i32,
        steps: Vec<Box<dyn Step>>,
        restore: Restore,
        bound: i64,
    ) -> Self {
        Self {
            topic,
            partition,
            steps,
            next: restore.seek.unwrap_or(-1),
            replay_until: restore.replay_until,
            bound,
            max_ts: if restore.wm == i64::MIN {
                i64::MIN
            } else {
                restore.wm.saturating_add(bound)
            },
            wm: restore.wm,
            primed: restore.wm == i64::MIN,
            pending: Vec::new(),
            pending_other: Vec::new(),
            pending_since: None,
            from: 0,
            upstream: None,
            last_input: std::time::Instant::now(),
            told: None,
            snapped: None,
        }
    }

    /// Puts back what the task heard from upstream, from a snapshot.
    pub fn restore_upstream(&mut self, upstream: Option<Upstream>) {
        if let (Some(u), Some(_)) = (upstream, &self.upstream) {
            self.upstream = Some(u);
        }
    }

    /// This task runs the steps from `from` on, reading a repartition
    /// topic written by the `upstream` tasks.
    #[must_use]
    pub fn behind_repartition(mut self, from: usize, upstream: &[Arc<str>]) -> Self {
        self.from = from;
        self.upstream = Some(Upstream::new(upstream, self.wm));
        self
    }

    /// The `topic:partition` naming this task to the next stage.
    #[must_use]
    pub fn id(&self) -> String {
        format!("{}:{}", self.topic, self.partition)
    }

    /// Notes an upstream watermark read at `offset` (a control record of
    /// a repartition topic); `None` for a stale fetch.
    pub fn note_mark(&mut self, offset: i64, from: std::sync::Arc<str>, mark: Mark) -> Option<()> {
        if offset < self.next {
            return None;
        }
        self.next = offset + 1;
        if let Some(u) = &mut self.upstream {
            u.note(from, mark);
        }
        Some(())
    }

    /// Whether a re-keyed record from `seq` is new (see
    /// `repartition::Upstream::fresh`); records without one always are.
    pub fn fresh(&mut self, seq: Option<super::repartition::Seq>) -> bool {
        match (seq, &mut self.upstream) {
            (Some(seq), Some(u)) => u.fresh(seq),
            _ => true,
        }
    }

    /// The watermark to tell the next stage: `Idle` after `idle` without a
    /// record, else the watermark once there is one; `None` when it is
    /// what was told last.
    pub fn mark_to_tell(&mut self, idle: Option<std::time::Duration>) -> Option<Mark> {
        let now = if idle.is_some_and(|d| !self.has_pending() && self.last_input.elapsed() >= d) {
            Mark::Idle
        } else if self.wm == i64::MIN {
            return None;
        } else {
            Mark::At(self.wm)
        };
        if self.told == Some(now) {
            return None;
        }
        self.told = Some(now);
        Some(now)
    }

    /// Whether the task is still rebuilding state below its committed position.
    #[must_use]
    pub fn replaying(&self) -> bool {
        self.next < self.replay_until
    }

    /// The task's watermark.
    #[must_use]
    pub fn watermark(&self) -> i64 {
        self.wm
    }

    /// The processed position, once known.
    #[must_use]
    pub fn position(&self) -> Option<i64> {
        (self.next >= 0).then_some(self.next)
    }

    /// Queues a record read at `offset`; returns whether it is a replay.
    /// Records below the position are stale fetches and ignored.
    pub fn add(&mut self, rec: Record) -> Option<bool> {
        self.add_to(rec, false)
    }

    /// As [`add`](Self::add), for a join's `with` side (behind a
    /// repartition topic): the first step takes it as its second input.
    pub fn add_other(&mut self, rec: Record) -> Option<bool> {
        self.add_to(rec, true)
    }

    fn add_to(&mut self, mut rec: Record, other: bool) -> Option<bool> {
        let offset = rec.position.offset;
        if offset < self.next {
            return None;
        }
        self.next = offset + 1;
        rec.replay = offset < self.replay_until;
        self.max_ts = self.max_ts.max(rec.event_time);
        let replay = rec.replay;
        if !self.has_pending() {
            // Once per batch, not per record: reading the clock was 2-4 %
            // of the engine's time, and idleness needs no finer grain.
            let now = std::time::Instant::now();
            self.pending_since = Some(now);
            self.last_input = now;
        }
        if other {
            self.pending_other.push(rec);
        } else {
            self.pending.push(rec);
        }
        Some(replay)
    }

    /// Notes a record that went to the dead-letter sink without a step.
    pub fn skip(&mut self, offset: i64) -> Option<bool> {
        if offset < self.next {
            return None;
        }
        self.next = offset + 1;
        Some(offset < self.replay_until)
    }

    /// Records waiting for [`process`](Self::process).
    #[must_use]
    pub fn pending_len(&self) -> usize {
        self.pending.len() + self.pending_other.len()
    }

    /// Whether records wait for [`process`](Self::process).
    #[must_use]
    pub fn has_pending(&self) -> bool {
        !(self.pending.is_empty() && self.pending_other.is_empty())
    }

    /// Runs the queued records through the steps, then advances the
    /// watermark (firing windows).
    ///
    /// # Errors
    /// When a step stops the pipeline or a sink fails.
    pub fn process(&mut self, out: &mut Outputs, m: &Metrics) -> Result<(), RunError> {
        if !self.primed {
            // Windows that closed before the checkpoint must stay closed
            // for the records replayed now.
            self.primed = true;
            chain::advance(&mut self.steps, self.wm, out, m)?;
        }
        if !self.pending.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            chain::push(&mut self.steps, self.from, batch, out, m)?;
        }
        if !self.pending_other.is_empty() {
            let batch = std::mem::take(&mut self.pending_other);
            chain::push_other(&mut self.steps, self.from, batch, out, m)?;
        }
        if let Some(since) = self.pending_since.take() {
            m.latency.record(since.elapsed());
        }
        let wm = match &self.upstream {
            Some(u) => u.watermark().unwrap_or(i64::MIN),
            None if self.max_ts == i64::MIN => i64::MIN,
            None => self.max_ts.saturating_sub(self.bound),
        };
        if wm > self.wm {
            self.wm = wm;
            chain::advance(&mut self.steps, wm, out, m)?;
        }
        Ok(())
    }

    /// Processing time moved on: triggers.
    ///
    /// # Errors
    /// When a step stops the pipeline or a sink fails.
    pub fn tick(&mut self, out: &mut Outputs, m: &Metrics) -> Result<(), RunError> {
        chain::tick(&mut self.steps, source::now_ms(), out, m)
    }

    /// What a checkpoint commits for this task: the position and its
    /// metadata; `None` while replaying (the previous checkpoint still
    /// holds) or before the first record.
    #[must_use]
    pub fn checkpoint(&self) -> Option<(i64, Meta)> {
        if self.replaying() || self.next < 0 {
            return None;
        }
        let low = checkpoint::low_water(self.next, chain::low_water(&self.steps));
        Some((
            self.next,
            Meta {
                low,
                wm: self.wm,
                snap: None,
            },
        ))
    }

    /// Writes the task's state to the changelog unless it is what was
    /// written last; the id of the snapshot that holds it, or `None` when
    /// it cannot be written (the restore then replays).
    pub fn snapshot(&mut self, changelog: &mut Changelog) -> Option<u64> {
        let state = TaskState::of(
            &self.steps,
            &changelog.fingerprints,
            self.wm,
            self.upstream.as_ref(),
        )?;
        let hash = state.hash();
        if let Some((id, h)) = self.snapped
            && h == hash
        {
            return Some(id);
        }
        match changelog.write(&self.id(), self.partition, &state) {
            Ok(id) => {
                self.snapped = Some((id, hash));
                Some(id)
            }
            Err(e) => {
                tracing::warn!(task = %self.id(), error = %e, "cannot write the state to the changelog; a restore will replay");
                self.snapped = None;
                None
            }
        }
    }

    /// Keys and windows held.
    #[must_use]
    pub fn state_size(&self) -> usize {
        self.steps.iter().map(|s| s.state_size()).sum()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::Position;

    fn rec(offset: i64, ts: i64) -> Record {
        Record {
            position: Position {
                source: "in".into(),
                partition: 0,
                offset,
            },
            ..Record::new(json!({}), ts)
        }
    }

    #[test]
    fn records_below_the_committed_offset_are_replays_and_hold_the_checkpoint() {
        let restore = Restore {
            seek: Some(5),
            replay_until: 8,
            wm: 1_000,
            snap: None,
        };
        let mut t = Task::new("in".into(), 0, Vec::new(), restore, 100);
        assert!(t.replaying());
        assert_eq!(t.watermark(), 1_000);
        assert_eq!(t.add(rec(5, 900)), Some(true));
        assert_eq!(t.add(rec(5, 900)), None, "a stale fetch is ignored");
        assert_eq!(t.add(rec(6, 900)), Some(true));
        assert_eq!(t.skip(7), Some(true), "an undecodable replay");
        assert!(!t.replaying());
        assert_eq!(t.add(rec(8, 1_500)), Some(false));
        let m = Metrics::default();
        let mut out = Outputs::new(Vec::new(), std::collections::HashMap::new(), None);
        t.process(&mut out, &m).unwrap();
        assert_eq!(t.watermark(), 1_400, "max event time minus the bound");
        let meta = Meta {
            low: 9,
            wm: 1_400,
            snap: None,
        };
        assert_eq!(t.checkpoint(), Some((9, meta)));
    }

    #[test]
    fn a_task_without_checkpoint_commits_nothing_before_its_first_record() {
        let mut t = Task::new("in".into(), 0, Vec::new(), Restore::FRESH, 0);
        assert!(!t.replaying());
        assert_eq!(t.checkpoint(), None);
        assert_eq!(t.add(rec(42, 7)), Some(false));
        assert_eq!(t.checkpoint().map(|(p, _)| p), Some(43));
    }

    #[test]
    fn a_replaying_task_commits_nothing() {
        let restore = Restore {
            seek: Some(0),
            replay_until: 3,
            wm: i64::MIN,
            snap: None,
        };
        let t = Task::new("in".into(), 0, Vec::new(), restore, 0);
        assert_eq!(t.checkpoint(), None);
    }
}
