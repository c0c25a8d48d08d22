//! Where results go. Local sinks write one JSON value per line.
//!
//! # Guarantees
//! `postgres` is described in [`postgres`].
//! `stdout`, `file` and `blackhole` are at-least-once: a crash may lose what is
//! buffered since the last flush, and a rerun writes everything again.
//! `http` is at-least-once too, and blocks while its endpoint is down (see
//! [`http`]).

mod dead_letter;
mod file;
pub mod http;
pub mod postgres;

use std::io::{self, Write};
use std::path::Path;

pub use dead_letter::DeadLetter;
pub use file::LineSink;

use tributary_crds::{SinkKind, SinkSpec};

use crate::record::Record;

/// A sink could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Opening failed.
    #[error("cannot open sink {name:?} ({target}): {source}")]
    Open {
        /// Sink name.
        name: String,
        /// What it writes to.
        target: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing failed.
    #[error("cannot write to sink {name:?}: {source}")]
    Write {
        /// Sink name.
        name: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A broker refused or lost records.
    #[error("sink {name:?}: {message}")]
    Broker {
        /// Sink name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The kind has no runtime yet (validation refuses it first).
    #[error("sink {name:?}: the {kind} sink is not supported yet")]
    Unsupported {
        /// Sink name.
        name: String,
        /// Its kind.
        kind: &'static str,
    },
}

/// A destination for records.
pub trait Sink: Send {
    /// The sink's name.
    fn name(&self) -> &str;
    /// Writes records (buffered).
    ///
    /// # Errors
    /// When the destination fails.
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError>;
    /// Writes JSON values that are not records (dead letters).
    ///
    /// # Errors
    /// When the destination fails.
    fn write_values(&mut self, values: &[serde_json::Value]) -> Result<(), SinkError>;
    /// Writes dead letters: their JSON ([`DeadLetter::to_json`]) by default;
    /// broker sinks add provenance headers.
    ///
    /// # Errors
    /// When the destination fails.
    fn write_dead(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        let values: Vec<serde_json::Value> = letters.iter().map(DeadLetter::to_json).collect();
        self.write_values(&values)
    }
    /// Records the last [`write`](Sink::write) refused (too large for the
    /// destination), as dead letters; the engine routes them to the
    /// dead-letter sink so the pipeline goes on.
    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        Vec::new()
    }
    /// Makes buffered writes durable/visible.
    ///
    /// # Errors
    /// When the destination fails.
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// Discards everything (benchmarks).
pub struct NullSink {
    name: String,
}

impl Sink for NullSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        std::hint::black_box(records);
        Ok(())
    }
    fn write_values(&mut self, _: &[serde_json::Value]) -> Result<(), SinkError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Opens the sink a spec describes; relative file paths resolve against `base`.
///
/// # Errors
/// [`SinkError::Open`] when a file cannot be created, [`SinkError::Unsupported`]
/// for kinds without a runtime.
pub fn open(spec: &SinkSpec, default_name: &str, base: &Path) -> Result<Box<dyn Sink>, SinkError> {
    let name = if spec.name.is_empty() {
        default_name.to_owned()
    } else {
        spec.name.clone()
    };
    match spec.kind() {
        Some(SinkKind::Stdout(_)) => Ok(Box::new(LineSink::new(name, Box::new(io::stdout())))),
        Some(SinkKind::File(f)) => {
            let path = base.join(&f.path);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| SinkError::Open {
                    name: name.clone(),
                    target: dir.display().to_string(),
                    source,
                })?;
            }
            let file = std::fs::File::create(&path).map_err(|source| SinkError::Open {
                name: name.clone(),
                target: path.display().to_string(),
                source,
            })?;
            Ok(Box::new(LineSink::new(name, Box::new(file))))
        }
        Some(SinkKind::Blackhole(_)) => Ok(Box::new(NullSink { name })),
        Some(SinkKind::Http(h)) => Ok(Box::new(http::HttpSink::new(name, h))),
        #[cfg(feature = "pulsar")]
        Some(SinkKind::Pulsar(p)) => Ok(Box::new(crate::connector::pulsar::PulsarSink::open(
            name, p,
        )?)),
        #[cfg(not(feature = "pulsar"))]
        Some(SinkKind::Pulsar(_)) => Err(SinkError::Unsupported {
            name,
            kind: "pulsar (this build has no Pulsar support: build with --features pulsar)",
        }),
        #[cfg(feature = "kinesis")]
        Some(SinkKind::Kinesis(k)) => Ok(Box::new(crate::connector::kinesis::KinesisSink::open(
            name, k,
        )?)),
        #[cfg(feature = "pubsub")]
        Some(SinkKind::PubSub(p)) => Ok(Box::new(crate::connector::pubsub::PubSubSink::open(
            name, p,
        )?)),
        #[cfg(feature = "redis")]
        Some(SinkKind::RedisStreams(r)) => {
            Ok(Box::new(crate::connector::redis::RedisSink::open(name, r)?))
        }
        #[cfg(feature = "nats")]
        Some(SinkKind::Nats(n)) => Ok(Box::new(crate::connector::nats::NatsSink::open(name, n)?)),
        Some(SinkKind::Postgres(p)) => postgres::open(name, p, "postgres"),
        Some(other) => Err(SinkError::Unsupported {
            name,
            kind: other.field(),
        }),
        None => Err(SinkError::Unsupported {
            name,
            kind: "unset",
        }),
    }
}

/// A broker key's string form: a string as is, `null` as no key, else its JSON.
#[must_use]
pub fn key_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Writes `value` and a newline.
pub(crate) fn write_line(w: &mut impl Write, value: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer(&mut *w, value)?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::key_string;
    use serde_json::json;

    #[test]
    fn keys_are_strings_as_is_and_other_values_as_json() {
        assert_eq!(key_string(&json!("u1")).as_deref(), Some("u1"));
        assert_eq!(key_string(&json!(42)).as_deref(), Some("42"));
        assert_eq!(key_string(&json!(null)), None);
        assert_eq!(key_string(&json!({"a": 1})).as_deref(), Some(r#"{"a":1}"#));
    }
}
