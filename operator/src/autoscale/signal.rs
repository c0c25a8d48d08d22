//! Reading the lag signal: committed group offsets against the partitions'
//! end offsets, through the Kafka protocol's metadata, list-offsets and
//! offset-fetch requests (no group membership, so reading never triggers a
//! rebalance of the processors).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tributary_crds::{KafkaSource, StartFrom, StreamPipeline};

use super::Sample;

/// How long one broker request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The lag could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The pipeline has no signal the autoscaler can read.
    #[error("{0}")]
    Unsupported(String),
    /// `GetMetricData` failed.
    #[error("reading CloudWatch metric {metric}: {message}")]
    CloudWatch {
        /// `namespace/metricName`.
        metric: String,
        /// The SDK's error with its context.
        message: String,
    },
    /// A broker request failed.
    #[error("reading Kafka offsets of group {group} from {brokers}: {source}")]
    Kafka {
        /// The consumer group.
        group: String,
        /// Bootstrap servers.
        brokers: String,
        /// The client error (boxed: it is large and this path is cold).
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
}

/// One reading of a pipeline's Kafka source.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaReading {
    /// Totals for the decision.
    pub sample: Sample,
    /// Partitions over every topic.
    pub partitions: i32,
    /// Lag per `(topic, partition)`.
    pub per_partition: Vec<(String, i32, i64)>,
}

/// Where a pipeline's source lag is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTarget {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topics.
    pub topics: Vec<String>,
    /// The processors' consumer group.
    pub group: String,
    /// Where a group without a committed offset starts.
    pub start_from: StartFrom,
}

impl KafkaTarget {
    /// The target of `sp`, or why there is none.
    ///
    /// # Errors
    /// [`SignalError::Unsupported`] for a non-Kafka source or one that needs
    /// credentials (the operator does not read the pipeline's Secrets).
    pub fn of(sp: &StreamPipeline) -> Result<Self, SignalError> {
        let Some(k) = sp.spec.source.kafka.as_ref() else {
            return Err(SignalError::Unsupported(
                "autoscaling reads Kafka consumer lag; this pipeline's source is not Kafka".into(),
            ));
        };
        Self::from_source(
            k,
            sp.metadata.namespace.as_deref(),
            sp.metadata.name.as_deref(),
        )
    }

    fn from_source(
        k: &KafkaSource,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<Self, SignalError> {
        if k.auth.is_some() {
            return Err(SignalError::Unsupported(
                "autoscaling cannot read the lag of a Kafka source with auth yet (the operator does not read the pipeline's Secrets)".into(),
            ));
        }
        let group = match k.group.as_deref().filter(|g| !g.trim().is_empty()) {
            Some(g) => g.to_owned(),
            None => format!(
                "{}.{}",
                namespace.unwrap_or("default"),
                name.unwrap_or_default()
            ),
        };
        Ok(Self {
            brokers: k.brokers.clone(),
            topics: k.topics.clone(),
            group,
            start_from: k.start_from,
        })
    }

    /// Reads the lag now (blocking: call it from `spawn_blocking`).
    ///
    /// A partition without a committed offset counts from where the group
    /// would start: everything retained for `startFrom: earliest`, nothing
    /// for `latest` — the same position the processors will take.
    ///
    /// # Errors
    /// [`SignalError::Kafka`] when a broker request fails.
    pub fn read(&self, at_ms: i64) -> Result<KafkaReading, SignalError> {
        let err = |source| SignalError::Kafka {
            group: self.group.clone(),
            brokers: self.brokers.clone(),
            source: Box::new(source),
        };
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(err)?;
        let mut tpl = TopicPartitionList::new();
        for topic in &self.topics {
            let md = consumer.fetch_metadata(Some(topic), TIMEOUT).map_err(err)?;
            for t in md.topics() {
                for p in t.partitions() {
                    tpl.add_partition(t.name(), p.id());
                }
            }
        }
        let committed = consumer.committed_offsets(tpl, TIMEOUT).map_err(err)?;
        let mut reading = KafkaReading {
            sample: Sample {
                at_ms,
                lag: 0,
                end_offsets: 0,
                committed: 0,
            },
            partitions: 0,
            per_partition: Vec::new(),
        };
        for e in committed.elements() {
            let (low, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), TIMEOUT)
                .map_err(err)?;
            let position = match e.offset() {
                Offset::Offset(o) => o.clamp(low, high),
                _ => match self.start_from {
                    StartFrom::Earliest => low,
                    StartFrom::Latest => high,
                },
            };
            let lag = high - position;
            reading.partitions += 1;
            reading.sample.lag += lag;
            reading.sample.end_offsets += high;
            reading.sample.committed += position;
            reading
                .per_partition
                .push((e.topic().to_owned(), e.partition(), lag));
        }
        Ok(reading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_defaults_as_the_processor_defaults_it() {
        let k = KafkaSource {
            brokers: "k:9092".into(),
            topics: vec!["t".into()],
            ..KafkaSource::default()
        };
        let t = KafkaTarget::from_source(&k, Some("ns"), Some("p")).unwrap();
        assert_eq!(t.group, "ns.p");
        let k = KafkaSource {
            group: Some("g".into()),
            ..k
        };
        assert_eq!(
            KafkaTarget::from_source(&k, Some("ns"), Some("p"))
                .unwrap()
                .group,
            "g"
        );
    }
}
