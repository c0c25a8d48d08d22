//! `/metrics` (Prometheus text format), `/healthz` and `/readyz` over a
//! minimal HTTP/1.1 responder on its own thread.
//!
//! The counters live in [`Metrics`] as atomics the engine bumps without
//! locks; a [`prometheus::core::Collector`] reads them at scrape time, so
//! the hot path never touches the registry.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, Gauge, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

use super::Metrics;

/// Reads [`Metrics`] when scraped.
struct Snapshot {
    metrics: Arc<Metrics>,
    pipeline: String,
    descs: Vec<Desc>,
}

fn counter(name: &str, help: &str, pipeline: &str, v: u64) -> Option<IntCounter> {
    let c = IntCounter::with_opts(Opts::new(name, help).const_label("pipeline", pipeline)).ok()?;
    c.inc_by(v);
    Some(c)
}

/// Bucket bounds (seconds) of the latency histograms served.
const LATENCY_BOUNDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A [`LatencyHistogram`](super::metrics::LatencyHistogram) as a
/// Prometheus histogram family.
fn histogram(
    name: &str,
    help: &str,
    pipeline: &str,
    h: &super::metrics::LatencyHistogram,
) -> MetricFamily {
    use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricType};
    let (at, total) = h.cumulative(&LATENCY_BOUNDS);
    let buckets = LATENCY_BOUNDS
        .iter()
        .zip(at)
        .map(|(bound, count)| {
            let mut b = Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(count);
            b
        })
        .collect();
    let mut hist = Histogram::default();
    hist.set_sample_count(total);
    hist.set_sample_sum(h.sum().as_secs_f64());
    hist.set_bucket(buckets);
    let mut label = LabelPair::default();
    label.set_name("pipeline".to_owned());
    label.set_value(pipeline.to_owned());
    let mut metric = Metric::default();
    metric.set_label(vec![label]);
    metric.set_histogram(hist);
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(MetricType::HISTOGRAM);
    family.set_metric(vec![metric]);
    family
}

fn gauge(name: &str, help: &str, pipeline: &str, v: f64) -> Option<Gauge> {
    let g = Gauge::with_opts(Opts::new(name, help).const_label("pipeline", pipeline)).ok()?;
    g.set(v);
    Some(g)
}

impl Snapshot {
    #[allow(clippy::cast_precision_loss)]
    fn families(&self) -> Vec<MetricFamily> {
        let m = &self.metrics;
        let p = self.pipeline.as_str();
        let mut out = Vec::new();
        let counters = [
            (
                "tributary_records_in_total",
                "Records read from the source.",
                Metrics::get(&m.records_in),
            ),
            (
                "tributary_records_out_total",
                "Records written to the sinks.",
                Metrics::get(&m.records_out),
            ),
            (
                "tributary_records_dropped_total",
                "Records dropped by steps (filtered, deduplicated, late, invalid).",
                Metrics::get(&m.dropped),
            ),
            (
                "tributary_dead_letters_total",
                "Records sent to the dead-letter sink.",
                Metrics::get(&m.dead_letters),
            ),
            (
                "tributary_side_output_records_total",
                "Late records sent to side outputs.",
                Metrics::get(&m.side_outputs),
            ),
            (
                "tributary_backpressure_dropped_total",
                "Records dropped by the backpressure policy.",
                Metrics::get(&m.backpressure_dropped),
            ),
            (
                "tributary_late_records_total",
                "Records behind the watermark beyond the allowed lateness.",
                Metrics::get(&m.late_records),
            ),
        ];
        for (name, help, v) in counters {
            if let Some(c) = counter(name, help, p, v) {
                out.extend(c.collect());
            }
        }
        out.extend(self.step_families());
        let wm = m.watermark.load(Ordering::Relaxed);
        let delay = if wm == i64::MIN || wm == i64::MAX {
            0.0
        } else {
            (crate::source::now_ms() - wm) as f64 / 1000.0
        };
        let gauges = [
            (
                "tributary_watermark_delay_seconds",
                "Processing time minus the watermark.",
                delay,
            ),
            (
                "tributary_state_entries",
                "Keys and windows held by stateful steps.",
                Metrics::get(&m.state_size) as f64,
            ),
            (
                "tributary_state_size",
                "Keys and windows held by stateful steps (all tasks).",
                Metrics::get(&m.state_size) as f64,
            ),
            (
                "tributary_processing_latency_p50_seconds",
                "Median time from reading a batch to writing it.",
                m.latency.quantile(0.5).map_or(0.0, |d| d.as_secs_f64()),
            ),
            (
                "tributary_processing_latency_p99_seconds",
                "99th percentile time from reading a batch to writing it.",
                m.latency.quantile(0.99).map_or(0.0, |d| d.as_secs_f64()),
            ),
        ];
        for (name, help, v) in gauges {
            if let Some(g) = gauge(name, help, p, v) {
                out.extend(g.collect());
            }
        }
        out.push(histogram(
            "tributary_processing_latency_seconds",
            "Time from reading a batch to writing its output.",
            p,
            &m.latency,
        ));
        out.push(histogram(
            "tributary_end_to_end_latency_seconds",
            "Kafka sources: time from a record's Kafka timestamp to the commit of the checkpoint covering it.",
            p,
            &m.end_to_end,
        ));
        out
    }
}

