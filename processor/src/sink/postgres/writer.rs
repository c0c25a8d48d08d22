//! Buffered rows for one database and the transaction that writes them
//! (and, under `exactlyOnce`, the source positions with them).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;

use super::conn::{Conn, DbError, is_connection_error};
use super::offsets::{self, Position};
use super::shards::{self, ShardPosition};
use super::table::{Row, Table};
use crate::record::Record;
use crate::sink::DeadLetter;

/// Most bind parameters in one statement (the protocol's limit is 65535).
const MAX_PARAMS: usize = 30_000;
/// Most rows in one statement.
const MAX_ROWS: usize = 1_000;
/// How long a flush retries while the server is unreachable before it
/// reports the failure (the engine then rewinds or stops).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Source positions a commit stores with the rows (`exactlyOnce`).
#[derive(Clone, Copy, Debug)]
pub enum Positions<'a> {
    /// Kafka partitions' offsets of a consumer group.
    Offsets(&'a str, &'a [Position]),
    /// Kinesis shards' sequence numbers of a pipeline.
    Shards(&'a str, &'a [ShardPosition]),
}

impl Positions<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Self::Offsets(_, p) => p.is_empty(),
            Self::Shards(_, p) => p.is_empty(),
        }
    }
}

/// A row waiting for the next commit, with what it came from.
struct Pending {
    table: usize,
    row: Row,
    /// The record, for a dead letter if the server refuses the row.
    record: Option<Record>,
}

/// The tables of one connection and their buffered rows.
pub struct Writer {
    conn: Conn,
    tables: Vec<(String, Table)>,
    pending: Vec<Pending>,
    /// Rows refused at a commit the engine did not make itself (a source's
    /// acknowledgement): dead letters for the next write of a sink.
    parked: Vec<DeadLetter>,
}

impl Writer {
    /// A writer over an open connection.
    #[must_use]
    pub fn new(conn: Conn) -> Self {
        Self {
            conn,
            tables: Vec::new(),
            pending: Vec::new(),
            parked: Vec::new(),
        }
    }

    /// The connection (offsets restore, catalog reads).
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Adds the table of sink `sink`; returns its index.
    pub fn add_table(&mut self, sink: &str, table: Table) -> usize {
        self.tables.push((sink.to_owned(), table));
        self.tables.len() - 1
    }

    /// Buffers `value` for `table`.
    ///
    /// # Errors
    /// Why the value cannot become a row (the caller dead-letters it).
    pub fn add(
        &mut self,
        table: usize,
        value: &serde_json::Value,
        record: Option<&Record>,
    ) -> Result<(), String> {
        let row = self.tables[table].1.row(value)?;
        self.pending.push(Pending {
            table,
            row,
            record: record.cloned(),
        });
        Ok(())
    }

    /// Drops the buffered rows (their input will be read again).
    pub fn discard(&mut self) {
        self.pending.clear();
    }

    /// Keeps dead letters for the next [`take_parked`](Self::take_parked).
    pub fn park(&mut self, letters: Vec<DeadLetter>) {
        self.parked.extend(letters);
    }

