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

/// The whole step fed out of order (at most `B` ms behind the newest event,
/// watermark = newest − `B` after each record) emits what it emits in order.
mod disorder {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use crate::record::Record;
    use crate::step::{Emit, Step};

    const B: i64 = 5;

    fn step(contiguity: &str, skip: &str) -> super::super::Cep {
        let yaml = format!(
            "{{keyBy: [event.k], pattern: {{sequence: [{{name: a, when: \"event.t == 'a'\", times: {{min: 1, max: 2}}}}, {{name: b, when: \"event.t == 'b'\", notFollowedBy: \"event.t == 'c'\"}}], within: 12ms, contiguity: {contiguity}, skip: {skip}}}, emit: {{name: p}}}}"
        );
        let spec = serde_yaml_ng::from_str(&yaml).expect("spec");
        super::super::Cep::new("cep".into(), &spec, &crate::expr::env()).expect("compiles")
    }

    /// Outputs per key, in order (keys match apart, so only their own order is defined).
    fn run(c: &mut super::super::Cep, arrivals: &[(i64, Value)]) -> Vec<Vec<Value>> {
        let mut emit = Emit::default();
        let mut newest = i64::MIN;
        for (ts, v) in arrivals {
            c.process(vec![Record::new(v.clone(), *ts)], &mut emit)
                .unwrap();
            newest = newest.max(*ts);
            c.on_watermark(newest - B, &mut emit);
        }
        c.on_watermark(i64::MAX, &mut emit);
        c.finish(&mut emit);
        assert_eq!(emit.dropped, 0, "nothing is late within the bound");
        let mut per_key = vec![Vec::new(); 2];
        for r in emit.out {
            let k = usize::from(r.value["key"]["k"] == json!(1));
            per_key[k].push(r.value);
        }
        per_key
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn shuffled_input_within_the_bound_matches_as_ordered(
            raw in prop::collection::vec((0i64..4, 0..=B, 0u8..2, 0u8..4), 0..30),
            c in prop_oneof![Just("strict"), Just("relaxed"), Just("any")],
            s in prop_oneof![Just("noSkip"), Just("skipPastLastEvent")],
        ) {
            let mut base = 0;
            let arrivals: Vec<(i64, Value)> = raw
                .iter()
                .enumerate()
                .map(|(i, (dt, lag, k, t))| {
                    base += dt;
                    let t = ["a", "b", "c", "x"][usize::from(*t)];
                    (base - lag, json!({"k": k, "t": t, "i": i}))
                })
                .collect();
            let mut sorted = arrivals.clone();
            sorted.sort_by_key(|(ts, _)| *ts);
            let ordered = run(&mut step(c, s), &sorted);
            let shuffled = run(&mut step(c, s), &arrivals);
            prop_assert_eq!(shuffled, ordered);
        }
    }
}
