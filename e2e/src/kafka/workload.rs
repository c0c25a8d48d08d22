//! Numbered, keyed events and what a "filter + tumbling count per key"
//! pipeline must output for them, computed by brute force.
//!
//! Event `i` is `{"id": i, "user": "u<i mod keys>", "kind": "click"|"view",
//! "ts": start + i·step}`; about one in five is a `view`, which the
//! pipeline's filter drops. The Kafka key is `user`, the window's `keyBy`,
//! so the producer's partitioning is the keyed state's partitioning —
//! unless the workload is keyed by `id`, which a repartition must mend. Event
//! time grows with `i`, so every partition is in order and no event is late.
//!
//! After the events, one `flush` event per partition far in the future
//! moves every partition's watermark past every window, so every window
//! fires; its own window never closes and so never shows in the output.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use super::{Error, Result, TIMEOUT};

/// Prefix of the flush events' users; no real user starts with it.
pub const FLUSH_USER: &str = "flush-";

/// How many records are in flight between two delivery waits.
const BATCH: u64 = 5_000;

/// The shape of a run's input.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Number of events (flush events not included).
    pub events: u64,
    /// Number of distinct users.
    pub keys: u64,
    /// Event time of event 0 (epoch ms).
    pub start_ms: i64,
    /// Event time between consecutive events (ms).
    pub step_ms: i64,
    /// Tumbling window size (ms), as in the pipeline.
    pub window_ms: i64,
    /// Key records by `id` instead of `user`: the producer's partitioning
    /// is then not the window's, which a repartition topic must mend.
    pub keyed_by_id: bool,
}

/// Where a delivered record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Landed {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

impl Workload {
    /// A workload of `events` events over `keys` users, `step_ms` apart, in
    /// tumbling windows of `window_ms`.
    #[must_use]
    pub fn new(events: u64, keys: u64, step_ms: i64, window_ms: i64) -> Self {
        Self {
            events,
            keys,
            start_ms: 1_700_000_000_000,
            step_ms,
            window_ms,
            keyed_by_id: false,
        }
    }

    /// The same workload keyed by `id` (see [`Workload::keyed_by_id`]).
    #[must_use]
    pub fn keyed_by_id(self) -> Self {
        Self {
            keyed_by_id: true,
            ..self
        }
    }

    /// The Kafka key of event `i`.
    #[must_use]
    pub fn kafka_key(&self, i: u64) -> String {
        if self.keyed_by_id {
            format!("id{i}")
        } else {
            self.user(i)
        }
    }

    /// The user of event `i`, also its Kafka key unless keyed by id.
    #[must_use]
    pub fn user(&self, i: u64) -> String {
        format!("u{}", i % self.keys)
    }

    /// Whether event `i` passes the filter (`kind == 'click'`).
    #[must_use]
    pub fn is_click(i: u64) -> bool {
        // splitmix64: spread the views over users and windows.
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        !(z ^ (z >> 31)).is_multiple_of(5)
    }

    /// The event time of event `i`.
    #[must_use]
    pub fn ts(&self, i: u64) -> i64 {
        self.start_ms + i64::try_from(i).unwrap_or(i64::MAX) * self.step_ms
    }

    /// The JSON value of event `i`.
    #[must_use]
    pub fn value(&self, i: u64) -> String {
        let kind = if Self::is_click(i) { "click" } else { "view" };
        json!({"id": i, "user": self.user(i), "kind": kind, "ts": self.ts(i)}).to_string()
    }

    /// The flush event for `partition`: a click one year after the last
    /// event, so every real window closes.
    #[must_use]
    pub fn flush_value(&self, partition: i32) -> String {
        let far = self.ts(self.events) + 365 * 24 * 3_600_000;
        json!({"id": -1, "user": format!("{FLUSH_USER}{partition}"), "kind": "click", "ts": far})
            .to_string()
    }

