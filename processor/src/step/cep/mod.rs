//! The `cep` step: complex event processing per key, in event time.
//!
//! Records are buffered per key and matched in event-time order (arrival
//! order breaks ties) once the watermark passes them, as Flink CEP does, so
//! out-of-order input within the watermark bound yields the same matches as
//! ordered input. Partial matches expire when the watermark passes their
//! first event's time plus `within`, so state is bounded by `within`.
//! `docs/cep.md` states the semantics; `brute.rs` restates them as a search
//! over every subsequence, and the property tests hold the kernel to it.
//!
//! # Layout
//!
//! - `pattern`: the pattern compiled to bits and counts.
//! - `nfa`: shared kernel types, emission order, the after-match skip.
//! - `sequence`: `sequence` and `anyOf`; `all_of`: `allOf`.
//! - this file: CEL, keys, buffering, watermarks, timers, output records.

mod all_of;
mod cond;
mod nfa;
mod pattern;
mod sequence;

#[cfg(test)]
mod brute;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use tributary_crds::CepStep;

use self::cond::Cond;
use self::nfa::{Match, Matcher};
use self::pattern::{PatternDef, Shape};
use super::window::Key;
use super::{Emit, Step, StepError};
use crate::expr::{Expr, ExprError};
use crate::record::{Position, Record};
use crate::sink::DeadLetter;

/// A record waiting for the watermark.
#[derive(serde::Serialize, serde::Deserialize)]
struct Buffered {
    key: Key,
    bits: u64,
    event: Arc<Held>,
    replay: bool,
}

/// A record held in a partial match: its value and source offset (for
/// [`Step::low_water`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct Held {
    value: Value,
    offset: i64,
}

/// One key's matcher and the deadline its timer is set for.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeyState {
    matcher: Matcher<Arc<Held>>,
    timer: i64,
}

/// What a `cep` step writes to the changelog: the buffer, arrival
/// sequence, per-key matchers, timers, watermark, unsent matches and the
/// condition-error count. Records shared by several partial matches are
/// written once per match; they come back as copies, which only costs
/// memory.
type CepState = (
    BTreeMap<(i64, u64), Buffered>,
    u64,
    FxHashMap<Key, KeyState>,
    BinaryHeap<Reverse<(i64, Key)>>,
    i64,
    Vec<(Key, bool, Match<Arc<Held>>)>,
    u64,
);

/// A `cep` step.
pub struct Cep {
    name: String,
    keys: Vec<(String, Expr)>,
    /// Bit `j`: step `j`'s `when`; bit `32 + j`: its `notFollowedBy`.
    conds: Vec<(u64, Cond)>,
    def: Arc<PatternDef>,
    alts: Arc<Vec<Vec<u16>>>,
    pattern_name: Value,
    buffer: BTreeMap<(i64, u64), Buffered>,
    seq: u64,
    states: FxHashMap<Key, KeyState>,
    timers: BinaryHeap<Reverse<(i64, Key)>>,
    wm: i64,
    matches: Vec<Match<Arc<Held>>>,
    pending_out: Vec<(Key, bool, Match<Arc<Held>>)>,
    source: Arc<str>,
    cond_errors: u64,
    processing_time: bool,
}

impl Cep {
    /// A CEP step.
    ///
    /// # Errors
    /// When an expression does not compile.
    pub fn new(name: String, spec: &CepStep, env: &Arc<cel::Env>) -> Result<Self, ExprError> {
        let keys = spec
            .key_by
            .iter()
            .map(|k| Ok((k.output_name(), Expr::compile(k.expr(), env)?)))
            .collect::<Result<Vec<_>, ExprError>>()?;
        let def = PatternDef::from_spec(&spec.pattern);
        let steps = match def.shape {
            Shape::Sequence => spec.pattern.sequence.as_deref(),
            Shape::AnyOf => spec.pattern.any_of.as_deref(),
            Shape::AllOf => spec.pattern.all_of.as_deref(),
        }
        .unwrap_or_default();
        let mut conds = Vec::new();
        for (j, s) in steps.iter().enumerate().take(pattern::MAX_STEPS) {
            conds.push((PatternDef::cond(j), Cond::compile(&s.when, env)?));
            if let Some(n) = &s.not_followed_by {
                conds.push((def.neg(j), Cond::compile(n, env)?));
            }
        }
        Ok(Self {
            source: name.as_str().into(),
            name,
            keys,
            conds,
            alts: Arc::new(def.alternatives()),
            def: Arc::new(def),
            pattern_name: Value::from(spec.emit.name.clone()),
            buffer: BTreeMap::new(),
            seq: 0,
            states: FxHashMap::default(),
            timers: BinaryHeap::new(),
            wm: i64::MIN,
            matches: Vec::new(),
            pending_out: Vec::new(),
            cond_errors: 0,
            processing_time: false,
        })
    }

