//! Sources: each runs on its own thread, decodes records once, stamps
//! their event time and hands batches to the engine through the [`Queue`].

#[cfg(feature = "avro")]
mod avro;
mod decode;
mod generator;
mod lines;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

pub use decode::{Decoder, EventTimeError, now_ms};
pub use generator::Generator;

use tributary_crds::{SourceKind, SourceSpec};

use crate::flow::Queue;

/// Records per batch: large enough to amortize the queue lock, small
/// enough to keep latency in the milliseconds.
pub const BATCH: usize = 1024;

/// A source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file could not be opened.
    #[error("cannot open source file {path}: {source}")]
    Open {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An expression of the source (event time) is invalid.
    #[error("spec.source.eventTime.field: {0}")]
    Expr(#[from] crate::expr::ExprError),
    /// The payload format cannot be set up (an Avro schema that does not parse).
    #[error("{0}")]
    Format(String),
    /// A broker client could not be created (endpoint, credentials).
    #[error("spec.source: {0}")]
    Client(String),
    /// A broker source could not connect or set up its consumer.
    #[error("spec.source.{kind}.{message}")]
    Connect {
        /// The source kind (`redisStreams`, `nats`).
        kind: &'static str,
        /// `<field>: <what went wrong and what to do>`.
        message: String,
    },
    /// The kind has no runtime yet (validation refuses it first).
    #[error("spec.source.{0}: not supported yet")]
    Unsupported(&'static str),
    /// No kind set.
    #[error("spec.source: no source kind set")]
    Missing,
    /// The `with` source of a join failed to start; it is read as
    /// `spec.source` would be, so the inner error names that field.
    #[error("spec.steps[{step}].join.with (read as spec.source would be): {source}")]
    Side {
        /// The join step's index.
        step: usize,
        /// What went wrong.
        #[source]
        source: Box<SourceError>,
    },
}

/// A running source.
pub struct Running {
    /// Its thread; joins when the source ends or `stop` is set.
    pub handle: JoinHandle<()>,
    /// Partitions it reads (the engine waits for an `End` from each when bounded).
    pub partitions: Vec<i32>,
    /// Whether it ends by itself.
    pub bounded: bool,
    /// How a broker source learns what is durable (see [`Acker`]); `None`
    /// for sources that redeliver nothing (files, the generator).
    pub acker: Option<Box<dyn Acker>>,
}

/// The resource a source runs for: its `metadata` gives the default
/// consumer group / durable name of broker sources.
#[derive(Clone, Debug, Default)]
pub struct Owner {
    /// `metadata.name`; `None` for a bare spec.
    pub name: Option<String>,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
}

/// Acknowledges input back to a source whose broker redelivers what is not
/// acknowledged (Redis consumer groups, JetStream, Kinesis checkpoints).
///
/// Such a source stamps every record with one monotone sequence number in
/// `position.offset`, across all its partitions, and remembers which broker
/// message each number stands for. The engine calls [`Acker::ack_below`]
/// after the sinks were flushed, with the smallest sequence number that is
/// not yet durable: every record below it has had its results flushed and
/// is no longer held in any step's state (open windows, partial matches).
/// Acknowledging only those makes a crash redeliver exactly what would
/// otherwise be lost — at-least-once, windows included.
pub trait Acker: Send {
    /// Records with `position.offset < below` are durable; acknowledge them.
    fn ack_below(&mut self, below: i64);

    /// Every record below this has been acknowledged at the broker, as far
    /// as the source knows; `None` when it does not say (the engine then
    /// takes what it asked for as done). A join whose two inputs both
    /// acknowledge raises one input's mark only as far as the other's
    /// confirmed one allows, because the two are applied on different
    /// threads and a crash can fall between them.
    fn confirmed_below(&self) -> Option<i64> {
        None
    }
}

/// Starts the source of `spec`, pushing into `queue` until it ends or
/// `stop` is set. Relative paths resolve against `base`; `owner` names
/// default consumer groups.
///
/// # Errors
/// [`SourceError`] when it cannot start.
pub fn start(
    spec: &SourceSpec,
    base: &Path,
    owner: &Owner,
    queue: Arc<Queue>,
    stop: Arc<AtomicBool>,
) -> Result<Running, SourceError> {
    let decoder = Decoder::new(spec)?;
    match spec.kind() {
        Some(SourceKind::Generator(g)) => {
            let bounded = g.count.is_some();
            let generator = Generator::new(g.clone());
            let handle = std::thread::Builder::new()
                .name("source-generator".into())
                .spawn(move || generator.run(&decoder, &queue, &stop))
                .map_err(|source| SourceError::Open {
                    path: "generator thread".into(),
                    source,
                })?;
            Ok(Running {
                handle,
                partitions: vec![0],
                bounded,
                acker: None,
            })
        }
        Some(SourceKind::File(f)) => {
            let path = base.join(&f.path);
            let file = std::fs::File::open(&path).map_err(|source| SourceError::Open {
                path: path.display().to_string(),
                source,
            })?;
            let name: Arc<str> = f.path.as_str().into();
            let handle = std::thread::Builder::new()
                .name("source-file".into())
                .spawn(move || lines::run(file, &name, &decoder, &queue, &stop))
                .map_err(|source| SourceError::Open {
                    path: "file thread".into(),
                    source,
                })?;
            Ok(Running {
                handle,
                partitions: vec![0],
                bounded: true,
                acker: None,
            })
        }
        Some(SourceKind::Stdin(_)) => {
            let handle = std::thread::Builder::new()
                .name("source-stdin".into())
                .spawn(move || {
                    lines::run(
                        std::io::stdin(),
                        &Arc::from("stdin"),
                        &decoder,
                        &queue,
                        &stop,
                    )
                })
                .map_err(|source| SourceError::Open {
                    path: "stdin thread".into(),
                    source,
                })?;
            Ok(Running {
                handle,
                partitions: vec![0],
                bounded: true,
                acker: None,
            })
        }
        #[cfg(feature = "pulsar")]
        Some(SourceKind::Pulsar(p)) => crate::connector::pulsar::start(p, decoder, queue, stop),
        #[cfg(not(feature = "pulsar"))]
        Some(SourceKind::Pulsar(_)) => Err(SourceError::Unsupported(
            "pulsar (this build has no Pulsar support: build with --features pulsar)",
        )),
        #[cfg(feature = "pubsub")]
        Some(SourceKind::PubSub(p)) => crate::connector::pubsub::start(p, decoder, queue, stop),
        #[cfg(not(feature = "pubsub"))]
        Some(SourceKind::PubSub(_)) => Err(SourceError::Unsupported(
            "pubsub (built without the pubsub feature)",
        )),
        #[cfg(feature = "redis")]
        Some(SourceKind::RedisStreams(r)) => {
            crate::connector::redis::start(r, owner, decoder, queue, stop)
        }
        #[cfg(feature = "nats")]
        Some(SourceKind::Nats(n)) => crate::connector::nats::start(n, owner, decoder, queue, stop),
        Some(other) => {
            let _ = owner;
            Err(SourceError::Unsupported(other.field()))
        }
        None => Err(SourceError::Missing),
    }
}
