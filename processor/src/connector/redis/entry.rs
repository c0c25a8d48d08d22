//! Stream entries as Redis returns them, and the records they become.
//!
//! # Entry format
//! An entry's `payloadField` (default `data`) is the payload, decoded with
//! `spec.source.format`; every other field becomes a record header. An
//! entry without that field becomes the JSON object of all its fields,
//! their values as strings (`XADD s * user u1 action click` →
//! `{"user": "u1", "action": "click"}`). Every record carries the headers
//! `redis.stream` and `redis.id` (the entry ID), dead letters included.

use std::sync::Arc;

use redis::Value;
use serde_json::{Map, Value as Json};

use crate::record::{Position, Record};
use crate::sink::DeadLetter;
use crate::source::Decoder;

/// Header with the entry ID.
pub const ID_HEADER: &str = "redis.id";
/// Header with the stream key.
pub const STREAM_HEADER: &str = "redis.stream";

/// One stream entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Entry ID (`<ms>-<seq>`).
    pub id: String,
    /// Field/value pairs in order; `None` for an entry deleted (trimmed)
    /// while it was pending.
    pub fields: Option<Vec<(String, Vec<u8>)>>,
}

/// A reply that is not shaped as the command documents.
#[derive(Debug, thiserror::Error)]
#[error("unexpected Redis reply to {command}: {detail}")]
pub struct ReplyError {
    command: &'static str,
    detail: String,
}

fn bad(command: &'static str, v: &Value) -> ReplyError {
    let mut detail = format!("{v:?}");
    detail.truncate(200);
    ReplyError { command, detail }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// Entries of an `[[id, [field, value, ...]], ...]` array.
fn entries(command: &'static str, v: Value) -> Result<Vec<Entry>, ReplyError> {
    let Value::Array(items) = v else {
        return Err(bad(command, &v));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut pair) = item else {
            return Err(bad(command, &item));
        };
        if pair.len() != 2 {
            return Err(bad(command, &Value::Array(pair)));
        }
        let body = pair.pop().unwrap_or(Value::Nil);
        let id = text(&pair[0]).ok_or_else(|| bad(command, &pair[0]))?;
        let fields = match body {
            Value::Nil => None,
            Value::Array(flat) => {
                let mut fields = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let k = text(&k).ok_or_else(|| bad(command, &k))?;
                    let v = bytes(v).ok_or(ReplyError {
                        command,
                        detail: format!("field {k} is not a string"),
                    })?;
                    fields.push((k, v));
                }
                Some(fields)
            }
            other => return Err(bad(command, &other)),
        };
        out.push(Entry { id, fields });
    }
    Ok(out)
}

/// The entries of an `XREADGROUP` reply on one stream (`Nil` when a
/// blocking read timed out).
///
/// # Errors
/// A [`ReplyError`] for a reply of another shape.
pub fn parse_read(v: Value) -> Result<Vec<Entry>, ReplyError> {
    const CMD: &str = "XREADGROUP";
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for s in streams {
                let Value::Array(mut kv) = s else {
                    return Err(bad(CMD, &s));
                };
                if kv.len() != 2 {
                    return Err(bad(CMD, &Value::Array(kv)));
                }
                out.extend(entries(CMD, kv.pop().unwrap_or(Value::Nil))?);
            }
            Ok(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, v) in streams {
                out.extend(entries(CMD, v)?);
            }
            Ok(out)
        }
        other => Err(bad(CMD, &other)),
    }
}

/// The next cursor and the claimed entries of an `XAUTOCLAIM` reply.
///
/// # Errors
/// A [`ReplyError`] for a reply of another shape.
pub fn parse_autoclaim(v: Value) -> Result<(String, Vec<Entry>), ReplyError> {
    const CMD: &str = "XAUTOCLAIM";
    let Value::Array(mut parts) = v else {
        return Err(bad(CMD, &v));
    };
    if parts.len() < 2 {
        return Err(bad(CMD, &Value::Array(parts)));
    }
    parts.truncate(2);
    let claimed = parts.pop().unwrap_or(Value::Nil);
    let cursor = text(&parts[0]).ok_or_else(|| bad(CMD, &parts[0]))?;
    // Redis 7 drops deleted entries from the reply (it lists them apart);
    // Redis 6 returns them as nil, which the reader acknowledges.
    Ok((cursor, entries(CMD, claimed)?))
}

