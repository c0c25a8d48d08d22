//! Connectors to brokers, each behind its cargo feature.

pub mod kafka;
#[cfg(feature = "pulsar")]
pub mod pulsar;