impl Snapshot {
    /// `tributary_step_records_{in,out,dropped}_total{step}`.
    fn step_families(&self) -> Vec<MetricFamily> {
        let Some(steps) = self.metrics.steps.get() else {
            return Vec::new();
        };
        let kinds = [
            ("in", "Records into each step."),
            ("out", "Records out of each step."),
            ("dropped", "Records each step dropped on purpose."),
        ];
        let mut out = Vec::new();
        for (kind, help) in kinds {
            let opts = Opts::new(format!("tributary_step_records_{kind}_total"), help)
                .const_label("pipeline", &self.pipeline);
            let Ok(vec) = IntCounterVec::new(opts, &["step"]) else {
                continue;
            };
            for s in steps {
                let v = match kind {
                    "in" => &s.records_in,
                    "out" => &s.records_out,
                    _ => &s.dropped,
                };
                vec.with_label_values(&[s.name.as_str()])
                    .inc_by(Metrics::get(v));
            }
            out.extend(vec.collect());
        }
        out
    }
}

impl Collector for Snapshot {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.families()
    }
}

/// Serves the endpoints on `addr` until the process exits.
///
/// # Errors
/// When the address cannot be bound.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    pipeline: &str,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let registry = Registry::new();
    let snapshot = Snapshot {
        metrics: metrics.clone(),
        pipeline: pipeline.to_owned(),
        descs: Vec::new(),
    };
    registry
        .register(Box::new(snapshot))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = respond(stream, &registry, &metrics);
            }
        })?;
    Ok(bound)
}

/// Request header lines read at most (a scraper or probe sends a few).
const MAX_HEADERS: usize = 100;

fn respond(stream: TcpStream, registry: &Registry, metrics: &Metrics) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Read the headers to the blank line before answering: closing the
    // socket with request bytes unread makes the kernel send a reset, which
    // can reach the client before it has read the response.
    let mut header = String::new();
    for _ in 0..MAX_HEADERS {
        header.clear();
        if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body): (&str, &str, Vec<u8>) = match path {
        "/metrics" => {
            let mut buf = Vec::new();
            TextEncoder::new()
                .encode(
                    // The default registry holds the process-wide HTTP
                    // step and sink metrics (see `crate::http::metrics`).
                    &[
                        registry.gather(),
                        metrics.registry.gather(),
                        prometheus::gather(),
                    ]
                    .concat(),
                    &mut buf,
                )
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            ("200 OK", "text/plain; version=0.0.4", buf)
        }
        "/healthz" => ("200 OK", "text/plain", b"ok\n".to_vec()),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => {
            ("200 OK", "text/plain", b"ready\n".to_vec())
        }
        "/readyz" => (
            "503 Service Unavailable",
            "text/plain",
            b"starting\n".to_vec(),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            b"not found; try /metrics, /healthz or /readyz\n".to_vec(),
        ),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(&body)
}
