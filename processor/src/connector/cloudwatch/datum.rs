//! The pure part of the export: two readings of the processor's metrics
//! (the last one published and the current one) become the values of one
//! interval — deltas of the counters, quantiles of the latency histogram's
//! delta, the current lag.

use std::time::Duration;

use prometheus::proto::MetricFamily;

use crate::runtime::{LatencyHistogram, Metrics};

/// The Prometheus gauge of Kafka consumer lag, per topic and partition.
pub const KAFKA_LAG: &str = "tributary_kafka_consumer_lag";
/// The Prometheus gauge of Kinesis `MillisBehindLatest`, per shard.
pub const KINESIS_BEHIND: &str = "tributary_kinesis_millis_behind_latest";

/// One reading of the processor's metrics: the engine counters and latency
/// histogram (what `/metrics` serves as `tributary_records_in_total`, …)
/// and the source lag gauges of the connectors' registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `tributary_records_in_total`.
    pub records_in: u64,
    /// `tributary_records_out_total`.
    pub records_out: u64,
    /// `tributary_dead_letters_total`.
    pub dead_letters: u64,
    /// `tributary_records_dropped_total`.
    pub dropped: u64,
    /// The latency histogram's bucket counts (see [`LatencyHistogram::counts`]).
    pub latency: Vec<u64>,
    /// Kafka consumer lag summed over the partitions this replica holds,
    /// when the source is Kafka and has reported one.
    pub kafka_lag: Option<i64>,
    /// Kinesis `MillisBehindLatest`, the largest over the shards this
    /// replica reads, when the source is Kinesis and has reported one.
    pub millis_behind: Option<i64>,
}

impl Snapshot {
    /// Reads `metrics` now.
    #[must_use]
    pub fn read(metrics: &Metrics) -> Self {
        let families = metrics.registry.gather();
        Self {
            records_in: Metrics::get(&metrics.records_in),
            records_out: Metrics::get(&metrics.records_out),
            dead_letters: Metrics::get(&metrics.dead_letters),
            dropped: Metrics::get(&metrics.dropped),
            latency: metrics.latency.counts(),
            kafka_lag: gauges(&families, KAFKA_LAG).reduce(i64::saturating_add),
            millis_behind: gauges(&families, KINESIS_BEHIND).max(),
        }
    }
}

/// The values of the gauge family `name` (one per label set), truncated to
/// integers (these gauges are integer gauges).
fn gauges<'a>(families: &'a [MetricFamily], name: &'a str) -> impl Iterator<Item = i64> + 'a {
    families
        .iter()
        .filter(move |f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .map(|m| {
            #[allow(clippy::cast_possible_truncation)]
            let v = m.get_gauge().get_value() as i64;
            v
        })
}

/// The unit of a [`Datum`] (CloudWatch's `StandardUnit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// `Count`.
    Count,
    /// `Count/Second`.
    CountPerSecond,
    /// `Milliseconds`.
    Milliseconds,
}

/// One metric value of one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Datum {
    /// The CloudWatch metric name.
    pub name: &'static str,
    /// Its unit.
    pub unit: Unit,
    /// Its value.
    pub value: f64,
}

impl Datum {
    fn new(name: &'static str, unit: Unit, value: f64) -> Self {
        Self { name, unit, value }
    }
}

/// A counter's increase from `prev` to `cur`; a counter that went down was
/// reset, and counts from zero (as Prometheus' `increase` does).
fn delta(prev: u64, cur: u64) -> u64 {
    if cur >= prev { cur - prev } else { cur }
}

