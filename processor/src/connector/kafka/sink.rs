//! The Kafka sink and dead-letter sink: JSON values to a topic through a
//! producer shared by every Kafka sink of the process (so one transaction
//! holds all their output under `exactlyOnce`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use serde_json::Value;

use crate::expr::Expr;
use crate::record::Record;
use crate::sink::{DeadLetter, Sink, SinkError, key_string};

use super::KafkaError;

/// Largest record value written (and read): bigger ones are dead letters.
/// librdkafka's and the broker's default `message.max.bytes` is about 1 MB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;

/// How long a flush may take before the sink reports a failure.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Counts failed deliveries, so a checkpoint never commits past a lost record.
#[derive(Default)]
pub struct Deliveries {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Deliveries {
    /// Failed deliveries so far.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The last delivery error.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(e.to_string());
            }
        }
    }
}

/// A librdkafka producer with its delivery counters.
pub type Client = ThreadedProducer<Deliveries>;

/// The producer the Kafka sinks share; replaceable, because a
/// transactional producer that hit a fatal error (fenced after its
/// transaction timed out during a network cut) cannot be used again.
pub struct ProducerHandle {
    config: ClientConfig,
    current: RwLock<Arc<Client>>,
}

/// A shared [`ProducerHandle`].
pub type SharedProducer = Arc<ProducerHandle>;

fn create(config: &ClientConfig) -> Result<Arc<Client>, KafkaError> {
    let producer: Client = config
        .create_with_context(Deliveries::default())
        .map_err(KafkaError::Client)?;
    Ok(Arc::new(producer))
}

impl ProducerHandle {
    /// Creates a producer from `config`.
    ///
    /// # Errors
    /// When librdkafka refuses the configuration.
    pub fn create(config: ClientConfig) -> Result<SharedProducer, KafkaError> {
        let current = RwLock::new(create(&config)?);
        Ok(Arc::new(Self { config, current }))
    }

    /// The producer to use now.
    #[must_use]
    pub fn get(&self) -> Arc<Client> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the producer by a new one with the same configuration (for
    /// a transactional one, `init_transactions` then fences the old).
    ///
    /// # Errors
    /// When librdkafka refuses the configuration.
    pub fn replace(&self) -> Result<Arc<Client>, KafkaError> {
        let fresh = create(&self.config)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
        Ok(fresh)
    }
}

/// Writes records (or dead letters) to one topic.
pub struct KafkaSink {
    name: String,
    topic: String,
    key: Option<Expr>,
    producer: SharedProducer,
    max_bytes: usize,
    /// Under `exactlyOnce` the transaction commit flushes; `flush` must not
    /// (it would wait for records the transaction has not committed).
    transactional: bool,
    rejected: Vec<DeadLetter>,
    buf: Vec<u8>,
    /// Delivery failures already reported.
    failures_seen: u64,
}

impl KafkaSink {
    /// A sink to `topic`, keyed by `key` (CEL) when given.
    #[must_use]
    pub fn new(
        name: String,
        topic: String,
        key: Option<Expr>,
        producer: SharedProducer,
        max_bytes: usize,
        transactional: bool,
    ) -> Self {
        Self {
            name,
            topic,
            key,
            producer,
            max_bytes,
            transactional,
            rejected: Vec::new(),
            buf: Vec::with_capacity(1024),
            failures_seen: 0,
        }
    }

    fn err(&self, message: impl Into<String>) -> SinkError {
        SinkError::Broker {
            name: self.name.clone(),
            message: message.into(),
        }
    }

    /// Sends the value in `buf`, waiting while librdkafka's queue is full.
    fn send(
        &self,
        producer: &Client,
        key: Option<&str>,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), SinkError> {
        let mut record = BaseRecord::to(&self.topic).payload(&self.buf);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        send_waiting(producer, record, &self.name, &self.topic)
    }
}

/// Sends `record` to `topic`, waiting while librdkafka's queue is full;
/// a refusal is reported as sink `name`'s.
///
/// # Errors
/// When the producer refuses the record for another reason.
pub(super) fn send_waiting<K, P>(
    producer: &Client,
    mut record: BaseRecord<'_, K, P>,
    name: &str,
    topic: &str,
) -> Result<(), SinkError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                // The producer thread drains the queue; give it a moment.
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => {
                return Err(SinkError::Broker {
                    name: name.to_owned(),
                    message: format!("producing to {topic}: {e}"),
                });
            }
        }
    }
}

/// Waits until every record sent is acknowledged, then reports the
/// deliveries that failed since `seen` (and moves `seen` past them), so a
/// checkpoint never commits past a lost record.
///
/// # Errors
/// What failed, in words.
pub fn flush_checked(producer: &Client, seen: &mut u64) -> Result<(), String> {
    producer
        .flush(FLUSH_TIMEOUT)
        .map_err(|e| format!("flushing: {e}"))?;
    let failed = producer.context().failed();
    if failed > *seen {
        let n = failed - *seen;
        *seen = failed;
        return Err(format!(
            "{n} record(s) could not be delivered: {}",
            producer.context().last_error().unwrap_or_default()
        ));
    }
    Ok(())
}

fn headers_of(pairs: &[(String, String)]) -> Option<OwnedHeaders> {
    if pairs.is_empty() {
        return None;
    }
    let mut h = OwnedHeaders::new_with_capacity(pairs.len());
    for (k, v) in pairs {
        h = h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    Some(h)
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let producer = self.producer.get();
        for r in records {
            let key = match &self.key {
                Some(expr) => match expr.eval(&r.value) {
                    Ok(v) => key_string(&v),
                    Err(e) => {
                        self.rejected.push(DeadLetter::new(
                            &self.name,
                            format!("key: {e}"),
                            r.clone(),
                        ));
                        continue;
                    }
                },
                None => r.key.as_deref().map(str::to_owned),
            };
            self.buf.clear();
            serde_json::to_writer(&mut self.buf, &r.value)
                .map_err(|e| self.err(format!("encoding a record: {e}")))?;
            if self.buf.len() > self.max_bytes {
                let msg = format!(
                    "record of {} bytes exceeds the limit of {} bytes",
                    self.buf.len(),
                    self.max_bytes
                );
                self.rejected
                    .push(DeadLetter::new(&self.name, msg, r.clone()));
                continue;
            }
            self.send(&producer, key.as_deref(), headers_of(&r.headers))?;
        }
        Ok(())
    }

    fn write_values(&mut self, values: &[Value]) -> Result<(), SinkError> {
        let producer = self.producer.get();
        for v in values {
            self.buf.clear();
            serde_json::to_writer(&mut self.buf, v)
                .map_err(|e| self.err(format!("encoding a value: {e}")))?;
            self.send(&producer, None, None)?;
        }
        Ok(())
    }

    fn write_dead(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        let producer = self.producer.get();
        for d in letters {
            d.write_within(&mut self.buf, self.max_bytes)
                .map_err(|e| self.err(format!("encoding a dead letter: {e}")))?;
            let pairs = d.provenance();
            let mut h = OwnedHeaders::new_with_capacity(pairs.len());
            for (k, v) in &pairs {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let key = d.record.key.clone();
            self.send(&producer, key.as_deref(), Some(h))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        if self.transactional {
            return Ok(());
        }
        flush_checked(&self.producer.get(), &mut self.failures_seen).map_err(|e| self.err(e))
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.rejected)
    }
}
