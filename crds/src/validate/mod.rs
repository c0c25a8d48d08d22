//! Checks the OpenAPI schema cannot express, shared by `tributary validate`,
//! `tributary run` and the operator (which reports them in a
//! `Ready=False, reason=InvalidSpec` condition).
//!
//! Every error names the field path the way a user would find it in YAML
//! (`spec.steps[1].window.size`), and all errors are returned at once.

mod cep;
mod enrich;
mod expr;
mod http;
mod join;
mod metrics;
mod nats;
mod pubsub;
mod redis;
pub mod sidecars;
mod steps;

use std::collections::HashSet;
use std::fmt;

use crate::{
    FormatType, Guarantee, KinesisSource, KinesisStart, Overflow, SinkKind, SinkSpec, SourceKind,
    StreamPipelineSpec,
};

pub use expr::check_expression;

/// Kafka SASL/TLS settings at `path` (the main source's or a join side's).
pub(crate) fn kafka_auth(auth: Option<&crate::KafkaAuth>, path: &str, errs: &mut Errors) {
    if let Some(tls) = auth.and_then(|a| a.tls.as_ref()) {
        // Mutual TLS needs both halves; either alone is a typo that would
        // otherwise surface as a handshake failure.
        if tls.cert.is_some() != tls.key.is_some() {
            errs.push(
                format!("{path}.tls"),
                "cert and key go together (client certificate for mutual TLS): set both or neither",
            );
        }
    }
}

/// One problem in a spec, with the path of the field that has it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Path from the resource root, e.g. `spec.steps[1].window.size`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl FieldError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Collects errors while walking a spec.
#[derive(Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, path: impl fmt::Display, message: impl Into<String>) {
        self.0.push(FieldError::new(path.to_string(), message));
    }
}

/// The message for a section whose runtime does not exist yet.
fn not_supported(what: &str) -> String {
    format!("{what} is not supported yet by this version of Tributary; see the README for what is")
}

/// Validates a spec; returns every problem found.
///
/// # Errors
/// The list of [`FieldError`]s, in the order of the fields in the spec.
pub fn validate(spec: &StreamPipelineSpec) -> Result<(), Vec<FieldError>> {
    let mut errs = Errors::default();
    validate_source(spec, &mut errs);
    let sink_names = validate_sinks(spec, &mut errs);
    steps::validate_steps(spec, &sink_names, &mut errs);
    validate_runtime(spec, &mut errs);
    if errs.0.is_empty() {
        Ok(())
    } else {
        Err(errs.0)
    }
}

fn validate_source(spec: &StreamPipelineSpec, errs: &mut Errors) {
    let src = &spec.source;
    let kinds = src.kinds();
    match kinds.as_slice() {
        [] => errs.push(
            "spec.source",
            "no source kind set; set one of kafka, kinesis, redisStreams, nats, pubsub, pulsar, generator, file, stdin",
        ),
        [one] => match one {
            SourceKind::Generator(g) => {
                if !(g.rate.is_finite() && g.rate >= 0.0) {
                    errs.push("spec.source.generator.rate", "must be a number >= 0 (0 = as fast as possible)");
                }
                if g.keys == 0 {
                    errs.push("spec.source.generator.keys", "must be at least 1");
                }
            }
            SourceKind::File(f) => {
                if f.path.trim().is_empty() {
                    errs.push("spec.source.file.path", "must not be empty");
                }
            }
            SourceKind::Stdin(_) => {}
            SourceKind::RedisStreams(r) => redis::source(r, "spec.source.redisStreams", errs),
            SourceKind::Nats(n) => nats::source(n, "spec.source.nats", errs),
            SourceKind::Kafka(k) => {
                if k.brokers.trim().is_empty() {
                    errs.push("spec.source.kafka.brokers", "must not be empty");
                }
                if k.topics.is_empty() {
                    errs.push("spec.source.kafka.topics", "at least one topic is required");
                }
                for (i, t) in k.topics.iter().enumerate() {
                    if t.trim().is_empty() {
                        errs.push(format!("spec.source.kafka.topics[{i}]"), "must not be empty");
                    }
                }
                kafka_auth(k.auth.as_ref(), "spec.source.kafka.auth", errs);
            }
            SourceKind::Pulsar(p) => pulsar_source(p, "spec.source.pulsar", errs),
            SourceKind::Kinesis(k) => validate_kinesis_source(k, "spec.source.kinesis", errs),
            SourceKind::PubSub(p) => pubsub::check_source(p, "spec.source.pubsub", errs),
        },
        many => errs.push(
            "spec.source",
            format!(
                "exactly one source kind must be set, found {}",
                many.iter().map(SourceKind::field).collect::<Vec<_>>().join(", ")
            ),
        ),
    }
    if src.format.kind == FormatType::Avro {
        if src.format.schema.is_none() && src.format.schema_registry.is_none() {
            errs.push(
                "spec.source.format",
                "avro needs schema (an inline .avsc) or schemaRegistry.url",
            );
        }
        if let Some(r) = &src.format.schema_registry
            && !r.url.starts_with("http://")
        {
            errs.push(
                "spec.source.format.schemaRegistry.url",
                "only http:// registries are supported",
            );
        }
    }
    if let Some(et) = &src.event_time {
        expr::check_into(&et.field, "spec.source.eventTime.field", &["event"], errs);
    }
    if src.watermark.idle_timeout.is_some_and(|d| d.is_zero()) {
        errs.push(
            "spec.source.watermark.idleTimeout",
            "must be positive when set",
        );
    }
}

