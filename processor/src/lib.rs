//! The Tributary engine: sources, decoding, steps, event time, sinks and
//! the runtime that wires them, plus what the `tributary` CLI needs.
//!
//! # Layout
//! - [`record`]: the record that flows through every stage.
//! - [`expr`]: CEL compiled once, with a fast path for plain field paths.
//! - [`source`]: generator, file and stdin sources, decoding, event time.
//! - [`flow`]: the bounded queue between the source and the engine, with
//!   the backpressure policies.
//! - [`time`]: watermarks per partition.
//! - [`step`]: filter, map, flatMap, dedupe, validate, window, CEP,
//!   anomaly, enrich and http (UDF) steps.
//! - [`sink`]: stdout, file, HTTP and null sinks, dead letters.
//! - [`http`]: the blocking JSON client of the http step and sink.
//! - [`runtime`]: the engine loop, metrics and progress.
//! - `connector`: brokers behind cargo features (`kafka`, `kinesis`,
//!   `pubsub`, `redis`, `nats` on by default; `pulsar` off).

#[cfg(any(
    feature = "kafka",
    feature = "kinesis",
    feature = "pubsub",
    feature = "redis",
    feature = "nats"
))]
pub mod connector;
pub mod expr;
pub mod flow;
pub mod http;
pub mod record;
pub mod rng;
pub mod runtime;
pub mod secret;
pub mod sink;
pub mod source;
pub mod step;
pub mod time;

pub use runtime::{Pipeline, RunError, Summary};
