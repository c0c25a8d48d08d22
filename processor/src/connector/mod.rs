//! Connectors to brokers, each behind its cargo feature.

pub mod kafka;