    /// In processing time (no `eventTime`) a record stamped before the
    /// watermark only waited in a queue: it is matched as arriving at the
    /// watermark instead of being dropped as late.
    #[must_use]
    pub fn in_processing_time(mut self, yes: bool) -> Self {
        self.processing_time = yes;
        self
    }

    /// The condition bits of a record. A condition that cannot be evaluated
    /// on it (a missing field, a wrong type) is false for it.
    fn bits(&mut self, value: &Value) -> u64 {
        let mut bits = 0;
        for (bit, e) in &self.conds {
            match e.holds(value) {
                Ok(true) => bits |= bit,
                Ok(false) => {}
                Err(err) => {
                    if self.cond_errors == 0 {
                        tracing::debug!(step = %self.name, error = %err, "a CEP condition failed on a record; it counts as false");
                    }
                    self.cond_errors += 1;
                }
            }
        }
        bits
    }

    /// Feeds one buffered record to its key's matcher.
    fn feed(&mut self, ts: i64, b: Buffered) {
        let state = match self.states.get_mut(&b.key) {
            Some(s) => s,
            None if b.bits == 0 => return,
            None => self.states.entry(b.key.clone()).or_insert(KeyState {
                matcher: Matcher::new(&self.def, &self.alts),
                timer: i64::MAX,
            }),
        };
        let before = self.matches.len();
        state.matcher.feed(ts, b.bits, b.event, &mut self.matches);
        self.after(&b.key, before, b.replay);
    }

    /// Labels new matches with their key (and as replayed when a replayed
    /// record completed them: they went out before the checkpoint it is
    /// replayed from), schedules the key's timer, and forgets a key without
    /// partial matches.
    fn after(&mut self, key: &Key, before: usize, replay: bool) {
        let Some(state) = self.states.get_mut(key) else {
            return;
        };
        match state.matcher.deadline() {
            None => {
                self.states.remove(key);
            }
            Some(d) if d < state.timer => {
                state.timer = d;
                self.timers.push(Reverse((d, key.clone())));
            }
            Some(_) => {}
        }
        self.pending_out.extend(
            self.matches
                .drain(before..)
                .map(|m| (key.clone(), replay, m)),
        );
    }

    /// Feeds every buffered record before `wm` and fires the timers due by
    /// `wm`, interleaved in time order, so that matches of different keys
    /// come out in the order they complete.
    fn advance_to(&mut self, wm: i64) {
        loop {
            let event = self.buffer.first_key_value().map(|(k, _)| k.0);
            let event = event.filter(|&ts| ts < wm);
            let timer = self.timers.peek().map(|Reverse((d, _))| *d);
            let timer = timer.filter(|&d| d <= wm);
            match (event, timer) {
                (None, None) => break,
                (Some(ts), Some(d)) if d <= ts => self.fire_timer(),
                (None, Some(_)) => self.fire_timer(),
                (Some(_), _) => {
                    if let Some(((ts, _), b)) = self.buffer.pop_first() {
                        self.feed(ts, b);
                    }
                }
            }
        }
    }

    /// Closes the windows due at the earliest timer of a key.
    fn fire_timer(&mut self) {
        let Some(Reverse((d, key))) = self.timers.pop() else {
            return;
        };
        let Some(state) = self.states.get_mut(&key) else {
            return;
        };
        if state.timer != d {
            return;
        }
        state.timer = i64::MAX;
        let before = self.matches.len();
        state.matcher.advance(d, &mut self.matches);
        self.after(&key, before, false);
    }

