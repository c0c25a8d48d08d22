//! Connectors to brokers, each behind its cargo feature.

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "pulsar")]
pub mod pulsar;

/// This process among a group's members (a Kafka transactional id, a
/// Kinesis lease owner): `POD_NAME` in the cluster, else the host name and
/// process id.
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
#[cfg(feature = "pubsub")]
pub mod pubsub;
