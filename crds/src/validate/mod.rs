//! Checks the OpenAPI schema cannot express, shared by `tributary validate`,
//! `tributary run` and the operator (which reports them in a
//! `Ready=False, reason=InvalidSpec` condition).
//!
//! Every error names the field path the way a user would find it in YAML
//! (`spec.steps[1].window.size`), and all errors are returned at once.

mod cep;
mod expr;
mod steps;

use std::collections::HashSet;
use std::fmt;

use crate::{FormatType, Guarantee, Overflow, SinkKind, SinkSpec, SourceKind, StreamPipelineSpec};

pub use expr::check_expression;

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
            other => errs.push(
                format!("spec.source.{}", other.field()),
                not_supported(&format!("the {} source", other.field())),
            ),
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
        errs.push("spec.source.format.type", not_supported("the avro format"));
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

fn validate_sink(sink: &SinkSpec, path: &str, errs: &mut Errors) {
    match sink.kinds().as_slice() {
        [] => errs.push(path, "no sink kind set; set one of kafka, kinesis, postgres, http, redisStreams, nats, pubsub, stdout, file, blackhole"),
        [SinkKind::File(f)] => {
            if f.path.trim().is_empty() {
                errs.push(format!("{path}.file.path"), "must not be empty");
            }
        }
        [SinkKind::Stdout(_) | SinkKind::Blackhole(_)] => {}
        [other] => errs.push(
            format!("{path}.{}", other.field()),
            not_supported(&format!("the {} sink", other.field())),
        ),
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
        validate_sink(sink, &path, errs);
    }
    if let Some(dl) = &spec.dead_letter {
        validate_sink(dl, "spec.deadLetter", errs);
    }
    names
}

fn validate_runtime(spec: &StreamPipelineSpec, errs: &mut Errors) {
    if spec.guarantee == Guarantee::ExactlyOnce {
        errs.push(
            "spec.guarantee",
            not_supported("exactlyOnce (it needs the Kafka or Postgres connectors)")
                + "; use atLeastOnce",
        );
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
        if a.enabled {
            errs.push("spec.autoscaling.enabled", not_supported("autoscaling"));
        }
    }
    if spec
        .metrics
        .as_ref()
        .is_some_and(|m| m.cloud_watch.is_some())
    {
        errs.push(
            "spec.metrics.cloudWatch",
            not_supported("CloudWatch metrics export"),
        );
    }
}

#[cfg(test)]
mod tests;