/// The data of the interval from `prev` (the last reading published) to
/// `cur`, `elapsed` apart:
///
/// - `RecordsIn`, `RecordsOut`, `DeadLetters`, `RecordsDropped` (Count): the
///   counters' increase, so the sum of the datapoints is the total;
/// - `InputRate` (Count/Second): `RecordsIn` over `elapsed`;
/// - `ProcessingLatencyP50`, `ProcessingLatencyP99` (Milliseconds): of the
///   batches of this interval only; absent when none was processed;
/// - `KafkaConsumerLag` (Count) and `MillisBehindLatest` (Milliseconds): the
///   current value, when the source reports one.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn datums(prev: &Snapshot, cur: &Snapshot, elapsed: Duration) -> Vec<Datum> {
    let records_in = delta(prev.records_in, cur.records_in);
    let mut out = vec![
        Datum::new("RecordsIn", Unit::Count, records_in as f64),
        Datum::new(
            "RecordsOut",
            Unit::Count,
            delta(prev.records_out, cur.records_out) as f64,
        ),
        Datum::new(
            "DeadLetters",
            Unit::Count,
            delta(prev.dead_letters, cur.dead_letters) as f64,
        ),
        Datum::new(
            "RecordsDropped",
            Unit::Count,
            delta(prev.dropped, cur.dropped) as f64,
        ),
    ];
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        out.push(Datum::new(
            "InputRate",
            Unit::CountPerSecond,
            records_in as f64 / secs,
        ));
    }
    // A histogram that shrank was reset: this interval is all of it.
    let reset = cur.latency.iter().sum::<u64>() < prev.latency.iter().sum::<u64>();
    let latency: Vec<u64> = cur
        .latency
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if reset {
                *c
            } else {
                c.saturating_sub(prev.latency.get(i).copied().unwrap_or(0))
            }
        })
        .collect();
    for (name, q) in [
        ("ProcessingLatencyP50", 0.5),
        ("ProcessingLatencyP99", 0.99),
    ] {
        if let Some(d) = LatencyHistogram::quantile_of(&latency, q) {
            out.push(Datum::new(
                name,
                Unit::Milliseconds,
                d.as_secs_f64() * 1000.0,
            ));
        }
    }
    if let Some(lag) = cur.kafka_lag {
        out.push(Datum::new("KafkaConsumerLag", Unit::Count, lag as f64));
    }
    if let Some(ms) = cur.millis_behind {
        out.push(Datum::new(
            "MillisBehindLatest",
            Unit::Milliseconds,
            ms as f64,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use prometheus::{IntGaugeVec, Opts};

    use super::*;

    fn value(data: &[Datum], name: &str) -> Option<f64> {
        data.iter().find(|d| d.name == name).map(|d| d.value)
    }

    fn reading(records_in: u64, records_out: u64, dead: u64) -> Snapshot {
        Snapshot {
            records_in,
            records_out,
            dead_letters: dead,
            ..Snapshot::default()
        }
    }

    #[test]
    fn counters_are_published_as_their_increase_not_their_total() {
        let first = datums(
            &Snapshot::default(),
            &reading(100, 90, 3),
            Duration::from_secs(2),
        );
        assert_eq!(value(&first, "RecordsIn"), Some(100.0));
        assert_eq!(value(&first, "RecordsOut"), Some(90.0));
        assert_eq!(value(&first, "DeadLetters"), Some(3.0));
        assert_eq!(value(&first, "InputRate"), Some(50.0));
        let second = datums(
            &reading(100, 90, 3),
            &reading(250, 240, 3),
            Duration::from_secs(3),
        );
        assert_eq!(value(&second, "RecordsIn"), Some(150.0));
        assert_eq!(value(&second, "RecordsOut"), Some(150.0));
        assert_eq!(value(&second, "DeadLetters"), Some(0.0));
        assert_eq!(value(&second, "InputRate"), Some(50.0));
        for d in first.iter().chain(&second) {
            let unit = if d.name == "InputRate" {
                Unit::CountPerSecond
            } else {
                Unit::Count
            };
            assert_eq!(d.unit, unit, "{}", d.name);
        }
    }

    #[test]
    fn the_sum_over_intervals_is_the_total() {
        let readings: Vec<Snapshot> = [0, 7, 7, 1000, 1001, 5000]
            .into_iter()
            .map(|n| reading(n, n, 0))
            .collect();
        let sum: f64 = readings
            .windows(2)
            .map(|w| {
                value(&datums(&w[0], &w[1], Duration::from_secs(1)), "RecordsIn").unwrap_or(0.0)
            })
            .sum();
        assert_eq!(sum, 5000.0);
    }

    #[test]
    fn a_counter_that_went_down_was_reset_and_counts_from_zero() {
        let d = datums(
            &reading(500, 500, 9),
            &reading(20, 10, 0),
            Duration::from_secs(1),
        );
        assert_eq!(value(&d, "RecordsIn"), Some(20.0));
        assert_eq!(value(&d, "RecordsOut"), Some(10.0));
        assert_eq!(value(&d, "DeadLetters"), Some(0.0));
    }

    #[test]
    fn no_rate_without_elapsed_time() {
        let d = datums(&Snapshot::default(), &reading(5, 5, 0), Duration::ZERO);
        assert_eq!(value(&d, "InputRate"), None);
        assert_eq!(value(&d, "RecordsIn"), Some(5.0));
    }

    #[test]
    fn latency_quantiles_are_of_this_interval_only() {
        let h = LatencyHistogram::default();
        for _ in 0..1000 {
            h.record(Duration::from_secs(2));
        }
        let prev = Snapshot {
            latency: h.counts(),
            ..Snapshot::default()
        };
        for _ in 0..100 {
            h.record(Duration::from_millis(4));
        }
        let cur = Snapshot {
            latency: h.counts(),
            ..Snapshot::default()
        };
        let d = datums(&prev, &cur, Duration::from_secs(1));
        let p50 = value(&d, "ProcessingLatencyP50").expect("p50");
        let p99 = value(&d, "ProcessingLatencyP99").expect("p99");
        // Within the histogram's 19% buckets of 4 ms; the 2 s batches of the
        // interval before must not count.
        assert!((4.0..=4.8).contains(&p50), "p50 {p50}");
        assert!((4.0..=4.8).contains(&p99), "p99 {p99}");
        assert!(
            d.iter()
                .filter(|d| d.name.starts_with("ProcessingLatency"))
                .all(|d| d.unit == Unit::Milliseconds)
        );
        // Nothing processed since: no latency datapoints at all.
        let idle = datums(&cur, &cur, Duration::from_secs(1));
        assert_eq!(value(&idle, "ProcessingLatencyP50"), None);
        assert_eq!(value(&idle, "ProcessingLatencyP99"), None);
    }

    #[test]
    fn lag_is_published_only_when_the_source_reports_it() {
        let none = datums(
            &Snapshot::default(),
            &Snapshot::default(),
            Duration::from_secs(1),
        );
        assert_eq!(value(&none, "KafkaConsumerLag"), None);
        assert_eq!(value(&none, "MillisBehindLatest"), None);
        let cur = Snapshot {
            kafka_lag: Some(1234),
            millis_behind: Some(56),
            ..Snapshot::default()
        };
        let d = datums(&Snapshot::default(), &cur, Duration::from_secs(1));
        assert_eq!(value(&d, "KafkaConsumerLag"), Some(1234.0));
        assert_eq!(value(&d, "MillisBehindLatest"), Some(56.0));
        let behind = d
            .iter()
            .find(|d| d.name == "MillisBehindLatest")
            .map(|d| d.unit);
        assert_eq!(behind, Some(Unit::Milliseconds));
    }

    #[test]
    fn a_reading_takes_the_engine_counters_and_the_connectors_lag_gauges() {
        let m = Metrics::default();
        Metrics::add(&m.records_in, 10);
        Metrics::add(&m.records_out, 8);
        Metrics::add(&m.dead_letters, 2);
        m.latency.record(Duration::from_millis(3));
        let lag = IntGaugeVec::new(Opts::new(KAFKA_LAG, "lag"), &["topic", "partition"]).unwrap();
        lag.with_label_values(&["t", "0"]).set(40);
        lag.with_label_values(&["t", "1"]).set(2);
        m.registry.register(Box::new(lag)).unwrap();
        let behind =
            IntGaugeVec::new(Opts::new(KINESIS_BEHIND, "ms"), &["stream", "shard"]).unwrap();
        behind.with_label_values(&["s", "a"]).set(700);
        behind.with_label_values(&["s", "b"]).set(90);
        m.registry.register(Box::new(behind)).unwrap();
        let r = Snapshot::read(&m);
        assert_eq!((r.records_in, r.records_out, r.dead_letters), (10, 8, 2));
        assert_eq!(r.latency.iter().sum::<u64>(), 1);
        assert_eq!(r.kafka_lag, Some(42), "summed over partitions");
        assert_eq!(r.millis_behind, Some(700), "the slowest shard");
        assert_eq!(Snapshot::read(&Metrics::default()).kafka_lag, None);
    }
}
