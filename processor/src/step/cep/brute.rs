//! The CEP semantics of `docs/cep.md` written as a search over every
//! subsequence of a key's events and every way to assign them to steps —
//! slow and obviously faithful to the text, the reference the property tests
//! hold the automaton to.

use std::cmp::Reverse;

use tributary_crds::{AfterMatchSkip, Contiguity};

use super::pattern::{PatternDef, Shape};

/// An event: time and condition bits.
#[derive(Debug, Clone, Copy)]
pub struct Ev {
    pub ts: i64,
    pub bits: u64,
}

/// A match as `(event index, step)` pairs, and the point where it completes.
struct Found {
    pairs: Vec<(u64, u16)>,
    /// (event index, phase): phase 0 before that event is matched, 1 after.
    point: (usize, u8),
    close: i64,
}

/// Every match of `def` over `evs` (in event-time order), in emission order,
/// after the skip strategy.
pub fn matches(def: &PatternDef, evs: &[Ev]) -> Vec<Vec<(u64, u16)>> {
    let mut found = Vec::new();
    let n = evs.len();
    for mask in 1u32..(1 << n) {
        let chosen: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
        match def.shape {
            Shape::AllOf => all_of(def, evs, &chosen, &mut Vec::new(), &mut found),
            Shape::Sequence | Shape::AnyOf => {
                for alt in def.alternatives() {
                    let mut pos = Vec::new();
                    sequence(def, evs, &alt, &chosen, &mut pos, &mut found);
                }
            }
        }
    }
    let key = |f: &Found| {
        (
            f.point,
            f.close,
            f.pairs[0].0,
            Reverse(f.pairs.len()),
            f.pairs.clone(),
        )
    };
    found.sort_by_key(key);
    let mut out = Vec::new();
    let mut last: Option<u64> = None;
    for f in found {
        if def.skip == AfterMatchSkip::SkipPastLastEvent {
            if last.is_some_and(|l| f.pairs[0].0 <= l) {
                continue;
            }
            last = f.pairs.last().map(|p| p.0);
        }
        out.push(f.pairs);
    }
    out
}

/// Tries every non-decreasing assignment of `chosen` to positions of `alt`.
fn sequence(
    def: &PatternDef,
    evs: &[Ev],
    alt: &[u16],
    chosen: &[usize],
    pos: &mut Vec<usize>,
    found: &mut Vec<Found>,
) {
    if pos.len() == chosen.len() {
        if let Some(f) = check_sequence(def, evs, alt, chosen, pos) {
            found.push(f);
        }
        return;
    }
    let from = pos.last().copied().unwrap_or(0);
    for p in from..alt.len() {
        pos.push(p);
        sequence(def, evs, alt, chosen, pos, found);
        pos.pop();
    }
}

