//! Decoding a payload once and reading its event time.

use serde_json::Value;
use tributary_crds::{FormatType, SourceSpec, TimeFormat};

use super::SourceError;
use crate::expr::{Expr, ExprError};
use crate::record::{Position, Record};
use crate::sink::DeadLetter;

/// Why a record has no usable event time.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventTimeError {
    /// The expression failed.
    #[error(transparent)]
    Expr(#[from] ExprError),
    /// The value is not a timestamp in the configured format.
    #[error("event time {value} is not {format:?}")]
    Format {
        /// What was found (shortened).
        value: String,
        /// The expected format.
        format: TimeFormat,
    },
}

/// Turns payloads into records: decode, then event time (processing time
/// when `eventTime` is absent).
#[derive(Clone)]
pub struct Decoder {
    format: FormatType,
    event_time: Option<(Expr, TimeFormat)>,
    #[cfg(feature = "avro")]
    avro: Option<std::sync::Arc<super::avro::AvroDecoder>>,
}

/// Milliseconds since the epoch, now.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Decoder {
    /// A decoder for `spec`'s format and event time.
    ///
    /// # Errors
    /// When the event-time expression does not compile or the Avro schema
    /// does not parse.
    pub fn new(spec: &SourceSpec) -> Result<Self, SourceError> {
        let env = crate::expr::env();
        let event_time = match &spec.event_time {
            Some(et) => Some((Expr::compile(&et.field, &env)?, et.format)),
            None => None,
        };
        #[cfg(feature = "avro")]
        let avro = if spec.format.kind == FormatType::Avro {
            Some(std::sync::Arc::new(
                super::avro::AvroDecoder::new(&spec.format).map_err(SourceError::Format)?,
            ))
        } else {
            None
        };
        #[cfg(not(feature = "avro"))]
        if spec.format.kind == FormatType::Avro {
            return Err(SourceError::Format(
                "spec.source.format.type: avro needs the avro feature".into(),
            ));
        }
        Ok(Self {
            format: spec.format.kind,
            event_time,
            #[cfg(feature = "avro")]
            avro,
        })
    }

    /// Decodes an Avro payload (the schema checked at start).
    #[cfg(feature = "avro")]
    fn avro(&self, payload: &[u8]) -> Result<Value, String> {
        match &self.avro {
            Some(a) => a.decode(payload),
            None => Err("no Avro schema".into()),
        }
    }

    #[cfg(not(feature = "avro"))]
    fn avro(&self, _: &[u8]) -> Result<Value, String> {
        Err("built without Avro".into())
    }

    /// Whether event time comes from records (else processing time).
    #[must_use]
    pub fn has_event_time(&self) -> bool {
        self.event_time.is_some()
    }

    /// Decodes one payload; failures become dead letters naming the position.
    ///
    /// # Errors
    /// A [`DeadLetter`] for a payload that cannot be decoded or has no event time.
    pub fn decode(&self, payload: &[u8], position: Position) -> Result<Record, Box<DeadLetter>> {
        self.decode_at(payload, position, now_ms())
    }

    /// Decodes one payload whose broker timestamp is `broker_time` (epoch
    /// ms): the event time when `eventTime` is absent.
    ///
    /// # Errors
    /// A [`DeadLetter`] for a payload that cannot be decoded or has no event time.
    pub fn decode_at(
        &self,
        payload: &[u8],
        position: Position,
        broker_time: i64,
    ) -> Result<Record, Box<DeadLetter>> {
        let value = match self.format {
            FormatType::Text => {
                serde_json::json!({"text": String::from_utf8_lossy(payload)})
            }
            FormatType::Avro => match self.avro(payload) {
                Ok(v) => v,
                Err(e) => {
                    // Binary: as text it would be mangled; whole and in
                    // base64 it can be replayed once the schema is fixed.
                    use base64::Engine as _;
                    let raw = base64::engine::general_purpose::STANDARD.encode(payload);
                    let rec = Record {
                        position,
                        ..Record::new(serde_json::json!({"rawBase64": raw}), 0)
                    };
                    return Err(Box::new(DeadLetter::new("decode", e, rec)));
                }
            },
            FormatType::Json => match serde_json::from_slice::<Value>(payload) {
                Ok(v) => v,
                Err(e) => {
                    let raw = String::from_utf8_lossy(payload).into_owned();
                    let rec = Record {
                        position,
                        ..Record::new(serde_json::json!({"raw": raw}), 0)
                    };
                    return Err(Box::new(DeadLetter::new(
                        "decode",
                        format!("invalid JSON: {e}"),
                        rec,
                    )));
                }
            },
        };
        let rec = Record {
            position,
            ..Record::new(value, broker_time)
        };
        if self.event_time.is_none() {
            return Ok(rec);
        }
        self.stamp(rec)
    }

    /// Sets the event time of a decoded record.
    ///
    /// # Errors
    /// A [`DeadLetter`] when the event time cannot be read.
    pub fn stamp(&self, mut rec: Record) -> Result<Record, Box<DeadLetter>> {
        match &self.event_time {
            None => rec.event_time = now_ms(),
            Some((expr, fmt)) => match event_time(expr, *fmt, &rec.value) {
                Ok(ts) => rec.event_time = ts,
                Err(e) => return Err(Box::new(DeadLetter::new("eventTime", e.to_string(), rec))),
            },
        }
        Ok(rec)
    }
}

