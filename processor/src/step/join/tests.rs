//! The join step on hand-made sequences: each type, the `within` boundary,
//! expiry by watermark, late records, keys that fail or are null.

use serde_json::{Value, json};
use tributary_crds::JoinStep;

use super::Join;
use crate::record::{Position, Record};
use crate::step::{Emit, Step};

fn join(kind: &str, within: &str) -> Join {
    let spec: JoinStep = serde_yaml_ng::from_str(&format!(
        "{{with: {{file: {{path: x}}}}, type: {kind}, on: {{left: event.k, right: other.k}}, within: {within}}}"
    ))
    .unwrap();
    Join::new("join-0".into(), &spec, &crate::expr::env()).unwrap()
}

fn rec(id: &str, k: Value, ts: i64, offset: i64) -> Record {
    Record {
        position: Position {
            offset,
            ..Position::default()
        },
        ..Record::new(json!({"id": id, "k": k}), ts)
    }
}

fn left(j: &mut Join, recs: Vec<Record>) -> Emit {
    let mut emit = Emit::default();
    j.process(recs, &mut emit).unwrap();
    emit
}

fn right(j: &mut Join, recs: Vec<Record>) -> Emit {
    let mut emit = Emit::default();
    j.process_other(recs, &mut emit).unwrap();
    emit
}

/// Feeds `l` to the left input, then `r` to the right one; what `r` emits.
fn feed(j: &mut Join, l: Vec<Record>, r: Vec<Record>) -> Emit {
    left(j, l);
    right(j, r)
}

fn watermark(j: &mut Join, wm: i64) -> Emit {
    let mut emit = Emit::default();
    j.on_watermark(wm, &mut emit);
    emit
}

/// Each output as `left id / right id` (`-` for a missing side) @ event time.
fn shown(emit: &Emit) -> Vec<String> {
    emit.out
        .iter()
        .map(|r| {
            let l = r.value["id"].as_str().unwrap_or("-");
            let o = r.value["other"]["id"].as_str().unwrap_or("-");
            format!("{l}/{o}@{}", r.event_time)
        })
        .collect()
}

#[test]
fn inner_pairs_records_at_most_within_apart_inclusive() {
    let mut j = join("inner", "10ms");
    assert!(
        left(&mut j, vec![rec("l1", json!("a"), 100, 1)])
            .out
            .is_empty()
    );
    let e = right(
        &mut j,
        vec![
            rec("r1", json!("a"), 110, 1), // exactly within after
            rec("r2", json!("a"), 90, 2),  // exactly within before
            rec("r3", json!("a"), 111, 3), // one past
            rec("r4", json!("a"), 89, 4),  // one before
            rec("r5", json!("b"), 100, 5), // other key
        ],
    );
    assert_eq!(shown(&e), ["l1/r1@110", "l1/r2@100"]);
    let e = left(&mut j, vec![rec("l2", json!("a"), 101, 2)]);
    assert_eq!(shown(&e), ["l2/r1@110", "l2/r3@111"]);
    let pair = &e.out[0];
    assert_eq!(pair.value["k"], "a", "left fields are kept");
    assert_eq!(pair.value["other"], json!({"id": "r1", "k": "a"}));
    assert_eq!(pair.position.offset, 2, "a pair carries the left position");
    assert!(
        watermark(&mut j, i64::MAX).out.is_empty(),
        "inner emits nothing unmatched"
    );
    assert_eq!(j.state_size(), 0);
}

#[test]
fn numeric_keys_compare_by_value() {
    let mut j = join("inner", "0s");
    left(&mut j, vec![rec("l", json!(1), 5, 0)]);
    assert_eq!(
        shown(&right(&mut j, vec![rec("r", json!(1.0), 5, 0)])),
        ["l/r@5"]
    );
}

#[test]
fn left_emits_unmatched_left_records_once_the_watermark_passes_ts_plus_within() {
    let mut j = join("left", "10ms");
    feed(
        &mut j,
        vec![rec("l1", json!("a"), 100, 1), rec("l2", json!("a"), 50, 2)],
        vec![rec("r1", json!("a"), 105, 1), rec("r9", json!("z"), 100, 2)],
    );
    assert_eq!(
        shown(&watermark(&mut j, 60)),
        Vec::<String>::new(),
        "50 + 10 is not passed yet"
    );
    // A right record exactly at the boundary still joins at wm == ts + within.
    assert_eq!(
        shown(&right(&mut j, vec![rec("r2", json!("a"), 60, 3)])),
        ["l2/r2@60"]
    );
    let mut j = join("left", "10ms");
    feed(
        &mut j,
        vec![rec("l1", json!("a"), 100, 1), rec("l2", json!("a"), 50, 2)],
        vec![rec("r1", json!("a"), 105, 1), rec("r9", json!("z"), 100, 2)],
    );
    let e = watermark(&mut j, 61);
    assert_eq!(shown(&e), ["l2/-@50"]);
    assert_eq!(e.out[0].value["other"], Value::Null);
    assert!(
        watermark(&mut j, 200).out.is_empty(),
        "l1 matched; emitted once only"
    );
    assert_eq!(j.state_size(), 0);
}

