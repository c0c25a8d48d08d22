//! Counters the engine keeps; read by the progress line and `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Pipeline-wide counters, updated by the engine thread and read by others.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records read from the source (decoded or not).
    pub records_in: AtomicU64,
    /// Records written to the sinks.
    pub records_out: AtomicU64,
    /// Records dropped by steps (filtered, deduplicated, late, invalid with `drop`).
    pub dropped: AtomicU64,
    /// Records sent to the dead-letter sink.
    pub dead_letters: AtomicU64,
    /// Records sent to side outputs (late events).
    pub side_outputs: AtomicU64,
    /// Current watermark (epoch ms; `i64::MIN` before the first).
    pub watermark: AtomicI64,
    /// Keys/windows held by stateful steps.
    pub state_size: AtomicU64,
    /// Records dropped by the backpressure policy (copied from the queue).
    pub backpressure_dropped: AtomicU64,
    /// Set once the source and sinks are open (`/readyz`).
    pub ready: std::sync::atomic::AtomicBool,
    /// Processing latency: from a batch's first read to its last write.
    pub latency: LatencyHistogram,
    /// End-to-end latency (Kafka sources): from a record's Kafka timestamp
    /// to the commit of the checkpoint that covers it — when its output is
    /// visible to `read_committed` readers (acknowledged, under
    /// `atLeastOnce`).
    pub end_to_end: LatencyHistogram,
    /// Records behind the watermark beyond the allowed lateness.
    pub late_records: AtomicU64,
    /// Per-step counters, set once the steps are built.
    pub steps: std::sync::OnceLock<Box<[StepCounters]>>,
    /// Collectors of connectors (Kafka lag, checkpoints, …), served with
    /// the counters above.
    pub registry: prometheus::Registry,
}

/// Records into and out of one step, and dropped by it.
#[derive(Debug, Default)]
pub struct StepCounters {
    /// The step's display name.
    pub name: String,
    /// Records it received.
    pub records_in: AtomicU64,
    /// Records it passed on (or emitted, for windows).
    pub records_out: AtomicU64,
    /// Records it dropped on purpose.
    pub dropped: AtomicU64,
}

/// Buckets per octave: about 19% resolution, enough for p50/p99.
const PER_OCTAVE: f64 = 4.0;
const BUCKETS: usize = 128;

/// A lock-free log-scale histogram of microseconds.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    /// Sum of every observation, microseconds (Prometheus' `_sum`).
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn record(&self, d: std::time::Duration) {
        self.record_n(d, 1);
    }

    /// Records `n` observations of `d` at once.
    pub fn record_n(&self, d: std::time::Duration, n: u64) {
        if n == 0 {
            return;
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        #[allow(clippy::cast_precision_loss)]
        let us = micros as f64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((us.log2() * PER_OCTAVE) as usize).min(BUCKETS - 1);
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        self.sum_us
            .fetch_add(micros.saturating_mul(n), Ordering::Relaxed);
    }

    /// Sum of every observation.
    #[must_use]
    pub fn sum(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }

    /// Cumulative counts at each of `bounds` (seconds, ascending), as a
    /// Prometheus histogram reports them, and the total count. A log
    /// bucket counts below a bound when its upper edge is at most the
    /// bound, so each figure errs low by less than one bucket (19%).
    #[must_use]
    pub fn cumulative(&self, bounds: &[f64]) -> (Vec<u64>, u64) {
        let counts = self.counts();
        let total = counts.iter().sum();
        let at = bounds
            .iter()
            .map(|b| {
                counts
                    .iter()
                    .enumerate()
                    .take_while(|(i, _)| Self::upper_edge_secs(*i) <= *b)
                    .map(|(_, c)| c)
                    .sum()
            })
            .collect();
        (at, total)
    }

    /// The upper edge of bucket `i`, seconds.
    fn upper_edge_secs(i: usize) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let exp = (i as f64 + 1.0) / PER_OCTAVE;
        2f64.powf(exp) / 1e6
    }

    /// The `q` quantile (upper bound of its bucket), or `None` when empty.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<std::time::Duration> {
        Self::quantile_of(&self.counts(), q)
    }

    /// The count of every bucket, cumulative since the start; the
    /// difference of two readings is the histogram of what came between.
    #[must_use]
    pub fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// The `q` quantile of bucket `counts` (as [`counts`](Self::counts)
    /// returns them), or `None` when they are all zero.
    #[must_use]
    pub fn quantile_of(counts: &[u64], q: f64) -> Option<std::time::Duration> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                #[allow(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss
                )]
                let us = 2f64.powf((i as f64 + 1.0) / PER_OCTAVE) as u64;
                return Some(std::time::Duration::from_micros(us));
            }
        }
        None
    }
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Reads a counter.
    #[must_use]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Names the per-step counters (the first call wins).
    pub fn init_steps(&self, names: impl IntoIterator<Item = String>) {
        let _ = self.steps.set(
            names
                .into_iter()
                .map(|name| StepCounters {
                    name,
                    ..StepCounters::default()
                })
                .collect(),
        );
    }

    /// Counts one batch through step `i`.
    pub fn count_step(&self, i: usize, records_in: u64, records_out: u64, dropped: u64) {
        if let Some(c) = self.steps.get().and_then(|s| s.get(i)) {
            Self::add(&c.records_in, records_in);
            Self::add(&c.records_out, records_out);
            Self::add(&c.dropped, dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = LatencyHistogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_micros();
        let p99 = h.quantile(0.99).unwrap().as_micros();
        assert!((500..=600).contains(&p50), "p50 {p50}");
        assert!((990..=1200).contains(&p99), "p99 {p99}");
        assert!(LatencyHistogram::default().quantile(0.5).is_none());
    }

    #[test]
    fn cumulative_counts_err_low_by_less_than_a_bucket() {
        let h = LatencyHistogram::default();
        h.record_n(Duration::from_millis(3), 10);
        h.record_n(Duration::from_millis(40), 5);
        h.record(Duration::from_secs(2));
        let (at, total) = h.cumulative(&[0.001, 0.005, 0.05, 1.0, 10.0]);
        assert_eq!(total, 16);
        assert_eq!(at, vec![0, 10, 15, 15, 16]);
        assert_eq!(
            h.sum(),
            Duration::from_micros(10 * 3_000 + 5 * 40_000 + 2_000_000)
        );
        assert!(h.cumulative(&[0.5]).0[0] <= total);
    }
}