    /// The expected output: clicks per (user, windowStart), for every
    /// window holding at least one click.
    #[must_use]
    pub fn expected(&self) -> BTreeMap<(String, i64), u64> {
        let mut out = BTreeMap::new();
        for i in (0..self.events).filter(|i| Self::is_click(*i)) {
            let start = self.ts(i).div_euclid(self.window_ms) * self.window_ms;
            *out.entry((self.user(i), start)).or_insert(0) += 1;
        }
        out
    }

    /// Produces events `from..to` to `topic`, keyed by user, at most `rate`
    /// events per second (0: as fast as the broker takes them), and waits
    /// for every delivery.
    ///
    /// # Errors
    ///
    /// When a record is not delivered.
    pub async fn produce(
        &self,
        producer: &FutureProducer,
        topic: &str,
        range: std::ops::Range<u64>,
        rate: f64,
    ) -> Result<()> {
        let started = Instant::now();
        let mut i = range.start;
        while i < range.end {
            let end = (i + BATCH.min(rate_batch(rate))).min(range.end);
            let sends = (i..end).map(|n| {
                let (key, value) = (self.kafka_key(n), self.value(n));
                async move { send(producer, topic, None, &key, value.as_bytes()).await }
            });
            try_join_all(sends).await?;
            i = end;
            pace(started, i - range.start, rate).await;
        }
        Ok(())
    }

    /// Produces one flush event to every partition of `topic`.
    ///
    /// # Errors
    ///
    /// When a record is not delivered.
    pub async fn produce_flush(
        &self,
        producer: &FutureProducer,
        topic: &str,
        partitions: i32,
    ) -> Result<()> {
        for p in 0..partitions {
            let key = format!("{FLUSH_USER}{p}");
            send(
                producer,
                topic,
                Some(p),
                &key,
                self.flush_value(p).as_bytes(),
            )
            .await?;
        }
        Ok(())
    }
}

/// Records per batch at `rate`: ~20 batches a second when paced.
fn rate_batch(rate: f64) -> u64 {
    if rate > 0.0 {
        // Truncation is fine: a batch size, at least 1.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = (rate / 20.0) as u64;
        n.max(1)
    } else {
        BATCH
    }
}

/// Sleeps until `sent` records at `rate` per second are due (pacing a
/// producer; not a wait for a condition).
pub async fn pace(started: Instant, sent: u64, rate: f64) {
    if rate > 0.0 {
        #[allow(clippy::cast_precision_loss)]
        let due = started + Duration::from_secs_f64(sent as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Sends one record (to `partition`, or by the key's hash) and waits for
/// its delivery.
///
/// # Errors
///
/// When the record is not delivered.
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    value: &[u8],
) -> Result<Landed> {
    let mut record = FutureRecord::to(topic).key(key).payload(value);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    let delivery = producer
        .send(record, TIMEOUT)
        .await
        .map_err(|(source, _)| Error::Produce {
            topic: topic.to_owned(),
            source,
        })?;
    Ok(Landed {
        partition: delivery.partition,
        offset: delivery.offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counts_only_clicks_per_user_and_window() {
        let w = Workload::new(1_000, 3, 10, 1_000);
        let expected = w.expected();
        let clicks = (0..1_000).filter(|i| Workload::is_click(*i)).count() as u64;
        assert_eq!(expected.values().sum::<u64>(), clicks);
        assert!(clicks > 700 && clicks < 900, "{clicks}");
        // 1000 events × 10 ms = 10 s = 10 windows, each with every user.
        assert_eq!(expected.len(), 30);
        assert!(expected.keys().all(|(_, s)| s % 1_000 == 0));
    }

    #[test]
    fn flush_events_are_far_after_every_window() {
        let w = Workload::new(100, 2, 10, 1_000);
        let v: serde_json::Value = serde_json::from_str(&w.flush_value(3)).unwrap();
        assert!(v["ts"].as_i64().unwrap() > w.ts(100) + 1_000);
        assert_eq!(v["user"], "flush-3");
    }
}
