//! The PostgreSQL sink: a record's top-level JSON fields become the
//! columns of the same name, written with `INSERT ... ON CONFLICT
//! (upsertKey) DO UPDATE` in one transaction per flush.
//!
//! # Layout
//! - `table`: columns, record → row, the SQL (pure).
//! - `conn`: a blocking connection over `tokio-postgres`.
//! - `writer`: buffered rows and the transaction that writes them.
//! - `offsets`: Kafka positions in `tributary_offsets` (`exactlyOnce`).
//! - `shards`: Kinesis positions in `tributary_shard_positions`.
//!
//! # Guarantees
//! `atLeastOnce`: rows are committed at each flush; a crash repeats what
//! followed the source's last checkpoint, and an upsert makes the repeat
//! harmless. `exactlyOnce` (Kafka or Kinesis source): the rows and the
//! source positions commit in one transaction (see `connector::kafka` and
//! `connector::kinesis::exactly_once`), so each input is reflected once.
//!
//! # Caveats
//! Fields that name no column are ignored. A record whose value a column
//! cannot take becomes a dead letter; so does a row the server refuses
//! (found row by row under savepoints when a batch fails).

mod conn;
pub mod offsets;
pub mod shards;
mod table;
mod writer;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tributary_crds::PostgresSink as Spec;

pub use conn::{Conn, DbError, describe};
pub use table::{Column, Table};
pub use writer::{Positions, Writer};

use super::{DeadLetter, Sink, SinkError};
use crate::record::Record;

/// A writer shared by the sinks of one database and the engine that
/// commits their transaction (`exactlyOnce`).
pub type SharedWriter = Arc<Mutex<Writer>>;

/// Locks a shared writer (a panic elsewhere leaves its data usable).
pub fn lock(w: &SharedWriter) -> MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The connection string of a spec, from its secret.
///
/// # Errors
/// The field and why it cannot be read.
pub fn connection_string(spec: &Spec, path: &str) -> Result<String, String> {
    crate::secret::resolve(&spec.connection).map_err(|e| format!("{path}.connection: {e}"))
}

/// Connects, retrying for [`writer::PATIENCE`] while the server is down.
///
/// # Errors
/// The last connection error.
pub fn connect(url: &str) -> Result<Conn, String> {
    let start = std::time::Instant::now();
    loop {
        match Conn::connect(url) {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() >= writer::PATIENCE => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "postgres unreachable; retrying");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// The writer every Postgres sink of an `exactlyOnce` run shares, on the
/// first Postgres sink's connection (validation makes every sink use it),
/// with that connection string; `None` without a Postgres sink.
///
/// # Errors
/// When the connection string cannot be read or the server stays away.
pub fn shared_writer(
    spec: &tributary_crds::StreamPipelineSpec,
) -> Result<Option<(SharedWriter, String)>, String> {
    let Some((i, first)) = spec
        .sinks
        .iter()
        .enumerate()
        .find_map(|(i, s)| Some((i, s.postgres.as_ref()?)))
    else {
        return Ok(None);
    };
    let url = connection_string(first, &format!("spec.sinks[{i}].postgres"))?;
    let conn = connect(&url)?;
    Ok(Some((Arc::new(Mutex::new(Writer::new(conn))), url)))
}

/// One sink: a table of a (possibly shared) writer.
pub struct PostgresSink {
    name: String,
    table: usize,
    writer: SharedWriter,
    /// The engine commits (`exactlyOnce`); flush only buffers.
    transactional: bool,
    rejected: Vec<DeadLetter>,
}

impl PostgresSink {
    /// Opens `spec`'s table on `writer` (read its columns from the catalog).
    ///
    /// # Errors
    /// When the table does not exist or lacks an upsert key column.
    pub fn open(
        name: String,
        spec: &Spec,
        writer: SharedWriter,
        transactional: bool,
    ) -> Result<Self, SinkError> {
        let err = |message: String| SinkError::Broker {
            name: name.clone(),
            message,
        };
        let table = {
            let mut w = lock(&writer);
            let columns = w
                .conn()
                .columns(&spec.table)
                .map_err(|e| err(format!("table {}: {e}", spec.table)))?;
            let table = Table::new(&spec.table, columns, &spec.upsert_key).map_err(err)?;
            w.add_table(&name, table)
        };
        Ok(Self {
            name,
            table,
            writer,
            transactional,
            rejected: Vec::new(),
        })
    }

    fn step(&self) -> String {
        format!("sink:{}", self.name)
    }
}

/// Opens a sink on its own connection (`atLeastOnce`, local runs).
///
/// # Errors
/// When the connection string cannot be read, the server is unreachable
/// or the table is unusable.
pub fn open(name: String, spec: &Spec, path: &str) -> Result<Box<dyn Sink>, SinkError> {
    let err = |message: String| SinkError::Broker {
        name: name.clone(),
        message,
    };
    let url = connection_string(spec, path).map_err(err)?;
    let conn = connect(&url).map_err(err)?;
    let writer = Arc::new(Mutex::new(Writer::new(conn)));
    Ok(Box::new(PostgresSink::open(name, spec, writer, false)?))
}

impl Sink for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let step = self.step();
        let mut w = lock(&self.writer);
        for r in records {
            if let Err(e) = w.add(self.table, &r.value, Some(r)) {
                self.rejected
                    .push(DeadLetter::new(step.clone(), e, r.clone()));
            }
        }
        Ok(())
    }

    fn write_values(&mut self, values: &[serde_json::Value]) -> Result<(), SinkError> {
        let mut w = lock(&self.writer);
        for v in values {
            if let Err(e) = w.add(self.table, v, None) {
                // A dead letter that cannot be written has nowhere else to go.
                tracing::error!(sink = %self.name, error = %e, "dropping a dead letter the table cannot take");
            }
        }
        Ok(())
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        let mut out = std::mem::take(&mut self.rejected);
        out.extend(lock(&self.writer).take_parked());
        out
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        if self.transactional {
            return Ok(());
        }
        let mut w = lock(&self.writer);
        match w.commit(None) {
            Ok(refused) => {
                // Reported with the next write's rejects.
                self.rejected.extend(refused);
                Ok(())
            }
            Err(e) => {
                // The caller re-reads the input since its last checkpoint
                // (Kafka) or stops: the buffered rows would repeat.
                w.discard();
                Err(SinkError::Broker {
                    name: self.name.clone(),
                    message: format!("postgres: {e}"),
                })
            }
        }
    }
}
