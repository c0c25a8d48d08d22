//! Opening the sinks of a pipeline when some are Kafka topics: Kafka sinks
//! share one producer per cluster (the transactional one under
//! `exactlyOnce`), Postgres sinks under `exactlyOnce` share the writer
//! whose transaction the engine commits, other kinds open as usual.

use std::path::Path;

use tributary_crds::{SinkKind, SinkSpec, StreamPipelineSpec};

use crate::expr::Expr;
use crate::sink::postgres::{PostgresSink, SharedWriter};
use crate::sink::{Sink, SinkError};

use super::KafkaError;
use super::config;
use super::sink::{KafkaSink, ProducerHandle, SharedProducer};

/// Opens sinks, creating producers as Kafka sinks need them.
pub struct SinkOpener<'a> {
    spec: &'a StreamPipelineSpec,
    base: &'a Path,
    by_brokers: Vec<(String, SharedProducer)>,
    transactional: bool,
    /// The writer of `exactlyOnce` Postgres sinks.
    pg: Option<SharedWriter>,
    max_bytes: usize,
    env: std::sync::Arc<cel::Env>,
}

impl<'a> SinkOpener<'a> {
    /// An opener for `spec`'s sinks; `txn` is the transactional producer of
    /// an `exactlyOnce` run (every Kafka sink then writes through it);
    /// `pg` the writer every Postgres sink of an `exactlyOnce` run shares.
    #[must_use]
    pub fn new(
        spec: &'a StreamPipelineSpec,
        base: &'a Path,
        txn: Option<SharedProducer>,
        pg: Option<SharedWriter>,
        max_bytes: usize,
    ) -> Self {
        let transactional = txn.is_some();
        let by_brokers = match (txn, &spec.source.kafka) {
            (Some(t), Some(src)) => vec![(src.brokers.clone(), t)],
            _ => Vec::new(),
        };
        Self {
            spec,
            base,
            by_brokers,
            transactional,
            pg,
            max_bytes,
            env: crate::expr::env(),
        }
    }

    fn producer(&mut self, brokers: &str) -> Result<SharedProducer, KafkaError> {
        if let Some((_, pr)) = self.by_brokers.iter().find(|(b, _)| b == brokers) {
            return Ok(pr.clone());
        }
        let src = self.spec.source.kafka.as_ref();
        let auth = src
            .filter(|s| s.brokers == brokers)
            .and_then(|s| s.auth.as_ref());
        let cfg = config::producer(brokers, auth, None, self.spec.checkpoint.interval.0)?;
        let pr = ProducerHandle::create(cfg)?;
        self.by_brokers.push((brokers.to_owned(), pr.clone()));
        Ok(pr)
    }

    /// Opens one sink (`default_name` when it has no name).
    ///
    /// # Errors
    /// When the sink cannot be opened.
    pub fn open(&mut self, s: &SinkSpec, default_name: &str) -> Result<Box<dyn Sink>, SinkError> {
        let name = if s.name.is_empty() {
            default_name.to_owned()
        } else {
            s.name.clone()
        };
        let k = match (s.kind(), &self.pg) {
            (Some(SinkKind::Kafka(k)), _) => k,
            (Some(SinkKind::Postgres(p)), Some(w)) => {
                return Ok(Box::new(PostgresSink::open(name, p, w.clone(), true)?));
            }
            _ => return crate::sink::open(s, default_name, self.base),
        };
        let broker_err = |message: String| SinkError::Broker {
            name: name.clone(),
            message,
        };
        let key = k
            .key
            .as_deref()
            .map(|e| Expr::compile(e, &self.env))
            .transpose()
            .map_err(|e| broker_err(format!("key: {e}")))?;
        let brokers = k
            .brokers
            .as_deref()
            .or(self.spec.source.kafka.as_ref().map(|s| s.brokers.as_str()))
            .ok_or_else(|| broker_err("kafka.brokers is required without a kafka source".into()))?;
        let producer = self
            .producer(brokers)
            .map_err(|e| broker_err(e.to_string()))?;
        Ok(Box::new(KafkaSink::new(
            name.clone(),
            k.topic.clone(),
            key,
            producer,
            self.max_bytes,
            self.transactional,
        )))
    }
}