/// A Pulsar service URL and topic, shared by the source and the sink.
fn pulsar_target(url: &str, topic: &str, path: &str, errs: &mut Errors) {
    if url.starts_with("pulsar+ssl://") {
        errs.push(
            format!("{path}.serviceUrl"),
            not_supported("Pulsar over TLS (pulsar+ssl://)") + "; use pulsar://",
        );
    } else if !url.starts_with("pulsar://") {
        errs.push(
            format!("{path}.serviceUrl"),
            "must be a pulsar:// URL, e.g. pulsar://pulsar:6650",
        );
    }
    if topic.trim().is_empty() {
        errs.push(format!("{path}.topic"), "must not be empty");
    }
}

fn non_empty(value: &str, path: &str, errs: &mut Errors) {
    if value.trim().is_empty() {
        errs.push(path, "must not be empty");
    }
}

/// A Pulsar source at `path` (`spec.source.pulsar`, a join's `with.pulsar`).
fn pulsar_source(p: &crate::PulsarSource, path: &str, errs: &mut Errors) {
    pulsar_target(&p.service_url, &p.topic, path, errs);
    if p.subscription.trim().is_empty() {
        errs.push(format!("{path}.subscription"), "must not be empty");
    }
}

/// A Kinesis source at `path` (`spec.source.kinesis`, a join's `with.kinesis`).
fn validate_kinesis_source(k: &KinesisSource, path: &str, errs: &mut Errors) {
    let p = path;
    non_empty(&k.stream, &format!("{p}.stream"), errs);
    non_empty(&k.region, &format!("{p}.region"), errs);
    match (k.start_from, &k.at_timestamp) {
        (KinesisStart::AtTimestamp, None) => errs.push(
            format!("{p}.atTimestamp"),
            "required when startFrom is AT_TIMESTAMP (an RFC 3339 time)",
        ),
        (_, Some(t)) if humantime::parse_rfc3339_weak(t.trim()).is_err() => errs.push(
            format!("{p}.atTimestamp"),
            format!("{t:?} is not an RFC 3339 time such as 2026-11-23T08:00:00Z"),
        ),
        _ => {}
    }
    if k.lease_duration.0 < std::time::Duration::from_secs(1) {
        errs.push(format!("{p}.leaseDuration"), "must be at least 1s");
    }
    if k.lease_table.as_ref().is_some_and(|t| t.trim().len() < 3) {
        errs.push(
            format!("{p}.leaseTable"),
            "a DynamoDB table name has at least 3 characters",
        );
    }
    if k.credentials.is_some() {
        errs.push(
            format!("{p}.credentials"),
            not_supported("a credentials Secret")
                + "; leave it unset: the processor uses the default AWS credential chain (env, web identity, instance role)",
        );
    }
}

