//! The step against a real HTTP server on loopback.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tributary_crds::{HttpStep, OnFailure};

use super::Http;
use crate::http::test_server::serve;
use crate::record::{Position, Record};
use crate::step::{Emit, Step};

fn records(n: i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut r = Record::new(json!({"n": i}), i);
            r.position = Position {
                source: Arc::from("reviews.jsonl"),
                partition: 0,
                offset: i,
            };
            r
        })
        .collect()
}

fn step(url: String, tweak: impl FnOnce(&mut HttpStep)) -> Http {
    let mut spec = HttpStep {
        url,
        backoff: tributary_crds::Duration::from_millis(1),
        timeout: tributary_crds::Duration::from_secs(2),
        ..HttpStep::default()
    };
    tweak(&mut spec);
    Http::new("udf".into(), &spec)
}

fn run(step: &mut Http, input: Vec<Record>) -> Emit {
    let mut emit = Emit::default();
    step.process(input, &mut emit).expect("process");
    emit
}

/// Doubles `n` and keeps the record; drops multiples of 5.
fn double(_: usize, body: Value) -> (u16, String) {
    let out: Vec<Value> = body
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    let n = v["n"].as_i64().unwrap_or(-1);
                    if n % 5 == 0 {
                        Value::Null
                    } else {
                        json!({"n": n, "twice": 2 * n})
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    (200, Value::Array(out).to_string())
}

#[test]
fn answers_replace_or_drop_records_in_input_order_with_concurrent_batches() {
    // Later batches answer sooner, so the order must be restored.
    let server = serve(|i, body| {
        std::thread::sleep(Duration::from_millis(40u64.saturating_sub(i as u64 * 3)));
        double(i, body)
    });
    let mut s = step(server.url(), |h| {
        h.batch_size = 7;
        h.concurrency = 4;
    });
    let emit = run(&mut s, records(100));
    let got: Vec<i64> = emit
        .out
        .iter()
        .map(|r| r.value["n"].as_i64().unwrap())
        .collect();
    let want: Vec<i64> = (0..100).filter(|n| n % 5 != 0).collect();
    assert_eq!(got, want);
    assert!(
        emit.out
            .iter()
            .all(|r| r.value["twice"] == json!(2 * r.value["n"].as_i64().unwrap()))
    );
    assert!(
        emit.out
            .iter()
            .all(|r| r.position.offset == r.value["n"].as_i64().unwrap()),
        "provenance kept"
    );
    assert_eq!(emit.dropped, 20);
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::SeqCst),
        15
    );
}

#[test]
fn a_wrong_length_answer_sends_the_batch_to_dead_letters_with_provenance() {
    let server = serve(|_, _| (200, "[{}]".into()));
    let mut s = step(server.url(), |h| h.batch_size = 3);
    let emit = run(&mut s, records(4));
    // The last batch has one record, so its one-element answer is right.
    assert_eq!(emit.out.len(), 1);
    assert_eq!(
        (emit.out[0].value.clone(), emit.out[0].position.offset),
        (json!({}), 3)
    );
    assert_eq!(emit.dead.len(), 3);
    for (i, d) in emit.dead.iter().enumerate() {
        assert_eq!(d.step, "udf");
        assert_eq!(d.record.position.offset, i as i64);
        assert!(d.error.contains("1 elements for 3 records"), "{}", d.error);
    }
    // Malformed answers are not retried: one request per batch.
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let server = serve(|i, body| {
        if i < 2 {
            (503, "busy".into())
        } else {
            double(i, body)
        }
    });
    let mut s = step(server.url(), |h| h.retries = 3);
    let emit = run(&mut s, records(3));
    assert_eq!(emit.out.len(), 2);
    assert!(emit.dead.is_empty());
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[test]
fn client_errors_are_not_retried_and_fail_per_on_failure() {
    let server = serve(|_, _| (400, "bad".into()));
    let mut s = step(server.url(), |h| h.retries = 3);
    let emit = run(&mut s, records(2));
    assert_eq!(emit.dead.len(), 2);
    assert!(
        emit.dead[0].error.contains("HTTP 400: bad"),
        "{}",
        emit.dead[0].error
    );
    assert!(
        emit.dead[0].error.contains("after 1 attempt"),
        "{}",
        emit.dead[0].error
    );

    let mut dropping = step(server.url(), |h| h.on_failure = OnFailure::Drop);
    let emit = run(&mut dropping, records(2));
    assert_eq!((emit.out.len(), emit.dead.len(), emit.dropped), (0, 0, 2));

    let mut passing = step(server.url(), |h| h.on_failure = OnFailure::Warn);
    let emit = run(&mut passing, records(2));
    assert_eq!(emit.out, records(2), "warn passes the records on unchanged");

    let mut failing = step(server.url(), |h| h.on_failure = OnFailure::Fail);
    let err = failing
        .process(records(2), &mut Emit::default())
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 400"), "{err}");
}

#[test]
fn an_unreachable_service_dead_letters_after_every_retry() {
    // A port nobody listens on any more: connections are refused.
    let url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/udf", l.local_addr().unwrap())
    };
    let mut s = step(url, |h| h.retries = 2);
    let emit = run(&mut s, records(5));
    assert_eq!(emit.dead.len(), 5);
    assert!(
        emit.dead[4].error.contains("after 3 attempt(s)"),
        "{}",
        emit.dead[4].error
    );
}