#[test]
fn right_emits_unmatched_right_records_as_other_only() {
    let mut j = join("right", "5ms");
    feed(
        &mut j,
        vec![rec("l1", json!("a"), 10, 1), rec("l2", json!("b"), 10, 2)],
        vec![rec("r1", json!("a"), 12, 1), rec("r2", json!("c"), 11, 2)],
    );
    let e = watermark(&mut j, 17);
    assert_eq!(shown(&e), ["-/r2@11"]);
    assert_eq!(e.out[0].value, json!({"other": {"id": "r2", "k": "c"}}));
    assert_eq!(e.out[0].position.offset, Position::DERIVED);
    assert!(watermark(&mut j, 100).out.is_empty());
}

#[test]
fn full_emits_both_sides_unmatched_in_event_time_order() {
    let full = |j: &mut Join| {
        feed(
            j,
            vec![rec("l1", json!("a"), 30, 1), rec("l2", json!("b"), 10, 2)],
            vec![rec("r1", json!("a"), 32, 1), rec("r2", json!("c"), 20, 2)],
        )
    };
    let (mut j, mut j2) = (join("full", "5ms"), join("full", "5ms"));
    assert_eq!(shown(&full(&mut j)), ["l1/r1@32"]);
    full(&mut j2);
    let e = watermark(&mut j, 1000);
    assert_eq!(shown(&e), ["l2/-@10", "-/r2@20"]);
    let mut e = Emit::default();
    j2.finish(&mut e);
    assert_eq!(
        shown(&e),
        ["l2/-@10", "-/r2@20"],
        "the end of input releases the same"
    );
}

#[test]
fn late_records_are_dropped_and_counted() {
    let mut j = join("full", "10ms");
    left(&mut j, vec![rec("l1", json!("a"), 100, 1)]);
    watermark(&mut j, 100);
    let e = right(&mut j, vec![rec("r1", json!("a"), 99, 1)]);
    assert_eq!(
        (e.out.len(), e.late, e.dropped),
        (0, 1, 1),
        "late: no pair, no unmatched row"
    );
    let e = right(&mut j, vec![rec("r2", json!("a"), 100, 2)]);
    assert_eq!(shown(&e), ["l1/r2@100"], "at the watermark is not late");
    assert!(watermark(&mut j, i64::MAX).out.is_empty());
}

#[test]
fn state_is_released_by_the_watermark_and_low_water_follows_both_sides() {
    let mut j = join("inner", "10ms");
    assert_eq!(j.low_water(), None);
    left(
        &mut j,
        vec![rec("l1", json!("a"), 100, 7), rec("l2", json!("b"), 200, 8)],
    );
    right(&mut j, vec![rec("r1", json!("a"), 100, 1)]);
    assert_eq!(
        (j.state_size(), j.low_water()),
        (3, Some(1)),
        "a held right record counts (behind a repartition topic both sides share one log)"
    );
    watermark(&mut j, 111);
    assert_eq!((j.state_size(), j.low_water()), (1, Some(8)));
    watermark(&mut j, 211);
    assert_eq!((j.state_size(), j.low_water()), (0, None));
    // A key seen again after its slot was freed starts afresh.
    left(&mut j, vec![rec("l3", json!("a"), 300, 9)]);
    assert_eq!(
        shown(&right(&mut j, vec![rec("r3", json!("a"), 305, 2)])),
        ["l3/r3@305"]
    );
}

#[test]
fn failing_keys_go_to_dead_letters_and_null_keys_match_nothing() {
    let spec: JoinStep = serde_yaml_ng::from_str(
        "{with: {file: {path: x}}, type: left, on: {left: 'event.k + 1', right: other.k}, within: 1s}",
    )
    .unwrap();
    let mut j = Join::new("j".into(), &spec, &crate::expr::env()).unwrap();
    let e = left(&mut j, vec![rec("bad", json!("a"), 1, 1)]);
    assert_eq!(e.dead.len(), 1);
    assert!(
        e.dead[0].error.starts_with("on.left: "),
        "{}",
        e.dead[0].error
    );
    let mut j = join("left", "1s");
    right(&mut j, vec![Record::new(json!({"id": "r"}), 1)]);
    let e = left(&mut j, vec![Record::new(json!({"id": "l"}), 1)]);
    assert_eq!(
        shown(&e),
        ["l/-@1"],
        "a missing key is null: unmatched at once"
    );
    assert_eq!(j.state_size(), 0);
}

