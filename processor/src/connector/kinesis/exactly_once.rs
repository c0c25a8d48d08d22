//! `exactlyOnce` from Kinesis into PostgreSQL: an acknowledgement commits
//! the rows buffered since the last one together with each shard's
//! position (`tributary_shard_positions`) in one database transaction, and
//! a shard is read from the position stored there, not from its lease.
//!
//! Leases still decide who reads a shard, but two replicas may read one
//! shard for a moment while a lease moves. The database decides who wins:
//! positions are compare-and-set (see [`crate::sink::postgres::shards`]),
//! so the loser's transaction rolls back; it drops the rows of that shard
//! and re-reads the shard from the position the winner stored. Rows read
//! from a shard whose lease was lost before the commit are dropped too
//! ([`Settled::voided`]). The lease checkpoint is still written after each
//! commit, best effort: it feeds lag, children of a resharded shard, and
//! nothing else.
//!
//! Only stateless steps are allowed (validation refuses windows and other
//! state): a replica's state mixes shards, so a shard that moves could
//! not take its share of the state along.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tributary_crds::{Guarantee, StreamPipelineSpec};

use crate::sink::postgres::shards::{self, ShardPosition};
use crate::sink::postgres::{self, Positions, SharedWriter, lock};
use crate::source::Acker;

use super::ledger::{Checkpointer, Ledger, Settled};
use super::source::ExactlyOnce;

/// How often one acknowledgement retries after a fenced shard was dropped.
const ATTEMPTS: usize = 4;

/// Connects the writer of an `exactlyOnce` run into Postgres; `None` for
/// any other run. `pipeline` names the run's positions.
///
/// # Errors
/// When the connection string cannot be read or the server stays away.
pub fn open(spec: &StreamPipelineSpec, pipeline: String) -> Result<Option<ExactlyOnce>, String> {
    if spec.guarantee != Guarantee::ExactlyOnce {
        return Ok(None);
    }
    let Some((writer, url)) = postgres::shared_writer(spec)? else {
        return Ok(None);
    };
    tracing::info!(%pipeline, "exactlyOnce: rows and shard positions commit in one postgres transaction");
    Ok(Some(ExactlyOnce {
        writer,
        url,
        pipeline,
    }))
}

/// The [`Acker`] of a Kinesis source under `exactlyOnce` into Postgres.
pub struct PgCheckpointer {
    ledger: Arc<Mutex<Ledger>>,
    writer: SharedWriter,
    pipeline: String,
    stream: String,
    /// Positions processed but not committed yet (a failed commit keeps
    /// them for the next acknowledgement).
    unwritten: BTreeMap<Arc<str>, String>,
    /// The lease side: checkpoints after each commit, releases on drop.
    leases: Checkpointer,
}

impl PgCheckpointer {
    /// Commits through `writer` as `pipeline`; `leases` writes the lease
    /// checkpoints.
    ///
    /// # Errors
    /// When the positions table cannot be created.
    pub fn new(
        ledger: Arc<Mutex<Ledger>>,
        writer: SharedWriter,
        pipeline: String,
        stream: String,
        leases: Checkpointer,
    ) -> Result<Self, String> {
        shards::ensure_table(lock(&writer).conn())?;
        Ok(Self {
            ledger,
            writer,
            pipeline,
            stream,
            unwritten: BTreeMap::new(),
            leases,
        })
    }

    fn positions(&self, ledger: &Ledger) -> Vec<ShardPosition> {
        self.unwritten
            .iter()
            .map(|(shard, seq)| ShardPosition {
                stream: self.stream.clone(),
                shard: shard.to_string(),
                sequence: seq.clone(),
                expected: ledger.stored(shard),
            })
            .collect()
    }

    /// One commit attempt: `Ok(true)` when committed, `Ok(false)` when a
    /// fenced shard was dropped and another attempt is due.
    fn attempt(&mut self) -> Result<bool, String> {
        let positions = match self.ledger.lock() {
            Ok(l) => self.positions(&l),
            Err(_) => return Err("the ledger is poisoned".into()),
        };
        let mut w = lock(&self.writer);
        let refused = match w.commit(Some(Positions::Shards(&self.pipeline, &positions))) {
            Ok(refused) => refused,
            Err(e) if e.fenced => {
                tracing::info!(reason = %e.message, "a shard position moved under this replica; rolling back");
                let names: Vec<String> = positions.iter().map(|p| p.shard.clone()).collect();
                let stored = shards::load_many(w.conn(), &self.pipeline, &self.stream, &names)?;
                let landed = positions
                    .iter()
                    .zip(&stored)
                    .all(|(p, s)| s.as_deref() == Some(p.sequence.as_str()));
                if landed {
                    // The earlier attempt committed; only its answer was lost.
                    w.discard();
                } else {
                    drop(w);
                    self.drop_moved(&positions, &stored);
                    return Ok(false);
                }
                Vec::new()
            }
            Err(e) => return Err(e.message),
        };
        w.park(refused);
        drop(w);
        if let Ok(mut l) = self.ledger.lock() {
            for p in &positions {
                l.set_stored(&p.shard, Some(p.sequence.clone()));
            }
        }
        self.leases.write(std::mem::take(&mut self.unwritten));
        Ok(true)
    }

    /// Drops every shard another writer moved: its rows, its position, and
    /// asks the source to read it again from what is stored.
    fn drop_moved(&mut self, positions: &[ShardPosition], stored: &[Option<String>]) {
        let mut moved = Vec::new();
        if let Ok(mut l) = self.ledger.lock() {
            for (p, s) in positions.iter().zip(stored) {
                // Moved by someone else (even to this commit's own target:
                // its rows are then written already).
                if *s != p.expected {
                    tracing::warn!(shard = %p.shard, stored = ?s, "another replica committed this shard; re-reading it from there");
                    l.reopen(&p.shard);
                    l.set_stored(&p.shard, s.clone());
                    self.unwritten.remove(p.shard.as_str());
                    moved.push(super::shards::index(&p.shard));
                }
            }
        }
        lock(&self.writer).retain_inputs(|pos| !moved.contains(&pos.partition));
    }
}

impl Acker for PgCheckpointer {
    fn ack_below(&mut self, below: i64) {
        let Settled { moves, voided } = match self.ledger.lock() {
            Ok(mut l) => l.settle(below),
            Err(_) => return,
        };
        self.unwritten.extend(moves);
        if !voided.is_empty() {
            lock(&self.writer).retain_inputs(|pos| !voided.iter().any(|r| r.contains(&pos.offset)));
        }
        for _ in 0..ATTEMPTS {
            match self.attempt() {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    // The rows and positions stay buffered for the next
                    // acknowledgement; nothing is lost or written twice.
                    tracing::error!(error = %e, "exactlyOnce commit into postgres failed; retrying at the next checkpoint");
                    return;
                }
            }
        }
    }
}
