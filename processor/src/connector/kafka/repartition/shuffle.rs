//! Writing a stage's output into the next stage's topic: records keyed
//! by a hash of the step's key, and watermarks to every partition.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use serde_json::Value;

use crate::expr::Expr;
use crate::record::Record;
use crate::sink::{DeadLetter, SinkError, key_string};

use super::super::sink::{SharedProducer, flush_checked, send_waiting};
use super::{KEY_HEADER, Mark, SEQ_HEADER, SIDE_HEADER, WATERMARK_HEADER};

/// The partition of a key among `partitions`: FNV-1a, stable across
/// builds and hosts (every replica must agree).
#[must_use]
pub fn partition_of(key: &str, partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // `partitions` is positive, so the remainder fits an i32.
    i32::try_from(h % partitions.max(1).unsigned_abs()).unwrap_or(0)
}

/// Writes a stage's output into the next stage's topic.
pub struct Shuffle {
    topic: String,
    partitions: i32,
    key: Vec<Expr>,
    producer: SharedProducer,
    max_bytes: usize,
    buf: Vec<u8>,
    /// Delivery failures already reported.
    failures_seen: u64,
    /// It writes a join's `with` side.
    other: bool,
}

impl Shuffle {
    /// A writer into `topic` (of `partitions`), keyed by `key`.
    #[must_use]
    pub fn new(
        topic: String,
        partitions: i32,
        key: Vec<Expr>,
        producer: SharedProducer,
        max_bytes: usize,
    ) -> Self {
        Self {
            topic,
            partitions,
            key,
            producer,
            max_bytes,
            buf: Vec::with_capacity(1024),
            failures_seen: 0,
            other: false,
        }
    }

    /// The same writer for a join's `with` side: its records are marked so
    /// the join takes them as its second input.
    #[must_use]
    pub fn for_other_side(self) -> Self {
        Self {
            other: true,
            ..self
        }
    }

    fn key_of(&self, value: &Value) -> Result<String, String> {
        let mut out = String::new();
        for (i, e) in self.key.iter().enumerate() {
            let v = e.eval(value).map_err(|e| format!("repartition key: {e}"))?;
            if i > 0 {
                out.push('\u{1f}');
            }
            out.push_str(&key_string(&v).unwrap_or_default());
        }
        Ok(out)
    }

    /// Writes `records`; those whose key fails or that are too large come
    /// back as dead letters (`step` names the keyed step). `source` is the
    /// sending task's `(id, topic, partition)` when it reads a source topic:
    /// records read there carry their place in it (see `SEQ_HEADER`).
    ///
    /// # Errors
    /// When the producer refuses a record.
    pub fn write(
        &mut self,
        records: &[Record],
        step: &str,
        source: Option<(&str, &str, i32)>,
    ) -> Result<Vec<DeadLetter>, SinkError> {
        let producer = self.producer.get();
        let mut dead = Vec::new();
        let mut last = (i64::MIN, 0_u32);
        for r in records.iter().filter(|r| !r.replay) {
            let key = match self.key_of(&r.value) {
                Ok(k) => k,
                Err(e) => {
                    dead.push(DeadLetter::new(step, e, r.clone()));
                    continue;
                }
            };
            self.buf.clear();
            serde_json::to_writer(&mut self.buf, &r.value).map_err(|e| self.err(e))?;
            if self.buf.len() > self.max_bytes {
                let msg = format!(
                    "record of {} bytes exceeds the limit of {} bytes",
                    self.buf.len(),
                    self.max_bytes
                );
                dead.push(DeadLetter::new(step, msg, r.clone()));
                continue;
            }
            let mut h = OwnedHeaders::new_with_capacity(r.headers.len() + 1);
            for (k, v) in &r.headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            if let Some(k) = &r.key {
                h = h.insert(Header {
                    key: KEY_HEADER,
                    value: Some(k.as_bytes()),
                });
            }
            if self.other {
                h = h.insert(Header {
                    key: SIDE_HEADER,
                    value: Some(b"right"),
                });
            }
            if let Some((id, topic, partition)) = source
                && *r.position.source == *topic
                && r.position.partition == partition
            {
                let offset = r.position.offset;
                last = if last.0 == offset {
                    (offset, last.1 + 1)
                } else {
                    (offset, 0)
                };
                let seq = format!("{id}@{offset}.{}", last.1);
                h = h.insert(Header {
                    key: SEQ_HEADER,
                    value: Some(seq.as_bytes()),
                });
            }
            let partition = partition_of(&key, self.partitions);
            let rec = BaseRecord::to(&self.topic)
                .partition(partition)
                .key(key.as_str())
                .payload(self.buf.as_slice())
                .timestamp(r.event_time)
                .headers(h);
            send_waiting(&producer, rec, &self.topic, &self.topic)?;
        }
        Ok(dead)
    }

    /// Tells every partition of the next stage that `upstream` reached `mark`.
    ///
    /// # Errors
    /// When the producer refuses a record.
    pub fn broadcast(&self, upstream: &str, mark: Mark) -> Result<(), SinkError> {
        let producer = self.producer.get();
        let value = match mark {
            Mark::At(ms) => format!("{upstream}={ms}"),
            Mark::Idle => format!("{upstream}=idle"),
        };
        for partition in 0..self.partitions {
            let h = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: WATERMARK_HEADER,
                value: Some(value.as_bytes()),
            });
            let empty: &[u8] = &[];
            let rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.topic)
                .partition(partition)
                .key(upstream)
                .payload(empty)
                .headers(h);
            send_waiting(&producer, rec, &self.topic, &self.topic)?;
        }
        Ok(())
    }

    /// Waits for every write to be acknowledged (`atLeastOnce`; under
    /// `exactlyOnce` the transaction's commit does it).
    ///
    /// # Errors
    /// When a delivery failed.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        flush_checked(&self.producer.get(), &mut self.failures_seen).map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::Broker {
            name: self.topic.clone(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("user-1", 6), partition_of("user-1", 6));
        let mut seen = [0_u32; 6];
        for i in 0..6_000 {
            let p = partition_of(&format!("user-{i}"), 6);
            seen[usize::try_from(p).expect("non-negative")] += 1;
        }
        assert!(seen.iter().all(|&n| (700..1300).contains(&n)), "{seen:?}");
        assert_eq!(partition_of("", 1), 0);
    }
}
