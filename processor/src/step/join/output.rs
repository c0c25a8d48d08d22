//! The records a join emits (see `docs/joins.md`, "Output").
//!
//! A pair is the left record's fields plus `other`, the right record's
//! value, so later steps read `event.other.<field>`; an unmatched left
//! record carries `other: null`, an unmatched right record is
//! `{"other": <right>}`. A left value that is not a JSON object is kept
//! under `value`.

use serde_json::{Map, Value};

use crate::record::{Position, Record};

fn with_other(left: Option<&Value>, other: Value) -> Value {
    let mut obj = match left {
        Some(Value::Object(m)) => m.clone(),
        Some(v) => {
            let mut m = Map::with_capacity(2);
            m.insert("value".to_owned(), v.clone());
            m
        }
        None => Map::with_capacity(1),
    };
    obj.insert("other".to_owned(), other);
    Value::Object(obj)
}

/// A matched pair: the left record with `other` set; its event time is the
/// later of the two, its key, headers and position the left record's. It
/// is a replay only when both records are: a replayed record meeting a
/// new one makes a pair that was never output.
#[must_use]
pub fn joined(left: &Record, right: &Record) -> Record {
    Record {
        key: left.key.clone(),
        value: with_other(Some(&left.value), right.value.clone()),
        headers: left.headers.clone(),
        event_time: left.event_time.max(right.event_time),
        position: left.position.clone(),
        replay: left.replay && right.replay,
    }
}

/// A left record that matched nothing (`left`, `full`): `other` is null.
#[must_use]
pub fn left_only(mut left: Record) -> Record {
    match &mut left.value {
        Value::Object(m) => {
            m.insert("other".to_owned(), Value::Null);
        }
        v => *v = with_other(Some(&*v), Value::Null),
    }
    left
}

/// A right record that matched nothing (`right`, `full`):
/// `{"other": <right>}`. It holds no position of the main input (its
/// offset is [`Position::DERIVED`]), so acknowledging the main source
/// never waits for it.
#[must_use]
pub fn right_only(mut right: Record) -> Record {
    right.value = with_other(None, std::mem::take(&mut right.value));
    right.position.offset = Position::DERIVED;
    right
}
