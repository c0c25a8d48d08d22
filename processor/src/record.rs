//! The record that flows through every stage.

use std::sync::Arc;

use serde_json::Value;

/// Where a record was read, so a dead letter can name it and a checkpoint
/// can commit it. Records a step derives (window results) have offset
/// [`Position::DERIVED`]: they hold no input position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Topic, stream, file path or `generator`.
    pub source: Arc<str>,
    /// Partition or shard index.
    pub partition: i32,
    /// Offset, sequence or line number within the partition.
    pub offset: i64,
}

impl Position {
    /// The offset of records that were not read but derived (window results).
    pub const DERIVED: i64 = -1;
}

/// One record: key, decoded value, headers, event time and provenance.
///
/// The value is decoded once at the source and kept as JSON; steps read it
/// by field path or through CEL.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Broker key, if any.
    pub key: Option<Arc<str>>,
    /// The decoded value.
    pub value: Value,
    /// Broker headers.
    pub headers: Vec<(String, String)>,
    /// Event time, epoch milliseconds.
    pub event_time: i64,
    /// Where it was read.
    pub position: Position,
    /// Re-read to rebuild state after a restore (its offset is below the
    /// committed position): steps take it into their state, but nothing it
    /// causes directly reaches a sink or the dead-letter sink again.
    pub replay: bool,
}

impl Record {
    /// A record with only a value and an event time (tests, window results).
    #[must_use]
    pub fn new(value: Value, event_time: i64) -> Self {
        Self {
            key: None,
            value,
            headers: Vec::new(),
            event_time,
            position: Position::default(),
            replay: false,
        }
    }
}
