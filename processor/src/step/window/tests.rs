//! Operator-level unit tests: assignment, firing order, lateness, triggers.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::float_cmp,
    reason = "test arithmetic on small, exact values"
)]

use serde_json::{Value, json};

use super::*;

fn spec(name: &str, func: AggFn) -> AggSpec {
    AggSpec {
        name: name.into(),
        func,
    }
}

fn op(kind: WindowKind, lateness: i64, emit: EmitMode) -> WindowOperatorState {
    WindowOperatorState::new(WindowConfig {
        kind,
        aggs: vec![spec("n", AggFn::Count), spec("s", AggFn::Sum)],
        allowed_lateness: lateness,
        emit,
    })
}

fn key(s: &str) -> Key {
    Key::from_values(vec![json!(s)])
}

/// (start, end, key, count) of each result, in emitted order.
fn brief(out: &[WindowResult]) -> Vec<(i64, i64, String, u64)> {
    out.iter()
        .map(|r| {
            (
                r.start,
                r.end,
                r.key.values()[0].as_str().unwrap_or("?").to_string(),
                r.values[0].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

fn ins(
    st: &mut WindowOperatorState,
    k: &str,
    ts: i64,
    wm: i64,
    out: &mut Vec<WindowResult>,
) -> Inserted {
    st.insert(key(k), ts, &[Value::Null, json!(1)], wm, out)
}

fn adv(st: &mut WindowOperatorState, wm: i64) -> Vec<(i64, i64, String, u64)> {
    let mut out = Vec::new();
    st.advance_watermark(wm, &mut out);
    brief(&out)
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn tumbling_fires_at_end_in_end_start_key_order() {
    let mut st = op(WindowKind::Tumbling { size: 10 }, 0, EmitMode::Final);
    let mut out = Vec::new();
    for (k, ts) in [("b", 12), ("b", 3), ("a", 15), ("c", 9), ("a", 0), ("a", 1)] {
        assert_eq!(ins(&mut st, k, ts, i64::MIN, &mut out), Inserted::Accepted);
    }
    assert!(out.is_empty());
    assert_eq!(adv(&mut st, 9), vec![]);
    assert_eq!(
        adv(&mut st, 10),
        vec![(0, 10, s("a"), 2), (0, 10, s("b"), 1), (0, 10, s("c"), 1)]
    );
    assert_eq!(
        adv(&mut st, 100),
        vec![(10, 20, s("a"), 1), (10, 20, s("b"), 1)]
    );
    assert_eq!(st.state_size(), 0);
}

#[test]
fn tumbling_windows_before_the_epoch_floor() {
    let mut st = op(WindowKind::Tumbling { size: 10 }, 0, EmitMode::Final);
    let mut out = Vec::new();
    for ts in [-1, -10, -11, 0] {
        ins(&mut st, "a", ts, i64::MIN, &mut out);
    }
    st.flush(&mut out);
    assert_eq!(
        brief(&out),
        vec![
            (-20, -10, s("a"), 1),
            (-10, 0, s("a"), 2),
            (0, 10, s("a"), 1)
        ]
    );
}

#[test]
fn late_event_is_dropped_without_state() {
    let mut st = op(WindowKind::Tumbling { size: 10 }, 0, EmitMode::Final);
    let mut out = Vec::new();
    ins(&mut st, "a", 5, 0, &mut out);
    assert_eq!(adv(&mut st, 10).len(), 1);
    assert_eq!(ins(&mut st, "a", 9, 10, &mut out), Inserted::Late);
    // The caller's watermark counts even before advance_watermark sees it.
    assert_eq!(ins(&mut st, "a", 15, 20, &mut out), Inserted::Late);
    assert!(out.is_empty());
    assert_eq!(st.state_size(), 0);
    assert_eq!(adv(&mut st, 30), vec![]);
}

#[test]
fn allowed_lateness_refires_then_purges() {
    let mut st = op(WindowKind::Tumbling { size: 10 }, 5, EmitMode::Final);
    let mut out = Vec::new();
    ins(&mut st, "a", 5, 0, &mut out);
    assert_eq!(adv(&mut st, 10), vec![(0, 10, s("a"), 1)]);
    assert_eq!(st.state_size(), 1, "kept for allowed lateness");
    // Within lateness: added, and the updated window is emitted at once.
    assert_eq!(ins(&mut st, "a", 7, 12, &mut out), Inserted::Accepted);
    assert_eq!(brief(&out), vec![(0, 10, s("a"), 2)]);
    // A key new to a fired window re-fires too.
    out.clear();
    assert_eq!(ins(&mut st, "b", 1, 12, &mut out), Inserted::Accepted);
    assert_eq!(brief(&out), vec![(0, 10, s("b"), 1)]);
    // end + lateness <= wm: purged, and later events for it are late.
    assert_eq!(adv(&mut st, 15), vec![]);
    assert_eq!(st.state_size(), 0);
    out.clear();
    assert_eq!(ins(&mut st, "a", 8, 15, &mut out), Inserted::Late);
    assert!(out.is_empty());
}

#[test]
fn late_refire_happens_in_every_emit_mode() {
    for emit in [EmitMode::Final, EmitMode::Updates, EmitMode::All] {
        let mut st = op(WindowKind::Tumbling { size: 10 }, 100, emit);
        let mut out = Vec::new();
        ins(&mut st, "a", 5, 0, &mut out);
        adv(&mut st, 50);
        ins(&mut st, "a", 6, 50, &mut out);
        assert_eq!(brief(&out), vec![(0, 10, s("a"), 2)], "{emit:?}");
        // And the fired window is not "open" for triggers.
        out.clear();
        st.trigger(&mut out);
        assert!(out.is_empty(), "{emit:?}");
    }
}

#[test]
fn sliding_assigns_every_overlapping_window() {
    let mut st = op(
        WindowKind::Sliding { size: 10, slide: 5 },
        0,
        EmitMode::Final,
    );
    let mut out = Vec::new();
    ins(&mut st, "a", 7, i64::MIN, &mut out);
    ins(&mut st, "a", 12, i64::MIN, &mut out);
    // One pane per event, not one accumulator per window.
    assert_eq!(st.state_size(), 2);
    assert_eq!(adv(&mut st, 10), vec![(0, 10, s("a"), 1)]);
    assert_eq!(adv(&mut st, 15), vec![(5, 15, s("a"), 2)]);
    assert_eq!(adv(&mut st, 20), vec![(10, 20, s("a"), 1)]);
    assert_eq!(st.state_size(), 0);
}

#[test]
fn sliding_event_is_late_only_when_all_its_windows_are() {
    let mut st = op(
        WindowKind::Sliding { size: 10, slide: 5 },
        0,
        EmitMode::Final,
    );
    let mut out = Vec::new();
    ins(&mut st, "a", 6, 0, &mut out);
    assert_eq!(adv(&mut st, 10), vec![(0, 10, s("a"), 1)]);
    // ts 7 is in [0,10) (late) and [5,15) (open): accepted into the latter.
    assert_eq!(ins(&mut st, "a", 7, 10, &mut out), Inserted::Accepted);
    assert!(out.is_empty(), "the late window is not re-fired");
    assert_eq!(adv(&mut st, 15), vec![(5, 15, s("a"), 2)]);
    assert_eq!(ins(&mut st, "a", 9, 15, &mut out), Inserted::Late);
}

#[test]
fn sliding_late_refire_merges_panes() {
    let mut st = op(
        WindowKind::Sliding { size: 10, slide: 5 },
        20,
        EmitMode::Final,
    );
    let mut out = Vec::new();
    ins(&mut st, "a", 1, 0, &mut out);
    ins(&mut st, "a", 8, 0, &mut out);
    adv(&mut st, 16);
    // ts 6 is in [0,10) and [5,15), both fired and within lateness.
    ins(&mut st, "a", 6, 16, &mut out);
    assert_eq!(brief(&out), vec![(0, 10, s("a"), 3), (5, 15, s("a"), 2)]);
}

#[test]
fn hopping_event_between_windows_is_ignored_not_late() {
    let mut st = op(
        WindowKind::Sliding { size: 3, slide: 10 },
        0,
        EmitMode::Final,
    );
    let mut out = Vec::new();
    assert_eq!(ins(&mut st, "a", 5, 0, &mut out), Inserted::Accepted);
    assert_eq!(st.state_size(), 0);
    st.flush(&mut out);
    assert!(out.is_empty());
}

#[test]
fn session_event_bridges_two_sessions() {
    let mut st = op(WindowKind::Session { gap: 10 }, 0, EmitMode::Final);
    let mut out = Vec::new();
    ins(&mut st, "a", 0, i64::MIN, &mut out);
    ins(&mut st, "a", 15, i64::MIN, &mut out);
    ins(&mut st, "b", 3, i64::MIN, &mut out);
    assert_eq!(st.state_size(), 3);
    ins(&mut st, "a", 7, i64::MIN, &mut out);
    assert_eq!(st.state_size(), 2);
    assert_eq!(adv(&mut st, 13), vec![(3, 13, s("b"), 1)]);
    assert_eq!(adv(&mut st, 25), vec![(0, 25, s("a"), 3)]);
    assert_eq!(st.state_size(), 0);
}

#[test]
fn sessions_that_only_touch_stay_apart() {
    let mut st = op(WindowKind::Session { gap: 10 }, 0, EmitMode::Final);
    let mut out = Vec::new();
    ins(&mut st, "a", 0, i64::MIN, &mut out);
    ins(&mut st, "a", 10, i64::MIN, &mut out);
    ins(&mut st, "a", 19, i64::MIN, &mut out);
    st.flush(&mut out);
    assert_eq!(brief(&out), vec![(0, 10, s("a"), 1), (10, 29, s("a"), 2)]);
}

#[test]
fn session_lateness_is_judged_on_the_merged_window() {
    let mut st = op(WindowKind::Session { gap: 10 }, 0, EmitMode::Final);
    let mut out = Vec::new();
    ins(&mut st, "a", 0, 0, &mut out);
    assert_eq!(adv(&mut st, 9), vec![]);
    // [-5, 5) alone would be late, but merged into [-5, 10) it is not.
    assert_eq!(ins(&mut st, "a", -5, 9, &mut out), Inserted::Accepted);
    assert_eq!(adv(&mut st, 10), vec![(-5, 10, s("a"), 2)]);
    // [0, 10) is late at wm 10; [1, 11) would not be.
    assert_eq!(ins(&mut st, "a", 0, 10, &mut out), Inserted::Late);
    assert_eq!(st.state_size(), 0);
    assert!(out.is_empty());
}

#[test]
fn session_late_merge_within_lateness_refires_the_merged_window() {
    let mut st = op(WindowKind::Session { gap: 10 }, 20, EmitMode::Final);
    let mut out = Vec::new();
    ins(&mut st, "a", 0, 0, &mut out);
    ins(&mut st, "a", 30, 0, &mut out);
    assert_eq!(adv(&mut st, 25), vec![(0, 10, s("a"), 1)]);
    // Extends the fired [0,10) to [0,13): still <= wm, so it fires now.
    assert_eq!(ins(&mut st, "a", 3, 25, &mut out), Inserted::Accepted);
    assert_eq!(brief(&out), vec![(0, 13, s("a"), 2)]);
    // Purged once end + lateness passes.
    assert_eq!(adv(&mut st, 33), vec![]);
    assert_eq!(st.state_size(), 1);
    assert_eq!(adv(&mut st, 40), vec![(30, 40, s("a"), 1)]);
}

#[test]
fn count_windows_fire_when_full_and_flush_partial() {
    let mut st = op(WindowKind::Count { count: 3 }, 0, EmitMode::Final);
    let mut out = Vec::new();
    for (k, ts) in [("a", 10), ("b", 1), ("a", 50), ("a", 20), ("a", 5)] {
        // Watermarks do not matter for count windows.
        assert_eq!(ins(&mut st, k, ts, i64::MAX, &mut out), Inserted::Accepted);
    }
    assert_eq!(brief(&out), vec![(10, 51, s("a"), 3)]);
    assert_eq!(adv(&mut st, i64::MAX), vec![]);
    out.clear();
    st.flush(&mut out);
    assert_eq!(brief(&out), vec![(1, 2, s("b"), 1), (5, 6, s("a"), 1)]);
    assert_eq!(st.state_size(), 0);
}

#[test]
fn updates_trigger_emits_only_changed_open_windows() {
    for kind in [
        WindowKind::Tumbling { size: 10 },
        WindowKind::Session { gap: 10 },
        WindowKind::Count { count: 100 },
    ] {
        let mut st = op(kind, 0, EmitMode::Updates);
        let mut out = Vec::new();
        ins(&mut st, "b", 1, 0, &mut out);
        ins(&mut st, "a", 1, 0, &mut out);
        st.trigger(&mut out);
        assert_eq!(brief(&out).len(), 2, "{kind:?}");
        assert_eq!(out[0].key, key("a"), "{kind:?}: key order");
        out.clear();
        st.trigger(&mut out);
        assert!(out.is_empty(), "{kind:?}: nothing changed");
        ins(&mut st, "a", 3, 0, &mut out);
        ins(&mut st, "a", 4, 0, &mut out);
        st.trigger(&mut out);
        assert_eq!(brief(&out).len(), 1, "{kind:?}");
        assert_eq!(out[0].values[0], json!(3), "{kind:?}");
    }
}

#[test]
fn updates_trigger_on_sliding_covers_every_window_of_the_pane() {
    let mut st = op(
        WindowKind::Sliding { size: 10, slide: 5 },
        0,
        EmitMode::Updates,
    );
    let mut out = Vec::new();
    ins(&mut st, "a", 7, 0, &mut out);
    st.trigger(&mut out);
    assert_eq!(brief(&out), vec![(0, 10, s("a"), 1), (5, 15, s("a"), 1)]);
    out.clear();
    adv(&mut st, 10);
    ins(&mut st, "a", 8, 10, &mut out);
    st.trigger(&mut out);
    assert_eq!(
        brief(&out),
        vec![(5, 15, s("a"), 2)],
        "fired windows excluded"
    );
}

#[test]
fn all_trigger_emits_every_open_window_each_time() {
    let mut st = op(WindowKind::Tumbling { size: 10 }, 0, EmitMode::All);
    let mut out = Vec::new();
    ins(&mut st, "a", 1, 0, &mut out);
    ins(&mut st, "a", 11, 0, &mut out);
    ins(&mut st, "b", 2, 0, &mut out);
    for _ in 0..2 {
        out.clear();
        st.trigger(&mut out);
        assert_eq!(
            brief(&out),
            vec![(0, 10, s("a"), 1), (0, 10, s("b"), 1), (10, 20, s("a"), 1)]
        );
    }
    adv(&mut st, 10);
    out.clear();
    st.trigger(&mut out);
    assert_eq!(brief(&out), vec![(10, 20, s("a"), 1)]);
}

#[test]
fn final_mode_trigger_emits_nothing() {
    let mut st = op(WindowKind::Tumbling { size: 10 }, 0, EmitMode::Final);
    let mut out = Vec::new();
    ins(&mut st, "a", 1, 0, &mut out);
    st.trigger(&mut out);
    assert!(out.is_empty());
}

#[test]
fn watermark_never_moves_back() {
    let mut st = op(WindowKind::Tumbling { size: 10 }, 0, EmitMode::Final);
    let mut out = Vec::new();
    ins(&mut st, "a", 1, 0, &mut out);
    assert_eq!(adv(&mut st, 10).len(), 1);
    assert_eq!(adv(&mut st, 5), vec![]);
    assert_eq!(ins(&mut st, "a", 2, 0, &mut out), Inserted::Late);
}

#[test]
fn every_aggregate_through_a_sliding_window() {
    let aggs = vec![
        spec("n", AggFn::Count),
        spec("sum", AggFn::Sum),
        spec("avg", AggFn::Avg),
        spec("min", AggFn::Min),
        spec("max", AggFn::Max),
        spec("first", AggFn::First),
        spec("last", AggFn::Last),
        spec("p50", AggFn::Percentile { q: 0.5 }),
        spec("sd", AggFn::Stddev),
        spec("var", AggFn::Variance),
        spec("sdp", AggFn::StddevPop),
        spec("varp", AggFn::VariancePop),
        spec("d", AggFn::Distinct),
    ];
    let mut st = WindowOperatorState::new(WindowConfig {
        kind: WindowKind::Sliding {
            size: 20,
            slide: 10,
        },
        aggs,
        allowed_lateness: 0,
        emit: EmitMode::Final,
    });
    let mut out = Vec::new();
    // Two panes of window [0, 20); ties at ts 5 and 15 across panes.
    for (ts, x) in [(15, 4.0), (5, 2.0), (5, 7.0), (15, 5.0), (12, 2.0)] {
        st.insert(
            key("k"),
            ts,
            &[
                Value::Null,
                json!(x),
                json!(x),
                json!(x),
                json!(x),
                json!(x),
                json!(x),
                json!(x),
                json!(x),
                json!(x),
                json!(x),
                json!(x),
                json!(x),
            ],
            0,
            &mut out,
        );
    }
    st.advance_watermark(20, &mut out);
    let w = out.iter().find(|r| r.start == 0).expect("window [0,20)");
    let f = |i: usize| w.values[i].as_f64().unwrap();
    assert_eq!(w.values[0], json!(5));
    assert_eq!(f(1), 20.0);
    assert_eq!(f(2), 4.0);
    assert_eq!(f(3), 2.0);
    assert_eq!(f(4), 7.0);
    assert_eq!(f(5), 2.0, "first: ts 5, earliest arrival");
    assert_eq!(f(6), 5.0, "last: ts 15, latest arrival");
    assert!((f(7) - 4.0).abs() <= 0.04);
    assert!((f(9) - 4.5).abs() < 1e-9, "sample variance of 2,2,4,5,7");
    assert!((f(11) - 3.6).abs() < 1e-9, "population variance");
    assert!((f(8) - 4.5f64.sqrt()).abs() < 1e-9);
    assert!((f(10) - 3.6f64.sqrt()).abs() < 1e-9);
    assert_eq!(w.values[12], json!(4));
}

#[test]
fn extreme_inputs_do_not_panic() {
    let kinds = [
        WindowKind::Tumbling { size: 0 },
        WindowKind::Tumbling { size: i64::MAX },
        WindowKind::Sliding { size: -5, slide: 0 },
        WindowKind::Sliding {
            size: i64::MAX,
            slide: i64::MAX / 2,
        },
        WindowKind::Session { gap: i64::MIN },
        WindowKind::Session { gap: i64::MAX },
        WindowKind::Count { count: 0 },
    ];
    for kind in kinds {
        for emit in [EmitMode::Final, EmitMode::Updates, EmitMode::All] {
            let mut st = WindowOperatorState::new(WindowConfig {
                kind,
                aggs: vec![
                    spec("p", AggFn::Percentile { q: f64::NAN }),
                    spec("d", AggFn::Distinct),
                ],
                allowed_lateness: i64::MAX,
                emit,
            });
            let mut out = Vec::new();
            for ts in [i64::MIN, i64::MAX, 0, -1, i64::MIN + 1, i64::MAX - 1] {
                st.insert(key("a"), ts, &[json!(f64::MAX)], i64::MIN, &mut out);
                st.insert(key("a"), ts, &[], i64::MAX, &mut out);
                st.trigger(&mut out);
                st.advance_watermark(ts, &mut out);
            }
            st.flush(&mut out);
            assert_eq!(st.state_size(), 0, "{kind:?}");
        }
    }
}

#[test]
fn session_refire_when_merged_end_equals_the_watermark() {
    let mut st = op(WindowKind::Session { gap: 10 }, 5, EmitMode::Final);
    let mut out = Vec::new();
    ins(&mut st, "a", 0, 0, &mut out);
    assert_eq!(adv(&mut st, 10), vec![(0, 10, s("a"), 1)]);
    assert_eq!(ins(&mut st, "a", 0, 10, &mut out), Inserted::Accepted);
    assert_eq!(brief(&out), vec![(0, 10, s("a"), 2)]);
    assert_eq!(adv(&mut st, 15), vec![], "fired once, not again");
    assert_eq!(st.state_size(), 0);
}
