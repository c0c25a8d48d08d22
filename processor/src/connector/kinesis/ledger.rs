//! From the engine's acknowledgements to shard checkpoints.
//!
//! The source stamps every record with the next number of one global
//! sequence (`position.offset`) and notes, per batch, the shard and the
//! Kinesis sequence number of each record. [`Ledger::durable_below`] turns
//! "everything below n is durable" into, per shard, the highest sequence
//! number below n; a shard read to its end gets `SHARD_END` once every
//! record read before its end is durable.

use std::collections::{BTreeMap, VecDeque};
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
}

impl Ledger {
    /// Numbers records `seqs` read from `shard`; returns the first number.
    pub fn stamp(&mut self, shard: &Arc<str>, seqs: Vec<String>) -> i64 {
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
        first
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

    /// Leases to release when the source stops.
    pub fn set_release(&mut self, keys: Vec<String>) {
        self.release = keys;
    }

    /// Everything below `below` is durable: the checkpoint each shard may
    /// move to (the last one wins), and those entries are forgotten.
    pub fn durable_below(&mut self, below: i64) -> BTreeMap<Arc<str>, String> {
        let mut out = BTreeMap::new();
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
                        *first = below;
                        if let (false, Some(last)) = (*void, last) {
                            out.insert(shard.clone(), last);
                        }
                        break;
                    }
                    if let (false, Some(last)) = (*void, seqs.back()) {
                        out.insert(shard.clone(), last.clone());
                    }
                }
            }
            self.entries.pop_front();
        }
        out
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

impl Acker for Checkpointer {
    fn ack_below(&mut self, below: i64) {
        let moves = match self.ledger.lock() {
            Ok(mut l) => l.durable_below(below),
            Err(_) => return,
        };
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
                // A failed checkpoint only means more to re-read after a
                // crash; the next acknowledgement writes a newer one.
                Err(e) => tracing::warn!(%shard, error = %e, "checkpoint failed"),
            }
        }
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
        assert_eq!(l.stamp(&a, seqs(0..3)), 0); // 0, 1, 2
        assert_eq!(l.stamp(&b, seqs(10..12)), 3); // 3, 4
        assert_eq!(l.stamp(&a, seqs(3..5)), 5); // 5, 6
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
}