    /// Turns matches into output records (event time = the match's end).
    fn drain(&mut self, emit: &mut Emit) {
        for (key, replay, m) in self.pending_out.drain(..) {
            let mut events: Map<String, Value> = Map::new();
            let used: Vec<u16> = m.events.iter().map(|t| t.step).collect();
            let alt = self
                .alts
                .iter()
                .find(|a| used.first().is_some_and(|s| a.contains(s)));
            let listed: Vec<usize> = match self.def.shape {
                Shape::AnyOf => alt
                    .map(|a| a.iter().map(|&s| usize::from(s)).collect())
                    .unwrap_or_default(),
                Shape::Sequence | Shape::AllOf => (0..self.def.steps.len()).collect(),
            };
            for j in listed {
                events.insert(self.def.steps[j].name.clone(), Value::Array(Vec::new()));
            }
            for t in &m.events {
                let name = &self.def.steps[usize::from(t.step)].name;
                if let Some(Value::Array(list)) = events.get_mut(name) {
                    list.push(t.payload.value.clone());
                }
            }
            let mut key_obj = Map::new();
            for ((name, _), v) in self.keys.iter().zip(key.values()) {
                key_obj.insert(name.clone(), v.clone());
            }
            let mut out = Map::new();
            out.insert("pattern".into(), self.pattern_name.clone());
            out.insert("key".into(), Value::Object(key_obj));
            out.insert("events".into(), Value::Object(events));
            out.insert("start".into(), Value::from(m.start));
            out.insert("end".into(), Value::from(m.end));
            emit.out.push(Record {
                position: Position {
                    source: self.source.clone(),
                    partition: 0,
                    offset: Position::DERIVED,
                },
                replay,
                ..Record::new(Value::Object(out), m.end)
            });
        }
    }
}

impl Step for Cep {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> super::Snapshot {
        super::encode(&(
            &self.buffer,
            self.seq,
            &self.states,
            &self.timers,
            self.wm,
            &self.pending_out,
            self.cond_errors,
        ))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let (buffer, seq, states, timers, wm, pending_out, cond_errors): CepState =
            super::decode(state)?;
        self.buffer = buffer;
        self.seq = seq;
        self.states = states;
        self.timers = timers;
        self.wm = wm;
        self.pending_out = pending_out;
        self.cond_errors = cond_errors;
        Ok(())
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        let every = Matcher::<Arc<Value>>::needs_every_event(&self.def);
        for mut rec in input {
            if rec.event_time < self.wm && self.processing_time {
                rec.event_time = self.wm;
            }
            if rec.event_time < self.wm {
                // Behind the watermark: the events around it were matched already.
                emit.dropped += 1;
                continue;
            }
            let bits = self.bits(&rec.value);
            if bits == 0 && !every {
                // Meets no condition: under relaxed or any contiguity it cannot change a match.
                continue;
            }
            let Some(key) = eval_key(self.keys.iter().map(|(_, k)| k), &rec.value) else {
                emit.dead
                    .push(key_error(self.keys.iter().map(|(_, k)| k), &self.name, rec));
                continue;
            };
            let seq = self.seq;
            self.seq += 1;
            self.buffer.insert(
                (rec.event_time, seq),
                Buffered {
                    key,
                    bits,
                    event: Arc::new(Held {
                        value: rec.value,
                        offset: rec.position.offset,
                    }),
                    replay: rec.replay,
                },
            );
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: i64, emit: &mut Emit) {
        if wm > self.wm {
            self.wm = wm;
            self.advance_to(wm);
            self.drain(emit);
        }
    }

    fn finish(&mut self, emit: &mut Emit) {
        self.wm = i64::MAX;
        while let Some(((ts, _), b)) = self.buffer.pop_first() {
            self.feed(ts, b);
        }
        self.advance_to(i64::MAX);
        self.drain(emit);
    }

    fn state_size(&self) -> usize {
        self.buffer.len()
            + self
                .states
                .values()
                .map(|s| s.matcher.size())
                .sum::<usize>()
    }

    fn low_water(&self) -> Option<i64> {
        // Derived records (offset −1, e.g. window results) hold no input
        // position: skip them rather than let one hide the real minimum.
        let mut low = i64::MAX;
        let mut see = |offset: i64| {
            if offset >= 0 {
                low = low.min(offset);
            }
        };
        for b in self.buffer.values() {
            see(b.event.offset);
        }
        for s in self.states.values() {
            s.matcher.for_each_payload(|e| see(e.offset));
        }
        (low != i64::MAX).then_some(low)
    }
}

/// The key of a record, or `None` when a `keyBy` expression fails on it.
pub(super) fn eval_key<'a>(keys: impl Iterator<Item = &'a Expr>, value: &Value) -> Option<Key> {
    keys.map(|k| k.eval(value).ok())
        .collect::<Option<Vec<_>>>()
        .map(Key::from_values)
}

/// The dead letter of a record whose key cannot be evaluated.
pub(super) fn key_error<'a>(
    mut keys: impl Iterator<Item = &'a Expr>,
    step: &str,
    rec: Record,
) -> DeadLetter {
    let err = keys
        .find_map(|k| k.eval(&rec.value).err())
        .map_or_else(|| "keyBy failed".to_owned(), |e| format!("keyBy: {e}"));
    DeadLetter::new(step, err, rec)
}
