//! NATS JetStream: a durable pull-consumer source and a publish sink.
//!
//! # Layout
//! - `source`: the pull consumer (explicit and in-progress acknowledgements).
//! - `sink`: publishes awaited at each flush, retried until the server is back.

pub mod sink;
pub mod source;

pub use sink::NatsSink;
pub use source::start;
