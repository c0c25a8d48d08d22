//! The NATS JetStream sink: publishes whose acknowledgements are awaited at
//! each flush.
//!
//! # Guarantees
//! At-least-once. A flush publishes what was written since the last one
//! and waits for the stream's publish acknowledgement of every message.
//! Messages that fail (server down, no acknowledgement in time) are
//! published again with backoff, and the flush — so the engine, and
//! through its queue the source — waits until the server is back
//! (backpressure), for up to [`GIVE_UP`]. Every message carries a
//! `Nats-Msg-Id` unique to this process, so that a retry of a message the
//! stream did store is dropped by the stream's duplicate window.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use serde_json::Value;
use tributary_crds::NatsSink as NatsSinkSpec;

use super::source::connect;
use crate::connector::{backoff, instance, runtime};
use crate::record::Record;
use crate::sink::{DeadLetter, Sink, SinkError};

/// Publishes in flight at once (below the client's limit of unacknowledged publishes).
const WINDOW: usize = 1000;
/// Messages buffered before `write` flushes on its own.
const MAX_BUFFERED: usize = 10_000;
/// How long a flush retries before the sink reports a failure.
pub const GIVE_UP: Duration = Duration::from_secs(300);

/// Publishes records to a JetStream subject.
pub struct NatsSink {
    name: String,
    subject: String,
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    pending: Vec<PublishMessage>,
    /// Message ids are `<prefix><counter>`.
    id_prefix: String,
    next_id: u64,
}

impl NatsSink {
    /// Connects a sink for `spec` named `name`.
    ///
    /// # Errors
    /// [`SinkError::Broker`] when the server cannot be reached.
    pub fn open(name: String, spec: &NatsSinkSpec) -> Result<Self, SinkError> {
        let broker = |message: String| SinkError::Broker {
            name: name.clone(),
            message,
        };
        let rt = runtime().map_err(|e| broker(format!("starting the client runtime: {e}")))?;
        let client = rt
            .block_on(connect(&spec.url))
            .map_err(|e| broker(format!("nats.url: cannot connect to {}: {e}", spec.url)))?;
        let js = {
            // The context spawns its acknowledgement task on the runtime.
            let _in_runtime = rt.enter();
            jetstream::new(client)
        };
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Ok(Self {
            subject: spec.subject.clone(),
            rt,
            js,
            pending: Vec::new(),
            id_prefix: format!("{}-{name}-{started}-", instance()),
            next_id: 0,
            name,
        })
    }

    fn add(&mut self, value: &Value, headers: &[(&str, String)]) -> Result<(), SinkError> {
        let payload = serde_json::to_vec(value).map_err(|e| SinkError::Broker {
            name: self.name.clone(),
            message: format!("encoding a record: {e}"),
        })?;
        let mut msg = PublishMessage::build().payload(payload.into());
        for (k, v) in headers {
            msg = msg.header(*k, v.as_str());
        }
        self.next_id += 1;
        msg = msg.message_id(format!("{}{}", self.id_prefix, self.next_id));
        self.pending.push(msg);
        if self.pending.len() >= MAX_BUFFERED {
            self.flush()?;
        }
        Ok(())
    }

    /// Publishes `batch`, returns the messages that were not acknowledged
    /// and the last error.
    async fn publish(
        js: &jetstream::Context,
        subject: &str,
        batch: Vec<PublishMessage>,
    ) -> (Vec<PublishMessage>, Option<String>) {
        let mut failed = Vec::new();
        let mut last_error = None;
        let mut acks: Vec<(PublishMessage, PublishAckFuture)> = Vec::with_capacity(batch.len());
        for msg in batch {
            match js.send_publish(subject.to_owned(), msg.clone()).await {
                Ok(ack) => acks.push((msg, ack)),
                Err(e) => {
                    last_error = Some(e.to_string());
                    failed.push(msg);
                }
            }
        }
        for (msg, ack) in acks {
            if let Err(e) = ack.await {
                last_error = Some(e.to_string());
                failed.push(msg);
            }
        }
        (failed, last_error)
    }
}

impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for r in records {
            self.add(&r.value, &[])?;
        }
        Ok(())
    }

    fn write_values(&mut self, values: &[Value]) -> Result<(), SinkError> {
        for v in values {
            self.add(v, &[])?;
        }
        Ok(())
    }

    fn write_dead(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        for d in letters {
            let mut headers = d.provenance();
            // Header values cannot span lines.
            headers[4].1 = headers[4].1.replace(['\r', '\n'], " ");
            self.add(&d.to_json(), &headers)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let started = Instant::now();
        let mut failures = 0u32;
        while !self.pending.is_empty() {
            let n = self.pending.len().min(WINDOW);
            let batch: Vec<PublishMessage> = self.pending.drain(..n).collect();
            let (failed, error) = self
                .rt
                .block_on(Self::publish(&self.js, &self.subject, batch));
            if failed.is_empty() {
                failures = 0;
                continue;
            }
            let error = error.unwrap_or_default();
            // Put the failed ones back in front, in order.
            self.pending.splice(0..0, failed);
            if started.elapsed() >= GIVE_UP {
                return Err(SinkError::Broker {
                    name: self.name.clone(),
                    message: format!(
                        "publishing to {} failed for {}s: {error}",
                        self.subject,
                        GIVE_UP.as_secs()
                    ),
                });
            }
            if failures == 0 {
                tracing::warn!(sink = %self.name, subject = %self.subject, %error, "publish not acknowledged; retrying until the server is back");
            }
            let pause = backoff(failures);
            self.rt.block_on(async { tokio::time::sleep(pause).await });
            failures += 1;
        }
        Ok(())
    }
}
