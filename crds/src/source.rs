//! Where records come from: `spec.source`.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// `spec.source`: exactly one source kind, plus how to decode records and
/// where their event time comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "(has(self.kafka) ? 1 : 0) + (has(self.kinesis) ? 1 : 0) + (has(self.redisStreams) ? 1 : 0) + (has(self.nats) ? 1 : 0) + (has(self.pubsub) ? 1 : 0) + (has(self.pulsar) ? 1 : 0) + (has(self.generator) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.stdin) ? 1 : 0) == 1"
).message("exactly one source kind must be set: kafka, kinesis, redisStreams, nats, pubsub, pulsar, generator, file or stdin"))]
pub struct SourceSpec {
    /// Consume Kafka topics in a consumer group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSource>,
    /// Consume an AWS Kinesis data stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis: Option<KinesisSource>,
    /// Consume a Redis stream through a consumer group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_streams: Option<RedisStreamsSource>,
    /// Consume a NATS JetStream stream with a durable consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSource>,
    /// Pull from a Google Cloud Pub/Sub subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<PubSubSource>,
    /// Consume an Apache Pulsar topic through a shared or key-shared subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulsar: Option<PulsarSource>,
    /// Synthetic events, deterministic for a seed; bounded when `count` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorSource>,
    /// A file of JSON lines (or text lines); bounded: the run ends when it is consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
    /// Standard input, one record per line; bounded by end of input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<StdinSource>,
    /// How record values are decoded.
    #[serde(default)]
    pub format: FormatSpec,
    /// Where event time comes from; absent means processing time, except for a
    /// Kafka source, whose record timestamp is then the event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTimeSpec>,
    /// How watermarks follow event time.
    #[serde(default)]
    pub watermark: WatermarkSpec,
}

/// The source kinds, borrowed from a [`SourceSpec`].
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)]
pub enum SourceKind<'a> {
    Kafka(&'a KafkaSource),
    Kinesis(&'a KinesisSource),
    RedisStreams(&'a RedisStreamsSource),
    Nats(&'a NatsSource),
    PubSub(&'a PubSubSource),
    Pulsar(&'a PulsarSource),
    Generator(&'a GeneratorSource),
    File(&'a FileSource),
    Stdin(&'a StdinSource),
}

impl SourceKind<'_> {
    /// The YAML field name of this kind.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::Kafka(_) => "kafka",
            Self::Kinesis(_) => "kinesis",
            Self::RedisStreams(_) => "redisStreams",
            Self::Nats(_) => "nats",
            Self::PubSub(_) => "pubsub",
            Self::Pulsar(_) => "pulsar",
            Self::Generator(_) => "generator",
            Self::File(_) => "file",
            Self::Stdin(_) => "stdin",
        }
    }
}

impl SourceSpec {
    /// Whether the source acknowledges its records to a broker that
    /// redelivers the rest (Kinesis, Redis Streams, NATS, Pub/Sub,
    /// Pulsar); Kafka commits offsets instead, files and generators are
    /// read again from their start.
    #[must_use]
    pub fn acknowledges(&self) -> bool {
        self.kinesis.is_some()
            || self.redis_streams.is_some()
            || self.nats.is_some()
            || self.pubsub.is_some()
            || self.pulsar.is_some()
    }

    /// Every source kind that is set (a valid spec has exactly one).
    #[must_use]
    pub fn kinds(&self) -> Vec<SourceKind<'_>> {
        let mut v = Vec::with_capacity(1);
        if let Some(s) = &self.kafka {
            v.push(SourceKind::Kafka(s));
        }
        if let Some(s) = &self.kinesis {
            v.push(SourceKind::Kinesis(s));
        }
        if let Some(s) = &self.redis_streams {
            v.push(SourceKind::RedisStreams(s));
        }
        if let Some(s) = &self.nats {
            v.push(SourceKind::Nats(s));
        }
        if let Some(s) = &self.pubsub {
            v.push(SourceKind::PubSub(s));
        }
        if let Some(s) = &self.pulsar {
            v.push(SourceKind::Pulsar(s));
        }
        if let Some(s) = &self.generator {
            v.push(SourceKind::Generator(s));
        }
        if let Some(s) = &self.file {
            v.push(SourceKind::File(s));
        }
        if let Some(s) = &self.stdin {
            v.push(SourceKind::Stdin(s));
        }
        v
    }

    /// The one source kind, if exactly one is set.
    #[must_use]
    pub fn kind(&self) -> Option<SourceKind<'_>> {
        let kinds = self.kinds();
        if kinds.len() == 1 {
            kinds.first().copied()
        } else {
            None
        }
    }
}

/// A secret value, always by reference: never inline in the spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.secretKeyRef) != has(self.env)").message("set exactly one of secretKeyRef or env"))]
pub struct SecretValue {
    /// A key of a Secret in the pipeline's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// An environment variable of the processor (how the operator passes secrets, and how local runs read them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// A key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key inside the Secret.
    pub key: String,
}

/// Where a consumer starts when its group has no committed position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StartFrom {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records written after the consumer starts.
    Latest,
}

/// `spec.source.kafka`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSource {
    /// Bootstrap servers, comma separated (`kafka:9092`).
    pub brokers: String,
    /// Topics to consume.
    #[schemars(length(min = 1))]
    pub topics: Vec<String>,
    /// Consumer group; default `<namespace>.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Where to start when the group has no committed offsets.
    #[serde(default)]
    pub start_from: StartFrom,
    /// SASL and TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<KafkaAuth>,
    /// What the producers partition the topics by, as CEL over the record
    /// (the form of a window's `keyBy`): `[event.user]` says every record of
    /// one user is in one partition. A keyed step (window, dedupe, cep,
    /// anomaly) whose key is exactly this, with no step that rewrites
    /// records before it, runs on the input partitions as they are; any
    /// other keyed step is fed through an internal repartition topic, so
    /// each key's state lives in exactly one task. Empty (the default):
    /// the partitioning is unknown and every keyed step is repartitioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitioned_by: Vec<String>,
}

/// Kafka authentication; secrets only by reference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaAuth {
    /// SASL credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslAuth>,
    /// TLS trust and client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsAuth>,
}

