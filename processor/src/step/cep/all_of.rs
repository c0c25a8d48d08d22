//! The matcher of `allOf` patterns: every step's `times.min` events, in any
//! order, within the window. A run counts events per step; an event that
//! meets the `when` of several steps still short of their count branches
//! once per step. Strict contiguity drops a run at an event it cannot take,
//! relaxed only at one it can (it must take it), any never.

use std::sync::Arc;

use tributary_crds::Contiguity;

use super::nfa::{Match, RunData, Taken, emit_batch};
use super::pattern::PatternDef;

#[derive(serde::Serialize, serde::Deserialize)]
struct Run<P> {
    data: Arc<RunData<P>>,
    counts: Vec<u32>,
}

/// Matcher state of one key.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AllOfMatcher<P> {
    def: Arc<PatternDef>,
    runs: Vec<Run<P>>,
    next_id: u64,
}

impl<P: Clone> AllOfMatcher<P> {
    /// Empty state.
    pub fn new(def: Arc<PatternDef>) -> Self {
        Self {
            def,
            runs: Vec::new(),
            next_id: 0,
        }
    }

    /// Partial matches.
    pub fn size(&self) -> usize {
        self.runs.len()
    }

    /// Calls `f` on the payload of every event held.
    pub fn for_each_payload(&self, mut f: impl FnMut(&P)) {
        for r in &self.runs {
            r.data.taken.iter().for_each(|t| f(&t.payload));
        }
    }

    /// The earliest window end.
    pub fn deadline(&self) -> Option<i64> {
        self.runs
            .iter()
            .map(|r| r.data.start().saturating_add(self.def.within))
            .min()
    }

    /// Drops runs whose window ends at or before `t`.
    pub fn expire(&mut self, t: i64) {
        let w = self.def.within;
        self.runs.retain(|r| r.data.start().saturating_add(w) > t);
    }

    /// Bits of the steps still short of their count.
    fn short(&self, counts: &[u32]) -> u64 {
        self.def
            .steps
            .iter()
            .zip(counts)
            .enumerate()
            .filter(|(_, (d, c))| **c < d.min)
            .fold(0, |m, (j, _)| m | PatternDef::cond(j))
    }

    /// The next event of the key.
    pub fn feed(&mut self, ts: i64, bits: u64, payload: P, out: &mut Vec<Match<P>>) {
        let id = self.next_id;
        self.next_id += 1;
        self.expire(ts);
        let contiguity = self.def.contiguity;
        let taken = |step: usize| Taken {
            step: u16::try_from(step).unwrap_or(u16::MAX),
            id,
            ts,
            payload: payload.clone(),
        };
        let mut next = Vec::with_capacity(self.runs.len());
        let mut complete = Vec::new();
        let n = self.def.steps.len();
        let mut grow = |data: Arc<RunData<P>>, counts: Vec<u32>, next: &mut Vec<Run<P>>| {
            if self.def.steps.iter().zip(&counts).all(|(d, c)| *c >= d.min) {
                complete.push(Match::of(&data, 0));
            } else {
                next.push(Run { data, counts });
            }
        };
        for run in std::mem::take(&mut self.runs) {
            let fits = bits & self.short(&run.counts);
            for j in (0..n).filter(|j| fits & PatternDef::cond(*j) != 0) {
                let mut counts = run.counts.clone();
                counts[j] += 1;
                grow(run.data.extend(taken(j)), counts, &mut next);
            }
            let keep = match contiguity {
                Contiguity::Strict => false,
                Contiguity::Relaxed => fits == 0,
                Contiguity::Any => true,
            };
            if keep {
                next.push(run);
            }
        }
        for j in (0..n).filter(|j| bits & PatternDef::cond(*j) != 0) {
            let mut counts = vec![0; n];
            counts[j] = 1;
            grow(RunData::first(taken(j)), counts, &mut next);
        }
        self.runs = next;
        if emit_batch(complete, self.def.skip, out).is_some() {
            self.runs.clear();
        }
    }
}
