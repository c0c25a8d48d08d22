//! Stream-stream interval joins: `spec.steps[*].join` (see `docs/joins.md`
//! for the exact semantics).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    Duration, EventTimeSpec, FileSource, FormatSpec, GeneratorSource, KafkaAuth, KinesisSource,
    NatsSource, PubSubSource, PulsarSource, RedisStreamsSource, StartFrom,
};

/// Join types, as in SQL: which unmatched records are emitted too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum JoinType {
    /// Only matched pairs.
    #[default]
    Inner,
    /// Matched pairs, and every left record that matched nothing, with `other: null`.
    Left,
    /// Matched pairs, and every right record that matched nothing, as `{"other": <right>}`.
    Right,
    /// Matched pairs and the unmatched records of both sides.
    Full,
}

impl JoinType {
    /// Whether left records that matched nothing are emitted.
    #[must_use]
    pub fn keeps_left(self) -> bool {
        matches!(self, Self::Left | Self::Full)
    }

    /// Whether right records that matched nothing are emitted.
    #[must_use]
    pub fn keeps_right(self) -> bool {
        matches!(self, Self::Right | Self::Full)
    }
}

/// `join`: an event-time interval join of the records reaching this step
/// (the left side) with the records of a second source (the right side).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinStep {
    /// The other stream: a second source, read next to `spec.source`.
    pub with: JoinSource,
    /// `inner` (default), `left`, `right` or `full`.
    #[serde(default, rename = "type")]
    pub kind: JoinType,
    /// Join keys: records join when both keys are equal (and not null).
    pub on: JoinOn,
    /// Largest event-time distance between joined records (inclusive):
    /// `l` and `r` join when `|l.ts - r.ts| <= within`.
    pub within: Duration,
}

/// The second input of a join: exactly one source kind, decoded and
/// timestamped like `spec.source` unless `format` or `eventTime` say otherwise.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "(has(self.kafka) ? 1 : 0) + (has(self.kinesis) ? 1 : 0) + (has(self.redisStreams) ? 1 : 0) + (has(self.nats) ? 1 : 0) + (has(self.pubsub) ? 1 : 0) + (has(self.pulsar) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.generator) ? 1 : 0) == 1"
).message("exactly one kind must be set: kafka, kinesis, redisStreams, nats, pubsub, pulsar, file or generator"))]
pub struct JoinSource {
    /// A Kafka topic. With a main source that is not Kafka: read as a
    /// plain consumer (every partition, no consumer group, at-least-once).
    /// After a Kafka main source: a topic of the same cluster, read by the
    /// pipeline's consumer group and re-keyed with the main side through a
    /// repartition topic (see `docs/joins.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<JoinKafka>,
    /// An AWS Kinesis data stream, read as `spec.source.kinesis` reads one
    /// (shard leases in DynamoDB; the default lease table is the main
    /// source's default with `-join<i>` appended, `i` the step's index).
    /// Shard positions are checkpointed once the join no longer needs a
    /// record (see `docs/joins.md`). Only with a main source that is not
    /// Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis: Option<KinesisSource>,
    /// A Redis stream, read through a consumer group as
    /// `spec.source.redisStreams` reads one; entries are acknowledged once
    /// the join no longer needs them. Only with a main source that is not
    /// Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_streams: Option<RedisStreamsSource>,
    /// A NATS JetStream stream, read with a durable consumer as
    /// `spec.source.nats` reads one; messages are acknowledged once the
    /// join no longer needs them. Only with a main source that is not
    /// Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSource>,
    /// A Google Cloud Pub/Sub subscription, pulled as `spec.source.pubsub`
    /// pulls one; messages are acknowledged once the join no longer needs
    /// them. Only with a main source that is not Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<PubSubSource>,
    /// An Apache Pulsar topic, consumed as `spec.source.pulsar` consumes
    /// one; messages are acknowledged once the join no longer needs them.
    /// Only with a main source that is not Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulsar: Option<PulsarSource>,
    /// A file of JSON lines (or text lines); bounded. Relative paths are
    /// resolved against the pipeline file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
    /// Synthetic events, deterministic for a seed; bounded when `count` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorSource>,
    /// How its records are decoded; default `spec.source.format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FormatSpec>,
    /// Where its event time comes from (CEL over its record as `event`);
    /// default `spec.source.eventTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTimeSpec>,
}

impl JoinSource {
    /// The kinds set, by field name (exactly one in a valid spec).
    #[must_use]
    pub fn kinds(&self) -> Vec<&'static str> {
        [
            ("kafka", self.kafka.is_some()),
            ("kinesis", self.kinesis.is_some()),
            ("redisStreams", self.redis_streams.is_some()),
            ("nats", self.nats.is_some()),
            ("pubsub", self.pubsub.is_some()),
            ("pulsar", self.pulsar.is_some()),
            ("file", self.file.is_some()),
            ("generator", self.generator.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// Whether the side is a broker source that acknowledges its records
    /// (Kinesis, Redis Streams, NATS, Pub/Sub, Pulsar): the join must then
    /// say when it no longer needs one.
    #[must_use]
    pub fn acknowledges(&self) -> bool {
        let brokers = ["kinesis", "redisStreams", "nats", "pubsub", "pulsar"];
        self.kinds().iter().any(|k| brokers.contains(k))
    }
}

/// A Kafka topic as the second input of a join. With a main source that
/// is not Kafka, every partition is assigned and read from `startFrom`;
/// nothing is committed, so each run reads from `startFrom` again. After a
/// Kafka main source, its partitions are tasks of the pipeline's consumer
/// group like the source's, committed with them; `startFrom` applies when
/// the group has no offset yet (see `docs/joins.md`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinKafka {
    /// Topic name.
    pub topic: String,
    /// Bootstrap servers, comma separated (`kafka:9092`); required unless
    /// the main source is Kafka (then they are its brokers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// `earliest` (default: the oldest retained record) or `latest` (only
    /// records written after the run starts).
    #[serde(default)]
    pub start_from: StartFrom,
    /// SASL and TLS to the brokers, as `spec.source.kafka.auth` (secrets by
    /// reference only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<KafkaAuth>,
}

/// Join keys of both sides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinOn {
    /// CEL over the left record, bound to `event`.
    pub left: String,
    /// CEL over the right record, bound to `other`.
    pub right: String,
}