fn check_sequence(
    def: &PatternDef,
    evs: &[Ev],
    alt: &[u16],
    chosen: &[usize],
    pos: &[usize],
) -> Option<Found> {
    let step = |p: usize| usize::from(alt[p]);
    let counts: Vec<u32> = (0..alt.len())
        .map(|p| u32::try_from(pos.iter().filter(|&&q| q == p).count()).unwrap_or(0))
        .collect();
    for (p, c) in counts.iter().enumerate() {
        let d = &def.steps[step(p)];
        if *c < d.min || *c > d.max {
            return None;
        }
    }
    for (&i, &p) in chosen.iter().zip(pos) {
        if evs[i].bits & PatternDef::cond(step(p)) == 0 {
            return None;
        }
    }
    let first = chosen[0];
    let last = *chosen.last()?;
    let close = evs[first].ts.saturating_add(def.within);
    if evs[last].ts >= close {
        return None;
    }
    // What leaving positions [from, to) forbids: greedy repetitions left
    // before their max (up to and including the next taken event), and
    // notFollowedBy conditions (strictly before it).
    let masks = |from: usize, to: usize| {
        let mut incl = 0;
        let mut excl = 0;
        for (p, &count) in counts.iter().enumerate().take(to).skip(from) {
            let d = &def.steps[step(p)];
            if d.greedy && count < d.max {
                incl |= PatternDef::cond(step(p));
            }
            excl |= def.neg(step(p));
        }
        (incl, excl)
    };
    for k in 1..chosen.len() {
        let (x, y) = (chosen[k - 1], chosen[k]);
        let between = &evs[x + 1..y];
        let ok = match def.contiguity {
            Contiguity::Strict => between.is_empty(),
            Contiguity::Relaxed => between
                .iter()
                .all(|z| z.bits & PatternDef::cond(step(pos[k])) == 0),
            Contiguity::Any => true,
        };
        let (incl, excl) = masks(pos[k - 1], pos[k]);
        if !ok || between.iter().any(|z| z.bits & (incl | excl) != 0) || evs[y].bits & incl != 0 {
            return None;
        }
    }
    let (incl, excl) = masks(pos[chosen.len() - 1], alt.len());
    let kill = incl | excl;
    let pairs = chosen
        .iter()
        .zip(pos)
        .map(|(&i, &p)| (i as u64, alt[p]))
        .collect();
    let closing = (last + 1..evs.len())
        .find(|&z| evs[z].ts >= close)
        .unwrap_or(evs.len());
    let point = if kill == 0 {
        (last, 1)
    } else if def.contiguity == Contiguity::Strict {
        if closing > last + 1 {
            if evs[last + 1].bits & kill != 0 {
                return None;
            }
            (last + 1, 0)
        } else {
            (closing, 0)
        }
    } else {
        if evs[last + 1..closing].iter().any(|z| z.bits & kill != 0) {
            return None;
        }
        (closing, 0)
    };
    Some(Found {
        pairs,
        point,
        close: if kill == 0 { 0 } else { close },
    })
}

/// Tries every assignment of `chosen` to steps for `allOf`.
fn all_of(
    def: &PatternDef,
    evs: &[Ev],
    chosen: &[usize],
    steps: &mut Vec<usize>,
    found: &mut Vec<Found>,
) {
    let need: usize = def.steps.iter().map(|d| d.min as usize).sum();
    if chosen.len() != need {
        return;
    }
    if steps.len() == chosen.len() {
        if let Some(f) = check_all_of(def, evs, chosen, steps) {
            found.push(f);
        }
        return;
    }
    for j in 0..def.steps.len() {
        steps.push(j);
        all_of(def, evs, chosen, steps, found);
        steps.pop();
    }
}

fn check_all_of(def: &PatternDef, evs: &[Ev], chosen: &[usize], steps: &[usize]) -> Option<Found> {
    for (j, d) in def.steps.iter().enumerate() {
        if steps.iter().filter(|&&s| s == j).count() != d.min as usize {
            return None;
        }
    }
    for (&i, &j) in chosen.iter().zip(steps) {
        if evs[i].bits & PatternDef::cond(j) == 0 {
            return None;
        }
    }
    let (first, last) = (chosen[0], *chosen.last()?);
    if evs[last].ts >= evs[first].ts.saturating_add(def.within) {
        return None;
    }
    for k in 1..chosen.len() {
        let between = &evs[chosen[k - 1] + 1..chosen[k]];
        let ok = match def.contiguity {
            Contiguity::Strict => between.is_empty(),
            Contiguity::Relaxed => {
                // Steps still short after the first k events.
                let short = def
                    .steps
                    .iter()
                    .enumerate()
                    .filter(|(j, d)| {
                        steps[..k].iter().filter(|&&s| s == *j).count() < d.min as usize
                    })
                    .fold(0, |m, (j, _)| m | PatternDef::cond(j));
                between.iter().all(|z| z.bits & short == 0)
            }
            Contiguity::Any => true,
        };
        if !ok {
            return None;
        }
    }
    Some(Found {
        pairs: chosen
            .iter()
            .zip(steps)
            .map(|(&i, &j)| (i as u64, u16::try_from(j).unwrap_or(0)))
            .collect(),
        point: (last, 1),
        close: 0,
    })
}
