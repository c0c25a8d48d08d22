//! Connectors to brokers, each behind its cargo feature.
//!
//! # Layout
//! - `kafka`: the partition-scoped Kafka engine, sinks and dead letters.
//! - `redis`: Redis Streams consumer-group source and `XADD` sink.
//! - `nats`: NATS JetStream durable pull-consumer source and publish sink.
//! - `cloudwatch`: the `spec.metrics.cloudWatch` export (`PutMetricData`).
//! - `ack`: the sequence ledger and mark those broker sources acknowledge with.

#[cfg(any(feature = "redis", feature = "nats"))]
pub mod ack;
#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "pubsub")]
pub mod pubsub;
#[cfg(feature = "pulsar")]
pub mod pulsar;
#[cfg(feature = "redis")]
pub mod redis;

/// This process among a group's members (a Kafka transactional id, a
/// Kinesis lease owner, a Redis consumer): `POD_NAME` in the cluster
/// (stable across container restarts), else the host name and process id.
#[must_use]
pub fn instance() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "local".to_owned());
    format!("{host}-{}", std::process::id())
}

/// A Tokio runtime for a source thread or a sink. The caller's thread
/// drives its calls with `block_on`; one worker keeps the clients'
/// connection tasks (pings, reconnects) alive between calls.
#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// Backoff between reconnection attempts, doubling up to 5 s.
#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) fn backoff(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100u64 << attempt.min(6))
        .min(std::time::Duration::from_secs(5))
}
