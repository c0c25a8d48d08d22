//! From the engine's acknowledgements to shard checkpoints.
//!
//! The source stamps every record with the next number of one global
//! sequence (`position.offset`) and notes, per batch, the shard and the
//! Kinesis sequence number of each record. [`Ledger::durable_below`] turns
//! "everything below n is durable" into, per shard, the highest sequence
//! number below n; a shard read to its end gets `SHARD_END` once every
//! record read before its end is durable.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::lease::{LeaseTable, Outcome, SHARD_END};
use crate::source::Acker;

/// What the ledger remembers, in global order.
#[derive(Debug)]
enum Entry {
    /// Records `first..first + seqs.len()` read from `shard`.
    Read {
        first: i64,
        shard: Arc<str>,
        seqs: VecDeque<String>,
        /// The lease moved away: its records must not checkpoint it.
        void: bool,
    },
    /// `shard` was read to its end after everything before this entry.
    End { shard: Arc<str>, void: bool },
}

/// Global sequence numbers and the shard positions they stand for.
#[derive(Debug, Default)]
pub struct Ledger {
    next: i64,
    entries: VecDeque<Entry>,
    /// Leases to give back when the acker is dropped (graceful stop).
    release: Vec<String>,
    /// Shards to read again from their stored position (`exactlyOnce`: a
    /// commit found another writer's position); their reads are refused
    /// until the source re-opens them.
    reopen: HashSet<String>,
    /// `exactlyOnce`: each shard's position as stored in the database when
    /// this worker last read or wrote it (compare-and-set).
    stored: HashMap<String, Option<String>>,
}

/// What [`Ledger::settle`] found durable.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// The position each shard may move to.
    pub moves: BTreeMap<Arc<str>, String>,
    /// Input numbers read from shards whose lease moved away: their output
    /// must not be committed (the new owner re-reads them).
    pub voided: Vec<Range<i64>>,
}

impl Ledger {
    /// Numbers records `seqs` read from `shard`; returns the first number,
    /// or `None` when the shard waits to be re-opened (the records were
    /// read from a stale position: drop them).
    pub fn stamp(&mut self, shard: &Arc<str>, seqs: Vec<String>) -> Option<i64> {
        if self.reopen.contains(&**shard) {
            return None;
        }
        let first = self.next;
        self.next += i64::try_from(seqs.len()).unwrap_or(i64::MAX);
        if !seqs.is_empty() {
            self.entries.push_back(Entry::Read {
                first,
                shard: shard.clone(),
                seqs: seqs.into(),
                void: false,
            });
        }
        Some(first)
    }

    /// Notes that `shard` was read to its end.
    pub fn end(&mut self, shard: &Arc<str>) {
        self.entries.push_back(Entry::End {
            shard: shard.clone(),
            void: false,
        });
    }

    /// Forgets what was read from `shard` (its lease moved to another
    /// worker, who re-reads from the stored checkpoint).
    pub fn void(&mut self, shard: &str) {
        for e in &mut self.entries {
            match e {
                Entry::Read { shard: s, void, .. } | Entry::End { shard: s, void }
                    if &**s == shard =>
                {
                    *void = true;
                }
                _ => {}
            }
        }
    }

    /// Voids `shard` and asks the source to read it again from its stored
    /// position.
    pub fn reopen(&mut self, shard: &str) {
        self.void(shard);
        self.reopen.insert(shard.to_owned());
    }

    /// The shards to re-open (the source then clears the request).
    pub fn take_reopen(&mut self) -> Vec<String> {
        self.reopen.drain().collect()
    }

    /// Notes `shard`'s position as stored in the database.
    pub fn set_stored(&mut self, shard: &str, position: Option<String>) {
        self.stored.insert(shard.to_owned(), position);
    }

    /// `shard`'s position as last read from or written to the database.
    #[must_use]
    pub fn stored(&self, shard: &str) -> Option<String> {
        self.stored.get(shard).cloned().flatten()
    }

    /// Leases to release when the source stops.
    pub fn set_release(&mut self, keys: Vec<String>) {
        self.release = keys;
    }

    /// Everything below `below` is durable: the checkpoint each shard may
    /// move to (the last one wins), and those entries are forgotten.
    pub fn durable_below(&mut self, below: i64) -> BTreeMap<Arc<str>, String> {
        self.settle(below).moves
    }

    /// Everything below `below` is processed: the position each shard may
    /// move to and the voided input among it; those entries are forgotten.
    pub fn settle(&mut self, below: i64) -> Settled {
        let mut out = BTreeMap::new();
        let mut voided = Vec::new();
        while let Some(front) = self.entries.front_mut() {
            match front {
                Entry::End { shard, void } => {
                    if !*void {
                        out.insert(shard.clone(), SHARD_END.to_owned());
                    }
                }
                Entry::Read {
                    first,
                    shard,
                    seqs,
                    void,
                } => {
                    let len = i64::try_from(seqs.len()).unwrap_or(i64::MAX);
                    if *first >= below {
                        break;
                    }
                    if *first + len > below {
                        // Partly durable: keep the rest.
                        let done = usize::try_from(below - *first).unwrap_or(0);
                        let last = seqs.drain(..done).next_back();
                        if *void {
                            voided.push(*first..below);
                        }
                        *first = below;
                        if let (false, Some(last)) = (*void, last) {
                            out.insert(shard.clone(), last);
                        }
                        break;
                    }
                    if *void {
                        voided.push(*first..*first + len);
                    } else if let Some(last) = seqs.back() {
                        out.insert(shard.clone(), last.clone());
                    }
                }
            }
            self.entries.pop_front();
        }
        Settled { moves: out, voided }
    }
}

