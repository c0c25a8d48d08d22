//! The interval-join kernel: pure, synchronous state that pairs keyed,
//! timestamped records of two inputs and releases them as the watermark
//! passes. The step around it (`super::Join`) evaluates the key expressions.
//!
//! # Guarantees
//! - A left record `l` and a right record `r` with equal keys are paired
//!   exactly once when `|l.ts - r.ts| <= within`, provided neither was late
//!   (its time below the watermark when it arrived).
//! - A record is held until the watermark passes `ts + within` (strictly:
//!   `wm > ts + within`), then dropped; outer sides are emitted unmatched at
//!   that moment if they never matched. Held state is therefore bounded by
//!   the records of the last `within` + out-of-orderness of event time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use tributary_crds::JoinType;

use super::acks::{Acks, Downstream};
use super::output;
use crate::record::Record;
use crate::step::window::key::Key;

/// Which input a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The records reaching the step through the chain.
    Left,
    /// The records of the step's `with` source.
    Right,
}

impl Side {
    /// Index of this side's offsets in [`Held::low`].
    pub const fn index(self) -> usize {
        match self {
            Self::Left => 0,
            Self::Right => 1,
        }
    }
}

/// A record behind the watermark was not taken.
#[derive(Debug, PartialEq, Eq)]
pub struct Late;

struct Held {
    rec: Record,
    matched: bool,
    seq: u64,
    /// The smallest offset of this record and of every record it paired
    /// with, per input (left, right; the two inputs number their records
    /// each on its own, except behind a repartition topic): a restore must
    /// replay its partners too, or it forgets it matched. Direct partners
    /// only: a partner still held keeps its own partners.
    low: [i64; 2],
    /// The largest offset among its partners (of the other input),
    /// `i64::MIN` without any: once released, it needs one of them back
    /// if it comes back itself (see [`super::acks`]).
    high: i64,
    /// A right record's pairs as the later steps see them: the largest
    /// left offset among them (a pair carries its left record's position),
    /// `i64::MIN` when it paired with nothing, `i64::MAX` when a pair has
    /// no offset to follow. See [`super::acks`].
    paired_up_to: i64,
    /// A replayed record that had left the state before the checkpoint's
    /// watermark: it is back only to restore its partners' `matched`, and
    /// is never released again.
    ghost: bool,
}

/// An offset that holds back a low-water mark (derived positions do not).
fn offset_of(rec: &Record) -> i64 {
    let o = rec.position.offset;
    if o >= 0 { o } else { i64::MAX }
}

/// The records of one key, both sides.
#[derive(Default)]
struct Slot {
    key: Option<Key>,
    left: Vec<Held>,
    right: Vec<Held>,
    /// Already listed for the purge of the current watermark advance.
    queued: bool,
}

/// How an unmatched record of one side is shaped for output.
type Shape = fn(Record) -> Record;

/// See the module docs.
pub struct Kernel {
    within: i64,
    kind: JoinType,
    index: HashMap<Key, usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// `(ts + within, slot)` of every held record, earliest first. Entries
    /// may be stale (the record left with an earlier purge, the slot was
    /// reused): popping one only triggers a purge, which is idempotent.
    expiry: BinaryHeap<Reverse<(i64, usize)>>,
    wm: i64,
    seq: u64,
    held: usize,
    /// What acknowledging sources are told.
    acks: Acks,
}

impl Kernel {
    /// A kernel pairing records at most `within` ms apart.
    #[must_use]
    pub fn new(within: i64, kind: JoinType) -> Self {
        Self {
            within: within.max(0),
            kind,
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            expiry: BinaryHeap::new(),
            wm: i64::MIN,
            seq: 0,
            held: 0,
            acks: Acks::default(),
        }
    }

    /// Keeps what acknowledging sources need to know (see
    /// [`super::acks`]): `side`, the `with` source acknowledges; `main`,
    /// the main source does.
    #[must_use]
    pub fn acknowledging(mut self, side: bool, main: bool) -> Self {
        self.acks = Acks::new(side, main, self.kind);
        self
    }

    /// The watermark the kernel last saw.
    #[must_use]
    pub fn watermark(&self) -> i64 {
        self.wm
    }