/// SASL mechanism and credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaslAuth {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[schemars(regex(pattern = r"^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$"))]
    pub mechanism: String,
    /// The user name.
    pub username: SecretValue,
    /// The password.
    pub password: SecretValue,
}

/// TLS material.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsAuth {
    /// CA certificate (PEM) that signs the brokers' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretValue>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<SecretValue>,
    /// Client key (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretValue>,
}

/// Where a Kinesis consumer starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum KinesisStart {
    /// The oldest record in each shard.
    #[default]
    #[serde(rename = "TRIM_HORIZON")]
    TrimHorizon,
    /// Only new records.
    #[serde(rename = "LATEST")]
    Latest,
    /// Records from `atTimestamp` on.
    #[serde(rename = "AT_TIMESTAMP")]
    AtTimestamp,
}

/// `spec.source.kinesis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.startFrom != 'AT_TIMESTAMP' || has(self.atTimestamp)").message("atTimestamp is required when startFrom is AT_TIMESTAMP"))]
pub struct KinesisSource {
    /// Stream name.
    pub stream: String,
    /// AWS region.
    pub region: String,
    /// Endpoint override (e.g. a local emulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Where to start in each shard without a checkpoint.
    #[serde(default)]
    pub start_from: KinesisStart,
    /// RFC 3339 time for `AT_TIMESTAMP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_timestamp: Option<String>,
    /// A Secret with `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`; absent = the pod's default credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsRef>,
    /// DynamoDB table of shard leases and checkpoints, shared by the
    /// replicas (created on demand); default `tributary-<namespace>-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_table: Option<String>,
    /// A lease whose owner has not renewed it for this long is expired and
    /// may be taken by another replica; owners renew every third of it.
    #[serde(default = "default_lease_duration")]
    pub lease_duration: Duration,
    /// This replica's name in the lease table; default the pod name
    /// (`POD_NAME`), else the host name. Must differ between replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_id: Option<String>,
}

fn default_lease_duration() -> Duration {
    Duration::from_millis(10_000)
}

impl Default for KinesisSource {
    fn default() -> Self {
        Self {
            stream: String::new(),
            region: String::new(),
            endpoint: None,
            start_from: KinesisStart::default(),
            at_timestamp: None,
            credentials: None,
            lease_table: None,
            lease_duration: default_lease_duration(),
            consumer_id: None,
        }
    }
}

/// A whole Secret used as credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsRef {
    /// The Secret.
    pub secret_ref: SecretName,
}

/// A Secret by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretName {
    /// The Secret's name.
    pub name: String,
}

