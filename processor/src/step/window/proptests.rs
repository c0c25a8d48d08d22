//! Property tests: the operator against a brute-force reference on random
//! events with bounded disorder (tumbling, sliding, session), and with late
//! events and allowed lateness (tumbling, sliding).

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    reason = "test arithmetic on small, exact values"
)]

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn spec(name: &str, func: AggFn) -> AggSpec {
    AggSpec {
        name: name.into(),
        func,
    }
}

/// Maximum disorder: an event is at most `B` ms older than the newest seen.
const B: i64 = 8;

/// (start, end, key, count, sum, min, max, first, last) with the inputs
/// chosen so every field is an exact integer.
type Row = (i64, i64, u8, u64, i64, i64, i64, i64, i64);

#[derive(Debug, Clone)]
struct Ev {
    key: u8,
    ts: i64,
    x: i64,
}

/// Events with bounded disorder, and for each a flag "advance the
/// watermark after it".
fn events() -> impl Strategy<Value = Vec<(Ev, bool)>> {
    prop::collection::vec((0u8..3, 0i64..6, 0..=B, -20i64..20, any::<bool>()), 0..60).prop_map(
        |raw| {
            let mut base = -40;
            raw.into_iter()
                .map(|(key, step, jitter, x, adv)| {
                    base += step;
                    (
                        Ev {
                            key,
                            ts: base - jitter,
                            x,
                        },
                        adv,
                    )
                })
                .collect()
        },
    )
}

fn agg_specs() -> Vec<AggSpec> {
    vec![
        spec("n", AggFn::Count),
        spec("sum", AggFn::Sum),
        spec("min", AggFn::Min),
        spec("max", AggFn::Max),
        spec("first", AggFn::First),
        spec("last", AggFn::Last),
    ]
}

/// Runs the operator with watermark = newest ts seen − B, so nothing is late.
/// The watermark reaches the state only through `advance_watermark` (insert
/// gets the last advanced one), so firing happens at the advances.
fn run_operator(kind: WindowKind, evs: &[(Ev, bool)]) -> Vec<Row> {
    let mut st = WindowOperatorState::new(WindowConfig {
        kind,
        aggs: agg_specs(),
        allowed_lateness: 0,
        emit: EmitMode::Final,
    });
    let mut out = Vec::new();
    let mut max_ts = i64::MIN;
    let mut advanced = i64::MIN;
    for (i, (e, advance)) in evs.iter().enumerate() {
        max_ts = max_ts.max(e.ts);
        let wm = max_ts - B;
        let idx = json!(i);
        let x = json!(e.x);
        let k = Key::from_values(vec![json!(e.key)]);
        let r = st.insert(
            k,
            e.ts,
            &[Value::Null, x.clone(), x.clone(), x, idx.clone(), idx],
            advanced,
            &mut out,
        );
        assert_eq!(r, Inserted::Accepted);
        assert!(out.iter().all(|r| r.end <= wm), "fired early");
        if *advance {
            st.advance_watermark(wm, &mut out);
            advanced = wm;
        }
    }
    st.flush(&mut out);
    assert_eq!(st.state_size(), 0);
    // Nothing is late, so the whole output stream is in output order.
    assert!(
        out.windows(2).all(|p| p[0].output_order(&p[1]).is_lt()),
        "output order"
    );
    let mut rows: Vec<Row> = out
        .iter()
        .map(|r| {
            let n = |i: usize| {
                #[allow(clippy::cast_possible_truncation)]
                let v = r.values[i].as_f64().map_or(i64::MIN, |f| f as i64);
                v
            };
            (
                r.start,
                r.end,
                u8::try_from(r.key.values()[0].as_u64().unwrap_or(255)).unwrap_or(255),
                r.values[0].as_u64().unwrap_or(u64::MAX),
                n(1),
                n(2),
                n(3),
                n(4),
                n(5),
            )
        })
        .collect();
    rows.sort_unstable();
    rows
}

/// Aggregates a group of (arrival index, event) into a row.
fn row(start: i64, end: i64, key: u8, group: &[(usize, &Ev)]) -> Row {
    let first = group
        .iter()
        .min_by_key(|(i, e)| (e.ts, *i))
        .map_or(-1, |(i, _)| i64::try_from(*i).unwrap_or(-1));
    let last = group
        .iter()
        .max_by_key(|(i, e)| (e.ts, *i))
        .map_or(-1, |(i, _)| i64::try_from(*i).unwrap_or(-1));
    (
        start,
        end,
        key,
        group.len() as u64,
        group.iter().map(|(_, e)| e.x).sum(),
        group.iter().map(|(_, e)| e.x).min().unwrap_or(i64::MIN),
        group.iter().map(|(_, e)| e.x).max().unwrap_or(i64::MIN),
        first,
        last,
    )
}

/// Brute force for tumbling and sliding: every window of every event.
fn reference_sliding(size: i64, slide: i64, evs: &[(Ev, bool)]) -> Vec<Row> {
    let mut windows = std::collections::BTreeSet::new();
    for (e, _) in evs {
        let mut w = (e.ts - size).div_euclid(slide) * slide;
        while w <= e.ts {
            if w <= e.ts && e.ts < w + size {
                windows.insert((w, e.key));
            }
            w += slide;
        }
    }
    let mut rows: Vec<Row> = windows
        .into_iter()
        .map(|(w, k)| {
            let group: Vec<(usize, &Ev)> = evs
                .iter()
                .map(|(e, _)| e)
                .enumerate()
                .filter(|(_, e)| e.key == k && w <= e.ts && e.ts < w + size)
                .collect();
            row(w, w + size, k, &group)
        })
        .collect();
    rows.sort_unstable();
    rows
}