    /// Records held, both sides.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held
    }

    /// The smallest source offset a restore must replay: of every held
    /// record and of every record one of them paired with, both inputs.
    /// Behind a Kafka repartition topic both sides are read from one
    /// partition, so both count.
    #[must_use]
    pub fn low_water(&self) -> Option<i64> {
        [Side::Left, Side::Right]
            .into_iter()
            .filter_map(|s| self.low_water_of(s))
            .min()
    }

    /// The smallest offset of input `side` a restore must replay: of every
    /// held record of that side and of every partner of a held record.
    #[must_use]
    pub fn low_water_of(&self, side: Side) -> Option<i64> {
        self.slots
            .iter()
            .flat_map(|s| s.left.iter().chain(&s.right))
            .map(|h| h.low[side.index()])
            .filter(|&o| o != i64::MAX)
            .min()
    }

    /// The smallest right offset that may not be acknowledged yet, given
    /// what the later steps hold: a right record is needed while it, or a
    /// partner, is held here, and after its release while a later step
    /// still holds a pair or an unmatched row it caused.
    pub fn right_low_water(&mut self, downstream: Downstream) -> Option<i64> {
        let pending = self.acks.downstream(downstream);
        match (self.low_water_of(Side::Right), pending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lowers the acknowledgement marks of both inputs so that neither
    /// redelivers a released record without one of its partners, given
    /// what the brokers `confirmed` (see [`super::acks`]).
    #[must_use]
    pub fn cross_marks(&self, main: i64, side: i64, confirmed: (i64, i64)) -> (i64, i64) {
        self.acks.cross(main, side, confirmed)
    }

    /// Both inputs confirmed they acknowledged everything below these marks.
    pub fn acked(&mut self, main: i64, side: i64) {
        self.acks.acked(main, side);
    }

    /// A right record `rec` was output as an unmatched row at once (its key
    /// is null).
    pub fn emitted_right(&mut self, rec: &Record) {
        self.acks.emitted_right(offset_of(rec));
    }

    fn slot_for(&mut self, key: Key) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        });
        if let Some(slot) = self.slots.get_mut(i) {
            slot.key = Some(key.clone());
        }
        self.index.insert(key, i);
        i
    }

    /// Takes `rec` of `side` with its join `key`, appending the pairs it
    /// completes to `out`. A replayed record (a restore rebuilding state)
    /// is always taken, as a ghost when it is too old to be held at the
    /// watermark: its pairs with other replays are replays too.
    ///
    /// # Errors
    /// [`Late`] when a new record's time is below the watermark: it is not
    /// taken.
    pub fn insert(
        &mut self,
        side: Side,
        key: Key,
        rec: Record,
        out: &mut Vec<Record>,
    ) -> Result<(), Late> {
        let ts = rec.event_time;
        if ts < self.wm && !rec.replay {
            return Err(Late);
        }
        let ghost = ts.saturating_add(self.within) < self.wm;
        let me = side.index();
        let mut low = [i64::MAX; 2];
        low[me] = offset_of(&rec);
        let mut high = i64::MIN;
        let mut paired_up_to = i64::MIN;
        let i = self.slot_for(key);
        let within = self.within.unsigned_abs();
        let Some(slot) = self.slots.get_mut(i) else {
            return Ok(());
        };
        let others = match side {
            Side::Left => &mut slot.right,
            Side::Right => &mut slot.left,
        };
        let mut matched = false;
        for o in others.iter_mut() {
            if ts.abs_diff(o.rec.event_time) <= within {
                let pair = match side {
                    Side::Left => output::joined(&rec, &o.rec),
                    Side::Right => output::joined(&o.rec, &rec),
                };
                // The later steps see the pair at its left record's offset.
                let seen_at = match pair.position.offset {
                    o if o >= 0 => o,
                    _ => i64::MAX,
                };
                match side {
                    Side::Left => o.paired_up_to = o.paired_up_to.max(seen_at),
                    Side::Right => paired_up_to = paired_up_to.max(seen_at),
                }
                out.push(pair);
                o.matched = true;
                o.low[me] = o.low[me].min(offset_of(&rec));
                o.high = o.high.max(offset_of(&rec));
                low[1 - me] = low[1 - me].min(offset_of(&o.rec));
                high = high.max(offset_of(&o.rec));
                matched = true;
            }
        }
        let held = Held {
            rec,
            matched,
            seq: self.seq,
            low,
            high,
            paired_up_to,
            ghost,
        };
        self.seq += 1;
        match side {
            Side::Left => slot.left.push(held),
            Side::Right => slot.right.push(held),
        }
        self.held += 1;
        self.expiry
            .push(Reverse((ts.saturating_add(self.within), i)));
        Ok(())
    }

    /// The watermark reached `wm`: records with `ts + within < wm` can no
    /// longer match anything that is not late; they leave the state, and
    /// the outer sides' unmatched ones are appended to `out` in event-time
    /// order (arrival order among equal times).
    pub fn advance(&mut self, wm: i64, out: &mut Vec<Record>) {
        if wm <= self.wm {
            return;
        }
        self.wm = wm;
        let mut touched = Vec::new();
        while let Some(&Reverse((deadline, i))) = self.expiry.peek() {
            if deadline >= wm {
                break;
            }
            self.expiry.pop();
            if let Some(slot) = self.slots.get_mut(i)
                && !slot.queued
            {
                slot.queued = true;
                touched.push(i);
            }
        }
        let mut released = Vec::new();
        let within = self.within;
        for i in touched {
            self.purge(
                i,
                |h| h.rec.event_time.saturating_add(within) < wm,
                &mut released,
            );
        }
        self.emit_sorted(released, out);
    }

    /// Bounded input ended: every held record leaves, the outer sides'
    /// unmatched ones are appended to `out`.
    pub fn drain(&mut self, out: &mut Vec<Record>) {
        self.wm = i64::MAX;
        let mut released = Vec::new();
        for i in 0..self.slots.len() {
            self.purge(i, |_| true, &mut released);
        }
        self.expiry.clear();
        self.emit_sorted(released, out);
    }

    /// Removes the records of slot `i` that `gone` selects; collects the
    /// unmatched ones of outer sides, shaped for output, into `released`.
    fn purge(
        &mut self,
        i: usize,
        gone: impl Fn(&Held) -> bool,
        released: &mut Vec<(i64, u64, Record)>,
    ) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        slot.queued = false;
        let sides: [(&mut Vec<Held>, bool, Shape, Side); 2] = [
            (
                &mut slot.left,
                self.kind.keeps_left(),
                output::left_only,
                Side::Left,
            ),
            (
                &mut slot.right,
                self.kind.keeps_right(),
                output::right_only,
                Side::Right,
            ),
        ];
        for (held, keep, shape, side) in sides {
            if !held.iter().any(&gone) {
                continue;
            }
            let (out, stay): (Vec<Held>, Vec<Held>) =
                std::mem::take(held).into_iter().partition(&gone);
            *held = stay;
            self.held -= out.len();
            for h in &out {
                let unmatched_row = keep && !(h.matched || h.ghost);
                self.acks.leaving(
                    side,
                    offset_of(&h.rec),
                    h.high,
                    h.paired_up_to,
                    unmatched_row,
                );
            }
            if keep {
                // Released now, past the restored watermark: new output
                // even when the record itself was replayed (a record whose
                // release was committed before is behind that watermark
                // and never held again).
                released.extend(
                    out.into_iter()
                        .filter(|h| !(h.matched || h.ghost))
                        .map(|h| {
                            let mut rec = shape(h.rec);
                            rec.replay = false;
                            (rec.event_time, h.seq, rec)
                        }),
                );
            }
        }
        if slot.left.is_empty() && slot.right.is_empty() {
            if let Some(key) = slot.key.take() {
                self.index.remove(&key);
                self.free.push(i);
            }
            slot.left.shrink_to(4);
            slot.right.shrink_to(4);
        }
    }

    fn emit_sorted(&self, mut released: Vec<(i64, u64, Record)>, out: &mut Vec<Record>) {
        released.sort_by_key(|(ts, seq, _)| (*ts, *seq));
        out.extend(released.into_iter().map(|(_, _, r)| r));
    }
}
