//! Window results of `tributary run` against a brute-force reference.
//!
//! Each test writes a JSONL file of seeded random events (with bounded
//! disorder, never more than the watermark's `maxOutOfOrderness`, so no
//! event is late), runs a pipeline file → window → file sink through the
//! built binary, and checks that every output record is exactly what a
//! direct computation over all events gives: same windows, same keys,
//! same count/min/max, and the same sum up to float rounding.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};
use support::{json_lines, repo_root, tributary};
use tributary_processor::rng::SplitMix64;

/// The crate's deterministic generator, so a seed names a data set.
struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    fn below_i64(&mut self, n: i64) -> i64 {
        i64::try_from(self.below(u64::try_from(n).expect("n > 0"))).expect("fits")
    }
}

#[derive(Clone, Debug)]
struct Event {
    key: String,
    ts: i64,
    value: f64,
}

/// A data set: `n` events over `keys` keys, one every `step` ms from
/// `start`, each up to `disorder` ms behind the clock.
struct DataSpec {
    seed: u64,
    n: usize,
    keys: u64,
    start: i64,
    step: i64,
    disorder: i64,
}

fn events(spec: &DataSpec) -> Vec<Event> {
    let mut rng = Rng(SplitMix64::new(spec.seed));
    (0..spec.n)
        .map(|i| {
            let clock = spec.start + i64::try_from(i).expect("fits") * spec.step;
            let ts = clock - rng.below_i64(spec.disorder + 1);
            let key = format!("k{}", rng.below(spec.keys));
            // Integers and two-decimal values, negative too.
            let raw = rng.below_i64(20_001) - 10_000;
            let value = if rng.below(4) == 0 {
                f64::from(i32::try_from(raw / 100).expect("fits"))
            } else {
                f64::from(i32::try_from(raw).expect("fits")) / 100.0
            };
            Event { key, ts, value }
        })
        .collect()
}

fn write_events(path: &Path, events: &[Event]) {
    let mut text = String::new();
    for e in events {
        // An integral value is written as an integer (`7`), like JSON
        // producers do; the engine must aggregate it as 7.0.
        let v = if e.value.fract() == 0.0 {
            json!(format!("{}", e.value).parse::<i64>().expect("integral"))
        } else {
            json!(e.value)
        };
        writeln!(text, "{}", json!({"k": e.key, "ts": e.ts, "v": v})).expect("write");
    }
    std::fs::write(path, text).expect("write events");
}

/// The expected aggregates of one window of one key.
#[derive(Clone, Debug, Default)]
struct Agg {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl Agg {
    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }
}

/// (windowStart, windowEnd, key).
type WindowKey = (i64, i64, String);

fn tumbling_reference(events: &[Event], size: i64) -> BTreeMap<WindowKey, Agg> {
    let mut out: BTreeMap<WindowKey, Agg> = BTreeMap::new();
    for e in events {
        let start = e.ts.div_euclid(size) * size;
        out.entry((start, start + size, e.key.clone()))
            .or_default()
            .add(e.value);
    }
    out
}

fn sliding_reference(events: &[Event], size: i64, slide: i64) -> BTreeMap<WindowKey, Agg> {
    let mut out: BTreeMap<WindowKey, Agg> = BTreeMap::new();
    for e in events {
        // Every window [k·slide, k·slide + size) that contains ts.
        let mut start = e.ts.div_euclid(slide) * slide;
        while start + size > e.ts {
            out.entry((start, start + size, e.key.clone()))
                .or_default()
                .add(e.value);
            start -= slide;
        }
    }
    out
}

/// Sessions per key: sorted by time, an event joins the current session
/// when it is less than `gap` after the session's last event (windows
/// `[first, last + gap)` that merely touch stay apart).
fn session_reference(events: &[Event], gap: i64) -> BTreeMap<WindowKey, Agg> {
    let mut by_key: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events {
        by_key.entry(&e.key).or_default().push(e);
    }
    let mut out = BTreeMap::new();
    for (key, mut evs) in by_key {
        evs.sort_by_key(|e| e.ts);
        let mut current: Option<(i64, i64, Agg)> = None;
        for e in evs {
            match &mut current {
                Some((_, last, agg)) if e.ts < *last + gap => {
                    *last = e.ts;
                    agg.add(e.value);
                }
                _ => {
                    if let Some((first, last, agg)) = current.take() {
                        out.insert((first, last + gap, key.to_owned()), agg);
                    }
                    let mut agg = Agg::default();
                    agg.add(e.value);
                    current = Some((e.ts, e.ts, agg));
                }
            }
        }
        if let Some((first, last, agg)) = current {
            out.insert((first, last + gap, key.to_owned()), agg);
        }
    }
    out
}

