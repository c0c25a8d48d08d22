//! Redis Streams: a consumer-group source and an `XADD` sink.
//!
//! # Layout
//! - `conn`: a connection that reconnects after a failure.
//! - `entry`: entries as Redis returns them and the records they become.
//! - `source`: the consumer (pending re-read, claims, acknowledgements).
//! - `sink`: pipelined `XADD` with `MAXLEN ~`.

pub mod conn;
pub mod entry;
pub mod sink;
pub mod source;

pub use sink::RedisSink;
pub use source::start;
