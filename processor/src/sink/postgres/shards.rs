//! Shard positions stored next to the rows (`exactlyOnce` with a Kinesis
//! source): table `tributary_shard_positions`, one row per (pipeline,
//! stream, shard) holding the last sequence number whose output is
//! committed, written in the transaction that writes the rows.
//!
//! Kinesis sequence numbers are decimal strings of up to 128 bits, so the
//! Kafka table (`bigint` offsets, see [`super::offsets`]) cannot hold them.
//!
//! # Guarantees
//! Compare-and-set, as for Kafka offsets: a position is updated only from
//! the value its writer last read or wrote, so a replica that lost a shard
//! to another, or whose commit acknowledgement was lost, rolls back
//! instead of writing twice.

use tokio_postgres::{Client, Transaction};

use super::conn::Conn;

/// The table, created on first use.
pub const TABLE: &str = "tributary_shard_positions";

const CREATE: &str = "CREATE TABLE IF NOT EXISTS tributary_shard_positions (\
    pipeline text NOT NULL, stream text NOT NULL, shard text NOT NULL, \
    sequence text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), \
    PRIMARY KEY (pipeline, stream, shard))";

const SELECT: &str = "SELECT sequence FROM tributary_shard_positions \
    WHERE pipeline = $1 AND stream = $2 AND shard = $3";

/// One shard's position to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPosition {
    /// Stream name.
    pub stream: String,
    /// Shard id.
    pub shard: String,
    /// The last sequence number reflected in the rows (or `SHARD_END`).
    pub sequence: String,
    /// The stored value this writer last read or wrote (`None`: no row).
    pub expected: Option<String>,
}

/// Creates the positions table if it is missing.
///
/// # Errors
/// When the server refuses.
pub fn ensure_table(conn: &mut Conn) -> Result<(), String> {
    match conn.run(async |c| c.batch_execute(CREATE).await) {
        Ok(()) => Ok(()),
        // Replicas racing on `IF NOT EXISTS` (see `offsets::ensure_table`).
        Err(e) if e.message.contains("23505") || e.message.contains("42P07") => Ok(()),
        Err(e) => Err(format!("creating {TABLE}: {e}")),
    }
}

/// The stored position of one shard, `None` when nothing is stored.
///
/// # Errors
/// When the server is unreachable or refuses.
pub async fn load(
    client: &Client,
    pipeline: &str,
    stream: &str,
    shard: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(SELECT, &[&pipeline, &stream, &shard])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The stored positions of `shards` of `stream`, in order.
///
/// # Errors
/// When the server is unreachable or refuses.
pub fn load_many(
    conn: &mut Conn,
    pipeline: &str,
    stream: &str,
    shards: &[String],
) -> Result<Vec<Option<String>>, String> {
    conn.run(async |c| {
        let mut out = Vec::with_capacity(shards.len());
        for s in shards {
            out.push(load(c, pipeline, stream, s).await?);
        }
        Ok(out)
    })
    .map_err(|e| e.message)
}

/// Stores `positions` inside `tx`; `Some(reason)` when one was changed by
/// someone else (the caller rolls back).
///
/// # Errors
/// When a statement fails.
pub async fn store(
    tx: &Transaction<'_>,
    pipeline: &str,
    positions: &[ShardPosition],
) -> Result<Option<String>, tokio_postgres::Error> {
    for p in positions {
        let n = match &p.expected {
            None => {
                tx.execute(
                    "INSERT INTO tributary_shard_positions (pipeline, stream, shard, sequence) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&pipeline, &p.stream, &p.shard, &p.sequence],
                )
                .await?
            }
            Some(expected) => {
                tx.execute(
                    "UPDATE tributary_shard_positions SET sequence = $4, updated_at = now() \
                     WHERE pipeline = $1 AND stream = $2 AND shard = $3 AND sequence = $5",
                    &[&pipeline, &p.stream, &p.shard, &p.sequence, expected],
                )
                .await?
            }
        };
        if n != 1 {
            return Ok(Some(format!(
                "the stored position of {}/{} is no longer {:?}: another replica or an earlier commit wrote it",
                p.stream, p.shard, p.expected
            )));
        }
    }
    Ok(None)
}