fn event_time(expr: &Expr, fmt: TimeFormat, value: &Value) -> Result<i64, EventTimeError> {
    let owned;
    let v = if let Some(v) = expr.get(value) {
        v
    } else {
        owned = expr.eval(value)?;
        &owned
    };
    let bad = || EventTimeError::Format {
        value: {
            let mut s = v.to_string();
            s.truncate(64);
            s
        },
        format: fmt,
    };
    #[allow(clippy::cast_possible_truncation)]
    let ts = match (fmt, v) {
        (TimeFormat::EpochMillis, Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        (TimeFormat::EpochMillis, Value::String(s)) => s.trim().parse::<i64>().ok(),
        (TimeFormat::EpochSeconds, Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| (f * 1000.0).round() as i64),
        (TimeFormat::EpochSeconds, Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| (f * 1000.0).round() as i64),
        (TimeFormat::Rfc3339, Value::String(s)) => humantime::parse_rfc3339_weak(s.trim())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok()),
        _ => None,
    };
    ts.ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(yaml: &str) -> Decoder {
        let spec: SourceSpec = serde_yaml_ng::from_str(yaml).unwrap();
        Decoder::new(&spec).unwrap()
    }

    #[test]
    fn reads_event_time_in_each_format() {
        let pos = Position::default;
        let d = decoder("{stdin: {}, eventTime: {field: event.ts}}");
        assert_eq!(
            d.decode(br#"{"ts": 1700000000123}"#, pos())
                .unwrap()
                .event_time,
            1_700_000_000_123
        );
        let d = decoder("{stdin: {}, eventTime: {field: event.t, format: epochSeconds}}");
        assert_eq!(d.decode(br#"{"t": 1.5}"#, pos()).unwrap().event_time, 1500);
        let d = decoder("{stdin: {}, eventTime: {field: event.at, format: rfc3339}}");
        assert_eq!(
            d.decode(br#"{"at": "1970-01-01T00:00:02Z"}"#, pos())
                .unwrap()
                .event_time,
            2000
        );
    }

    #[test]
    fn bad_input_becomes_a_dead_letter_with_provenance() {
        let d = decoder("{stdin: {}, eventTime: {field: event.ts}}");
        let p = Position {
            source: std::sync::Arc::from("in.jsonl"),
            partition: 0,
            offset: 7,
        };
        let dl = d.decode(b"{not json", p.clone()).unwrap_err();
        assert_eq!(dl.step, "decode");
        assert_eq!(dl.record.position.offset, 7);
        assert_eq!(dl.to_json()["record"]["raw"], "{not json");
        let dl = d.decode(br#"{"ts": "yesterday"}"#, p).unwrap_err();
        assert_eq!(dl.step, "eventTime");
        assert!(dl.error.contains("yesterday"), "{}", dl.error);
    }
}