    /// The parked dead letters.
    pub fn take_parked(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.parked)
    }

    /// Keeps only the rows whose record's input offset passes `keep`
    /// (rows without a record stay): drops what came from input a replica
    /// no longer owns.
    pub fn retain_inputs(&mut self, keep: impl Fn(&crate::record::Position) -> bool) {
        self.pending
            .retain(|p| p.record.as_ref().is_none_or(|r| keep(&r.position)));
    }

    /// Rows buffered.
    #[must_use]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Writes every buffered row — and `positions` when given — in one
    /// transaction, retrying on a new connection for up to
    /// [`PATIENCE`] while the server is unreachable. Rows the server
    /// refuses are skipped (savepoints) and returned as dead letters.
    ///
    /// # Errors
    /// A data-independent failure (a fenced position, a missing table), or
    /// the server still unreachable after [`PATIENCE`]. The rows stay
    /// buffered; [`discard`](Self::discard) them when the input is re-read.
    pub fn commit(&mut self, positions: Option<Positions<'_>>) -> Result<Vec<DeadLetter>, DbError> {
        if self.pending.is_empty() && positions.is_none_or(|p| p.is_empty()) {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        loop {
            match self.try_commit(positions) {
                Ok(rejected) => {
                    self.pending.clear();
                    return Ok(rejected);
                }
                Err(e) if e.retryable && started.elapsed() < PATIENCE => {
                    tracing::warn!(error = %e, rows = self.pending.len(), "postgres commit failed; retrying on a new connection");
                    std::thread::sleep(Duration::from_secs(1));
                    let _ = self.conn.reconnect_within(Duration::ZERO);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_commit(&mut self, positions: Option<Positions<'_>>) -> Result<Vec<DeadLetter>, DbError> {
        let statements = plan(&self.tables, &self.pending);
        let tables = &self.tables;
        let refused = self.conn.run(async |c| {
            let tx = c.transaction().await?;
            let mut refused = Vec::new();
            for st in &statements {
                let t = &tables[st.table].1;
                let rows: Vec<&Row> = st.rows.iter().map(|(r, _)| r).collect();
                tx.batch_execute("SAVEPOINT tributary_batch").await?;
                if let Err(e) = insert(&tx, t, &rows).await {
                    if is_connection_error(&e) {
                        return Err(e);
                    }
                    // One row failed the batch: find it row by row.
                    tx.batch_execute("ROLLBACK TO SAVEPOINT tributary_batch")
                        .await?;
                    for (row, i) in &st.rows {
                        tx.batch_execute("SAVEPOINT tributary_row").await?;
                        match insert(&tx, t, &[row]).await {
                            Ok(()) => tx.batch_execute("RELEASE SAVEPOINT tributary_row").await?,
                            Err(e) if !is_connection_error(&e) => {
                                tx.batch_execute("ROLLBACK TO SAVEPOINT tributary_row")
                                    .await?;
                                refused.push((*i, super::conn::describe(&e)));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                tx.batch_execute("RELEASE SAVEPOINT tributary_batch")
                    .await?;
            }
            let fenced = match positions {
                Some(Positions::Offsets(group, p)) => offsets::store(&tx, group, p).await?,
                Some(Positions::Shards(pipeline, p)) => shards::store(&tx, pipeline, p).await?,
                None => None,
            };
            if let Some(f) = fenced {
                tx.rollback().await?;
                return Ok(Err(f));
            }
            tx.commit().await?;
            Ok(Ok(refused))
        })?;
        let refused = refused.map_err(|message| DbError {
            message,
            retryable: false,
            fenced: true,
        })?;
        Ok(refused
            .into_iter()
            .map(|(i, error)| {
                let p = &self.pending[i];
                let sink = &self.tables[p.table].0;
                tracing::warn!(sink = %sink, %error, "postgres refused a row");
                let record = p
                    .record
                    .clone()
                    .unwrap_or_else(|| Record::new(serde_json::Value::Null, 0));
                DeadLetter::new(format!("sink:{sink}"), error, record)
            })
            .collect())
    }
}

/// One statement: rows of one table with one column set, each with the
/// index of the pending row it stands for (for a dead letter).
#[derive(Debug, PartialEq, Eq)]
struct Statement {
    table: usize,
    rows: Vec<(Row, usize)>,
}

/// Groups pending rows into statements: rows with the same upsert key are
/// merged first (later fields over earlier ones, which is what applying
/// them one after the other does, and one statement cannot update a row
/// twice), then grouped per table and column set, in chunks under the
/// parameter limit.
fn plan(tables: &[(String, Table)], pending: &[Pending]) -> Vec<Statement> {
    let mut merged: Vec<(usize, Row, usize)> = Vec::with_capacity(pending.len());
    let mut by_key: HashMap<(usize, Vec<Option<String>>), usize> = HashMap::new();
    for (i, p) in pending.iter().enumerate() {
        let Some(k) = tables[p.table].1.key_of(&p.row) else {
            merged.push((p.table, p.row.clone(), i));
            continue;
        };
        match by_key.get(&(p.table, k.clone())) {
            Some(&at) => {
                let (_, row, origin) = &mut merged[at];
                *row = merge(row, &p.row);
                *origin = i;
            }
            None => {
                by_key.insert((p.table, k), merged.len());
                merged.push((p.table, p.row.clone(), i));
            }
        }
    }
    // Per table and column set, in order of first appearance.
    let mut groups: Vec<Statement> = Vec::new();
    for (table, row, origin) in merged {
        let same = |g: &&mut Statement| g.table == table && g.rows[0].0.cols == row.cols;
        match groups.iter_mut().find(same) {
            Some(g) => g.rows.push((row, origin)),
            None => groups.push(Statement {
                table,
                rows: vec![(row, origin)],
            }),
        }
    }
    let mut out = Vec::new();
    for Statement { table, rows } in groups {
        let per = (MAX_PARAMS / rows[0].0.cols.len().max(1)).clamp(1, MAX_ROWS);
        for chunk in rows.chunks(per) {
            out.push(Statement {
                table,
                rows: chunk.to_vec(),
            });
        }
    }
    out
}

/// `later`'s fields over `earlier`'s.
fn merge(earlier: &Row, later: &Row) -> Row {
    let mut pairs: Vec<(usize, Option<String>)> = earlier
        .cols
        .iter()
        .copied()
        .zip(earlier.values.iter().cloned())
        .filter(|(c, _)| !later.cols.contains(c))
        .collect();
    pairs.extend(later.cols.iter().copied().zip(later.values.iter().cloned()));
    pairs.sort_by_key(|(c, _)| *c);
    let (cols, values) = pairs.into_iter().unzip();
    Row { cols, values }
}

async fn insert(
    tx: &tokio_postgres::Transaction<'_>,
    t: &Table,
    rows: &[&Row],
) -> Result<(), tokio_postgres::Error> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let sql = t.insert_sql(&first.cols, rows.len());
    let params: Vec<&(dyn ToSql + Sync)> = rows
        .iter()
        .flat_map(|r| r.values.iter().map(|v| v as &(dyn ToSql + Sync)))
        .collect();
    tx.execute(sql.as_str(), &params).await.map(drop)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sink::postgres::table::Column;

    fn table(key: &[&str]) -> Table {
        let col = |n: &str| Column {
            name: n.into(),
            sql_type: "text".into(),
            type_name: "text".into(),
            category: 'S',
        };
        let key: Vec<String> = key.iter().map(|k| (*k).to_owned()).collect();
        Table::new("t", vec![col("k"), col("v"), col("w")], &key).unwrap()
    }

    fn pending(t: &Table, v: serde_json::Value) -> Pending {
        Pending {
            table: 0,
            row: t.row(&v).unwrap(),
            record: None,
        }
    }

    #[test]
    fn rows_with_one_key_merge_and_column_sets_split_statements() {
        let t = table(&["k"]);
        let rows = vec![
            pending(&t, json!({"k": "a", "v": "1", "w": "x"})),
            pending(&t, json!({"k": "b", "v": "1"})),
            pending(&t, json!({"k": "a", "v": "2"})),
            pending(&t, json!({"k": "c", "v": "3"})),
        ];
        let plan = plan(&[("s".into(), t.clone())], &rows);
        let row = |v: serde_json::Value| t.row(&v).unwrap();
        assert_eq!(
            plan,
            vec![
                Statement {
                    table: 0,
                    rows: vec![(row(json!({"k": "a", "v": "2", "w": "x"})), 2)]
                },
                Statement {
                    table: 0,
                    rows: vec![
                        (row(json!({"k": "b", "v": "1"})), 1),
                        (row(json!({"k": "c", "v": "3"})), 3)
                    ]
                },
            ]
        );
    }

    #[test]
    fn without_a_key_every_row_is_inserted() {
        let t = table(&[]);
        let rows = vec![
            pending(&t, json!({"k": "a"})),
            pending(&t, json!({"k": "a"})),
        ];
        let plan = plan(&[("s".into(), t)], &rows);
        assert_eq!(plan.len(), 1);
        assert_eq!(
            plan[0].rows.iter().map(|(_, i)| *i).collect::<Vec<_>>(),
            vec![0, 1]
        );
    }
}
