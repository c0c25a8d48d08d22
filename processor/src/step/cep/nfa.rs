//! The matching kernel shared by the shapes: events, partial matches,
//! complete matches, their emission order and the after-match skip.
//!
//! The kernel is pure and per key: it sees events in event-time order as
//! `(ts, bits)` — bit `j` set when step `j`'s `when` holds, bit `32 + j` when
//! its `notFollowedBy` holds — plus an opaque payload, and it is told how far
//! event time has advanced. See `docs/cep.md` for the semantics it implements
//! and `brute.rs` for the same semantics written as a search over every
//! subsequence.

use std::cmp::{Ordering, Reverse};
use std::sync::Arc;

use tributary_crds::{AfterMatchSkip, Contiguity};

use super::all_of::AllOfMatcher;
use super::pattern::{PatternDef, Shape};
use super::sequence::SequenceMatcher;

/// One event taken into a (partial) match.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Taken<P> {
    /// Index of the step that took it.
    pub step: u16,
    /// Position of the event in the key's stream (processing order).
    pub id: u64,
    /// Event time.
    pub ts: i64,
    /// What the caller attached (the record value).
    pub payload: P,
}

/// The events of a partial match, shared by its branches.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RunData<P> {
    /// Events in order.
    pub taken: Vec<Taken<P>>,
}

impl<P: Clone> RunData<P> {
    /// A run whose first event is `t`.
    pub fn first(t: Taken<P>) -> Arc<Self> {
        Arc::new(Self { taken: vec![t] })
    }

    /// This run plus `t`.
    pub fn extend(self: &Arc<Self>, t: Taken<P>) -> Arc<Self> {
        let mut taken = Vec::with_capacity(self.taken.len() + 1);
        taken.extend(self.taken.iter().cloned());
        taken.push(t);
        Arc::new(Self { taken })
    }

    /// Time of the first event.
    pub fn start(&self) -> i64 {
        self.taken.first().map_or(i64::MIN, |t| t.ts)
    }

    /// Position of the first event.
    pub fn start_id(&self) -> u64 {
        self.taken.first().map_or(0, |t| t.id)
    }
}

/// A complete match.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Match<P> {
    /// The events, in order, with the step each matched.
    pub events: Vec<Taken<P>>,
    /// Time of the first event.
    pub start: i64,
    /// Time of the last event.
    pub end: i64,
    /// When a match that waited for its window to close would have closed
    /// (`start + within`); 0 for matches complete at their last event. Part
    /// of the emission order only.
    pub close: i64,
}

impl<P: Clone> Match<P> {
    /// A match made of a run's events.
    pub fn of(run: &RunData<P>, close: i64) -> Self {
        Self {
            start: run.start(),
            end: run.taken.last().map_or(i64::MIN, |t| t.ts),
            events: run.taken.clone(),
            close,
        }
    }
}

impl<P> Match<P> {
    /// Position of the first event.
    pub fn start_id(&self) -> u64 {
        self.events.first().map_or(0, |t| t.id)
    }

    /// Position of the last event.
    pub fn last_id(&self) -> u64 {
        self.events.last().map_or(0, |t| t.id)
    }

    /// The emission order of matches completed at the same point: earlier
    /// close, then earlier start, then more events, then by `(id, step)`
    /// pairs. Total, so output is deterministic.
    pub fn order(&self, other: &Self) -> Ordering {
        let pairs = |m: &Self| m.events.iter().map(|t| (t.id, t.step)).collect::<Vec<_>>();
        (self.close, self.start_id(), Reverse(self.events.len()))
            .cmp(&(other.close, other.start_id(), Reverse(other.events.len())))
            .then_with(|| pairs(self).cmp(&pairs(other)))
    }
}

/// Emits `batch` (completed at one point) in order into `out`. Under
/// `skipPastLastEvent` only matches starting after the last emitted match's
/// last event go out; returns that event's position, so the caller drops
/// its partial matches that started at or before it.
pub fn emit_batch<P>(
    mut batch: Vec<Match<P>>,
    skip: AfterMatchSkip,
    out: &mut Vec<Match<P>>,
) -> Option<u64> {
    batch.sort_by(Match::order);
    let mut last: Option<u64> = None;
    for m in batch {
        if skip == AfterMatchSkip::SkipPastLastEvent {
            if last.is_some_and(|l| m.start_id() <= l) {
                continue;
            }
            last = Some(m.last_id());
        }
        out.push(m);
    }
    last
}

/// The per-key matcher of a pattern.
#[derive(serde::Serialize, serde::Deserialize)]
pub enum Matcher<P> {
    /// `sequence` and `anyOf`.
    Sequence(SequenceMatcher<P>),
    /// `allOf`.
    AllOf(AllOfMatcher<P>),
}

impl<P: Clone> Matcher<P> {
    /// An empty matcher.
    pub fn new(def: &Arc<PatternDef>, alts: &Arc<Vec<Vec<u16>>>) -> Self {
        match def.shape {
            Shape::AllOf => Self::AllOf(AllOfMatcher::new(def.clone())),
            Shape::Sequence | Shape::AnyOf => {
                Self::Sequence(SequenceMatcher::new(def.clone(), alts.clone()))
            }
        }
    }

    /// The next event of the key, in event-time order. First closes what
    /// `ts` makes due (as [`Matcher::advance`]), then matches the event.
    pub fn feed(&mut self, ts: i64, bits: u64, payload: P, out: &mut Vec<Match<P>>) {
        match self {
            Self::Sequence(m) => m.feed(ts, bits, payload, out),
            Self::AllOf(m) => m.feed(ts, bits, payload, out),
        }
    }

    /// Every event before `wm` has been fed: partial matches whose window
    /// ends at or before `wm` expire, and those that only waited for it
    /// (a trailing `notFollowedBy` or greedy repetition) are emitted.
    pub fn advance(&mut self, wm: i64, out: &mut Vec<Match<P>>) {
        match self {
            Self::Sequence(m) => m.expire(wm, out),
            Self::AllOf(m) => m.expire(wm),
        }
    }

    /// Whether events that meet no condition can change anything: only under
    /// strict contiguity (they break runs) or while a match waits on the
    /// next event.
    pub fn needs_every_event(def: &PatternDef) -> bool {
        def.contiguity == Contiguity::Strict
    }

    /// The earliest time at which [`Matcher::advance`] has work.
    pub fn deadline(&self) -> Option<i64> {
        match self {
            Self::Sequence(m) => m.deadline(),
            Self::AllOf(m) => m.deadline(),
        }
    }

    /// Calls `f` on the payload of every event held in a partial match.
    pub fn for_each_payload(&self, f: impl FnMut(&P)) {
        match self {
            Self::Sequence(m) => m.for_each_payload(f),
            Self::AllOf(m) => m.for_each_payload(f),
        }
    }

    /// Partial matches held.
    pub fn size(&self) -> usize {
        match self {
            Self::Sequence(m) => m.size(),
            Self::AllOf(m) => m.size(),
        }
    }
}
