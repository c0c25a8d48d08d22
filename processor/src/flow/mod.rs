//! Flow control between the source stage and the engine: a bounded queue
//! with the `backpressure` policies, and the messages that cross it.

mod queue;

pub use queue::{Queue, QueueStats};

use crate::record::Record;
use crate::sink::DeadLetter;

/// What a source hands to the engine.
#[derive(Debug)]
pub enum Message {
    /// Records read from one partition, in read order, plus the inputs that
    /// could not be decoded (they go to the dead-letter sink).
    Batch(Batch),
    /// The partition has no more records (bounded sources).
    End {
        /// The partition that ended.
        partition: i32,
    },
    /// The source failed and cannot go on.
    Failed(String),
}

/// Records of one partition.
#[derive(Debug, Default)]
pub struct Batch {
    /// Source partition.
    pub partition: i32,
    /// Decoded records.
    pub records: Vec<Record>,
    /// Inputs that failed to decode or lacked an event time.
    pub dead: Vec<DeadLetter>,
    /// When the source started the batch (for the processing-latency histogram).
    pub created: Option<std::time::Instant>,
}

impl Message {
    /// Records the message holds, for the queue's capacity accounting.
    #[must_use]
    pub fn weight(&self) -> usize {
        match self {
            Self::Batch(b) => b.records.len() + b.dead.len(),
            Self::End { .. } | Self::Failed(_) => 0,
        }
    }
}
