//! Property tests: the automaton against the brute-force matcher on short
//! random streams, for every shape, contiguity, skip strategy and step
//! flag; and the whole step on shuffled input within the watermark bound.

use proptest::prelude::*;
use tributary_crds::{AfterMatchSkip, Contiguity};

use super::brute::{self, Ev};
use super::nfa::Matcher;
use super::pattern::{PatternDef, Shape, StepDef};
use std::sync::Arc;

fn contiguity() -> impl Strategy<Value = Contiguity> {
    prop_oneof![
        Just(Contiguity::Strict),
        Just(Contiguity::Relaxed),
        Just(Contiguity::Any)
    ]
}

fn skip() -> impl Strategy<Value = AfterMatchSkip> {
    prop_oneof![
        Just(AfterMatchSkip::NoSkip),
        Just(AfterMatchSkip::SkipPastLastEvent)
    ]
}

/// (min, extra: 0 = max is min, 1 = min+1, 2 = unbounded, optional, greedy, negated)
fn step() -> impl Strategy<Value = (u32, u8, bool, bool, bool)> {
    (
        1u32..=2,
        0u8..=2,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
}

fn pattern() -> impl Strategy<Value = PatternDef> {
    (
        0u8..3,
        prop::collection::vec(step(), 1..=3),
        1i64..=12,
        contiguity(),
        skip(),
    )
        .prop_map(|(shape, steps, within, contiguity, skip)| {
            let shape = [Shape::Sequence, Shape::AnyOf, Shape::AllOf][usize::from(shape)];
            let seq = shape == Shape::Sequence;
            let mut steps: Vec<StepDef> = steps
                .into_iter()
                .enumerate()
                .map(|(j, (min, extra, optional, greedy, negated))| {
                    let max = match (shape, extra) {
                        (Shape::AllOf, _) | (_, 0) => min,
                        (_, 1) => min + 1,
                        _ => u32::MAX,
                    };
                    StepDef {
                        name: format!("s{j}"),
                        min: if seq && optional { 0 } else { min },
                        max,
                        greedy: shape != Shape::AllOf && greedy,
                        negated: seq && negated,
                    }
                })
                .collect();
            if seq && steps.iter().all(|s| s.min == 0) {
                steps[0].min = 1;
            }
            PatternDef {
                shape,
                steps,
                within,
                contiguity,
                skip,
            }
        })
}

/// Events in time order with random condition bits (`when` and `notFollowedBy`).
fn stream() -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec((0i64..=3, any::<u8>(), any::<u8>()), 0..=8).prop_map(|raw| {
        let mut ts = 0;
        raw.into_iter()
            .map(|(dt, when, neg)| {
                ts += dt;
                Ev {
                    ts,
                    bits: u64::from(when & 0b111) | (u64::from(neg & 0b111) << 32),
                }
            })
            .collect()
    })
}

fn automaton(def: &PatternDef, evs: &[Ev]) -> Vec<Vec<(u64, u16)>> {
    let def = Arc::new(def.clone());
    let alts = Arc::new(def.alternatives());
    let mut m = Matcher::<()>::new(&def, &alts);
    let mut out = Vec::new();
    for e in evs {
        m.feed(e.ts, e.bits, (), &mut out);
    }
    m.advance(i64::MAX, &mut out);
    assert_eq!(m.size(), 0, "state left after the final watermark");
    out.iter()
        .map(|m| m.events.iter().map(|t| (t.id, t.step)).collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn automaton_matches_the_brute_force_reference(def in pattern(), evs in stream()) {
        prop_assert_eq!(automaton(&def, &evs), brute::matches(&def, &evs), "{:?}", def);
    }
}
