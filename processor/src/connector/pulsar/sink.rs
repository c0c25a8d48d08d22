//! The Pulsar sink: sends without waiting, collects the send receipts and
//! awaits them all at flush, so a flush means "the broker stored it".

use pulsar::producer::{Message as PulsarMessage, SendFuture};
use pulsar::{Producer, ProducerOptions};
use serde_json::Value;
use tributary_crds::PulsarSink as PulsarSinkSpec;

use super::{Exe, connect, full_topic, runtime};
use crate::expr::{self, Expr};
use crate::record::Record;
use crate::sink::{DeadLetter, Sink, SinkError, key_string};

/// The broker's default `maxMessageSize` (5 MiB) less room for metadata:
/// larger records go to the dead-letter sink instead of failing the run.
const MAX_BYTES: usize = 5 * 1024 * 1024 - 16 * 1024;

/// Writes records as JSON messages to one topic.
pub struct PulsarSink {
    name: String,
    topic: String,
    key: Option<Expr>,
    /// Declared before `rt`: dropped first, inside it (see [`Drop`]).
    producer: Option<Producer<Exe>>,
    rt: tokio::runtime::Runtime,
    /// Receipts of the messages sent since the last flush.
    receipts: Vec<SendFuture>,
    rejected: Vec<DeadLetter>,
}

impl PulsarSink {
    /// Connects and creates the producer.
    ///
    /// # Errors
    /// [`SinkError::Broker`] when the key does not compile or the broker
    /// cannot be reached.
    pub fn open(name: String, spec: &PulsarSinkSpec) -> Result<Self, SinkError> {
        let err = |message: String| SinkError::Broker {
            name: name.clone(),
            message,
        };
        let key = spec
            .key
            .as_deref()
            .map(|e| Expr::compile(e, &expr::env()))
            .transpose()
            .map_err(|e| err(format!("pulsar.key: {e}")))?;
        let rt = runtime().map_err(|e| err(format!("starting the client runtime: {e}")))?;
        let topic = full_topic(&spec.topic);
        let producer = rt
            .block_on(async {
                connect(&spec.service_url)
                    .await?
                    .producer()
                    .with_topic(&topic)
                    // A full send queue makes `send` wait (backpressure)
                    // instead of failing with SlowDown.
                    .with_options(ProducerOptions {
                        block_queue_if_full: true,
                        ..ProducerOptions::default()
                    })
                    .build()
                    .await
            })
            .map_err(|e| {
                err(format!(
                    "creating a producer on {topic} at {}: {e}",
                    spec.service_url
                ))
            })?;
        Ok(Self {
            name,
            topic,
            key,
            producer: Some(producer),
            rt,
            receipts: Vec::new(),
            rejected: Vec::new(),
        })
    }

    fn err(&self, message: impl Into<String>) -> SinkError {
        SinkError::Broker {
            name: self.name.clone(),
            message: message.into(),
        }
    }

    /// Queues one message; its receipt is awaited at the next flush.
    fn send(&mut self, msg: PulsarMessage) -> Result<(), SinkError> {
        let Some(producer) = self.producer.as_mut() else {
            return Err(self.err("the producer is closed"));
        };
        let receipt = self
            .rt
            .block_on(producer.send_non_blocking(msg))
            .map_err(|e| SinkError::Broker {
                name: self.name.clone(),
                message: format!("sending to {}: {e}", self.topic),
            })?;
        self.receipts.push(receipt);
        Ok(())
    }

    /// The record's key: the `key` expression, else its own key.
    fn key_of(&self, r: &Record) -> Result<Option<String>, String> {
        match &self.key {
            Some(expr) => expr
                .eval(&r.value)
                .map(|v| key_string(&v))
                .map_err(|e| format!("key: {e}")),
            None => Ok(r.key.as_deref().map(str::to_owned)),
        }
    }
}

/// Dropping a producer spawns its close on the runtime, which must be
/// entered for that.
impl Drop for PulsarSink {
    fn drop(&mut self) {
        let _entered = self.rt.enter();
        self.producer = None;
    }
}

fn message(payload: Vec<u8>, key: Option<String>, props: &[(&str, &str)]) -> PulsarMessage {
    PulsarMessage {
        payload,
        partition_key: key,
        properties: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..PulsarMessage::default()
    }
}

impl Sink for PulsarSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for r in records {
            let key = match self.key_of(r) {
                Ok(k) => k,
                Err(e) => {
                    self.rejected
                        .push(DeadLetter::new(&self.name, e, r.clone()));
                    continue;
                }
            };
            let payload = serde_json::to_vec(&r.value)
                .map_err(|e| self.err(format!("encoding a record: {e}")))?;
            if payload.len() > MAX_BYTES {
                let msg = format!(
                    "record of {} bytes exceeds the limit of {MAX_BYTES} bytes",
                    payload.len()
                );
                self.rejected
                    .push(DeadLetter::new(&self.name, msg, r.clone()));
                continue;
            }
            let props: Vec<(&str, &str)> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            self.send(message(payload, key, &props))?;
        }
        Ok(())
    }

    fn write_values(&mut self, values: &[Value]) -> Result<(), SinkError> {
        for v in values {
            let payload =
                serde_json::to_vec(v).map_err(|e| self.err(format!("encoding a value: {e}")))?;
            self.send(message(payload, None, &[]))?;
        }
        Ok(())
    }

    fn write_dead(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        let mut payload = Vec::new();
        for d in letters {
            d.write_within(&mut payload, MAX_BYTES)
                .map_err(|e| self.err(format!("encoding a dead letter: {e}")))?;
            let pairs = d.provenance();
            let props: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let key = d.record.key.as_deref().map(str::to_owned);
            self.send(message(std::mem::take(&mut payload), key, &props))?;
        }
        Ok(())
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.rejected)
    }

    /// Awaits the receipt of every message sent since the last flush.
    fn flush(&mut self) -> Result<(), SinkError> {
        let receipts = std::mem::take(&mut self.receipts);
        let n = receipts.len();
        let failed: Vec<String> = self.rt.block_on(async {
            let mut failed = Vec::new();
            for r in receipts {
                if let Err(e) = r.await {
                    failed.push(e.to_string());
                }
            }
            failed
        });
        match failed.first() {
            None => Ok(()),
            Some(first) => Err(self.err(format!(
                "{} of {n} message(s) to {} were not confirmed: {first}",
                failed.len(),
                self.topic
            ))),
        }
    }
}
