//! Metrics of HTTP calls, in the process-wide Prometheus registry that
//! `/metrics` serves beside the pipeline's own.
//!
//! Steps and sinks are built without access to the pipeline's
//! [`Metrics`](crate::runtime::Metrics) (their builders are shared by the
//! local and the Kafka engines), so these live in the default registry,
//! labelled by the step or sink name.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

/// The collectors, created and registered on first use.
pub struct HttpMetrics {
    /// `tributary_http_requests_total{kind, name, outcome}`: requests by
    /// outcome (`ok`, `error`).
    pub requests: IntCounterVec,
    /// `tributary_http_request_duration_seconds{kind, name}`.
    pub latency: HistogramVec,
    /// `tributary_http_circuit_state{name}`: 0 closed, 1 open, 2 half-open.
    pub circuit: IntGaugeVec,
    /// `tributary_http_circuit_opened_total{name}`.
    pub opened: IntCounterVec,
}

static METRICS: LazyLock<Option<HttpMetrics>> = LazyLock::new(|| {
    let m = HttpMetrics {
        requests: IntCounterVec::new(
            Opts::new(
                "tributary_http_requests_total",
                "HTTP requests of http steps and sinks, by outcome.",
            ),
            &["kind", "name", "outcome"],
        )
        .ok()?,
        latency: HistogramVec::new(
            HistogramOpts::new(
                "tributary_http_request_duration_seconds",
                "Duration of HTTP requests of http steps and sinks.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind", "name"],
        )
        .ok()?,
        circuit: IntGaugeVec::new(
            Opts::new(
                "tributary_http_circuit_state",
                "Circuit breaker of an HTTP sink: 0 closed, 1 open, 2 half-open.",
            ),
            &["name"],
        )
        .ok()?,
        opened: IntCounterVec::new(
            Opts::new(
                "tributary_http_circuit_opened_total",
                "Times the circuit breaker of an HTTP sink opened.",
            ),
            &["name"],
        )
        .ok()?,
    };
    let r = prometheus::default_registry();
    let _ = r.register(Box::new(m.requests.clone()));
    let _ = r.register(Box::new(m.latency.clone()));
    let _ = r.register(Box::new(m.circuit.clone()));
    let _ = r.register(Box::new(m.opened.clone()));
    Some(m)
});

/// Counts one request of the step or sink `name` (`kind` is `step` or `sink`).
pub fn request(kind: &str, name: &str, ok: bool, took: Duration) {
    if let Some(m) = METRICS.as_ref() {
        let outcome = if ok { "ok" } else { "error" };
        m.requests.with_label_values(&[kind, name, outcome]).inc();
        m.latency
            .with_label_values(&[kind, name])
            .observe(took.as_secs_f64());
    }
}

/// Sets the circuit state of sink `name`; `opened` counts an opening.
pub fn circuit(name: &str, state: i64, opened: bool) {
    if let Some(m) = METRICS.as_ref() {
        m.circuit.with_label_values(&[name]).set(state);
        if opened {
            m.opened.with_label_values(&[name]).inc();
        }
    }
}