fn validate_sink(sink: &SinkSpec, path: &str, kafka_source: bool, errs: &mut Errors) {
    match sink.kinds().as_slice() {
        [SinkKind::Kafka(k)] => {
            if k.topic.trim().is_empty() {
                errs.push(format!("{path}.kafka.topic"), "must not be empty");
            }
            if let Some(key) = &k.key {
                expr::check_into(key, &format!("{path}.kafka.key"), &["event"], errs);
            }
            if !kafka_source && k.brokers.as_ref().is_none_or(|b| b.trim().is_empty()) {
                errs.push(
                    format!("{path}.kafka.brokers"),
                    "required when the source is not kafka (it defaults to the source's)",
                );
            }
        }
        [] => errs.push(path, "no sink kind set; set one of kafka, kinesis, postgres, http, redisStreams, nats, pubsub, stdout, file, blackhole"),
        [SinkKind::File(f)] => {
            if f.path.trim().is_empty() {
                errs.push(format!("{path}.file.path"), "must not be empty");
            }
        }
        [SinkKind::Pulsar(p)] => {
            pulsar_target(&p.service_url, &p.topic, &format!("{path}.pulsar"), errs);
            if let Some(key) = &p.key {
                expr::check_into(key, &format!("{path}.pulsar.key"), &["event"], errs);
            }
        }
        [SinkKind::Stdout(_) | SinkKind::Blackhole(_)] => {}
        [SinkKind::Http(h)] => http::validate_http_sink(h, &format!("{path}.http"), errs),
        [SinkKind::Kinesis(k)] => {
            let path = format!("{path}.kinesis");
            non_empty(&k.stream, &format!("{path}.stream"), errs);
            non_empty(&k.region, &format!("{path}.region"), errs);
            if let Some(key) = &k.partition_key {
                expr::check_into(key, &format!("{path}.partitionKey"), &["event"], errs);
            }
        }
        [SinkKind::PubSub(p)] => pubsub::check_sink(p, &format!("{path}.pubsub"), errs),
        [SinkKind::RedisStreams(r)] => redis::sink(r, path, errs),
        [SinkKind::Nats(n)] => nats::sink(n, path, errs),
        [SinkKind::Postgres(pg)] => {
            if pg.table.trim().is_empty() {
                errs.push(format!("{path}.postgres.table"), "must not be empty");
            }
            for (i, k) in pg.upsert_key.iter().enumerate() {
                if k.trim().is_empty() {
                    errs.push(format!("{path}.postgres.upsertKey[{i}]"), "must not be empty");
                }
            }
        }
        many => errs.push(
            path,
            format!(
                "exactly one sink kind must be set, found {}",
                many.iter().map(SinkKind::field).collect::<Vec<_>>().join(", ")
            ),
        ),
    }
}

fn validate_sinks(spec: &StreamPipelineSpec, errs: &mut Errors) -> HashSet<String> {
    let mut names = HashSet::new();
    let kafka_source = spec.source.kafka.is_some();
    if spec.sinks.is_empty() {
        errs.push("spec.sinks", "at least one sink is required");
    }
    for (i, sink) in spec.sinks.iter().enumerate() {
        let path = format!("spec.sinks[{i}]");
        if sink.name.trim().is_empty() {
            errs.push(format!("{path}.name"), "required: every sink needs a name");
        } else if !names.insert(sink.name.clone()) {
            errs.push(
                format!("{path}.name"),
                format!(
                    "duplicate sink name {:?}; sink names must be unique",
                    sink.name
                ),
            );
        }
        validate_sink(sink, &path, kafka_source, errs);
    }
    if let Some(dl) = &spec.dead_letter {
        validate_sink(dl, "spec.deadLetter", kafka_source, errs);
    }
    names
}

/// Exactly-once is one Kafka transaction: a Kafka source, and every sink
/// (dead letters too) on the source's cluster; or, with Postgres sinks, one
/// database transaction: every sink Postgres on one connection.
fn validate_exactly_once(spec: &StreamPipelineSpec, errs: &mut Errors) {
    let postgres = spec.sinks.iter().find_map(|s| s.postgres.as_ref());
    let kinesis = spec.source.kinesis.is_some();
    if kinesis && postgres.is_some() {
        validate_stateless(spec, errs);
    }
    if let (Some(pg), true) = (postgres, spec.source.kafka.is_some() || kinesis) {
        if let Some(r) = spec.repartitions().first() {
            errs.push(
                format!("spec.steps[{}]", r.at),
                format!(
                    "exactlyOnce into postgres cannot re-key through a repartition topic (its records would be written outside the database transaction), and this keyed step needs one: its key {:?} is not the declared spec.source.kafka.partitionedBy; declare partitionedBy when the producers key by it, or use a kafka sink, or guarantee: atLeastOnce",
                    r.key
                ),
            );
        }
        let sinks = spec
            .sinks
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("spec.sinks[{i}]"), s));
        let dead = spec
            .dead_letter
            .iter()
            .map(|s| ("spec.deadLetter".to_owned(), s));
        for (path, sink) in sinks.chain(dead) {
            match sink.kind() {
                Some(SinkKind::Postgres(p)) if p.connection != pg.connection => errs.push(
                    format!("{path}.postgres.connection"),
                    "exactlyOnce commits every Postgres sink in one transaction: use the same connection as the first postgres sink",
                ),
                Some(SinkKind::Postgres(_)) | None => {}
                Some(other) => errs.push(
                    format!("{path}.{}", other.field()),
                    format!(
                        "exactlyOnce with a postgres sink commits in one database transaction, which a {} sink cannot join; make every sink (and deadLetter) postgres on the same connection, or use guarantee: atLeastOnce",
                        other.field()
                    ),
                ),
            }
        }
        return;
    }
    let Some(src) = &spec.source.kafka else {
        let hint = if kinesis {
            "; a kinesis source has exactlyOnce only into postgres sinks, else use atLeastOnce"
        } else {
            "; use atLeastOnce"
        };
        errs.push(
            "spec.guarantee",
            not_supported("exactlyOnce with a source other than kafka or kinesis") + hint,
        );
        return;
    };
    let sinks = spec
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("spec.sinks[{i}]"), s))
        .chain(
            spec.dead_letter
                .iter()
                .map(|s| ("spec.deadLetter".to_owned(), s)),
        );
    for (path, sink) in sinks {
        match sink.kind() {
            Some(SinkKind::Kafka(k)) if k.brokers.as_ref().is_some_and(|b| b != &src.brokers) => {
                errs.push(
                    format!("{path}.kafka.brokers"),
                    "exactlyOnce writes in one transaction on the source's cluster; leave brokers unset or equal to spec.source.kafka.brokers",
                );
            }
            Some(SinkKind::Kafka(_)) | None => {}
            Some(other) => errs.push(
                format!("{path}.{}", other.field()),
                not_supported(&format!("exactlyOnce with a {} sink", other.field()))
                    + "; use kafka sinks or guarantee: atLeastOnce",
            ),
        }
    }
}