/// Turns an entry's fields into a record (or a dead letter naming the
/// entry), given its sequence number.
///
/// # Errors
/// A [`DeadLetter`] when the payload cannot be decoded or has no event time.
pub fn to_record(
    stream: &Arc<str>,
    id: &str,
    fields: Vec<(String, Vec<u8>)>,
    payload_field: &str,
    decoder: &Decoder,
    seq: i64,
) -> Result<Record, Box<DeadLetter>> {
    let position = Position {
        source: stream.clone(),
        partition: 0,
        offset: seq,
    };
    let mut headers = vec![
        (STREAM_HEADER.to_owned(), stream.to_string()),
        (ID_HEADER.to_owned(), id.to_owned()),
    ];
    let payload_at = fields.iter().position(|(k, _)| k == payload_field);
    let result = if let Some(at) = payload_at {
        let mut payload = Vec::new();
        for (i, (k, v)) in fields.into_iter().enumerate() {
            if i == at {
                payload = v;
            } else {
                headers.push((k, String::from_utf8_lossy(&v).into_owned()));
            }
        }
        decoder.decode(&payload, position)
    } else {
        let map: Map<String, Json> = fields
            .into_iter()
            .map(|(k, v)| (k, Json::String(String::from_utf8_lossy(&v).into_owned())))
            .collect();
        decoder.stamp(Record {
            position,
            ..Record::new(Json::Object(map), 0)
        })
    };
    match result {
        Ok(mut r) => {
            r.headers = headers;
            Ok(r)
        }
        Err(mut dl) => {
            dl.record.headers = headers;
            Err(dl)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, kv: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(kv.iter().map(|s| bulk(s)).collect()),
        ])
    }

    fn decoder(yaml: &str) -> Decoder {
        let spec: tributary_crds::SourceSpec = serde_yaml_ng::from_str(yaml).unwrap();
        Decoder::new(&spec).unwrap()
    }

    #[test]
    fn reads_xreadgroup_replies_with_deleted_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                entry("1-0", &["data", "{}", "k", "v"]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let got = parse_read(reply).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "1-0");
        assert_eq!(
            got[0].fields.as_deref(),
            Some(&[("data".into(), b"{}".to_vec()), ("k".into(), b"v".to_vec())][..])
        );
        assert_eq!(got[1].fields, None);
        assert!(parse_read(Value::Nil).unwrap().is_empty());
        assert!(parse_read(Value::Int(3)).is_err());
    }

    #[test]
    fn reads_xautoclaim_replies() {
        let reply = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![entry("3-1", &["a", "1"])]),
            Value::Array(vec![bulk("4-0")]),
        ]);
        let (cursor, got) = parse_autoclaim(reply).unwrap();
        assert_eq!(cursor, "5-0");
        assert_eq!(got[0].id, "3-1");
    }

    #[test]
    fn payload_field_is_decoded_and_other_fields_become_headers() {
        let d = decoder("{stdin: {}, eventTime: {field: event.ts}}");
        let s: Arc<str> = Arc::from("clicks");
        let fields = vec![
            ("src".to_owned(), b"web".to_vec()),
            ("data".to_owned(), br#"{"n": 1, "ts": 1000}"#.to_vec()),
        ];
        let r = to_record(&s, "7-0", fields, "data", &d, 41).unwrap();
        assert_eq!(r.value, json!({"n": 1, "ts": 1000}));
        assert_eq!(r.event_time, 1000);
        assert_eq!(r.position.offset, 41);
        assert_eq!(&*r.position.source, "clicks");
        assert!(r.headers.contains(&("redis.id".into(), "7-0".into())));
        assert!(r.headers.contains(&("src".into(), "web".into())));
    }

    #[test]
    fn entries_without_payload_field_are_their_field_map() {
        let d = decoder("{stdin: {}}");
        let s: Arc<str> = Arc::from("s");
        let fields = vec![
            ("user".to_owned(), b"u1".to_vec()),
            ("n".to_owned(), b"3".to_vec()),
        ];
        let r = to_record(&s, "1-1", fields, "data", &d, 0).unwrap();
        assert_eq!(r.value, json!({"user": "u1", "n": "3"}));
    }

    #[test]
    fn bad_payloads_are_dead_letters_naming_the_entry() {
        let d = decoder("{stdin: {}}");
        let s: Arc<str> = Arc::from("s");
        let dl = to_record(
            &s,
            "9-0",
            vec![("data".into(), b"{oops".to_vec())],
            "data",
            &d,
            5,
        )
        .unwrap_err();
        assert_eq!(dl.step, "decode");
        assert_eq!(dl.record.position.offset, 5);
        assert!(
            dl.record
                .headers
                .contains(&("redis.id".into(), "9-0".into()))
        );
    }
}
