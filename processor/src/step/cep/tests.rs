//! Unit tests on hand-made sequences: every shape, contiguity, repetition
//! mode, optional and negated step, the skip strategies, keys, windows and
//! watermarks, through the step as a pipeline runs it.

use serde_json::{Value, json};
use tributary_crds::CepStep;

use super::Cep;
use crate::record::Record;
use crate::step::{Emit, Step};

fn cep(yaml: &str) -> Cep {
    let spec: CepStep = serde_yaml_ng::from_str(yaml).expect("spec");
    Cep::new("cep-0".into(), &spec, &crate::expr::env()).expect("compiles")
}

/// Events `"<type><n>@<ts>"` (key `k`) or `"<key>:<type><n>@<ts>"`.
fn records(events: &str) -> Vec<Record> {
    events
        .split_whitespace()
        .map(|e| {
            let (key, rest) = e.split_once(':').unwrap_or(("k", e));
            let (id, ts) = rest.split_once('@').expect("id@ts");
            let t: String = id.chars().take_while(char::is_ascii_alphabetic).collect();
            Record::new(
                json!({"key": key, "t": t, "id": id}),
                ts.parse().expect("ts"),
            )
        })
        .collect()
}

/// A match as `"key: a1 a2 b1"`: its events' ids in time order.
fn show(v: &Value) -> String {
    let mut evs: Vec<(u32, String)> = Vec::new();
    for list in v["events"].as_object().expect("events").values() {
        for e in list.as_array().expect("list") {
            let id = e["id"].as_str().expect("id").to_owned();
            let n = id.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            evs.push((n.parse().expect("numbered"), id));
        }
    }
    evs.sort();
    let key = v["key"]["key"].as_str().unwrap_or("-");
    let ids: Vec<String> = evs.into_iter().map(|(_, id)| id).collect();
    format!("{key}: {}", ids.join(" "))
}

/// Runs `events` through a step with `pattern`, watermark +∞ at the end.
fn run(pattern: &str, events: &str) -> Vec<String> {
    let mut c = cep(&format!(
        "{{keyBy: [event.key], pattern: {pattern}, emit: {{name: p}}}}"
    ));
    let mut emit = Emit::default();
    c.process(records(events), &mut emit).unwrap();
    c.on_watermark(i64::MAX, &mut emit);
    c.finish(&mut emit);
    assert_eq!(c.state_size(), 0, "state left after the end");
    emit.out.iter().map(|r| show(&r.value)).collect()
}

const AB: &str =
    "sequence: [{name: a, when: \"event.t == 'a'\"}, {name: b, when: \"event.t == 'b'\"}]";

#[test]
fn strict_contiguity_needs_adjacent_events() {
    let p = format!("{{{AB}, within: 100ms, contiguity: strict}}");
    assert_eq!(run(&p, "a1@1 x2@2 a3@3 b4@4"), ["k: a3 b4"]);
}

#[test]
fn relaxed_contiguity_skips_till_the_next_match() {
    let p = format!("{{{AB}, within: 100ms, contiguity: relaxed}}");
    assert_eq!(run(&p, "a1@1 x2@2 b3@3 b4@4"), ["k: a1 b3"]);
}

#[test]
fn any_contiguity_skips_till_any_match() {
    let p = format!("{{{AB}, within: 100ms, contiguity: any}}");
    assert_eq!(run(&p, "a1@1 x2@2 b3@3 b4@4"), ["k: a1 b3", "k: a1 b4"]);
}

const LOOP: &str = "sequence: [{name: a, when: \"event.t == 'a'\", times: {min: 2, max: 3GREEDY}}, {name: b, when: \"event.t == 'b'\"}]";

#[test]
fn reluctant_times_yield_every_count() {
    let p = format!("{{{}, within: 100ms}}", LOOP.replace("GREEDY", ""));
    assert_eq!(
        run(&p, "a1@1 a2@2 a3@3 b4@4"),
        ["k: a1 a2 a3 b4", "k: a1 a2 b4", "k: a2 a3 b4"]
    );
}

