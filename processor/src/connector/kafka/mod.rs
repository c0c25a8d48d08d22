//! Kafka: a consumer-group source, sinks and dead letters on Kafka topics,
//! state per input partition, and exactly-once checkpoints.
//!
//! # Layout
//! - `config`: librdkafka settings (group, instance, timeouts, auth, env overrides).
//! - `checkpoint`: what a checkpoint commits per partition and how a task restores.
//! - `changelog`: each task's state snapshot in a compacted topic, and reading it back.
//! - `task`: one assigned partition: its steps, watermark and position.
//! - `engine`: tasks, checkpoints, restores and rewinds.
//! - `context`: the consumer context: rebalance callbacks, statistics.
//! - `sink`: the Kafka sink and dead-letter sink.
//! - `metrics`: lag, rebalances, checkpoint duration, aborts.
//! - `plain`: a topic read without a group, as the `with` side of a join.
//! - `repartition`: internal topics re-keying records between stages.
//!
//! # Guarantees
//! `exactlyOnce`: every `checkpoint.interval` one Kafka transaction holds the
//! output and dead letters since the last checkpoint, each task's state
//! snapshot in the compacted changelog topic (`changelog`), and each
//! partition's processed offset (`send_offsets_to_transaction`, fenced by
//! the consumer group's metadata) whose metadata names the snapshot. A
//! restore takes the snapshot and reads on from the committed offset; when
//! there is none (steps that cannot write their state, a changed spec), it
//! re-reads the input from the low-water offset the checkpoint also
//! records, and records below the committed offset rebuild state without
//! being output again.
//!
//! `exactlyOnce` with Postgres sinks (`postgres`): the checkpoint is one
//! database transaction holding the rows and each partition's position and
//! metadata in `tributary_offsets`; a restore reads them from there.
//!
//! `atLeastOnce`: the same checkpoints without a transaction: the producer
//! flushes (every delivery acknowledged), then the offsets commit. A crash
//! between the two repeats output.
//!
//! # Repartitioning
//! State is per task (input partition). A keyed step whose key is not the
//! input's declared partitioning (`partitionedBy`) reads from an internal
//! repartition topic its records were re-keyed into (`repartition`), so
//! each key's state lives in exactly one task. See `docs/kafka.md`.

mod changelog;
mod checkpoint;
mod config;
mod context;
mod engine;
mod metrics;
mod outputs;
pub mod plain;
mod postgres;
mod repartition;
mod sink;
mod task;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use tributary_crds::Guarantee;

use crate::runtime::Metrics;
use crate::source::Decoder;
use crate::{Pipeline, RunError, Summary};

pub use checkpoint::{Meta, Restore};
pub use outputs::SinkOpener;
pub use sink::{DEFAULT_MAX_RECORD_BYTES, KafkaSink};

use context::{Ctx, KafkaConsumer};
use engine::{Engine, Parts};
use metrics::KafkaMetrics;
use postgres::PgCommit;
use sink::ProducerHandle;

/// How often the engine wakes without input: triggers, gauges.
const TICK: Duration = Duration::from_millis(100);
/// Largest record value, overridable for tests and big payloads.
const MAX_BYTES_ENV: &str = "TRIBUTARY_MAX_RECORD_BYTES";

/// Why the Kafka connector cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A bare spec has no identity to derive the group from.
    #[error(
        "spec.source.kafka.group: required when the file is a bare spec (a whole StreamPipeline defaults it to <namespace>.<name>)"
    )]
    Group,
    /// A secret could not be read.
    #[error("{path}: {message}")]
    Secret {
        /// The field.
        path: String,
        /// Why.
        message: String,
    },
    /// librdkafka refused a call.
    #[error("kafka: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
}

impl From<KafkaError> for RunError {
    fn from(e: KafkaError) -> Self {
        RunError::Connector(Box::new(e))
    }
}

/// The largest record value: `TRIBUTARY_MAX_RECORD_BYTES`, else
/// [`DEFAULT_MAX_RECORD_BYTES`].
#[must_use]
pub fn max_bytes() -> usize {
    std::env::var(MAX_BYTES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_RECORD_BYTES)
}

