//! Kafka metrics, registered in the pipeline's [`Metrics::registry`] so
//! `/metrics` serves them beside the engine counters.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts};

use crate::runtime::Metrics;

/// Lag, rebalances, checkpoints and transaction aborts.
#[derive(Clone)]
pub struct KafkaMetrics {
    /// `tributary_kafka_consumer_lag{topic,partition}`: last stable offset
    /// minus the processed position.
    pub lag: IntGaugeVec,
    /// `tributary_rebalances_total`: assignments and revocations served.
    pub rebalances: IntCounter,
    /// `tributary_checkpoint_duration_seconds`.
    pub checkpoint: Histogram,
    /// `tributary_transaction_aborts_total`.
    pub aborts: IntCounter,
    /// `tributary_state_restores_total{from}`: tasks started with their
    /// state from the `changelog`, by `replay` of the input, or `none`
    /// (no checkpoint yet).
    pub restores: IntCounterVec,
    /// `tributary_changelog_bytes_total`: snapshot bytes written.
    pub changelog_bytes: IntCounter,
}

impl KafkaMetrics {
    /// Creates the collectors and registers them (a second registration,
    /// as in tests running twice, keeps the first).
    #[must_use]
    pub fn register(metrics: &Metrics, pipeline: &str) -> Self {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("pipeline", pipeline);
        let k = Self {
            lag: IntGaugeVec::new(
                opts(
                    "tributary_kafka_consumer_lag",
                    "Records behind the end of each assigned partition.",
                ),
                &["topic", "partition"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            rebalances: IntCounter::with_opts(opts(
                "tributary_rebalances_total",
                "Consumer-group rebalances (assignments and revocations).",
            ))
            .unwrap_or_else(|_| unreachable_metric()),
            checkpoint: Histogram::with_opts(
                HistogramOpts::new(
                    "tributary_checkpoint_duration_seconds",
                    "Time to commit a checkpoint (transaction or offsets).",
                )
                .const_label("pipeline", pipeline)
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )
            .unwrap_or_else(|_| unreachable_metric()),
            aborts: IntCounter::with_opts(opts(
                "tributary_transaction_aborts_total",
                "Kafka transactions aborted (the tasks rewound to their last checkpoint).",
            ))
            .unwrap_or_else(|_| unreachable_metric()),
            restores: IntCounterVec::new(
                opts(
                    "tributary_state_restores_total",
                    "Tasks started, by where their state came from (changelog, replay, none).",
                ),
                &["from"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            changelog_bytes: IntCounter::with_opts(opts(
                "tributary_changelog_bytes_total",
                "Bytes of state snapshots written to the changelog topic.",
            ))
            .unwrap_or_else(|_| unreachable_metric()),
        };
        let r = &metrics.registry;
        let _ = r.register(Box::new(k.lag.clone()));
        let _ = r.register(Box::new(k.rebalances.clone()));
        let _ = r.register(Box::new(k.checkpoint.clone()));
        let _ = r.register(Box::new(k.aborts.clone()));
        let _ = r.register(Box::new(k.restores.clone()));
        let _ = r.register(Box::new(k.changelog_bytes.clone()));
        k
    }
}

/// The options above are constant and valid; prometheus only refuses
/// invalid names.
fn unreachable_metric<T>() -> T {
    unreachable!("constant metric options are valid")
}
