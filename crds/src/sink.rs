//! Where results go: `spec.sinks[*]` and `spec.deadLetter`.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{CircuitBreaker, Duration, SecretValue};

/// A sink; exactly one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "(has(self.kafka) ? 1 : 0) + (has(self.kinesis) ? 1 : 0) + (has(self.postgres) ? 1 : 0) + (has(self.http) ? 1 : 0) + (has(self.redisStreams) ? 1 : 0) + (has(self.nats) ? 1 : 0) + (has(self.pubsub) ? 1 : 0) + (has(self.pulsar) ? 1 : 0) + (has(self.stdout) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.blackhole) ? 1 : 0) == 1"
).message("exactly one sink kind must be set: kafka, kinesis, postgres, http, redisStreams, nats, pubsub, pulsar, stdout, file or blackhole"))]
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
    /// Publish to an Apache Pulsar topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulsar: Option<PulsarSink>,
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
    Pulsar(&'a PulsarSink),
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
            Self::Pulsar(_) => "pulsar",
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
        if let Some(s) = &self.pulsar {
            v.push(SinkKind::Pulsar(s));
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

/// An HTTP endpoint that receives batches as JSON arrays (`POST`).
///
/// At-least-once: a batch is sent until the endpoint answers 2xx; while it
/// is down the sink blocks (the circuit breaker paces the attempts), so the
/// pipeline stops pulling from its source and nothing is lost. A batch the
/// endpoint refuses for good (4xx other than 408 and 429) goes to the
/// dead-letter sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSink {
    /// URL to POST to (`http://`).
    pub url: String,
    /// Most records in one request; default 100. Smaller batches are sent
    /// at each flush (every `checkpoint.interval`, at most 1s).
    #[serde(default = "crate::http::default_batch_size")]
    pub batch_size: u32,
    /// Longest wait for one request; default 5s.
    #[serde(default = "crate::http::default_timeout")]
    pub timeout: Duration,
    /// Pause before retrying a failed request; it doubles with each failure
    /// (at most `circuitBreaker.openFor`). Default 100ms.
    #[serde(default = "crate::http::default_backoff")]
    pub backoff: Duration,
    /// Extra request headers (not for secrets: they are stored in the spec).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// When to stop calling a failing endpoint and how long to wait before a probe.
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
}

impl Default for HttpSink {
    fn default() -> Self {
        Self {
            url: String::new(),
            batch_size: crate::http::default_batch_size(),
            timeout: crate::http::default_timeout(),
            backoff: crate::http::default_backoff(),
            headers: BTreeMap::new(),
            circuit_breaker: CircuitBreaker::default(),
        }
    }
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

/// A Pub/Sub topic: batched publish, at-least-once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PubSubSink {
    /// Google Cloud project that owns the topic.
    pub project: String,
    /// Topic name (the short name, not `projects/.../topics/...`).
    pub topic: String,
    /// Endpoint override, as for the source: `host:port` or `http://` is an
    /// emulator, `https://` a private endpoint; absent: `PUBSUB_EMULATOR_HOST`
    /// when set, else `https://pubsub.googleapis.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// CEL expression for the message's ordering key (a string; `null` or
    /// `""` for none). Absent: the record's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// Message attributes: name to CEL expression (strings as is, other
    /// values as JSON, `null` leaves the attribute out). They add to the
    /// record's headers, which are always copied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// An Apache Pulsar topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PulsarSink {
    /// `pulsar://host:6650`.
    pub service_url: String,
    /// Topic, e.g. `persistent://public/default/orders` or a short name
    /// (`orders` means `persistent://public/default/orders`).
    pub topic: String,
    /// CEL expression for the message key; default the record's own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
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
