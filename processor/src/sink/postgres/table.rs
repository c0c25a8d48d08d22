//! A table's columns and how a record's top-level JSON fields become a row:
//! pure functions, so the mapping is unit-tested without a server.
//!
//! Every value travels as text and is cast to the column's type in SQL
//! (`$1::text::integer`), which covers every type Postgres can parse from
//! text (numeric, uuid, enums, dates...). What can be checked here is
//! checked here (an integer column given `1.5`, a boolean given `"yes"`),
//! so one bad record becomes a dead letter instead of failing its batch.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value};

/// A column as the catalog describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// `format_type(...)`: the SQL type to cast to (`integer`, `numeric(10,2)`).
    pub sql_type: String,
    /// The type's name (`int4`, `jsonb`, `timestamptz`).
    pub type_name: String,
    /// `pg_type.typcategory`: `N` numeric, `B` boolean, `S` string, `D`
    /// date/time, `A` array, `U` user-defined (json, uuid), `E` enum...
    pub category: char,
}

/// A table the sink writes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The name as written in the spec (may be `schema.table`).
    pub name: String,
    /// Its columns in table order.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the upsert key (empty: plain INSERT).
    pub key: Vec<usize>,
}

/// One row to write: the indexes of the columns it sets and their text
/// values (`None` = SQL NULL), in the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Column indexes into [`Table::columns`], ascending.
    pub cols: Vec<usize>,
    /// Values, one per entry of `cols`.
    pub values: Vec<Option<String>>,
}

impl Table {
    /// A table from its catalog columns; `upsert_key` names must exist.
    ///
    /// # Errors
    /// The first upsert key column the table lacks.
    pub fn new(name: &str, columns: Vec<Column>, upsert_key: &[String]) -> Result<Self, String> {
        let key = upsert_key
            .iter()
            .map(|k| {
                columns
                    .iter()
                    .position(|c| &c.name == k)
                    .ok_or_else(|| format!("upsertKey column {k:?} is not a column of {name}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name: name.to_owned(),
            columns,
            key,
        })
    }

    /// The row for a record value: one entry per top-level field that names
    /// a column; other fields are ignored.
    ///
    /// # Errors
    /// Why the value cannot be written: not an object, an upsert key field
    /// missing or null, a field whose JSON type the column cannot take.
    pub fn row(&self, value: &Value) -> Result<Row, String> {
        let Value::Object(obj) = value else {
            return Err(
                "the record is not a JSON object; a postgres sink maps top-level fields to columns"
                    .into(),
            );
        };
        for &k in &self.key {
            let name = &self.columns[k].name;
            if obj.get(name).is_none_or(Value::is_null) {
                return Err(format!("upsert key field {name:?} is missing or null"));
            }
        }
        self.fields(obj)
    }

    fn fields(&self, obj: &Map<String, Value>) -> Result<Row, String> {
        let mut row = Row {
            cols: Vec::with_capacity(obj.len()),
            values: Vec::with_capacity(obj.len()),
        };
        for (i, c) in self.columns.iter().enumerate() {
            if let Some(v) = obj.get(&c.name) {
                row.cols.push(i);
                row.values.push(to_text(c, v)?);
            }
        }
        if row.cols.is_empty() {
            return Err(format!(
                "no field of the record names a column of {}",
                self.name
            ));
        }
        Ok(row)
    }

    /// `INSERT INTO t (a, b) VALUES ($1::text::T, $2::text::U), (...)` for
    /// `rows` rows setting `cols`, with `ON CONFLICT (key) DO UPDATE` of the
    /// other columns when the table has an upsert key (`DO NOTHING` when
    /// the row sets only the key).
    #[must_use]
    pub fn insert_sql(&self, cols: &[usize], rows: usize) -> String {
        let names: Vec<String> = cols.iter().map(|&i| ident(&self.columns[i].name)).collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            table_ident(&self.name),
            names.join(", ")
        );
        let mut n = 0;
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for (j, &i) in cols.iter().enumerate() {
                if j > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                sql.push_str(&format!("${n}::text::{}", self.columns[i].sql_type));
            }
            sql.push(')');
        }
        if !self.key.is_empty() {
            let key: Vec<String> = self
                .key
                .iter()
                .map(|&i| ident(&self.columns[i].name))
                .collect();
            let set: Vec<String> = cols
                .iter()
                .filter(|i| !self.key.contains(i))
                .map(|&i| {
                    let c = ident(&self.columns[i].name);
                    format!("{c} = EXCLUDED.{c}")
                })
                .collect();
            sql.push_str(&format!(" ON CONFLICT ({}) DO ", key.join(", ")));
            if set.is_empty() {
                sql.push_str("NOTHING");
            } else {
                sql.push_str(&format!("UPDATE SET {}", set.join(", ")));
            }
        }
        sql
    }

    /// The upsert key values of a row (rows of one batch with the same key
    /// collapse to the last: one statement cannot update a row twice).
    #[must_use]
    pub fn key_of(&self, row: &Row) -> Option<Vec<Option<String>>> {
        if self.key.is_empty() {
            return None;
        }
        Some(
            self.key
                .iter()
                .map(|k| {
                    row.cols
                        .iter()
                        .position(|c| c == k)
                        .and_then(|p| row.values[p].clone())
                })
                .collect(),
        )
    }
}

