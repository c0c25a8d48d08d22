//! The matcher of `sequence` and `anyOf` patterns: a non-deterministic
//! automaton whose runs wait for one target step each.
//!
//! After a run takes event `x` into step `p` (its `c`-th event there), it
//! branches into one *waiting* per step the next event may go to: `p` again
//! (while `c < max`), and — once `c ≥ min` — `p+1`, and past it while the
//! skipped steps are optional. A waiting carries two kill masks: the
//! `notFollowedBy` conditions of the steps it passes (no event strictly
//! between `x` and the next taken one may meet them) and the `when` of the
//! greedy repetitions it leaves before their `max` (nor may the next taken
//! one). Contiguity decides what a waiting does with an event it does not
//! take: strict drops it, relaxed and any keep it; and with one it takes:
//! relaxed retires it (skip till *next* match), any keeps it too (skip till
//! *any* match).

use std::sync::Arc;

use tributary_crds::Contiguity;

use super::nfa::{Match, RunData, Taken, emit_batch};
use super::pattern::PatternDef;

/// A run waiting for its next event.
#[derive(serde::Serialize, serde::Deserialize)]
struct Waiting<P> {
    run: Arc<RunData<P>>,
    alt: u16,
    /// Position in the alternative the next event goes to.
    target: u16,
    /// Events already in the target step.
    count: u32,
    /// The target step's `when` bit.
    take: u64,
    /// Conditions that kill the waiting on any event up to and including the next taken one.
    kill_incl: u64,
    /// Conditions that kill it on any event strictly before the next taken one.
    kill_excl: u64,
}

/// A complete match that waits for its window to close, because a trailing
/// `notFollowedBy` or greedy repetition could still be broken.
#[derive(serde::Serialize, serde::Deserialize)]
struct Held<P> {
    run: Arc<RunData<P>>,
    kill: u64,
    close: i64,
}

/// Matcher state of one key.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SequenceMatcher<P> {
    def: Arc<PatternDef>,
    alts: Arc<Vec<Vec<u16>>>,
    waiting: Vec<Waiting<P>>,
    held: Vec<Held<P>>,
    next_id: u64,
}

impl<P: Clone> SequenceMatcher<P> {
    /// Empty state.
    pub fn new(def: Arc<PatternDef>, alts: Arc<Vec<Vec<u16>>>) -> Self {
        Self {
            def,
            alts,
            waiting: Vec::new(),
            held: Vec::new(),
            next_id: 0,
        }
    }

    /// Partial and held matches.
    pub fn size(&self) -> usize {
        self.waiting.len() + self.held.len()
    }

    /// Calls `f` on the payload of every event held.
    pub fn for_each_payload(&self, mut f: impl FnMut(&P)) {
        let runs = self.waiting.iter().map(|w| &w.run);
        for run in runs.chain(self.held.iter().map(|h| &h.run)) {
            run.taken.iter().for_each(|t| f(&t.payload));
        }
    }

    /// The earliest window end among partial and held matches.
    pub fn deadline(&self) -> Option<i64> {
        let w = self.def.within;
        self.waiting
            .iter()
            .map(|x| x.run.start().saturating_add(w))
            .chain(self.held.iter().map(|h| h.close))
            .min()
    }

    /// Drops every partial match that started at or before position `last`.
    fn prune(&mut self, last: Option<u64>) {
        if let Some(l) = last {
            self.waiting.retain(|w| w.run.start_id() > l);
            self.held.retain(|h| h.run.start_id() > l);
        }
    }

    /// Closes windows that end at or before `t`: emits held matches, drops runs.
    pub fn expire(&mut self, t: i64, out: &mut Vec<Match<P>>) {
        let within = self.def.within;
        if self.held.iter().any(|h| h.close <= t) {
            let (due, rest): (Vec<_>, Vec<_>) = self.held.drain(..).partition(|h| h.close <= t);
            self.held = rest;
            let batch = due.iter().map(|h| Match::of(&h.run, h.close)).collect();
            let last = emit_batch(batch, self.def.skip, out);
            self.prune(last);
        }
        self.waiting
            .retain(|w| w.run.start().saturating_add(within) > t);
    }