#[test]
fn greedy_times_take_all_they_can() {
    let p = format!(
        "{{{}, within: 100ms}}",
        LOOP.replace("GREEDY", ", greedy: true")
    );
    assert_eq!(
        run(&p, "a1@1 a2@2 a3@3 b4@4"),
        ["k: a1 a2 a3 b4", "k: a2 a3 b4"]
    );
    let skip = format!(
        "{{{}, within: 100ms, skip: skipPastLastEvent}}",
        LOOP.replace("GREEDY", ", greedy: true")
    );
    assert_eq!(
        run(&skip, "a1@1 a2@2 a3@3 b4@4 a5@5 a6@6 b7@7"),
        ["k: a1 a2 a3 b4", "k: a5 a6 b7"]
    );
}

#[test]
fn skip_past_last_event_keeps_the_longest_earliest_match() {
    let p = format!(
        "{{{}, within: 100ms, skip: skipPastLastEvent}}",
        LOOP.replace("GREEDY", "")
    );
    assert_eq!(run(&p, "a1@1 a2@2 a3@3 b4@4"), ["k: a1 a2 a3 b4"]);
}

#[test]
fn optional_steps_may_be_skipped() {
    let p = "{sequence: [{name: a, when: \"event.t == 'a'\"}, {name: b, when: \"event.t == 'b'\", optional: true}, {name: c, when: \"event.t == 'c'\"}], within: 100ms}";
    assert_eq!(run(p, "a1@1 c2@2"), ["k: a1 c2"]);
    assert_eq!(run(p, "a1@1 b2@2 c3@3"), ["k: a1 b2 c3", "k: a1 c3"]);
}

#[test]
fn not_followed_by_between_steps() {
    let p = "{sequence: [{name: a, when: \"event.t == 'a'\", notFollowedBy: \"event.t == 'x'\"}, {name: b, when: \"event.t == 'b'\"}], within: 100ms}";
    assert_eq!(run(p, "a1@1 x2@2 b3@3"), Vec::<String>::new());
    assert_eq!(run(p, "a1@1 y2@2 b3@3"), ["k: a1 b3"]);
}

#[test]
fn trailing_not_followed_by_fires_when_the_window_closes() {
    let mut c = cep(
        "{keyBy: [event.key], pattern: {sequence: [{name: add, when: \"event.t == 'add'\", notFollowedBy: \"event.t == 'buy'\"}], within: 10ms}, emit: {name: abandoned}}",
    );
    let mut emit = Emit::default();
    c.process(records("add1@0 buy2@5 add3@20 view4@25"), &mut emit)
        .unwrap();
    c.on_watermark(29, &mut emit);
    assert!(emit.out.is_empty(), "{:?}", emit.out);
    assert!(c.state_size() > 0);
    c.on_watermark(30, &mut emit);
    let out: Vec<&Value> = emit.out.iter().map(|r| &r.value).collect();
    assert_eq!(
        out,
        [
            &json!({"pattern": "abandoned", "key": {"key": "k"}, "events": {"add": [{"key": "k", "t": "add", "id": "add3"}]}, "start": 20, "end": 20})
        ]
    );
    assert_eq!(emit.out[0].event_time, 20);
    assert_eq!(c.state_size(), 0, "the window closed: nothing held");
}

#[test]
fn all_of_matches_in_any_order() {
    let p = "{allOf: [{name: a, when: \"event.t == 'a'\"}, {name: b, when: \"event.t == 'b'\", times: {min: 2}}], within: 100ms}";
    assert_eq!(run(p, "b1@1 x2@2 a3@3 b4@4"), ["k: b1 a3 b4"]);
    let strict = "{allOf: [{name: a, when: \"event.t == 'a'\"}, {name: b, when: \"event.t == 'b'\"}], within: 100ms, contiguity: strict}";
    assert_eq!(run(strict, "b1@1 x2@2 a3@3 b4@4"), ["k: a3 b4"]);
}