/// The text a JSON value is sent as for column `c`.
fn to_text(c: &Column, v: &Value) -> Result<Option<String>, String> {
    let mismatch = || {
        Err(format!(
            "field {:?}: column {} is {} but the value is {}",
            c.name,
            c.name,
            c.sql_type,
            kind(v)
        ))
    };
    if v.is_null() {
        return Ok(None);
    }
    if matches!(c.type_name.as_str(), "json" | "jsonb") {
        return Ok(Some(v.to_string()));
    }
    let text = match (c.category, v) {
        ('N', Value::Number(n)) => {
            let integer = matches!(c.type_name.as_str(), "int2" | "int4" | "int8");
            if integer && !(n.is_i64() || n.is_u64()) {
                return mismatch();
            }
            n.to_string()
        }
        ('B', Value::Bool(b)) => b.to_string(),
        ('D', Value::Number(n)) => match n.as_i64() {
            Some(ms) => epoch_ms_rfc3339(ms),
            None => return mismatch(),
        },
        ('S' | 'D' | 'U' | 'E' | 'N' | 'B' | 'G' | 'I' | 'T' | 'V', Value::String(s)) => s.clone(),
        ('S', Value::Number(_) | Value::Bool(_)) => v.to_string(),
        ('S', Value::Object(_) | Value::Array(_)) => v.to_string(),
        _ => return mismatch(),
    };
    Ok(Some(text))
}

/// Epoch milliseconds as RFC 3339 UTC (for timestamp columns).
fn epoch_ms_rfc3339(ms: i64) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_millis(ms.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_millis(ms.unsigned_abs()))
    };
    t.map_or_else(
        || ms.to_string(),
        |t| humantime::format_rfc3339_millis(t).to_string(),
    )
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A quoted SQL identifier.
#[must_use]
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name, `schema.table` quoted part by part.
#[must_use]
pub fn table_ident(name: &str) -> String {
    name.split('.').map(ident).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn col(name: &str, sql_type: &str, type_name: &str, category: char) -> Column {
        Column {
            name: name.into(),
            sql_type: sql_type.into(),
            type_name: type_name.into(),
            category,
        }
    }

    fn table() -> Table {
        Table::new(
            "public.users",
            vec![
                col("id", "bigint", "int8", 'N'),
                col("name", "text", "text", 'S'),
                col("score", "double precision", "float8", 'N'),
                col("active", "boolean", "bool", 'B'),
                col("seen", "timestamp with time zone", "timestamptz", 'D'),
                col("extra", "jsonb", "jsonb", 'U'),
            ],
            &["id".into()],
        )
        .unwrap()
    }

    #[test]
    fn fields_map_to_columns_of_the_same_name_and_others_are_ignored() {
        let row = table()
            .row(&json!({"id": 7, "name": "ann", "active": true, "seen": 0, "extra": {"a": [1]}, "unknown": 1}))
            .unwrap();
        assert_eq!(row.cols, vec![0, 1, 3, 4, 5]);
        assert_eq!(
            row.values,
            vec![
                Some("7".into()),
                Some("ann".into()),
                Some("true".into()),
                Some("1970-01-01T00:00:00.000Z".into()),
                Some(r#"{"a":[1]}"#.into()),
            ]
        );
    }

    #[test]
    fn type_mismatches_name_the_field_and_the_column_type() {
        let t = table();
        let e = t.row(&json!({"id": 1.5})).unwrap_err();
        assert!(e.contains("\"id\"") && e.contains("bigint"), "{e}");
        let e = t.row(&json!({"id": 1, "active": 3})).unwrap_err();
        assert!(e.contains("boolean") && e.contains("a number"), "{e}");
        // Strings go to the server, which parses them ('yes' is a boolean).
        assert!(t.row(&json!({"id": 1, "active": "yes"})).is_ok());
        assert!(
            t.row(&json!({"name": "no key"}))
                .unwrap_err()
                .contains("upsert key")
        );
        assert!(
            t.row(&json!([1]))
                .unwrap_err()
                .contains("not a JSON object")
        );
    }

    #[test]
    fn null_is_sql_null_and_numbers_fit_text_columns() {
        let row = table()
            .row(&json!({"id": 1, "name": 5, "score": null}))
            .unwrap();
        assert_eq!(row.values, vec![Some("1".into()), Some("5".into()), None]);
    }

    #[test]
    fn upsert_sql_updates_the_non_key_columns_it_sets() {
        let t = table();
        assert_eq!(
            t.insert_sql(&[0, 1], 2),
            "INSERT INTO \"public\".\"users\" (\"id\", \"name\") VALUES ($1::text::bigint, $2::text::text), ($3::text::bigint, $4::text::text) ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\""
        );
        assert!(t.insert_sql(&[0], 1).ends_with("DO NOTHING"));
        let plain = Table::new("t", t.columns.clone(), &[]).unwrap();
        assert!(!plain.insert_sql(&[1], 1).contains("ON CONFLICT"));
        assert!(Table::new("t", t.columns, &["nope".into()]).is_err());
    }
}
