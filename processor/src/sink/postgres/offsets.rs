//! Source positions stored next to the rows (`exactlyOnce` with a Kafka
//! source): table `tributary_offsets`, one row per (pipeline, topic,
//! partition), written in the transaction that writes the rows.
//!
//! # Guarantees
//! A position is updated only from the value its writer last read or
//! wrote (compare-and-set): a replica that lost its partition in a
//! rebalance, or a transaction whose commit acknowledgement was lost,
//! finds the row changed and rolls back instead of writing twice.

use tokio_postgres::Transaction;

use super::conn::Conn;

/// The table, created on first use.
pub const TABLE: &str = "tributary_offsets";

const CREATE: &str = "CREATE TABLE IF NOT EXISTS tributary_offsets (\
    pipeline text NOT NULL, topic text NOT NULL, partition integer NOT NULL, \
    next_offset bigint NOT NULL, metadata text NOT NULL DEFAULT '', \
    updated_at timestamptz NOT NULL DEFAULT now(), \
    PRIMARY KEY (pipeline, topic, partition))";

/// One partition's position to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to process.
    pub next: i64,
    /// Restore metadata (low-water offset and watermark).
    pub metadata: String,
    /// The stored offset this writer last read or wrote (`None`: no row).
    pub expected: Option<i64>,
}

/// Creates the offsets table if it is missing.
///
/// # Errors
/// When the server refuses.
pub fn ensure_table(conn: &mut Conn) -> Result<(), String> {
    match conn.run(async |c| c.batch_execute(CREATE).await) {
        Ok(()) => Ok(()),
        // Two replicas creating it at once: one wins, and the other's
        // `IF NOT EXISTS` check can still lose the race, as a unique
        // violation on the catalog (23505) or, once the winner has
        // committed, as duplicate_table (42P07). Either way it exists now.
        Err(e) if e.message.contains("23505") || e.message.contains("42P07") => Ok(()),
        Err(e) => Err(format!("creating {TABLE}: {e}")),
    }
}

/// The stored positions of `pipeline` for `partitions`, in order: the
/// next offset and its metadata, `None` where nothing is stored.
///
/// # Errors
/// When the server is unreachable or refuses.
pub fn load(
    conn: &mut Conn,
    pipeline: &str,
    partitions: &[(String, i32)],
) -> Result<Vec<Option<(i64, String)>>, String> {
    conn.run(async |c| {
        let stmt = c
            .prepare("SELECT next_offset, metadata FROM tributary_offsets WHERE pipeline = $1 AND topic = $2 AND partition = $3")
            .await?;
        let mut out = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let row = c.query_opt(&stmt, &[&pipeline, topic, partition]).await?;
            out.push(row.map(|r| (r.get(0), r.get(1))));
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
    positions: &[Position],
) -> Result<Option<String>, tokio_postgres::Error> {
    for p in positions {
        let n = match p.expected {
            None => {
                tx.execute(
                    "INSERT INTO tributary_offsets (pipeline, topic, partition, next_offset, metadata) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[&pipeline, &p.topic, &p.partition, &p.next, &p.metadata],
                )
                .await?
            }
            Some(expected) => {
                tx.execute(
                    "UPDATE tributary_offsets SET next_offset = $4, metadata = $5, updated_at = now() \
                     WHERE pipeline = $1 AND topic = $2 AND partition = $3 AND next_offset = $6",
                    &[&pipeline, &p.topic, &p.partition, &p.next, &p.metadata, &expected],
                )
                .await?
            }
        };
        if n != 1 {
            return Ok(Some(format!(
                "the stored position of {}[{}] is no longer {:?}: another replica or an earlier commit wrote it; rewinding to it",
                p.topic, p.partition, p.expected
            )));
        }
    }
    Ok(None)
}