#[test]
fn in_processing_time_a_queued_record_joins_at_the_watermark() {
    let mut j = join("inner", "0s").in_processing_time(true);
    watermark(&mut j, 100);
    left(&mut j, vec![rec("l", json!("a"), 95, 1)]);
    assert_eq!(
        shown(&right(&mut j, vec![rec("r", json!("a"), 98, 1)])),
        ["l/r@100"]
    );
}

#[test]
fn a_replayed_record_meeting_a_new_one_is_new_output_and_so_are_releases() {
    let replayed = |mut r: Record| {
        r.replay = true;
        r
    };
    let mut j = join("full", "1s");
    // Both replayed: the pair was output before the checkpoint.
    let both = feed(
        &mut j,
        vec![replayed(rec("l1", json!("a"), 1_000, 0))],
        vec![replayed(rec("r1", json!("a"), 1_200, 1))],
    );
    assert_eq!(
        both.out.iter().map(|r| r.replay).collect::<Vec<_>>(),
        [true]
    );
    // A replayed left meeting a new right: never output before.
    let mixed = right(&mut j, vec![rec("r2", json!("a"), 1_500, 2)]);
    assert_eq!(shown(&mixed), ["l1/r2@1500"]);
    assert!(!mixed.out[0].replay);
    // A replayed left without a match, released by a later watermark.
    left(&mut j, vec![replayed(rec("l2", json!("b"), 2_000, 3))]);
    let released = watermark(&mut j, 10_000);
    let lone: Vec<_> = released
        .out
        .iter()
        .filter(|r| r.value["id"] == "l2")
        .collect();
    assert_eq!(lone.len(), 1, "{:?}", shown(&released));
    assert!(!lone[0].replay);
}

#[test]
fn a_restore_remembers_what_held_records_matched_and_releases_no_ghost() {
    let replayed = |mut r: Record| {
        r.replay = true;
        r
    };
    // Before the checkpoint (watermark 2,000, within 1 s): "paired" at
    // 1,500 met "early" at 900; "early" left the state, "paired" stayed;
    // "alone" at 950 left unmatched (its release is committed).
    let mut j = join("full", "1s");
    watermark(&mut j, 2_000);
    let replay = left(
        &mut j,
        vec![
            replayed(rec("paired", json!("a"), 1_500, 5)),
            replayed(rec("alone", json!("b"), 950, 6)),
        ],
    );
    let replay_r = right(&mut j, vec![replayed(rec("early", json!("a"), 900, 4))]);
    assert_eq!(replay.late + replay_r.late, 0, "a replay is not late");
    assert!(replay.out.iter().chain(&replay_r.out).all(|r| r.replay));
    // "paired" can still meet a new right record up to 2,500.
    let pair = right(&mut j, vec![rec("r", json!("a"), 2_400, 7)]);
    assert_eq!(shown(&pair), ["paired/r@2400"]);
    assert!(!pair.out[0].replay);
    // Later nothing is released: "paired" and "r" matched, "early" and
    // "alone" are ghosts.
    let released = watermark(&mut j, 10_000);
    assert!(released.out.is_empty(), "{:?}", shown(&released));
    assert_eq!(j.state_size(), 0);
    // A new record behind the watermark is late, as before.
    let late = left(&mut j, vec![rec("new", json!("a"), 1_500, 8)]);
    assert_eq!(late.late, 1);
}

#[test]
fn the_low_water_mark_covers_the_partners_of_held_records() {
    let mut j = join("left", "100ms");
    right(&mut j, vec![rec("r", json!("a"), 1_000, 3)]);
    left(&mut j, vec![rec("l", json!("a"), 1_090, 9)]);
    watermark(&mut j, 1_150);
    // "r" left the state; "l" stays and must bring "r" back on a restore.
    assert_eq!((j.state_size(), j.low_water()), (1, Some(3)));
}

