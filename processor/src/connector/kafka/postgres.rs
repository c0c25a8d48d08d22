//! `exactlyOnce` into PostgreSQL: the checkpoint is a database transaction
//! that writes the rows buffered since the last one and each partition's
//! position (`tributary_offsets`), and a restore reads the positions from
//! there instead of the consumer group. The group's offsets are still
//! committed afterwards, best effort, so lag metrics and the autoscaler
//! see progress; they are never read back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::sink::DeadLetter;
use crate::sink::postgres::offsets::{self, Position};
use crate::sink::postgres::{DbError, Positions, SharedWriter, lock};

use super::checkpoint::{Meta, Restore};

/// Pause between attempts to read positions while the server is down.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The database side of `exactlyOnce` checkpoints.
pub struct PgCommit {
    writer: SharedWriter,
    pipeline: String,
    /// The stored offset per partition as this replica last read or wrote
    /// it (compare-and-set fencing, see `offsets`).
    expected: HashMap<(String, i32), Option<i64>>,
}

impl PgCommit {
    /// Checkpoints of `pipeline` (the consumer group) through `writer`;
    /// creates the offsets table when missing.
    ///
    /// # Errors
    /// When the table cannot be created.
    pub fn new(writer: SharedWriter, pipeline: String) -> Result<Self, String> {
        offsets::ensure_table(lock(&writer).conn())?;
        Ok(Self {
            writer,
            pipeline,
            expected: HashMap::new(),
        })
    }

    /// Restore plans for `partitions` from the stored positions, retrying
    /// while the server is unreachable (until `stop`).
    ///
    /// # Errors
    /// The last error once stopped.
    pub fn plans(
        &mut self,
        partitions: &[(String, i32)],
        stop: &AtomicBool,
    ) -> Result<Vec<Restore>, String> {
        let stored = loop {
            match offsets::load(lock(&self.writer).conn(), &self.pipeline, partitions) {
                Ok(s) => break s,
                Err(e) if stop.load(Ordering::Relaxed) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read positions from postgres yet; retrying");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        };
        Ok(partitions
            .iter()
            .zip(stored)
            .map(|(tp, s)| {
                self.expected
                    .insert(tp.clone(), s.as_ref().map(|(o, _)| *o));
                match s {
                    Some((offset, meta)) => Restore::plan(Some(offset), &meta),
                    None => Restore::FRESH,
                }
            })
            .collect())
    }

    /// Commits the buffered rows with `positions` (topic, partition, next
    /// offset, metadata); returns rows the server refused, as dead letters.
    ///
    /// # Errors
    /// When the transaction fails (the rows stay buffered: [`discard`](Self::discard)
    /// them before rewinding).
    pub fn commit(
        &mut self,
        positions: &[(String, i32, i64, Meta)],
    ) -> Result<Vec<DeadLetter>, DbError> {
        let rows: Vec<Position> = positions
            .iter()
            .map(|(topic, partition, next, meta)| Position {
                topic: topic.clone(),
                partition: *partition,
                next: *next,
                metadata: meta.encode(),
                expected: self
                    .expected
                    .get(&(topic.clone(), *partition))
                    .copied()
                    .flatten(),
            })
            .collect();
        let refused = lock(&self.writer).commit(Some(Positions::Offsets(&self.pipeline, &rows)))?;
        for p in rows {
            self.expected.insert((p.topic, p.partition), Some(p.next));
        }
        Ok(refused)
    }

    /// Drops the rows buffered since the last commit.
    pub fn discard(&self) {
        lock(&self.writer).discard();
    }
}
