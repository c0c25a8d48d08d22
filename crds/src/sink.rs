//! Where results go: `spec.sinks[*]` and `spec.deadLetter`.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SecretValue;

/// A sink; exactly one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "(has(self.kafka) ? 1 : 0) + (has(self.kinesis) ? 1 : 0) + (has(self.postgres) ? 1 : 0) + (has(self.http) ? 1 : 0) + (has(self.redisStreams) ? 1 : 0) + (has(self.nats) ? 1 : 0) + (has(self.pubsub) ? 1 : 0) + (has(self.stdout) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.blackhole) ? 1 : 0) == 1"
).message("exactly one sink kind must be set: kafka, kinesis, postgres, http, redisStreams, nats, pubsub, stdout, file or blackhole"))]
pub struct SinkSpec {
    /// Unique name among the sinks (used by `sideOutput:<name>` and metrics). Optional for `deadLetter`.
    #[serde(default)]
    pub name: String,
    /// A Kafka topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSink>,
    /// A Kinesis stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis: Option<KinesisSink>,
    /// Upserts into a PostgreSQL table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSink>,
    /// HTTP POST of JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSink>,
    /// XADD to a Redis stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_streams: Option<RedisStreamsSink>,
    /// Publish to a NATS subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSink>,
    /// Publish to a Pub/Sub topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<PubSubSink>,
    /// One JSON value per line on standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<StdoutSink>,
    /// One JSON value per line in a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSink>,
    /// Discard everything (benchmarks). Not called `null`, which YAML reads as a null key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blackhole: Option<BlackholeSink>,
}

/// The sink kinds, borrowed from a [`SinkSpec`].
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)]
pub enum SinkKind<'a> {
    Kafka(&'a KafkaSink),
    Kinesis(&'a KinesisSink),
    Postgres(&'a PostgresSink),
    Http(&'a HttpSink),
    RedisStreams(&'a RedisStreamsSink),
    Nats(&'a NatsSink),
    PubSub(&'a PubSubSink),
    Stdout(&'a StdoutSink),
    File(&'a FileSink),
    Blackhole(&'a BlackholeSink),
}

impl SinkKind<'_> {
    /// The YAML field name of this kind.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::Kafka(_) => "kafka",
            Self::Kinesis(_) => "kinesis",
            Self::Postgres(_) => "postgres",
            Self::Http(_) => "http",
            Self::RedisStreams(_) => "redisStreams",
            Self::Nats(_) => "nats",
            Self::PubSub(_) => "pubsub",
            Self::Stdout(_) => "stdout",
            Self::File(_) => "file",
            Self::Blackhole(_) => "blackhole",
        }
    }
}

impl SinkSpec {
    /// Every kind set (a valid sink has exactly one).
    #[must_use]
    pub fn kinds(&self) -> Vec<SinkKind<'_>> {
        let mut v = Vec::with_capacity(1);
        if let Some(s) = &self.kafka {
            v.push(SinkKind::Kafka(s));
        }
        if let Some(s) = &self.kinesis {
            v.push(SinkKind::Kinesis(s));
        }
        if let Some(s) = &self.postgres {
            v.push(SinkKind::Postgres(s));
        }
        if let Some(s) = &self.http {
            v.push(SinkKind::Http(s));
        }
        if let Some(s) = &self.redis_streams {
            v.push(SinkKind::RedisStreams(s));
        }
        if let Some(s) = &self.nats {
            v.push(SinkKind::Nats(s));
        }
        if let Some(s) = &self.pubsub {
            v.push(SinkKind::PubSub(s));
        }
        if let Some(s) = &self.stdout {
            v.push(SinkKind::Stdout(s));
        }
        if let Some(s) = &self.file {
            v.push(SinkKind::File(s));
        }
        if let Some(s) = &self.blackhole {
            v.push(SinkKind::Blackhole(s));
        }
        v
    }

    /// The one kind, if exactly one is set.
    #[must_use]
    pub fn kind(&self) -> Option<SinkKind<'_>> {
        let kinds = self.kinds();
        if kinds.len() == 1 {
            kinds.first().copied()
        } else {
            None
        }
    }
}

/// A Kafka topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSink {
    /// Topic.
    pub topic: String,
    /// Bootstrap servers; default the source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// CEL expression for the record key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A Kinesis stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KinesisSink {
    /// Stream name.
    pub stream: String,
    /// AWS region.
    pub region: String,
    /// Endpoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// CEL expression for the partition key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
}

/// A PostgreSQL table; exactly-once when the source is Kafka (offsets in the same transaction).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresSink {
    /// Connection string, by reference.
    pub connection: SecretValue,
    /// Table.
    pub table: String,
    /// Columns forming the upsert key.
    #[serde(default)]
    pub upsert_key: Vec<String>,
}

/// An HTTP endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSink {
    /// URL to POST to.
    pub url: String,
}

/// A Redis stream: one `XADD` per record, pipelined per flush.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisStreamsSink {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Stream key.
    pub stream: String,
    /// Trims the stream to about this many entries (`XADD ... MAXLEN ~ n`); absent = no trimming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_len: Option<u64>,
    /// The field that holds the record's JSON value.
    #[serde(default = "crate::source::default_payload_field")]
    pub payload_field: String,
}

impl Default for RedisStreamsSink {
    fn default() -> Self {
        Self {
            url: String::new(),
            stream: String::new(),
            max_len: None,
            payload_field: crate::source::default_payload_field(),
        }
    }
}

/// A NATS JetStream subject: published with publish acknowledgements,
/// awaited at every flush.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSink {
    /// `nats://host:port` (comma-separate several servers).
    pub url: String,
    /// Subject; a JetStream stream must capture it.
    pub subject: String,
}

/// A Pub/Sub topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PubSubSink {
    /// Project.
    pub project: String,
    /// Topic.
    pub topic: String,
}

/// Standard output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdoutSink {}

/// A file of JSON lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSink {
    /// Path; relative paths are resolved against the pipeline file's folder. Truncated at start.
    pub path: String,
}

/// Discards records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlackholeSink {}