#[test]
fn any_of_matches_each_alternative() {
    let p = "{anyOf: [{name: a, when: \"event.t == 'a'\"}, {name: b, when: \"event.t == 'b'\", times: {min: 2, max: 2}}], within: 100ms}";
    assert_eq!(run(p, "a1@1 b2@2 b3@3"), ["k: a1", "k: b2 b3"]);
}

#[test]
fn matches_fit_strictly_within_the_window() {
    let short = format!("{{{AB}, within: 10ms}}");
    assert!(run(&short, "a1@0 b2@10").is_empty());
    let long = format!("{{{AB}, within: 11ms}}");
    assert_eq!(run(&long, "a1@0 b2@10"), ["k: a1 b2"]);
}

#[test]
fn keys_match_apart() {
    let p = format!("{{{AB}, within: 100ms}}");
    assert_eq!(run(&p, "u:a1@1 v:b2@2 v:a3@3 u:b4@4"), ["u: a1 b4"]);
}

#[test]
fn out_of_order_input_within_the_watermark_matches_as_ordered() {
    let p = format!(
        "{{keyBy: [event.key], pattern: {{{AB}, within: 100ms, contiguity: strict}}, emit: {{name: p}}}}"
    );
    let mut c = cep(&p);
    let mut emit = Emit::default();
    c.process(records("b4@4 a3@3"), &mut emit).unwrap();
    c.process(records("a1@1 x2@2"), &mut emit).unwrap();
    c.on_watermark(3, &mut emit);
    assert!(emit.out.is_empty());
    c.on_watermark(5, &mut emit);
    let got: Vec<String> = emit.out.iter().map(|r| show(&r.value)).collect();
    assert_eq!(got, ["k: a3 b4"]);
    // Behind the watermark: dropped and counted.
    let mut late = Emit::default();
    c.process(records("b9@4"), &mut late).unwrap();
    assert_eq!(late.dropped, 1);
}

#[test]
fn brute_force_login_example() {
    let p = "{sequence: [{name: fail, when: \"event.t == 'f'\", times: {min: 5, greedy: true}}, {name: ok, when: \"event.t == 'ok'\"}], within: 60000ms, skip: skipPastLastEvent}";
    let ev = "f1@0 f2@1000 f3@2000 f4@3000 f5@4000 f6@5000 ok7@6000 f8@7000 ok9@8000";
    assert_eq!(run(p, ev), ["k: f1 f2 f3 f4 f5 f6 ok7"]);
}

#[test]
fn low_water_is_the_oldest_offset_held_and_replayed_matches_are_marked() {
    let mut c = cep(&format!(
        "{{keyBy: [event.key], pattern: {{{AB}, within: 100ms}}, emit: {{name: p}}}}"
    ));
    let mut emit = Emit::default();
    let mut recs = records("a1@1 x2@2 b3@3");
    for (i, r) in recs.iter_mut().enumerate() {
        r.position.offset = 10 + i64::try_from(i).unwrap();
        r.replay = i == 2;
    }
    c.process(recs, &mut emit).unwrap();
    assert_eq!(c.low_water(), Some(10), "buffered records count");
    c.on_watermark(3, &mut emit);
    assert_eq!(c.low_water(), Some(10), "a1 is held in a partial match");
    c.on_watermark(4, &mut emit);
    assert_eq!(emit.out.len(), 1);
    assert!(emit.out[0].replay, "completed by a replayed record");
    c.on_watermark(200, &mut emit);
    assert_eq!(c.low_water(), None, "nothing held once the window closed");
}

#[test]
fn a_held_derived_record_does_not_hide_the_oldest_input_offset() {
    let mut c = cep(&format!(
        "{{keyBy: [event.key], pattern: {{{AB}, within: 100ms}}, emit: {{name: p}}}}"
    ));
    let mut emit = Emit::default();
    let mut recs = records("a1@1 a2@2");
    recs[0].position.offset = crate::record::Position::DERIVED;
    recs[1].position.offset = 7;
    c.process(recs, &mut emit).unwrap();
    assert_eq!(c.low_water(), Some(7), "the window result holds no offset");
}