/// A join whose `with` source acknowledges (a Redis stream): it follows
/// its right records for [`Step::side_low_water`].
fn acknowledging(kind: &str, within: &str) -> Join {
    let spec: JoinStep = serde_yaml_ng::from_str(&format!(
        "{{with: {{redisStreams: {{url: 'redis://r', stream: s}}}}, type: {kind}, on: {{left: event.k, right: other.k}}, within: {within}}}"
    ))
    .unwrap();
    Join::new("join-0".into(), &spec, &crate::expr::env())
        .unwrap()
        .main_acknowledges(true, &spec)
}

const NOTHING_LATER: super::Downstream = super::Downstream {
    low_water: None,
    empty: true,
};

#[test]
fn each_input_has_its_own_low_water_and_partners_hold_both() {
    let mut j = acknowledging("inner", "100ms");
    left(&mut j, vec![rec("l", json!("a"), 1_000, 40)]);
    right(&mut j, vec![rec("r", json!("b"), 1_000, 3)]);
    assert_eq!(
        j.main_low_water(),
        Some(40),
        "the right offset is not the main's"
    );
    assert_eq!(j.side_low_water(NOTHING_LATER), Some(3));
    assert_eq!(
        j.low_water(),
        Some(3),
        "behind a repartition topic both count"
    );
    // "r2" pairs with "l", then leaves; "l" stays and needs "r2" back.
    right(&mut j, vec![rec("r2", json!("a"), 1_050, 7)]);
    watermark(&mut j, 1_101);
    assert_eq!(j.state_size(), 1);
    assert_eq!(j.main_low_water(), Some(40));
    assert_eq!(j.side_low_water(NOTHING_LATER), Some(7));
    watermark(&mut j, 1_151);
    assert_eq!(
        (j.main_low_water(), j.side_low_water(NOTHING_LATER)),
        (None, None)
    );
}

#[test]
fn a_right_record_waits_for_the_later_steps_to_let_go_of_its_pairs() {
    let mut j = acknowledging("inner", "10ms");
    left(&mut j, vec![rec("l", json!("a"), 100, 40)]);
    right(&mut j, vec![rec("r", json!("a"), 100, 3)]);
    watermark(&mut j, 200);
    assert_eq!(j.state_size(), 0);
    // A later window holds the pair (at the left offset, 40).
    let holding = |low| super::Downstream {
        low_water: Some(low),
        empty: false,
    };
    assert_eq!(j.side_low_water(holding(40)), Some(3));
    assert_eq!(j.side_low_water(holding(41)), None, "past the pair");
    // Let go once: forgotten for good.
    assert_eq!(j.side_low_water(holding(0)), None);
}

#[test]
fn an_unmatched_right_row_waits_until_the_later_steps_hold_nothing() {
    let mut j = acknowledging("right", "10ms");
    right(
        &mut j,
        vec![
            rec("r", json!("a"), 100, 3),
            rec("nokey", Value::Null, 100, 4),
        ],
    );
    let e = watermark(&mut j, 200);
    assert_eq!(shown(&e), ["-/r@100"]);
    // The unmatched rows carry no offset: only an empty later state
    // shows they left it.
    let busy = super::Downstream {
        low_water: None,
        empty: false,
    };
    assert_eq!(j.side_low_water(busy), Some(3));
    assert_eq!(j.side_low_water(NOTHING_LATER), None);
}

#[test]
fn a_join_whose_side_does_not_acknowledge_follows_nothing() {
    let mut j = join("right", "10ms");
    right(&mut j, vec![rec("r", json!("a"), 100, 3)]);
    watermark(&mut j, 200);
    let busy = super::Downstream {
        low_water: None,
        empty: false,
    };
    assert_eq!(j.side_low_water(busy), None);
}

#[test]
fn a_released_outer_record_that_may_come_back_keeps_a_partner_unacknowledged() {
    let mut j = acknowledging("left", "10ms");
    left(&mut j, vec![rec("l", json!("a"), 100, 40)]);
    right(
        &mut j,
        vec![rec("r", json!("a"), 100, 3), rec("r2", json!("a"), 105, 5)],
    );
    watermark(&mut j, 200);
    assert_eq!(j.state_size(), 0);
    assert_eq!(j.side_low_water(NOTHING_LATER), None);
    // The main source is not past "l" yet: after a crash "l" comes back
    // and must meet "r" or "r2" again, or it would be output as unmatched.
    assert_eq!(j.cross_marks(50, 100, (40, 0)), (50, 5));
    assert_eq!(
        j.cross_marks(50, 100, (41, 0)),
        (50, 100),
        "the main confirmed past it"
    );
    j.acked(41, 0);
    assert_eq!(
        j.cross_marks(50, 100, (0, 0)),
        (50, 100),
        "forgotten once confirmed"
    );
}