/// Runs `window` (the YAML of one window step, without keyBy/aggregate)
/// over `events` with a watermark bound of `bound` ms; returns the output
/// records by window and key.
fn run_window(events: &[Event], window: &str, bound: i64) -> BTreeMap<WindowKey, Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    write_events(&dir.path().join("events.jsonl"), events);
    let pipeline = format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: windows-under-test}}
spec:
  source:
    file: {{path: events.jsonl}}
    eventTime: {{field: event.ts, format: epochMillis}}
    watermark: {{maxOutOfOrderness: {bound}ms}}
  steps:
    - window:
        {window}
        keyBy: [event.k]
        aggregate:
          - {{name: count, fn: count}}
          - {{name: sum, fn: sum, of: event.v}}
          - {{name: min, fn: min, of: event.v}}
          - {{name: max, fn: max, of: event.v}}
  sinks:
    - {{name: out, file: {{path: out/results.jsonl}}}}
"
    );
    std::fs::write(dir.path().join("pipeline.yaml"), pipeline).expect("write pipeline");
    let out = tributary(&["run", "-q", "-f", "pipeline.yaml"], dir.path());
    assert!(
        out.status.success(),
        "run failed ({}):\n{}",
        out.status,
        out.stderr
    );
    assert!(
        out.stdout.trim().is_empty(),
        "results belong in the file sink, not stdout:\n{}",
        out.stdout
    );
    let text = std::fs::read_to_string(dir.path().join("out/results.jsonl")).expect("results");
    let mut results = BTreeMap::new();
    for r in json_lines(&text) {
        let key = (
            r["windowStart"].as_i64().expect("windowStart"),
            r["windowEnd"].as_i64().expect("windowEnd"),
            r["k"].as_str().expect("k").to_owned(),
        );
        assert!(
            results.insert(key.clone(), r).is_none(),
            "window {key:?} emitted twice"
        );
    }
    results
}

fn assert_matches(
    label: &str,
    actual: &BTreeMap<WindowKey, Value>,
    expected: &BTreeMap<WindowKey, Agg>,
) {
    let missing: BTreeSet<_> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let extra: BTreeSet<_> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{label}: windows differ: {} missing (first {:?}), {} unexpected (first {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for (k, want) in expected {
        let got = &actual[k];
        assert_eq!(
            got["count"].as_u64(),
            Some(want.count),
            "{label} {k:?}: count in {got}"
        );
        assert_eq!(got["min"].as_f64(), want.min, "{label} {k:?}: min in {got}");
        assert_eq!(got["max"].as_f64(), want.max, "{label} {k:?}: max in {got}");
        let sum = got["sum"].as_f64().expect("sum is a number");
        // Summation order differs (panes, merges), so allow rounding:
        // 1e-9 relative to the magnitude of the sum.
        assert!(
            (sum - want.sum).abs() <= 1e-9 * want.sum.abs().max(1.0),
            "{label} {k:?}: sum {sum} != {} in {got}",
            want.sum
        );
    }
}

/// Seeded data sets: a few keys and many, dense and sparse, negative
/// timestamps (floor division), and large enough that the watermark
/// advances while the file is still being read.
fn data_sets() -> Vec<DataSpec> {
    vec![
        DataSpec {
            seed: 1,
            n: 3_000,
            keys: 5,
            start: 1_700_000_000_000,
            step: 7,
            disorder: 500,
        },
        DataSpec {
            seed: 2,
            n: 20_000,
            keys: 40,
            start: 1_700_000_000_000,
            step: 3,
            disorder: 2_000,
        },
        DataSpec {
            seed: 3,
            n: 2_000,
            keys: 3,
            start: -60_000,
            step: 50,
            disorder: 1_000,
        },
        DataSpec {
            seed: 4,
            n: 5_000,
            keys: 200,
            start: 0,
            step: 1,
            disorder: 0,
        },
    ]
}

/// Runs `window` over `spec`'s events and checks the output against
/// `reference` over the same events.
fn check(
    label: &str,
    window: &str,
    spec: &DataSpec,
    reference: impl Fn(&[Event]) -> BTreeMap<WindowKey, Agg>,
) {
    let evs = events(spec);
    let expected = reference(&evs);
    let keys: BTreeSet<_> = evs.iter().map(|e| &e.key).collect();
    assert!(
        expected.len() > keys.len(),
        "{label}, seed {}: the data should make several windows per key",
        spec.seed
    );
    let actual = run_window(&evs, window, spec.disorder);
    assert_matches(&format!("{label}, seed {}", spec.seed), &actual, &expected);
}

#[test]
fn tumbling_windows_match_a_brute_force_reference() {
    for (size, spec) in [1_000, 10_000, 333, 700].into_iter().zip(data_sets()) {
        check(
            &format!("tumbling {size}ms"),
            &format!("type: tumbling\n        size: {size}ms"),
            &spec,
            |evs| tumbling_reference(evs, size),
        );
    }
}

#[test]
fn sliding_windows_match_a_brute_force_reference() {
    let shapes = [(10_000, 2_000), (60_000, 10_000), (1_000, 300), (500, 500)];
    for ((size, slide), spec) in shapes.into_iter().zip(data_sets()) {
        check(
            &format!("sliding {size}ms/{slide}ms"),
            &format!("type: sliding\n        size: {size}ms\n        slide: {slide}ms"),
            &spec,
            |evs| sliding_reference(evs, size, slide),
        );
    }
}

#[test]
fn session_windows_match_a_brute_force_reference() {
    // Gaps near the keys' mean inter-arrival time, so sessions both form
    // and break, and out-of-order events bridge sessions.
    for (gap, spec) in [30, 300, 150, 200].into_iter().zip(data_sets()) {
        check(
            &format!("session {gap}ms"),
            &format!("type: session\n        gap: {gap}ms"),
            &spec,
            |evs| session_reference(evs, gap),
        );
    }
}

#[test]
fn sessions_that_merely_touch_stay_apart_and_a_late_event_bridges_two() {
    let ev = |key: &str, ts, value| Event {
        key: key.into(),
        ts,
        value,
    };
    let evs = vec![
        // a: [0, 10) and [10, 20) touch and stay two sessions.
        ev("a", 0, 1.0),
        ev("a", 10, 2.0),
        // b: [100, 110) and [115, 125) are apart until 107 arrives and
        // bridges them into [100, 125).
        ev("b", 100, 1.0),
        ev("b", 115, 2.0),
        ev("b", 107, 3.0),
        // c: 9 ms apart with a 10 ms gap: one session.
        ev("c", 200, 1.0),
        ev("c", 209, 5.0),
    ];
    let actual = run_window(&evs, "type: session\n        gap: 10ms", 100);
    let expected = session_reference(&evs, 10);
    let windows: Vec<_> = expected.keys().cloned().collect();
    assert_eq!(
        windows,
        vec![
            (0, 10, "a".to_owned()),
            (10, 20, "a".to_owned()),
            (100, 125, "b".to_owned()),
            (200, 219, "c".to_owned()),
        ]
    );
    assert_matches("touching sessions", &actual, &expected);
}

// ---------------------------------------------------------------------------
// The dead-letter example: deploy/examples/dedupe-validate-local.yaml.

const CURRENCIES: [&str; 3] = ["USD", "EUR", "GBP"];
const DEDUPE_WITHIN_MS: i64 = 10 * 60 * 1000;
const HOUR_MS: i64 = 60 * 60 * 1000;
const MAX_OUT_OF_ORDERNESS_MS: i64 = 5 * 60 * 1000;

/// Epoch ms of `YYYY-MM-DDTHH:MM:SSZ`, or `None` for anything else.
fn parse_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000)
}