/// `spec.source.redisStreams`: a stream read through a consumer group.
///
/// An entry's payload is its `payloadField` field (default `data`), decoded
/// with `spec.source.format`; its other fields become record headers. An
/// entry without that field becomes the JSON object of all its fields
/// (values as strings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisStreamsSource {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Stream key.
    pub stream: String,
    /// Consumer group, created (with `MKSTREAM`) when absent; default `<namespace>.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// This replica's consumer name in the group; default `POD_NAME` (stable
    /// across container restarts, so a restarted pod re-reads its own
    /// pending entries first), else `<hostname>-<pid>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// Entries pending longer than this in another consumer (a dead
    /// replica) are claimed with `XAUTOCLAIM` and processed here. Entries a
    /// live replica still holds (open windows) are kept fresh, so they are
    /// never claimed away.
    #[serde(default = "default_claim_idle")]
    pub claim_idle: Duration,
    /// Where a newly created group starts: `earliest` (ID 0, the whole
    /// stream) or `latest` (`$`, only new entries). Ignored when the group exists.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Entries per `XREADGROUP` / `XAUTOCLAIM` call.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1))]
    pub batch_size: u32,
    /// The field that holds the payload.
    #[serde(default = "default_payload_field")]
    pub payload_field: String,
}

impl Default for RedisStreamsSource {
    fn default() -> Self {
        Self {
            url: String::new(),
            stream: String::new(),
            group: None,
            consumer: None,
            claim_idle: default_claim_idle(),
            start_from: StartFrom::default(),
            batch_size: default_batch_size(),
            payload_field: default_payload_field(),
        }
    }
}

fn default_claim_idle() -> Duration {
    Duration::from_secs(30)
}
fn default_batch_size() -> u32 {
    500
}
/// The stream field that holds a payload by default, in the source and the sink.
#[must_use]
pub fn default_payload_field() -> String {
    "data".to_owned()
}

/// `spec.source.nats`: a JetStream stream read through a durable pull
/// consumer with explicit acknowledgements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSource {
    /// `nats://host:port` (comma-separate several servers).
    pub url: String,
    /// JetStream stream name (the stream must exist).
    pub stream: String,
    /// Subject filter of the consumer; default every subject of the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Durable consumer name, created when absent and shared by the
    /// replicas; default `<namespace>-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable: Option<String>,
    /// The consumer's `ack_wait`: a message not acknowledged this long after
    /// delivery is redelivered. Replicas send in-progress acknowledgements
    /// for messages they still hold (open windows), so only the messages of
    /// a dead replica are redelivered.
    #[serde(default = "default_claim_idle")]
    pub ack_wait: Duration,
    /// Where a newly created consumer starts: `earliest` (deliver all) or
    /// `latest` (deliver new). Ignored when the consumer exists.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Messages per pull request.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1))]
    pub batch_size: u32,
    /// The consumer's `max_ack_pending`: how many delivered, unacknowledged
    /// messages it allows. It must exceed what the steps hold (open windows)
    /// or delivery stalls.
    #[serde(default = "default_max_ack_pending")]
    #[schemars(range(min = 1))]
    pub max_ack_pending: i64,
}

impl Default for NatsSource {
    fn default() -> Self {
        Self {
            url: String::new(),
            stream: String::new(),
            subject: None,
            durable: None,
            ack_wait: default_claim_idle(),
            start_from: StartFrom::default(),
            batch_size: default_batch_size(),
            max_ack_pending: default_max_ack_pending(),
        }
    }
}

fn default_max_ack_pending() -> i64 {
    100_000
}

/// `spec.source.pubsub`: a streaming pull on an existing subscription,
/// at-least-once (messages are acknowledged once their results are durable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PubSubSource {
    /// Google Cloud project that owns the subscription.
    pub project: String,
    /// Subscription name (the short name, not `projects/.../subscriptions/...`).
    pub subscription: String,
    /// Endpoint override. `host:port` or `http://host:port` is an emulator
    /// (plaintext, no credentials); `https://...` a private endpoint with
    /// Application Default Credentials. Absent: `PUBSUB_EMULATOR_HOST` when
    /// set, else `https://pubsub.googleapis.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Lease extension: while a message is in flight (not yet durable) its
    /// ack deadline is extended by this much, again and again; after a crash
    /// Pub/Sub redelivers it this long after the last extension. 10s to 600s.
    #[serde(default = "default_ack_deadline")]
    pub ack_deadline: Duration,
    /// Flow control: the most messages received and not yet acknowledged
    /// (0 = no limit). Records held by windows count, so it must exceed what
    /// the steps hold at once, or the stream pauses until they are released.
    #[serde(default = "default_max_outstanding")]
    pub max_outstanding: u32,
}

impl Default for PubSubSource {
    fn default() -> Self {
        Self {
            project: String::new(),
            subscription: String::new(),
            endpoint: None,
            ack_deadline: default_ack_deadline(),
            max_outstanding: default_max_outstanding(),
        }
    }
}

fn default_ack_deadline() -> Duration {
    Duration::from_secs(60)
}

