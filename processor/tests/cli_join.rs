//! The `join` step through `tributary run` on two files: the bundled
//! example's full join, and a chain where steps before the join see only
//! the main source and steps after it see the joined records.

mod support;

use serde_json::Value;
use support::{copy_examples, json_lines, tributary};

/// `orderId / paymentId / status` of each output, sorted (the two inputs
/// are read concurrently, so the order of pairs between them varies).
fn rows(records: &[Value]) -> Vec<String> {
    let mut rows: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} / {} / {}",
                r["orderId"].as_str().unwrap_or("-"),
                r["other"]["paymentId"].as_str().unwrap_or("-"),
                r["status"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn the_example_full_join_pairs_orders_with_payments_within_ten_minutes() {
    let scratch = tempfile::tempdir().expect("tempdir");
    copy_examples(scratch.path());
    let out = tributary(&["run", "-q", "-f", "join-local.yaml"], scratch.path());
    assert!(out.status.success(), "{}\n{}", out.status, out.stderr);
    let read = |p: &str| json_lines(&std::fs::read_to_string(scratch.path().join(p)).unwrap());
    let joined = read("out/orders-payments.jsonl");
    assert_eq!(
        rows(&joined),
        [
            "- / p-3 / unknown order",
            "- / p-6 / unknown order",
            "o-1 / p-1 / paid",
            "o-2 / p-2 / paid",
            "o-3 / - / unpaid",
            "o-4 / p-4a / paid",
            "o-4 / p-4b / paid",
            "o-5 / - / unpaid",
            "o-7 / p-7 / paid",
            "o-8 / p-8 / paid",
        ]
    );
    let o7 = joined.iter().find(|r| r["orderId"] == "o-7").unwrap();
    assert_eq!(o7["customer"], "gus", "the order's own fields are kept");
    assert_eq!(o7["other"]["at"], "2026-11-20T09:15:00Z");
    let dead = read("out/orders-payments.dlq.jsonl");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].to_string().contains("not a payment"),
        "the bad payment line is named: {}",
        dead[0]
    );
}

#[test]
fn the_second_input_enters_at_the_join_and_later_steps_see_pairs() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("clicks.jsonl"),
        "{\"kind\":\"click\",\"user\":\"u1\",\"ts\":1000}\n\
         {\"kind\":\"view\",\"user\":\"u1\",\"ts\":1500}\n\
         {\"kind\":\"click\",\"user\":\"u2\",\"ts\":2000}\n\
         {\"kind\":\"click\",\"user\":\"u1\",\"ts\":9000}\n",
    )
    .unwrap();
    // No `kind` field: the filter before the join would drop these.
    std::fs::write(
        dir.path().join("ads.jsonl"),
        "{\"who\":\"u1\",\"ad\":\"a1\",\"seconds\":1.2}\n\
         {\"who\":\"u2\",\"ad\":\"a2\",\"seconds\":7.0}\n\
         {\"who\":\"u1\",\"ad\":\"a3\",\"seconds\":8.5}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        "source:\n  file: {path: clicks.jsonl}\n  eventTime: {field: event.ts}\n\
         steps:\n\
         \x20 - filter: \"event.kind == 'click'\"\n\
         \x20 - join:\n\
         \x20     with: {file: {path: ads.jsonl}, eventTime: {field: event.seconds, format: epochSeconds}}\n\
         \x20     on: {left: event.user, right: other.who}\n\
         \x20     within: 1s\n\
         \x20 - map: {set: {ad: event.other.ad}, remove: [other]}\n\
         sinks: [{name: out, stdout: {}}]\n",
    )
    .unwrap();
    let out = tributary(&["run", "-q", "-f", "pipeline.yaml"], dir.path());
    assert!(out.status.success(), "{}\n{}", out.status, out.stderr);
    let mut got: Vec<String> = out
        .json_lines()
        .iter()
        .map(|r| format!("{} {} {}", r["user"], r["ts"], r["ad"]))
        .collect();
    got.sort();
    // u1@1000 meets a1@1200; u2@2000 is 5s from a2; u1@9000 meets a3@8500.
    assert_eq!(got, ["\"u1\" 1000 \"a1\"", "\"u1\" 9000 \"a3\""]);
}

/// Runs a pipeline whose main source is `main` and whose join reads `with`
/// (both YAML source kinds), in event time with alignment, to its end;
/// the number of joined pairs.
fn run_aligned(main: &str, with: &str, files: &[(&str, String)]) -> usize {
    let scratch = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(scratch.path().join(name), text).expect("write input");
    }
    let yaml = format!(
        "source:\n  {main}\n  eventTime: {{field: event.ts}}\n  watermark: {{maxOutOfOrderness: 1s}}\nsteps:\n  - join: {{with: {with}, type: inner, on: {{left: event.userId, right: other.userId}}, within: 1s}}\nsinks: [{{name: out, file: {{path: out.jsonl}}}}]\n"
    );
    std::fs::write(scratch.path().join("p.yaml"), yaml).expect("write pipeline");
    let out = tributary(&["run", "-q", "-f", "p.yaml"], scratch.path());
    assert!(out.status.success(), "{}\n{}", out.status, out.stderr);
    std::fs::read_to_string(scratch.path().join("out.jsonl"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// Three events of `u1` at the generators' first milliseconds.
fn three_events() -> (&'static str, String) {
    let lines: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "{{\"userId\": \"u1\", \"ts\": {}}}",
                1_700_000_000_000_i64 + i
            )
        })
        .collect();
    ("short.jsonl", lines.join("\n") + "\n")
}

/// 200,000 events, 200 s of event time from the file's first millisecond.
const LONG: &str = "{profile: clickstream, count: 200000, keys: 10, seed: 1, startTime: 1700000000000, timeStep: 1ms}";

#[test]
fn alignment_never_waits_on_a_with_input_that_ended_early() {
    // The generator runs 200 s of event time ahead of a file that ends
    // after 3 ms of it: the file ending releases the generator.
    let pairs = run_aligned(
        &format!("generator: {LONG}"),
        "{file: {path: short.jsonl}}",
        &[three_events()],
    );
    assert!(pairs > 0, "the events of u1 near the start pair");
}

#[test]
fn alignment_never_waits_on_a_main_input_that_ended_early() {
    let pairs = run_aligned(
        "file: {path: short.jsonl}",
        &format!("{{generator: {LONG}}}"),
        &[three_events()],
    );
    assert!(pairs > 0, "the events of u1 near the start pair");
}