/// The expected result of one hourly window of one currency.
#[derive(Default)]
struct Totals {
    orders: u64,
    revenue: f64,
    customers: BTreeSet<String>,
    large: u64,
}

/// What the example should do with its input, computed line by line.
#[derive(Default)]
struct OrdersModel {
    /// Line number -> (expected step, the line).
    dead: BTreeMap<i64, (String, String)>,
    /// Line numbers of replays dropped by dedupe.
    replays: Vec<i64>,
    /// (hour start, currency) -> totals of the valid, deduplicated orders.
    windows: BTreeMap<(i64, String), Totals>,
}

fn orders_model(text: &str) -> OrdersModel {
    let mut m = OrdersModel::default();
    let mut kept: HashMap<String, i64> = HashMap::new();
    let mut max_ts = i64::MIN + MAX_OUT_OF_ORDERNESS_MS;
    for (i, line) in text.lines().enumerate() {
        let offset = i64::try_from(i).expect("fits") + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(order) = serde_json::from_str::<Value>(line) else {
            m.dead.insert(offset, ("decode".into(), line.into()));
            continue;
        };
        let Some(ts) = order["createdAt"].as_str().and_then(parse_utc) else {
            m.dead.insert(offset, ("eventTime".into(), line.into()));
            continue;
        };
        // Within the example's watermark bound, so no outcome depends on
        // when the watermark happens to advance during the run.
        assert!(
            ts >= max_ts - MAX_OUT_OF_ORDERNESS_MS,
            "line {offset} is later than maxOutOfOrderness allows"
        );
        max_ts = max_ts.max(ts);
        let id = order["orderId"].as_str().expect("orderId").to_owned();
        if kept
            .get(&id)
            .is_some_and(|&k| (ts - k).abs() < DEDUPE_WITHIN_MS)
        {
            m.replays.push(offset);
            continue;
        }
        kept.insert(id, ts);
        let amount = order["amount"].as_f64().expect("amount");
        let currency = order["currency"].as_str().expect("currency");
        if amount < 0.0 || !CURRENCIES.contains(&currency) {
            m.dead.insert(offset, ("validate-1".into(), line.into()));
            continue;
        }
        let w = m
            .windows
            .entry((ts.div_euclid(HOUR_MS) * HOUR_MS, currency.to_owned()))
            .or_default();
        w.orders += 1;
        w.revenue += amount;
        w.customers
            .insert(order["customerId"].as_str().expect("customerId").to_owned());
        w.large += u64::from(amount >= 100.0);
    }
    m
}

