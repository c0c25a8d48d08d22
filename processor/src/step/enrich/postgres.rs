//! A PostgreSQL query as a lookup table: run with the key as `$1` on a
//! cache miss, its first row (a JSON object of its columns) cached for
//! `ttl` (a miss for the shorter of `ttl` and [`MISS_TTL`]).
//!
//! # Caveats
//! A lookup that misses the cache waits for the query (one round trip on
//! the engine thread). While the server is unreachable, a cached row is
//! served past its TTL; a key never cached is a miss (`onMiss` applies,
//! with the error as the dead letter's reason).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};
use tributary_crds::TablePostgres;

use crate::sink::postgres::Conn;

/// The longest a miss is cached: a row inserted later is found soon.
pub const MISS_TTL: Duration = Duration::from_secs(5);
/// Default `maxEntries`.
const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// How the key is sent as `$1`: the type Postgres inferred for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Param {
    Text,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
}

impl Param {
    fn of(t: &Type) -> Option<Self> {
        Some(match *t {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Self::Text,
            Type::INT2 => Self::Int2,
            Type::INT4 => Self::Int4,
            Type::INT8 => Self::Int8,
            Type::FLOAT4 => Self::Float4,
            Type::FLOAT8 => Self::Float8,
            Type::BOOL => Self::Bool,
            _ => return None,
        })
    }

    /// The key as this type; `None` when it does not parse (no row can match).
    fn bind(self, key: &str) -> Option<Box<dyn ToSql + Sync + Send>> {
        Some(match self {
            Self::Text => Box::new(key.to_owned()),
            Self::Int2 => Box::new(key.parse::<i16>().ok()?),
            Self::Int4 => Box::new(key.parse::<i32>().ok()?),
            Self::Int8 => Box::new(key.parse::<i64>().ok()?),
            Self::Float4 => Box::new(key.parse::<f32>().ok()?),
            Self::Float8 => Box::new(key.parse::<f64>().ok()?),
            Self::Bool => Box::new(key.parse::<bool>().ok()?),
        })
    }
}

/// A cached query.
pub struct PgTable {
    conn: Conn,
    sql: String,
    param: Param,
    ttl: Duration,
    miss_ttl: Duration,
    max_entries: usize,
    cache: HashMap<String, (Instant, Option<Value>)>,
}

impl PgTable {
    /// Connects and checks the query (its `$1` type).
    ///
    /// # Errors
    /// When the secret is unset, the server unreachable or the query invalid.
    pub fn open(spec: &TablePostgres) -> Result<Self, String> {
        let url =
            crate::secret::resolve(&spec.connection).map_err(|e| format!("connection: {e}"))?;
        let mut conn = Conn::connect(&url)?;
        let sql = format!(
            "SELECT row_to_json(q)::text FROM ({}) q LIMIT 1",
            spec.query.trim().trim_end_matches(';')
        );
        let types = conn
            .run(async |c| c.prepare(&sql).await.map(|s| s.params().to_vec()))
            .map_err(|e| format!("query: {e}"))?;
        let param = match types.as_slice() {
            [t] => Param::of(t).ok_or_else(|| {
                format!("query: $1 is of type {t}; cast it from text instead ($1::text::{t})")
            })?,
            other => {
                return Err(format!(
                    "query: must take exactly one parameter ($1), takes {}",
                    other.len()
                ));
            }
        };
        Ok(Self {
            conn,
            sql,
            param,
            ttl: spec.ttl.0,
            miss_ttl: spec.ttl.0.min(MISS_TTL),
            max_entries: spec
                .max_entries
                .map_or(DEFAULT_MAX_ENTRIES, |m| m as usize)
                .max(1),
            cache: HashMap::new(),
        })
    }

    /// The row for `key`, from the cache while fresh.
    ///
    /// # Errors
    /// When the query fails and nothing is cached for the key.
    pub fn get(&mut self, key: &str, now: Instant) -> Result<Option<Value>, String> {
        if let Some((at, row)) = self.cache.get(key) {
            let ttl = if row.is_some() {
                self.ttl
            } else {
                self.miss_ttl
            };
            if now.duration_since(*at) < ttl {
                return Ok(row.clone());
            }
        }
        let row = match self.query(key) {
            Ok(row) => row,
            Err(e) => {
                return match self.cache.get(key) {
                    Some((_, row)) => {
                        tracing::warn!(error = %e, "enrich: postgres lookup failed; serving the cached row");
                        Ok(row.clone())
                    }
                    None => Err(e),
                };
            }
        };
        if self.cache.len() >= self.max_entries && !self.cache.contains_key(key) {
            let (ttl, miss_ttl) = (self.ttl, self.miss_ttl);
            self.cache.retain(|_, (at, row)| {
                now.duration_since(*at) < if row.is_some() { ttl } else { miss_ttl }
            });
            if self.cache.len() >= self.max_entries {
                self.cache.clear();
            }
        }
        self.cache.insert(key.to_owned(), (now, row.clone()));
        Ok(row)
    }

    fn query(&mut self, key: &str) -> Result<Option<Value>, String> {
        let Some(param) = self.param.bind(key) else {
            return Ok(None);
        };
        let sql = &self.sql;
        let text: Option<String> = self
            .conn
            .run(async |c| {
                let row = c
                    .query_opt(sql.as_str(), &[param.as_ref() as &(dyn ToSql + Sync)])
                    .await?;
                Ok(row.map(|r| r.get(0)))
            })
            .map_err(|e| format!("postgres lookup: {e}"))?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| format!("postgres lookup: {e}")))
            .transpose()
    }

    /// Keys cached.
    #[must_use]
    pub fn rows(&self) -> usize {
        self.cache.len()
    }
}
