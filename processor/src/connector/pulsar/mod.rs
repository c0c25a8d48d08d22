//! Apache Pulsar: a source on a shared or key-shared subscription and a sink
//! that awaits every send receipt at flush.
//!
//! # Layout
//! - `source`: the consumer thread and its [`Acker`](crate::source::Acker).
//! - `sink`: the producer.
//!
//! # Guarantees
//! At-least-once both ways. The source acknowledges a message only once the
//! engine reports it durable (results flushed, not held by a step); the
//! broker redelivers every unacknowledged message of a replica that dies to
//! the replicas that remain. The sink's flush returns only when the broker
//! has confirmed every message sent since the last flush.
//!
//! The `pulsar` crate runs on tokio; each source and sink owns a small
//! runtime (one worker thread for the connection's background tasks) and
//! drives it from the engine's synchronous calls.

mod sink;
mod source;

pub use sink::PulsarSink;
pub use source::start;

/// The client's executor: tokio.
type Exe = pulsar::TokioExecutor;

/// A connection to the broker at `url`.
///
/// The client's defaults give up on a send after 30 s and back off up to
/// 30 s between reconnects: a broker restart (down 20 s, ~15 s to start)
/// would fail the run. These ride through about two minutes of outage,
/// reconnecting every 5 s at most; the sink's flush (and so the source's
/// acknowledgements) waits meanwhile.
async fn connect(url: &str) -> Result<pulsar::Pulsar<Exe>, pulsar::Error> {
    pulsar::Pulsar::builder(url, pulsar::TokioExecutor)
        .with_connection_retry_options(pulsar::ConnectionRetryOptions {
            max_backoff: std::time::Duration::from_secs(5),
            max_retries: 30,
            ..pulsar::ConnectionRetryOptions::default()
        })
        .with_operation_retry_options(pulsar::OperationRetryOptions {
            // A standalone broker restarted after a crash may refuse to
            // create producers while it recovers its ledgers: measured
            // past 80 s on two busy cores.
            operation_timeout: std::time::Duration::from_secs(300),
            ..pulsar::OperationRetryOptions::default()
        })
        .build()
        .await
}

/// A runtime for one connector: the caller's thread drives it through
/// `block_on`, one worker runs the connection's tasks meanwhile (so a
/// caller blocked on a full queue does not stall pings and receipts).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pulsar-io")
        .enable_all()
        .build()
}

/// The fully qualified topic name: `orders` and `tenant/ns/orders` are
/// short for `persistent://public/default/orders` and
/// `persistent://tenant/ns/orders`.
#[must_use]
pub fn full_topic(topic: &str) -> String {
    let topic = topic.trim();
    if topic.contains("://") {
        topic.to_owned()
    } else if topic.contains('/') {
        format!("persistent://{topic}")
    } else {
        format!("persistent://public/default/{topic}")
    }
}

#[cfg(test)]
mod tests {
    use super::full_topic;

    #[test]
    fn short_topic_names_expand_like_the_java_client() {
        assert_eq!(full_topic("orders"), "persistent://public/default/orders");
        assert_eq!(full_topic("t/ns/orders"), "persistent://t/ns/orders");
        assert_eq!(
            full_topic("non-persistent://t/ns/o"),
            "non-persistent://t/ns/o"
        );
    }
}
