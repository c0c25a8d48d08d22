//! Creating repartition topics and reading partition counts.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

/// How long creating a topic or reading its metadata may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Repartition topics keep a week: a restore replays a task's partition
/// from its low-water offset, which must still be there.
const RETENTION_MS: &str = "604800000";

/// Creates the topic with `partitions` unless it exists; returns its
/// partition count (an existing topic keeps its own).
///
/// # Errors
/// When the brokers refuse the creation or the metadata.
pub fn ensure_topic(config: &ClientConfig, topic: &str, partitions: i32) -> Result<i32, String> {
    ensure_topic_with(
        config,
        topic,
        partitions,
        &[("retention.ms", RETENTION_MS), ("cleanup.policy", "delete")],
    )
}

/// [`ensure_topic`] with the topic settings `settings`.
///
/// # Errors
/// As [`ensure_topic`].
pub fn ensure_topic_with(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    settings: &[(&str, &str)],
) -> Result<i32, String> {
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("creating an admin client: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime for the admin client: {e}"))?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (k, v) in settings {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = rt
        .block_on(admin.create_topics([&new], &opts))
        .map_err(|e| format!("creating topic {topic}: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(format!("creating topic {t}: {code}")),
        }
    }
    partition_count(admin.inner(), topic)
}

/// The number of partitions of `topic`, waiting for a new topic's metadata.
///
/// # Errors
/// When the metadata cannot be read or the topic has no partitions.
pub fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<i32, String> {
    let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
    loop {
        let md = client
            .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
            .map_err(|e| format!("reading the metadata of {topic}: {e}"))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        if n > 0 {
            return i32::try_from(n).map_err(|e| e.to_string());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "topic {topic} has no partitions after {ADMIN_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
