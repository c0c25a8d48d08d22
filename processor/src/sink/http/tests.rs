//! The sink against a real HTTP server on loopback.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tributary_crds::{CircuitBreaker, Duration, HttpSink as Spec};

use super::{HttpSink, State};
use crate::http::test_server::serve;
use crate::record::Record;
use crate::sink::Sink;

fn records(from: i64, to: i64) -> Vec<Record> {
    (from..to)
        .map(|i| Record::new(json!({"n": i}), i))
        .collect()
}

fn spec(url: String, failures: u32) -> Spec {
    Spec {
        url,
        batch_size: 100,
        backoff: Duration::from_millis(1),
        circuit_breaker: CircuitBreaker {
            failures,
            open_for: Duration::from_millis(20),
        },
        ..Spec::default()
    }
}

/// A server keeping every body it accepts; `fail(i)` makes request `i` fail.
fn collecting(
    fail: impl Fn(usize) -> Option<u16> + Send + Sync + 'static,
) -> (crate::http::test_server::TestServer, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    let server = serve(move |i, body| match fail(i) {
        Some(status) => (status, "no".into()),
        None => {
            keep.lock().unwrap().push(body);
            (200, "{}".into())
        }
    });
    (server, got)
}

#[test]
fn full_batches_go_on_write_and_the_rest_on_flush_in_order() {
    let (server, got) = collecting(|_| None);
    let mut sink = HttpSink::new("out".into(), &spec(server.url(), 5));
    sink.write(&records(0, 250)).unwrap();
    assert_eq!(
        got.lock().unwrap().len(),
        2,
        "two full batches sent by write"
    );
    sink.flush().unwrap();
    let bodies = got.lock().unwrap().clone();
    let sizes: Vec<usize> = bodies.iter().map(|b| b.as_array().unwrap().len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let ns: Vec<i64> = bodies
        .iter()
        .flat_map(|b| {
            b.as_array()
                .unwrap()
                .iter()
                .map(|v| v["n"].as_i64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ns, (0..250).collect::<Vec<_>>());
}

#[test]
fn a_failing_endpoint_opens_the_breaker_and_the_flush_waits_until_it_is_back() {
    // The first 7 requests fail: with 3 failures to open, the breaker
    // opens, probes fail, and a later probe closes it.
    let (server, got) = collecting(|i| (i < 7).then_some(503));
    let mut sink = HttpSink::new("out".into(), &spec(server.url(), 3));
    sink.write(&records(0, 30)).unwrap();
    sink.flush().unwrap();
    assert_eq!(sink.state(), State::Closed { failures: 0 });
    assert_eq!(server.requests.load(Ordering::SeqCst), 8);
    let bodies = got.lock().unwrap().clone();
    assert_eq!(
        bodies,
        vec![Value::Array((0..30).map(|n| json!({"n": n})).collect())]
    );
    assert!(sink.take_rejected().is_empty());
}

#[test]
fn a_refused_batch_becomes_dead_letters_and_the_next_goes_on() {
    let (server, got) = collecting(|i| (i == 0).then_some(422));
    let mut sink = HttpSink::new("out".into(), &spec(server.url(), 3));
    sink.write(&records(0, 2)).unwrap();
    sink.flush().unwrap();
    let dead = sink.take_rejected();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[1].record.value, json!({"n": 1}));
    assert_eq!(dead[0].step, "sink:out");
    assert!(dead[0].error.contains("HTTP 422"), "{}", dead[0].error);
    sink.write(&records(2, 3)).unwrap();
    sink.flush().unwrap();
    assert_eq!(got.lock().unwrap().clone(), vec![json!([{"n": 2}])]);
}

#[test]
fn records_refused_at_a_flush_reach_the_dead_letter_sink() {
    use crate::runtime::Metrics;
    use crate::runtime::chain::{Outputs, push};
    use crate::sink::LineSink;

    let (server, _) = collecting(|_| Some(400));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    let sink = HttpSink::new("out".into(), &spec(server.url(), 3));
    let mut out = Outputs::new(
        vec![Box::new(sink)],
        std::collections::HashMap::new(),
        Some(Box::new(LineSink::new("dl".into(), Box::new(file)))),
    );
    let m = Metrics::default();
    // Fewer than batchSize records: nothing is sent until the flush.
    push(&mut [], 0, records(0, 2), &mut out, &m).unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
    out.flush(&m).unwrap();
    let dead: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[1]["record"], json!({"n": 1}));
    assert_eq!(dead[0]["step"], "sink:out");
    assert_eq!(Metrics::get(&m.dead_letters), 2);
}