fn default_max_outstanding() -> u32 {
    10_000
}

/// `spec.source.pulsar`: every replica joins one subscription; the broker
/// spreads messages over them and redelivers what a dead replica did not
/// acknowledge.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PulsarSource {
    /// `pulsar://host:6650`.
    pub service_url: String,
    /// Topic, e.g. `persistent://public/default/orders` or a short name
    /// (`orders` means `persistent://public/default/orders`).
    pub topic: String,
    /// Subscription name (durable: it keeps its position while no replica runs).
    pub subscription: String,
    /// How the subscription spreads messages over the replicas.
    #[serde(default)]
    pub subscription_type: PulsarSubscriptionType,
    /// Where a subscription that does not exist yet starts.
    #[serde(default)]
    pub initial_position: PulsarInitialPosition,
}

/// How a Pulsar subscription spreads messages over its consumers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PulsarSubscriptionType {
    /// Any message to any replica (round robin); no order.
    #[default]
    Shared,
    /// Messages with the same key always to the same replica, in order.
    KeyShared,
}

/// Where a new Pulsar subscription starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PulsarInitialPosition {
    /// The oldest message the topic retains.
    #[default]
    Earliest,
    /// Only messages published after the subscription was created.
    Latest,
}

/// Synthetic workloads of the generator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GeneratorProfile {
    /// `{"userId","sessionId","action","page","amount","latencyMs","ts"}` web events.
    #[default]
    Clickstream,
    /// `{"sensorId","temperature","humidity","battery","ts"}` sensor readings.
    Iot,
}

/// `spec.source.generator`: synthetic events, the same sequence for the same seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratorSource {
    /// Which kind of events.
    #[serde(default)]
    pub profile: GeneratorProfile,
    /// How many events; absent = unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Events per second; 0 = as fast as possible.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub rate: f64,
    /// Number of distinct keys (users, sensors).
    #[serde(default = "default_keys")]
    #[schemars(range(min = 1))]
    pub keys: u64,
    /// Random seed.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Event time of the first event (epoch ms); absent = the wall clock at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    /// Event time advance per event when `rate` is 0 (with a rate, event time follows the wall clock).
    #[serde(default = "default_time_step")]
    pub time_step: Duration,
    /// Largest random delay of an event's time behind the generator's clock (out-of-order events).
    #[serde(default)]
    pub disorder: Duration,
}

fn default_keys() -> u64 {
    10_000
}
fn default_seed() -> u64 {
    42
}
fn default_time_step() -> Duration {
    Duration::from_millis(1)
}

impl Default for GeneratorSource {
    fn default() -> Self {
        Self {
            profile: GeneratorProfile::default(),
            count: None,
            rate: 0.0,
            keys: default_keys(),
            seed: default_seed(),
            start_time: None,
            time_step: default_time_step(),
            disorder: Duration::default(),
        }
    }
}

/// `spec.source.file`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSource {
    /// Path of the file; relative paths are resolved against the pipeline file's folder.
    pub path: String,
}

/// `spec.source.stdin`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdinSource {}

/// The wire format of record values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FormatType {
    /// One JSON value per record.
    #[default]
    Json,
    /// Apache Avro: binary datums of the inline `schema`, or Confluent's wire
    /// format (magic byte, schema id) with `schemaRegistry`.
    Avro,
    /// The raw line or payload as `{"text": ...}`.
    Text,
}

/// `spec.source.format`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FormatSpec {
    /// `json`, `avro` or `text`.
    #[serde(default, rename = "type")]
    pub kind: FormatType,
    /// Avro: a Confluent-compatible schema registry (`http://`); payloads are then in Confluent's wire format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistry>,
    /// Avro: the writer schema (`.avsc` JSON) of payloads that are plain binary datums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

/// A schema registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaRegistry {
    /// Base URL.
    pub url: String,
}

/// How a timestamp field is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TimeFormat {
    /// Integer milliseconds since the epoch.
    #[default]
    EpochMillis,
    /// Seconds since the epoch (may be fractional).
    EpochSeconds,
    /// An RFC 3339 string.
    Rfc3339,
}

/// `spec.source.eventTime`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTimeSpec {
    /// CEL expression for the timestamp, e.g. `event.ts`.
    pub field: String,
    /// How the value is written.
    #[serde(default)]
    pub format: TimeFormat,
}

/// `spec.source.watermark`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatermarkSpec {
    /// How far behind the largest event time seen the watermark trails.
    #[serde(default)]
    pub max_out_of_orderness: Duration,
    /// A partition without records for this long stops holding the watermark back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}