/// Runs a pipeline whose source is Kafka until the stop flag is set.
///
/// # Errors
/// [`RunError`] when the connector cannot start, or a fatal error stops it.
pub fn run(p: &Pipeline) -> Result<Summary, RunError> {
    let started = Instant::now();
    let spec = Arc::new(p.spec.clone());
    let Some(src) = spec.source.kafka.clone() else {
        return Err(RunError::SourceFailed("not a Kafka source".into()));
    };
    let group = config::group(&src, p.name.as_deref(), p.namespace.as_deref())?;
    let instance = config::instance();
    let interval = spec.checkpoint.interval.0;
    let eos = spec.guarantee == Guarantee::ExactlyOnce;
    let name = p.name.clone().unwrap_or_else(|| "pipeline".into());
    let kafka_metrics = KafkaMetrics::register(&p.metrics, &name);

    let mut txn = None;
    if eos && !has_postgres_sink(&spec) {
        let id = format!("{group}-{instance}");
        let cfg = config::producer(&src.brokers, src.auth.as_ref(), Some(&id), interval)?;
        let pr = ProducerHandle::create(cfg)?;
        pr.get()
            .init_transactions(Duration::from_secs(60))
            .map_err(KafkaError::Client)?;
        pr.get().begin_transaction().map_err(KafkaError::Client)?;
        tracing::info!(transactional_id = %id, "transactional producer ready");
        txn = Some(pr);
    }
    let (pg_writer, pg) = if eos {
        postgres_checkpoint(&spec, &group)?
    } else {
        (None, None)
    };
    let limit = max_bytes();
    let mut opener = SinkOpener::new(&spec, &p.base, txn.clone(), pg_writer, limit);
    let outputs = p.open_outputs_with(&mut |s, name| opener.open(s, name))?;
    let decoder = Decoder::new(&spec.source)?;
    let admin = config::producer(&src.brokers, src.auth.as_ref(), None, interval)?;
    let shuffle_producer = || match &txn {
        Some(t) => Ok(t.clone()),
        None => ProducerHandle::create(admin.clone()).map_err(|e| e.to_string()),
    };
    let stages = repartition::stages(&spec, &group, &admin, shuffle_producer, limit)
        .map_err(RunError::SourceFailed)?;
    let mut topics: Vec<String> = src.topics.clone();
    topics.extend(stages.topics().map(str::to_owned));
    let steps = crate::step::build(&spec)?;
    let changelog = match (&pg, changelog::unsupported(&steps)) {
        (Some(_), _) => None,
        (None, Some(why)) => {
            tracing::info!(%why, "no state changelog: tasks restore by replaying their input");
            None
        }
        (None, None) => {
            let producer = match &txn {
                Some(t) => t.clone(),
                None => ProducerHandle::create(admin.clone())?,
            };
            let reader = config::reader(&src, &instance)?;
            let fps = changelog::fingerprints(&spec);
            let bytes = kafka_metrics.changelog_bytes.clone();
            let c = changelog::open(&admin, &group, &topics, producer, reader, fps, bytes)
                .map_err(RunError::SourceFailed)?;
            tracing::info!(topic = c.topic(), "state changelog");
            Some(c)
        }
    };
    let engine = Engine::new(Parts {
        spec: spec.clone(),
        decoder,
        max_bytes: limit,
        outputs,
        txn,
        pg,
        metrics: p.metrics.clone(),
        kafka: kafka_metrics,
        stop: p.stop_handle(),
        stages,
        changelog,
    });
    let cfg = config::consumer(&src, &group, &instance)?;
    let consumer: KafkaConsumer = cfg
        .create_with_context(Ctx::new(engine))
        .map_err(KafkaError::Client)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(KafkaError::Client)?;
    tracing::info!(%group, %instance, topics = ?topics, guarantee = ?spec.guarantee, "consuming");
    p.metrics.ready.store(true, Ordering::Relaxed);
    p.metrics
        .init_steps(steps.iter().map(|s| s.name().to_owned()));

    let result = poll_loop(&consumer, p, interval);
    // The final checkpoint: commit what is done, then leave the group
    // without another one.
    let finished = result.and_then(|()| {
        let mut engine = lock(&consumer);
        engine.checkpoint(&consumer)?;
        engine.close();
        Ok(())
    });
    consumer.unsubscribe();
    drop(consumer);
    finished?;
    let m = &p.metrics;
    Ok(Summary {
        records_in: Metrics::get(&m.records_in),
        records_out: Metrics::get(&m.records_out),
        dead_letters: Metrics::get(&m.dead_letters),
        elapsed: started.elapsed(),
    })
}

fn has_postgres_sink(spec: &tributary_crds::StreamPipelineSpec) -> bool {
    spec.sinks.iter().any(|s| s.postgres.is_some())
}

/// Under `exactlyOnce` with Postgres sinks (validation makes every sink
/// Postgres on one connection): the writer they share and the checkpoint
/// that commits it with the positions.
fn postgres_checkpoint(
    spec: &tributary_crds::StreamPipelineSpec,
    group: &str,
) -> Result<
    (
        Option<crate::sink::postgres::SharedWriter>,
        Option<PgCommit>,
    ),
    RunError,
> {
    let fail = |e: String| RunError::SourceFailed(e);
    let Some((writer, _)) = crate::sink::postgres::shared_writer(spec).map_err(fail)? else {
        return Ok((None, None));
    };
    let commit = PgCommit::new(writer.clone(), group.to_owned()).map_err(fail)?;
    tracing::info!(pipeline = %group, "exactlyOnce: rows and positions commit in one postgres transaction");
    Ok((Some(writer), Some(commit)))
}

fn lock(consumer: &KafkaConsumer) -> std::sync::MutexGuard<'_, Engine> {
    consumer
        .context()
        .engine
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls until stopped: messages into tasks, ticks, checkpoints.
fn poll_loop(consumer: &KafkaConsumer, p: &Pipeline, interval: Duration) -> Result<(), RunError> {
    let mut last_tick = Instant::now();
    let mut last_checkpoint = Instant::now();
    let stop = p.stop_handle();
    while !stop.load(Ordering::Relaxed) {
        // Up to a batch of messages, locking the engine per message so
        // the rebalance callback (inside poll) can take it.
        let mut timeout = TICK;
        for _ in 0..crate::source::BATCH {
            match consumer.poll(timeout) {
                Some(Ok(msg)) => lock(consumer).on_message(&msg)?,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    break;
                }
                None => break,
            }
            timeout = Duration::ZERO;
        }
        let mut engine = lock(consumer);
        if let Some(e) = engine.take_failure() {
            return Err(e);
        }
        engine.flush_pending()?;
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            engine.tick(consumer)?;
        }
        if last_checkpoint.elapsed() >= interval {
            last_checkpoint = Instant::now();
            engine.checkpoint(consumer)?;
        }
    }
    Ok(())
}
