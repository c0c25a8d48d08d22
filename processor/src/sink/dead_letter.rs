//! Records that could not be processed, with their provenance.

use serde_json::{Value, json};

use crate::record::Record;

/// A record (or raw input) that failed, where it came from, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The step that refused it (`decode`, `eventTime`, `validate-1`, …).
    pub step: String,
    /// What went wrong.
    pub error: String,
    /// The record; for inputs that could not be decoded, `{"raw": "<text>"}`
    /// (JSON, text) or `{"rawBase64": "<the payload>"}` (Avro).
    pub record: Record,
}

impl DeadLetter {
    /// A dead letter for `record` refused by `step`.
    pub fn new(step: impl Into<String>, error: impl Into<String>, record: Record) -> Self {
        Self {
            step: step.into(),
            error: error.into(),
            record,
        }
    }

    /// The provenance broker sinks attach as headers or fields:
    /// `tributary.source.{topic,partition,offset}`, `tributary.step`,
    /// `tributary.error`.
    #[must_use]
    pub fn provenance(&self) -> [(&'static str, String); 5] {
        let pos = &self.record.position;
        [
            ("tributary.source.topic", pos.source.to_string()),
            ("tributary.source.partition", pos.partition.to_string()),
            ("tributary.source.offset", pos.offset.to_string()),
            ("tributary.step", self.step.clone()),
            ("tributary.error", self.error.clone()),
        ]
    }

    /// The JSON written to the dead-letter sink. Broker sinks carry the same
    /// provenance as headers (`tributary.source.*`, `tributary.step`,
    /// `tributary.error`).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let pos = &self.record.position;
        let mut v = json!({
            "step": self.step,
            "error": self.error,
            "source": {"name": &*pos.source, "partition": pos.partition, "offset": pos.offset},
            "eventTime": self.record.event_time,
            "record": self.record.value,
        });
        // Broker coordinates the position cannot hold (a Kinesis shard id
        // and sequence number) travel as the record's headers.
        if !self.record.headers.is_empty() {
            v["headers"] = self
                .record
                .headers
                .iter()
                .map(|(k, h)| (k.clone(), Value::String(h.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        v
    }

    /// [`to_json`](Self::to_json) serialized into `buf` (cleared first);
    /// when that exceeds `max` bytes the record itself is replaced by a
    /// note, so the provenance still reaches a size-limited broker.
    ///
    /// # Errors
    /// When the JSON cannot be written.
    pub fn write_within(&self, buf: &mut Vec<u8>, max: usize) -> serde_json::Result<()> {
        buf.clear();
        let mut json = self.to_json();
        serde_json::to_writer(&mut *buf, &json)?;
        if buf.len() > max {
            json["record"] =
                Value::String(format!("<{} bytes, over the limit of {max}>", buf.len()));
            buf.clear();
            serde_json::to_writer(&mut *buf, &json)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_dead_letter_keeps_its_provenance_and_drops_the_record() {
        let big = Record::new(json!({"blob": "x".repeat(1000)}), 5);
        let d = DeadLetter::new("validate-1", "too big", big);
        let mut buf = Vec::new();
        d.write_within(&mut buf, 100_000).unwrap();
        let whole: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(whole["record"]["blob"].as_str().map(str::len), Some(1000));
        d.write_within(&mut buf, 200).unwrap();
        let slim: Value = serde_json::from_slice(&buf).unwrap();
        assert!(
            slim["record"]
                .as_str()
                .unwrap()
                .contains("over the limit of 200")
        );
        assert_eq!(slim["step"], "validate-1");
        assert_eq!(
            d.provenance()[3],
            ("tributary.step", "validate-1".to_owned())
        );
    }
}