#[test]
fn dead_letter_example_routes_exactly_the_bad_lines_and_aggregates_the_rest() {
    let scratch = tempfile::tempdir().expect("tempdir");
    support::copy_examples(scratch.path());
    let out = tributary(
        &["run", "-q", "-f", "dedupe-validate-local.yaml"],
        scratch.path(),
    );
    assert!(
        out.status.success(),
        "run failed ({}):\n{}",
        out.status,
        out.stderr
    );

    let input = std::fs::read_to_string(repo_root().join("deploy/examples/data/orders.jsonl"))
        .expect("orders.jsonl");
    let model = orders_model(&input);
    // Guard the data file: it must keep exercising every path.
    let steps: Vec<&str> = model.dead.values().map(|(s, _)| s.as_str()).collect();
    for step in ["decode", "eventTime", "validate-1"] {
        assert!(
            steps.contains(&step),
            "orders.jsonl lost its {step} failures"
        );
    }
    assert!(steps.iter().filter(|s| **s == "validate-1").count() >= 2);
    assert!(model.replays.len() >= 3, "orders.jsonl lost its replays");

    // The DLQ holds exactly the bad lines, each with its provenance.
    let dlq = json_lines(
        &std::fs::read_to_string(scratch.path().join("out/orders.dlq.jsonl")).expect("DLQ file"),
    );
    let mut seen = BTreeMap::new();
    for d in &dlq {
        let offset = d["source"]["offset"]
            .as_i64()
            .unwrap_or_else(|| panic!("source.offset in {d}"));
        assert!(
            seen.insert(offset, d).is_none(),
            "line {offset} dead-lettered twice"
        );
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        model.dead.keys().collect::<Vec<_>>(),
        "dead-lettered line numbers"
    );
    for (offset, (step, line)) in &model.dead {
        let d = seen[offset];
        assert_eq!(
            d["step"].as_str(),
            Some(step.as_str()),
            "step of line {offset}: {d}"
        );
        assert!(
            d["error"].as_str().is_some_and(|e| !e.is_empty()),
            "error of line {offset}: {d}"
        );
        let record = &d["record"];
        if step == "decode" {
            assert_eq!(
                record["raw"].as_str(),
                Some(line.as_str()),
                "line {offset}: {d}"
            );
        } else {
            let original: Value = serde_json::from_str(line).expect("JSON line");
            assert_eq!(
                record, &original,
                "line {offset} should be dead-lettered unchanged"
            );
        }
        if step == "validate-1" {
            let error = d["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("non-negative-amount") || error.contains("known-currency"),
                "line {offset}: the error should name the rule: {error}"
            );
        }
    }

    // The output holds only deduplicated, valid orders.
    let results = json_lines(
        &std::fs::read_to_string(scratch.path().join("out/orders-by-currency.jsonl"))
            .expect("output file"),
    );
    let mut actual = BTreeMap::new();
    for r in &results {
        let start = r["windowStart"].as_i64().expect("windowStart");
        assert_eq!(r["windowEnd"].as_i64(), Some(start + HOUR_MS), "{r}");
        let currency = r["currency"].as_str().expect("currency").to_owned();
        assert!(
            actual.insert((start, currency), r).is_none(),
            "window twice: {r}"
        );
    }
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        model.windows.keys().collect::<Vec<_>>(),
        "windows by hour and currency"
    );
    for (k, want) in &model.windows {
        let Totals {
            orders,
            revenue,
            customers,
            large,
        } = want;
        let r = actual[k];
        assert_eq!(r["orders"].as_u64(), Some(*orders), "{k:?}: {r}");
        let got = r["revenue"].as_f64().expect("revenue");
        assert!(
            (got - revenue).abs() <= 1e-9 * revenue.abs().max(1.0),
            "{k:?}: {r}"
        );
        assert_eq!(
            r["customers"].as_u64(),
            Some(customers.len() as u64),
            "{k:?}: {r}"
        );
        assert_eq!(r["largeOrders"].as_f64(), Some(*large as f64), "{k:?}: {r}");
    }
    let total: u64 = model.windows.values().map(|w| w.orders).sum();
    let lines = input.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    assert_eq!(
        total + model.dead.len() as u64 + model.replays.len() as u64,
        lines,
        "every input line is counted once: aggregated, dead-lettered or a replay"
    );
}
