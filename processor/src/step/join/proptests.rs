//! Property tests: the join step against a nested-loop join over the same
//! bounded inputs, for every join type, with both inputs interleaved at
//! random, each out of order by at most the watermark bound, and watermarks
//! advanced at random points (as the engine does: the minimum over both
//! inputs of the largest time seen minus the bound).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use tributary_crds::{JoinStep, JoinType};

use super::Join;
use crate::record::{Position, Record};
use crate::step::{Emit, Step};

/// Largest disorder of each input (ms), also the watermark bound.
const BOUND: i64 = 5;

/// One input event: key, time.
type Ev = (u8, i64);

/// A stream of events whose times trail a rising clock by at most `BOUND`.
fn stream() -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec((0u8..3, 0i64..4, 0..=BOUND), 0..25).prop_map(|steps| {
        let mut clock = 0;
        steps
            .into_iter()
            .map(|(k, advance, lag)| {
                clock += advance;
                (k, clock - lag)
            })
            .collect()
    })
}

fn kind() -> impl Strategy<Value = JoinType> {
    prop_oneof![
        Just(JoinType::Inner),
        Just(JoinType::Left),
        Just(JoinType::Right),
        Just(JoinType::Full)
    ]
}

/// An output row: (left index, right index, event time); -1 for a missing side.
type Row = (i64, i64, i64);

/// The nested-loop join.
fn reference(kind: JoinType, within: i64, l: &[Ev], r: &[Ev]) -> BTreeMap<Row, usize> {
    let mut out = BTreeMap::new();
    let mut r_matched = vec![false; r.len()];
    for (i, &(lk, lt)) in l.iter().enumerate() {
        let mut matched = false;
        for (j, &(rk, rt)) in r.iter().enumerate() {
            if lk == rk && (lt - rt).abs() <= within {
                *out.entry((i as i64, j as i64, lt.max(rt))).or_default() += 1;
                matched = true;
                r_matched[j] = true;
            }
        }
        if !matched && kind.keeps_left() {
            *out.entry((i as i64, -1, lt)).or_default() += 1;
        }
    }
    for (j, &(_, rt)) in r.iter().enumerate() {
        if !r_matched[j] && kind.keeps_right() {
            *out.entry((-1, j as i64, rt)).or_default() += 1;
        }
    }
    out
}

fn record(index: usize, (k, ts): Ev) -> Record {
    Record {
        position: Position {
            offset: index as i64,
            ..Position::default()
        },
        ..Record::new(json!({"i": index, "k": format!("k{k}")}), ts)
    }
}

fn row(r: &Record) -> Row {
    let side = |v: &serde_json::Value| v.as_i64().unwrap_or(-1);
    (
        side(&r.value["i"]),
        side(&r.value["other"]["i"]),
        r.event_time,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_a_nested_loop_join(
        kind in kind(),
        within in 0i64..8,
        l in stream(),
        r in stream(),
        // The order the two inputs arrive in, and where watermarks advance.
        order in prop::collection::vec((any::<bool>(), any::<bool>()), 50),
    ) {
        let spec = JoinStep {
            kind,
            within: tributary_crds::Duration(std::time::Duration::from_millis(within.unsigned_abs())),
            on: tributary_crds::JoinOn { left: "event.k".into(), right: "other.k".into() },
            ..JoinStep::default()
        };
        let mut join = Join::new("j".into(), &spec, &crate::expr::env()).unwrap();
        let mut emit = Emit::default();
        let (mut li, mut ri) = (0, 0);
        let (mut lmax, mut rmax) = (i64::MIN, i64::MIN);
        let mut order = order.into_iter().cycle();
        while li < l.len() || ri < r.len() {
            let (pick_left, wm_now) = order.next().unwrap_or((true, false));
            if (pick_left && li < l.len()) || ri >= r.len() {
                lmax = lmax.max(l[li].1);
                join.process(vec![record(li, l[li])], &mut emit).unwrap();
                li += 1;
            } else {
                rmax = rmax.max(r[ri].1);
                join.process_other(vec![record(ri, r[ri])], &mut emit).unwrap();
                ri += 1;
            }
            // A bounded input that ended no longer holds the watermark back.
            let lw = if li == l.len() { i64::MAX } else { lmax };
            let rw = if ri == r.len() { i64::MAX } else { rmax };
            if wm_now && lw.min(rw) != i64::MIN {
                let wm = lw.min(rw).saturating_sub(BOUND);
                join.on_watermark(wm, &mut emit);
                // State is bounded by the watermark: only records that can
                // still meet a record that is not late are held.
                let live = |s: &[Ev], n: usize| s[..n].iter().filter(|e| e.1 + within >= wm).count();
                prop_assert_eq!(join.state_size(), live(&l, li) + live(&r, ri));
            }
        }
        join.on_watermark(i64::MAX, &mut emit);
        join.finish(&mut emit);
        prop_assert_eq!(emit.late, 0, "inputs within the bound are never late");
        prop_assert_eq!(join.state_size(), 0);
        let mut got: BTreeMap<Row, usize> = BTreeMap::new();
        for rec in &emit.out {
            *got.entry(row(rec)).or_default() += 1;
        }
        prop_assert_eq!(got, reference(kind, within, &l, &r));
    }
}