/// Brute force for sessions: per key, sort by time and cut where the gap
/// from the running session end is reached.
fn reference_sessions(gap: i64, evs: &[(Ev, bool)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for k in 0u8..3 {
        let mut group: Vec<(usize, &Ev)> = evs
            .iter()
            .map(|(e, _)| e)
            .enumerate()
            .filter(|(_, e)| e.key == k)
            .collect();
        group.sort_by_key(|(i, e)| (e.ts, *i));
        let mut cur: Vec<(usize, &Ev)> = Vec::new();
        let (mut start, mut end) = (0, 0);
        for (i, e) in group {
            if !cur.is_empty() && e.ts >= end {
                rows.push(row(start, end, k, &cur));
                cur.clear();
            }
            if cur.is_empty() {
                start = e.ts;
                end = e.ts + gap;
            }
            end = end.max(e.ts + gap);
            cur.push((i, e));
        }
        if !cur.is_empty() {
            rows.push(row(start, end, k, &cur));
        }
    }
    rows.sort_unstable();
    rows
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tumbling_matches_brute_force(evs in events(), size in 1i64..15) {
        prop_assert_eq!(
            run_operator(WindowKind::Tumbling { size }, &evs),
            reference_sliding(size, size, &evs)
        );
    }

    #[test]
    fn sliding_matches_brute_force(evs in events(), size in 1i64..20, slide in 1i64..12) {
        prop_assert_eq!(
            run_operator(WindowKind::Sliding { size, slide }, &evs),
            reference_sliding(size, slide, &evs)
        );
    }

    #[test]
    fn session_matches_brute_force(evs in events(), gap in 1i64..12) {
        prop_assert_eq!(
            run_operator(WindowKind::Session { gap }, &evs),
            reference_sessions(gap, &evs)
        );
    }
}

/// Events with disorder up to `3 * B`, so that some are late at
/// watermark = newest − B.
fn disordered_events() -> impl Strategy<Value = Vec<(Ev, bool)>> {
    prop::collection::vec(
        (0u8..3, 0i64..6, 0..=3 * B, -20i64..20, any::<bool>()),
        0..60,
    )
    .prop_map(|raw| {
        let mut base = -40;
        raw.into_iter()
            .map(|(key, step, jitter, x, adv)| {
                base += step;
                (
                    Ev {
                        key,
                        ts: base - jitter,
                        x,
                    },
                    adv,
                )
            })
            .collect()
    })
}

/// With late events and allowed lateness, the *last* result emitted for each
/// (window, key) covers exactly the events that were not late for that
/// window when they arrived, and `Late` is returned exactly when every
/// window of the event was past end + lateness.
fn check_lateness(
    size: i64,
    slide: i64,
    lateness: i64,
    evs: &[(Ev, bool)],
) -> Result<(), TestCaseError> {
    let mut st = WindowOperatorState::new(WindowConfig {
        kind: WindowKind::Sliding { size, slide },
        aggs: agg_specs(),
        allowed_lateness: lateness,
        emit: EmitMode::Final,
    });
    let mut out = Vec::new();
    let mut max_ts = i64::MIN;
    let mut wm_at = Vec::new();
    for (i, (e, advance)) in evs.iter().enumerate() {
        max_ts = max_ts.max(e.ts);
        let wm = max_ts - B;
        wm_at.push(wm);
        let idx = json!(i);
        let x = json!(e.x);
        let k = Key::from_values(vec![json!(e.key)]);
        let r = st.insert(
            k,
            e.ts,
            &[Value::Null, x.clone(), x.clone(), x, idx.clone(), idx],
            wm,
            &mut out,
        );
        let last_w = e.ts.div_euclid(slide) * slide;
        let in_some_window = last_w + size > e.ts;
        let late = in_some_window && last_w + size + lateness <= wm;
        prop_assert_eq!(
            r == Inserted::Late,
            late,
            "event {} ts {} wm {}",
            i,
            e.ts,
            wm
        );
        if *advance {
            st.advance_watermark(wm, &mut out);
        }
    }
    st.flush(&mut out);
    prop_assert_eq!(st.state_size(), 0);
    let mut last: std::collections::BTreeMap<(i64, u8), Vec<Value>> =
        std::collections::BTreeMap::new();
    for r in &out {
        let k = u8::try_from(r.key.values()[0].as_u64().unwrap_or(255)).unwrap_or(255);
        last.insert((r.start, k), r.values.clone());
    }
    let mut expected = std::collections::BTreeMap::new();
    let mut windows = std::collections::BTreeSet::new();
    for (e, _) in evs {
        let mut w = (e.ts - size).div_euclid(slide) * slide;
        while w <= e.ts {
            if e.ts < w + size {
                windows.insert((w, e.key));
            }
            w += slide;
        }
    }
    for (w, k) in windows {
        let group: Vec<(usize, &Ev)> = evs
            .iter()
            .map(|(e, _)| e)
            .enumerate()
            .filter(|(i, e)| {
                e.key == k && w <= e.ts && e.ts < w + size && w + size + lateness > wm_at[*i]
            })
            .collect();
        if !group.is_empty() {
            let r = row(w, w + size, k, &group);
            expected.insert(
                (w, k),
                vec![
                    json!(r.3),
                    json!(r.4 as f64),
                    json!(r.5 as f64),
                    json!(r.6 as f64),
                    json!(r.7),
                    json!(r.8),
                ],
            );
        }
    }
    prop_assert_eq!(last, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn late_events_and_refires_match_brute_force(
        evs in disordered_events(),
        size in 1i64..15,
        slide in 1i64..12,
        lateness in 0i64..10,
        tumbling in any::<bool>(),
    ) {
        let slide = if tumbling { size } else { slide };
        check_lateness(size, slide, lateness, &evs)?;
    }
}
