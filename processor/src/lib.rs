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
//! - [`step`]: filter, map, flatMap, dedupe, validate and window steps.
//! - [`sink`]: stdout, file and null sinks, dead letters.
//! - [`runtime`]: the engine loop, metrics and progress.
//! - `connector`: brokers behind cargo features (`kafka`, on by default).

#[cfg(feature = "kafka")]
pub mod connector;
pub mod expr;
pub mod flow;
pub mod record;
pub mod rng;
pub mod runtime;
pub mod secret;
pub mod sink;
pub mod source;
pub mod step;
pub mod time;

pub use runtime::{Pipeline, RunError, Summary};
