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
    /// The record; for inputs that could not be decoded, `{"raw": "<text>"}`.
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
        json!({
            "step": self.step,
            "error": self.error,
            "source": {"name": &*pos.source, "partition": pos.partition, "offset": pos.offset},
            "eventTime": self.record.event_time,
            "record": self.record.value,
        })
    }
}