/// The [`Acker`] of a Kinesis source: writes checkpoints into the leases
/// this worker holds (from the engine thread, on its own small runtime).
pub struct Checkpointer {
    ledger: Arc<Mutex<Ledger>>,
    table: LeaseTable,
    me: String,
    rt: tokio::runtime::Runtime,
    written: BTreeMap<Arc<str>, String>,
}

impl Checkpointer {
    /// A checkpointer for `me`'s leases in `table`.
    #[must_use]
    pub fn new(
        ledger: Arc<Mutex<Ledger>>,
        table: LeaseTable,
        me: String,
        rt: tokio::runtime::Runtime,
    ) -> Self {
        Self {
            ledger,
            table,
            me,
            rt,
            written: BTreeMap::new(),
        }
    }
}

impl Checkpointer {
    /// Writes `moves` into the leases this worker holds. A failed
    /// checkpoint only means more to re-read after a crash; a later
    /// acknowledgement writes a newer one.
    pub fn write(&mut self, moves: BTreeMap<Arc<str>, String>) {
        for (shard, cp) in moves {
            if self.written.get(&shard) == Some(&cp) {
                continue;
            }
            match self
                .rt
                .block_on(self.table.checkpoint(&shard, &self.me, &cp))
            {
                Ok(Outcome::Done(())) => {
                    tracing::debug!(%shard, checkpoint = %cp, "checkpointed");
                    self.written.insert(shard, cp);
                }
                Ok(Outcome::Lost) => {
                    tracing::info!(%shard, "lease moved before its checkpoint; the new owner re-reads");
                }
                Err(e) => tracing::warn!(%shard, error = %e, "checkpoint failed"),
            }
        }
    }
}

impl Acker for Checkpointer {
    fn ack_below(&mut self, below: i64) {
        let moves = match self.ledger.lock() {
            Ok(mut l) => l.durable_below(below),
            Err(_) => return,
        };
        self.write(moves);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let keys = self
            .ledger
            .lock()
            .map(|mut l| std::mem::take(&mut l.release))
            .unwrap_or_default();
        for key in keys {
            if let Err(e) = self.rt.block_on(self.table.release(&key, &self.me)) {
                tracing::warn!(shard = %key, error = %e, "releasing the lease failed; it expires instead");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(r: std::ops::Range<u32>) -> Vec<String> {
        r.map(|i| format!("s{i}")).collect()
    }

    #[test]
    fn each_shard_checkpoints_its_highest_durable_sequence_number() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut l = Ledger::default();
        assert_eq!(l.stamp(&a, seqs(0..3)), Some(0)); // 0, 1, 2
        assert_eq!(l.stamp(&b, seqs(10..12)), Some(3)); // 3, 4
        assert_eq!(l.stamp(&a, seqs(3..5)), Some(5)); // 5, 6
        assert!(l.durable_below(0).is_empty());
        assert_eq!(l.durable_below(2), [(a.clone(), "s1".to_owned())].into());
        assert_eq!(
            l.durable_below(6),
            [(a.clone(), "s3".to_owned()), (b.clone(), "s11".to_owned())].into()
        );
        assert_eq!(l.durable_below(100), [(a, "s4".to_owned())].into());
        assert!(l.durable_below(100).is_empty());
    }

    #[test]
    fn shard_end_waits_for_every_earlier_record() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut l = Ledger::default();
        l.stamp(&b, seqs(0..2)); // 0, 1
        l.stamp(&a, seqs(0..2)); // 2, 3
        l.end(&a);
        assert_eq!(
            l.durable_below(3),
            [(b.clone(), "s1".to_owned()), (a.clone(), "s0".to_owned())].into()
        );
        assert_eq!(l.durable_below(4), [(a, SHARD_END.to_owned())].into());
    }

    #[test]
    fn a_lost_lease_is_not_checkpointed() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut l = Ledger::default();
        l.stamp(&a, seqs(0..2));
        l.stamp(&b, seqs(0..2));
        l.end(&a);
        l.void("a");
        assert_eq!(l.durable_below(10), [(b, "s1".to_owned())].into());
    }

    #[test]
    fn voided_input_is_reported_and_a_reopened_shard_refuses_stale_reads() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut l = Ledger::default();
        l.stamp(&a, seqs(0..3)); // 0, 1, 2
        l.stamp(&b, seqs(0..2)); // 3, 4
        l.stamp(&a, seqs(3..5)); // 5, 6
        l.reopen("a");
        assert_eq!(l.stamp(&a, seqs(5..6)), None, "read before the re-open");
        assert_eq!(l.stamp(&b, seqs(2..3)), Some(7));
        let s = l.settle(6);
        assert_eq!(s.moves, [(b.clone(), "s1".to_owned())].into());
        assert_eq!(s.voided, vec![0..3, 5..6]);
        assert_eq!(l.take_reopen(), vec!["a".to_owned()]);
        assert_eq!(l.stamp(&a, seqs(3..4)), Some(8), "re-opened");
        let s = l.settle(9);
        assert_eq!(s.voided, vec![6..7]);
        assert_eq!(s.moves, [(b, "s2".to_owned()), (a, "s3".to_owned())].into());
    }
}