#[test]
fn an_element_that_is_not_an_object_fails_only_its_record() {
    let server = serve(|_, _| (200, r#"[{"ok":1}, 7, null]"#.into()));
    let mut s = step(server.url(), |_| {});
    let emit = run(&mut s, records(3));
    assert_eq!(emit.out.len(), 1);
    assert_eq!(emit.dropped, 1);
    assert_eq!(emit.dead.len(), 1);
    assert_eq!(emit.dead[0].record.position.offset, 1);
    assert!(
        emit.dead[0].error.contains("element 1"),
        "{}",
        emit.dead[0].error
    );
}

/// A latch the test server's handlers can wait on: opened by the test, or
/// after 30 s so a failing test cannot hang a server thread forever.
#[derive(Default)]
struct Latch {
    open: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
}

impl Latch {
    fn wait(&self) {
        let open = self.open.lock().unwrap();
        let _ = self
            .changed
            .wait_timeout_while(open, Duration::from_secs(30), |o| !*o)
            .unwrap();
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

#[test]
fn a_server_slower_than_timeout_is_retried_then_answers() {
    // The first request gets no answer until the test ends; the retry does.
    let stalled = Arc::new(Latch::default());
    let latch = stalled.clone();
    let server = serve(move |i, body| {
        if i == 0 {
            latch.wait();
        }
        double(i, body)
    });
    let mut s = step(server.url(), |h| {
        h.timeout = tributary_crds::Duration::from_millis(200);
        h.retries = 2;
    });
    let emit = run(&mut s, records(3));
    stalled.open();
    assert!(emit.dead.is_empty(), "{:?}", emit.dead);
    let got: Vec<i64> = emit
        .out
        .iter()
        .map(|r| r.value["twice"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![2, 4]);
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn a_server_that_never_answers_in_time_dead_letters_after_every_retry() {
    let stalled = Arc::new(Latch::default());
    let latch = stalled.clone();
    let server = serve(move |i, body| {
        latch.wait();
        double(i, body)
    });
    let mut s = step(server.url(), |h| {
        h.timeout = tributary_crds::Duration::from_millis(100);
        h.retries = 1;
    });
    let emit = run(&mut s, records(2));
    stalled.open();
    assert!(emit.out.is_empty());
    assert_eq!(emit.dead.len(), 2);
    let error = &emit.dead[0].error;
    assert!(error.to_lowercase().contains("timeout"), "{error}");
    assert!(error.contains("after 2 attempt(s)"), "{error}");
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn in_flight_requests_never_exceed_concurrency() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CONCURRENCY: u32 = 3;
    const BATCHES: usize = 20;
    // Each request holds its answer until `CONCURRENCY` requests are in
    // flight (or no more can come), so the limit is reached, not just
    // respected, and the largest count seen is exactly the limit.
    let in_flight = Arc::new((
        std::sync::Mutex::new((0usize, 0usize)),
        std::sync::Condvar::new(),
    ));
    let most = Arc::new(AtomicUsize::new(0));
    let (state, seen) = (in_flight.clone(), most.clone());
    let server = serve(move |i, body| {
        let (lock, changed) = &*state;
        let mut now = lock.lock().unwrap();
        now.0 += 1; // in flight
        now.1 += 1; // started
        seen.fetch_max(now.0, Ordering::SeqCst);
        changed.notify_all();
        let mut now = changed
            .wait_timeout_while(now, Duration::from_secs(30), |n| {
                n.0 < CONCURRENCY as usize && n.1 < BATCHES
            })
            .unwrap()
            .0;
        now.0 -= 1;
        drop(now);
        double(i, body)
    });
    let mut s = step(server.url(), |h| {
        h.batch_size = 5;
        h.concurrency = CONCURRENCY;
        h.timeout = tributary_crds::Duration::from_secs(60);
    });
    let emit = run(&mut s, records(5 * BATCHES as i64));
    assert!(emit.dead.is_empty(), "{:?}", emit.dead);
    assert_eq!(emit.out.len(), 80, "multiples of 5 are dropped");
    assert_eq!(server.requests.load(Ordering::SeqCst), BATCHES);
    assert_eq!(most.load(Ordering::SeqCst), CONCURRENCY as usize);
}
