//! The operator's Prometheus metrics, registered once in their own
//! [`Registry`] and served at `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric of the operator.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Where they are registered.
    pub registry: Registry,
    /// `tributary_operator_reconciles_total{result}`: `ok`, `invalid` or `error`.
    pub reconciles: IntCounterVec,
    /// `tributary_operator_reconcile_failures_total{reason}` (`Error::metric_label`).
    pub failures: IntCounterVec,
    /// `tributary_operator_reconcile_duration_seconds`.
    pub duration: Histogram,
    /// `tributary_operator_leader`: 1 while this replica holds the Lease.
    pub leader: IntGauge,
    /// `tributary_operator_pipelines`: pipelines in the controller's cache.
    pub pipelines: IntGauge,
}

impl Metrics {
    /// Creates and registers the metrics.
    ///
    /// # Errors
    /// When a metric is malformed or registered twice (a bug).
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "tributary_operator_reconciles_total",
                "Reconciles of StreamPipelines by result.",
            ),
            &["result"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "tributary_operator_reconcile_failures_total",
                "Failed reconciles by reason.",
            ),
            &["reason"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "tributary_operator_reconcile_duration_seconds",
                "Time one reconcile took.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let leader = IntGauge::new(
            "tributary_operator_leader",
            "1 while this replica holds the leader Lease.",
        )?;
        let pipelines = IntGauge::new(
            "tributary_operator_pipelines",
            "StreamPipelines the controller knows.",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(pipelines.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            failures,
            duration,
            leader,
            pipelines,
        })
    }

    /// The text exposition of every metric.
    #[must_use]
    pub fn render(&self) -> String {
        let mut buf = String::new();
        // Only fails on malformed metric families, which `new` rules out.
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut buf);
        buf
    }
}

/// Whether `/readyz` answers 200: set once the client reached the apiserver.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks the process ready.
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the process is ready.
    #[must_use]
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_metric_by_its_contract_name() {
        let m = Metrics::new().unwrap();
        m.reconciles.with_label_values(&["ok"]).inc();
        m.failures.with_label_values(&["api"]).inc();
        m.duration.observe(0.01);
        m.leader.set(1);
        m.pipelines.set(3);
        let text = m.render();
        for name in [
            "tributary_operator_reconciles_total{result=\"ok\"} 1",
            "tributary_operator_reconcile_failures_total{reason=\"api\"} 1",
            "tributary_operator_reconcile_duration_seconds_count 1",
            "tributary_operator_leader 1",
            "tributary_operator_pipelines 3",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
