//! The `enrich` step: a stream–table lookup. Each record's key (CEL) is
//! looked up in a table kept current while the pipeline runs, and the row is
//! attached under `as`. See `docs/enrich.md`.
//!
//! # Layout
//! - `file`: the JSON-lines table and its reload.
//! - `kafka`: the compacted-topic table and its follower thread.
//! - `postgres`: a query per key with a TTL cache.
//! - this file: keys, the miss policy, output records.

mod file;
#[cfg(feature = "kafka")]
mod kafka;
mod postgres;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tributary_crds::{EnrichStep, OnMiss};

use super::{Emit, Step, StepError};
use crate::expr::Expr;
use crate::record::Record;
use crate::sink::DeadLetter;

pub use file::FileTable;
#[cfg(feature = "kafka")]
pub use kafka::KafkaTable;
pub use postgres::PgTable;

/// Where rows come from.
enum Table {
    File(FileTable),
    #[cfg(feature = "kafka")]
    Kafka(Arc<KafkaTable>),
    Postgres(Box<PgTable>),
}

impl Table {
    /// The row for `key`; an error says why a lookup could not be made.
    fn get(&mut self, key: &str) -> Result<Option<Value>, String> {
        match self {
            Self::File(t) => Ok(t.get(key).cloned()),
            #[cfg(feature = "kafka")]
            Self::Kafka(t) => Ok(t.get(key)),
            Self::Postgres(t) => t.get(key, std::time::Instant::now()),
        }
    }

    fn rows(&self) -> usize {
        match self {
            Self::File(t) => t.rows(),
            #[cfg(feature = "kafka")]
            Self::Kafka(t) => t.rows(),
            Self::Postgres(t) => t.rows(),
        }
    }
}

/// The string a key value is compared as: strings as they are, numbers and
/// booleans in their JSON text (`42`, `true`), so `userId: 42` finds the row
/// with `id: "42"` and the other way round. Anything else is no key.
pub(crate) fn key_string(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

/// An `enrich` step.
pub struct Enrich {
    name: String,
    key: Expr,
    as_field: String,
    on_miss: OnMiss,
    reload: bool,
    table: Table,
}

impl Enrich {
    /// An enrich step; loads the table before returning, so the first
    /// record already sees it. Relative file paths resolve against `base`;
    /// a Kafka table without brokers uses `source_brokers`.
    ///
    /// # Errors
    /// [`StepError::Expr`] when the key does not compile, [`StepError::Table`]
    /// when the table cannot be loaded.
    pub fn new(
        name: String,
        spec: &EnrichStep,
        env: &Arc<cel::Env>,
        base: &Path,
        source_brokers: Option<&str>,
        path: &str,
    ) -> Result<Self, StepError> {
        let key = Expr::compile(&spec.key, env).map_err(|source| StepError::Expr {
            path: format!("{path}.key"),
            source,
        })?;
        let table_err = |kind: &str, message: String| StepError::Table {
            path: format!("{path}.table.{kind}"),
            message,
        };
        let t = &spec.table;
        let (table, reload) = match (&t.file, &t.kafka, &t.postgres) {
            (None, None, Some(pg)) => (
                Table::Postgres(Box::new(
                    PgTable::open(pg).map_err(|m| table_err("postgres", m))?,
                )),
                false,
            ),
            (Some(f), _, _) => (
                Table::File(
                    FileTable::load(&base.join(&f.path), &f.key_field)
                        .map_err(|m| table_err("file", m))?,
                ),
                f.reload,
            ),
            (None, Some(k), _) => (
                kafka_table(k, source_brokers).map_err(|m| table_err("kafka", m))?,
                false,
            ),
            (None, None, None) => return Err(table_err("file", "no table kind set".into())),
        };
        Ok(Self {
            name,
            key,
            as_field: spec.as_field.clone(),
            on_miss: spec.on_miss,
            reload,
            table,
        })
    }

    /// The row for `rec`, or the reason there is none.
    fn lookup(&mut self, rec: &Record) -> Result<Value, String> {
        let v = match self.key.get(&rec.value) {
            Some(v) => Cow::Borrowed(v),
            None => Cow::Owned(self.key.eval(&rec.value).map_err(|e| e.to_string())?),
        };
        let key =
            key_string(&v).ok_or_else(|| format!("no row for key {v} (not a string or number)"))?;
        self.table
            .get(&key)?
            .ok_or_else(|| format!("no row for key {key:?}"))
    }
}

impl Step for Enrich {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> super::Snapshot {
        super::Snapshot::Stateless
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        for mut rec in input {
            let row = match self.lookup(&rec) {
                Ok(row) => row,
                Err(miss) => {
                    match self.on_miss {
                        OnMiss::Pass => emit.out.push(rec),
                        OnMiss::Drop => emit.dropped += 1,
                        OnMiss::DeadLetter => {
                            emit.dead.push(DeadLetter::new(&self.name, miss, rec));
                        }
                    }
                    continue;
                }
            };
            match rec.value.as_object_mut() {
                Some(obj) => {
                    obj.insert(self.as_field.clone(), row);
                    emit.out.push(rec);
                }
                None => emit.dead.push(DeadLetter::new(
                    &self.name,
                    "the record is not a JSON object; enrich cannot add a field",
                    rec,
                )),
            }
        }
        Ok(())
    }

    fn on_tick(&mut self, _now: i64, _emit: &mut Emit) {
        if self.reload
            && let Table::File(t) = &mut self.table
        {
            t.refresh();
        }
    }

    fn state_size(&self) -> usize {
        self.table.rows()
    }
}

/// Starts a Kafka table (the follower thread keeps it current).
#[cfg(feature = "kafka")]
fn kafka_table(
    k: &tributary_crds::TableKafka,
    source_brokers: Option<&str>,
) -> Result<Table, String> {
    let brokers = k
        .brokers
        .as_deref()
        .or(source_brokers)
        .ok_or("set brokers: the source is not Kafka")?;
    KafkaTable::shared(brokers, &k.topic).map(Table::Kafka)
}

/// Without the `kafka` feature there is no Kafka client.
#[cfg(not(feature = "kafka"))]
fn kafka_table(_: &tributary_crds::TableKafka, _: Option<&str>) -> Result<Table, String> {
    Err("this build has no Kafka support (feature kafka)".into())
}