    /// The next event of the key.
    pub fn feed(&mut self, ts: i64, bits: u64, payload: P, out: &mut Vec<Match<P>>) {
        let id = self.next_id;
        self.next_id += 1;
        self.expire(ts, out);
        let strict = self.def.contiguity == Contiguity::Strict;
        // Held matches: this event may break them; under strict contiguity
        // only the next event can, so they are decided now.
        if !self.held.is_empty() {
            let mut decided = Vec::new();
            self.held.retain(|h| {
                if bits & h.kill != 0 {
                    false
                } else if strict {
                    decided.push(Match::of(&h.run, h.close));
                    false
                } else {
                    true
                }
            });
            let last = emit_batch(decided, self.def.skip, out);
            self.prune(last);
        }
        if bits == 0 && !strict {
            return;
        }
        let taken = |step: u16| Taken {
            step,
            id,
            ts,
            payload: payload.clone(),
        };
        // Runs that take this event: (run, alt, position, count there).
        let mut grown: Vec<(Arc<RunData<P>>, u16, u16, u32)> = Vec::new();
        let any = self.def.contiguity == Contiguity::Any;
        let alts = self.alts.clone();
        self.waiting.retain(|w| {
            if bits & w.kill_incl != 0 {
                return false;
            }
            let takes = bits & w.take != 0;
            if takes {
                let step = alts[usize::from(w.alt)][usize::from(w.target)];
                grown.push((w.run.extend(taken(step)), w.alt, w.target, w.count + 1));
            }
            !strict && (any || !takes) && bits & w.kill_excl == 0
        });
        for (a, alt) in alts.iter().enumerate() {
            for (p, &step) in alt.iter().enumerate() {
                if bits & PatternDef::cond(usize::from(step)) != 0 {
                    grown.push((RunData::first(taken(step)), idx(a), idx(p), 1));
                }
                if self.def.steps[usize::from(step)].min > 0 {
                    break;
                }
            }
        }
        let mut complete = Vec::new();
        for (run, alt, pos, count) in grown {
            self.branch(&run, alt, pos, count, &mut complete);
        }
        if emit_batch(complete, self.def.skip, out).is_some() {
            // Every partial match holds this event or an earlier one.
            self.waiting.clear();
            self.held.clear();
        }
    }

    /// The waitings (and the match, if complete) of a run that just took
    /// its `count`-th event into position `pos` of alternative `alt`.
    fn branch(
        &mut self,
        run: &Arc<RunData<P>>,
        alt: u16,
        pos: u16,
        count: u32,
        complete: &mut Vec<Match<P>>,
    ) {
        let def = &self.def;
        let steps = &self.alts[usize::from(alt)];
        let s = usize::from(steps[usize::from(pos)]);
        let d = &def.steps[s];
        if count < d.max {
            self.waiting.push(Waiting {
                run: run.clone(),
                alt,
                target: pos,
                count,
                take: PatternDef::cond(s),
                kill_incl: 0,
                kill_excl: 0,
            });
        }
        if count < d.min {
            return;
        }
        let mut incl = if d.greedy && count < d.max {
            PatternDef::cond(s)
        } else {
            0
        };
        let mut excl = def.neg(s);
        let mut q = usize::from(pos) + 1;
        loop {
            let Some(&next) = steps.get(q) else {
                let kill = incl | excl;
                if kill == 0 {
                    complete.push(Match::of(run, 0));
                } else {
                    self.held.push(Held {
                        run: run.clone(),
                        kill,
                        close: run.start().saturating_add(def.within),
                    });
                }
                return;
            };
            let n = usize::from(next);
            self.waiting.push(Waiting {
                run: run.clone(),
                alt,
                target: idx(q),
                count: 0,
                take: PatternDef::cond(n),
                kill_incl: incl,
                kill_excl: excl,
            });
            let dn = &def.steps[n];
            if dn.min > 0 {
                return;
            }
            if dn.greedy {
                incl |= PatternDef::cond(n);
            }
            excl |= def.neg(n);
            q += 1;
        }
    }
}

/// Positions and alternatives fit in `u16` (at most 32 steps).
fn idx(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}