#[test]
fn in_processing_time_a_queued_record_is_not_late() {
    let spec = format!("{{pattern: {{{AB}, within: 100ms}}, emit: {{name: p}}}}");
    let mut c = cep(&spec).in_processing_time(true);
    let mut emit = Emit::default();
    c.on_watermark(10, &mut emit);
    c.process(records("a1@5 b2@6"), &mut emit).unwrap();
    c.on_watermark(11, &mut emit);
    assert_eq!(emit.dropped, 0);
    assert_eq!(emit.out.len(), 1);
    assert_eq!(emit.out[0].value["start"], 10);
}

#[test]
fn flinks_documented_example_a_plus_b() {
    // Flink CEP docs, "Conditions on Contiguity": `a+ b` on `a1 c a2 b`.
    let p = |c: &str| {
        format!(
            "{{sequence: [{{name: a, when: \"event.t == 'a'\", times: {{min: 1}}}}, {{name: b, when: \"event.t == 'b'\"}}], within: 1s, contiguity: {c}}}"
        )
    };
    assert_eq!(run(&p("strict"), "a1@1 c2@2 a3@3 b4@4"), ["k: a3 b4"]);
    assert_eq!(
        run(&p("relaxed"), "a1@1 c2@2 a3@3 b4@4"),
        ["k: a1 a3 b4", "k: a1 b4", "k: a3 b4"]
    );
    assert_eq!(
        run(&p("any"), "a1@1 c2@2 a3@3 b4@4"),
        ["k: a1 a3 b4", "k: a1 b4", "k: a3 b4"]
    );
}

/// The changelog contract: a step restored from its snapshot mid-stream
/// (partial matches, buffered records, timers) goes on as the original.
#[test]
fn a_step_restored_from_its_snapshot_goes_on_as_the_original() {
    let patterns = [
        "{sequence: [{name: f, when: \"event.t == 'f'\", times: {min: 2, greedy: true}}, {name: ok, when: \"event.t == 'ok'\"}], within: 100ms}",
        "{sequence: [{name: a, when: \"event.t == 'a'\", notFollowedBy: \"event.t == 'x'\"}, {name: b, when: \"event.t == 'b'\"}], within: 100ms}",
        "{allOf: [{name: a, when: \"event.t == 'a'\"}, {name: b, when: \"event.t == 'b'\", times: {min: 2}}], within: 100ms}",
    ];
    // Three keys, types cycling so matches span the snapshot point.
    let events: Vec<String> = (1..=400)
        .map(|i| {
            let t = ["f", "a", "f", "b", "ok", "b", "x"][(i / 3) % 7];
            format!("{}:{t}{i}@{}", ["u", "v", "w"][i % 3], i * 3)
        })
        .collect();
    let feed = |c: &mut Cep, from: usize, to: usize| {
        let mut emit = Emit::default();
        for chunk in events[from..to].chunks(25) {
            let recs = records(&chunk.join(" "));
            let wm = recs.iter().map(|r| r.event_time).max().unwrap_or(0) - 10;
            c.process(recs, &mut emit).unwrap();
            c.on_watermark(wm, &mut emit);
        }
        emit.out.iter().map(|r| show(&r.value)).collect::<Vec<_>>()
    };
    for pattern in patterns {
        let spec = format!("{{keyBy: [event.key], pattern: {pattern}, emit: {{name: p}}}}");
        let (mut original, mut uninterrupted) = (cep(&spec), cep(&spec));
        assert_eq!(
            feed(&mut original, 0, 200),
            feed(&mut uninterrupted, 0, 200)
        );
        assert!(
            original.state_size() > 0,
            "{pattern}: state held at the snapshot"
        );
        let crate::step::Snapshot::State(bytes) = original.snapshot() else {
            panic!("cep writes its state");
        };
        let mut restored = cep(&spec);
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.low_water(), original.low_water(), "{pattern}");
        let want = feed(&mut uninterrupted, 200, 400);
        assert!(!want.is_empty(), "{pattern}: the test matches");
        assert_eq!(feed(&mut restored, 200, 400), want, "{pattern}");
    }
}
