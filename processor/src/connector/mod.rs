//! Connectors to brokers, each behind its cargo feature.

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "pubsub")]
pub mod pubsub;