/// `exactlyOnce` from Kinesis keeps positions per shard while a replica's
/// step state mixes every shard it reads: a shard that moves to another
/// replica could not take its share of the state along, so only steps
/// without state are allowed.
fn validate_stateless(spec: &StreamPipelineSpec, errs: &mut Errors) {
    for (i, step) in spec.steps.iter().enumerate() {
        let Some(kind) = step.kind() else { continue };
        if matches!(
            kind.field(),
            "window" | "dedupe" | "cep" | "anomaly" | "join"
        ) {
            errs.push(
                format!("spec.steps[{i}].{}", kind.field()),
                format!(
                    "exactlyOnce from a kinesis source into postgres takes steps without state only (filter, map, flatMap, validate, enrich, http); a {} keeps state across shards, which does not move with a shard's lease. Use guarantee: atLeastOnce with a postgres upsertKey (the replayed rows overwrite themselves), or a kafka source",
                    kind.field()
                ),
            );
        }
    }
}

fn validate_runtime(spec: &StreamPipelineSpec, errs: &mut Errors) {
    if spec.guarantee == Guarantee::ExactlyOnce {
        validate_exactly_once(spec, errs);
    }
    if spec.checkpoint.interval.is_zero() {
        errs.push("spec.checkpoint.interval", "must be positive");
    }
    let bp = &spec.backpressure;
    if bp.max_in_flight == 0 {
        errs.push("spec.backpressure.maxInFlight", "must be at least 1");
    }
    match (bp.on_overflow, bp.sample_rate) {
        (Overflow::Sample, None) => errs.push(
            "spec.backpressure.sampleRate",
            "required when onOverflow is sample",
        ),
        (_, Some(r)) if !(r > 0.0 && r <= 1.0) => {
            errs.push("spec.backpressure.sampleRate", "must be in (0, 1]");
        }
        _ => {}
    }
    if spec.replicas < 0 {
        errs.push("spec.replicas", "must not be negative");
    }
    if let Some(a) = &spec.autoscaling {
        if a.min_replicas > a.max_replicas {
            errs.push(
                "spec.autoscaling.minReplicas",
                "must not exceed maxReplicas",
            );
        }
        if let Some(cw) = a.metric.cloud_watch.as_ref() {
            if cw.namespace.trim().is_empty() || cw.metric_name.trim().is_empty() {
                errs.push(
                    "spec.autoscaling.metric.cloudWatch",
                    "namespace and metricName are required",
                );
            }
            if cw.period.0.as_secs() == 0 {
                errs.push(
                    "spec.autoscaling.metric.cloudWatch.period",
                    "must be at least 1s",
                );
            }
        } else if a.enabled && spec.source.kafka.is_none() {
            // Without a CloudWatch metric the signal is Kafka consumer lag.
            errs.push(
                "spec.autoscaling.enabled",
                not_supported("autoscaling from consumer lag of a source other than kafka (use metric.cloudWatch)"),
            );
        }
    }
    if let Some(p) = &spec.processor {
        sidecars::validate(&p.sidecars, errs);
    }
    if let Some(cw) = spec.metrics.as_ref().and_then(|m| m.cloud_watch.as_ref()) {
        metrics::cloud_watch(cw, errs);
    }
}

#[cfg(test)]
mod pulsar_tests;
#[cfg(test)]
mod tests;
