//! The Pub/Sub sink: records are handed to Google's batching publisher as
//! they are written; a flush waits for every message id and republishes
//! what failed, with backoff, until it is accepted or the retry budget is
//! spent.

use std::time::{Duration, Instant};

use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::error::PublishError;
use google_cloud_pubsub::model::Message as PubsubMessage;
use google_cloud_pubsub::publisher::PublishFuture;
use serde_json::Value;
use tributary_crds::PubSubSink as Spec;

use super::client::{self, Endpoint};
use crate::expr::Expr;
use crate::record::Record;
use crate::sink::{DeadLetter, Sink, SinkError};

/// Pub/Sub's limit on a message (data, attributes and ordering key). The
/// data is kept below it with room for the attributes.
const MAX_DATA_BYTES: usize = 10_000_000 - 200_000;
/// Pub/Sub's limits on attributes.
const MAX_ATTRIBUTES: usize = 100;
const MAX_ATTRIBUTE_KEY: usize = 256;
const MAX_ATTRIBUTE_VALUE: usize = 1024;
/// Pub/Sub's limit on an ordering key.
const MAX_ORDERING_KEY: usize = 1024;

/// How long a flush keeps retrying before it fails the pipeline (the
/// engine blocks meanwhile: backpressure, not loss).
const RETRY_FOR: Duration = Duration::from_secs(600);
/// Backoff between retries of a flush, doubling up to the maximum.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// A topic written by batched publish. See the module docs.
pub struct PubSubSink {
    name: String,
    topic: String,
    runtime: tokio::runtime::Runtime,
    publisher: Publisher,
    ordering_key: Option<Expr>,
    attributes: Vec<(String, Expr)>,
    /// Published since the last flush, awaiting their message ids.
    pending: Vec<(PubsubMessage, PublishFuture)>,
    rejected: Vec<DeadLetter>,
}

impl PubSubSink {
    /// Connects the sink `name` to the topic of `spec`.
    ///
    /// # Errors
    /// [`SinkError::Broker`] when an expression does not compile or the
    /// client cannot be created.
    pub fn open(name: String, spec: &Spec) -> Result<Self, SinkError> {
        let err = |message: String| SinkError::Broker {
            name: name.clone(),
            message,
        };
        let env = crate::expr::env();
        let ordering_key = spec
            .ordering_key
            .as_deref()
            .map(|e| Expr::compile(e, &env))
            .transpose()
            .map_err(|e| err(format!("orderingKey: {e}")))?;
        let attributes = spec
            .attributes
            .iter()
            .map(|(k, e)| {
                Expr::compile(e, &env)
                    .map(|x| (k.clone(), x))
                    .map_err(|e| err(format!("attributes.{k}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let topic = client::topic_path(&spec.project, &spec.topic);
        let runtime = client::runtime("pubsub-sink").map_err(|e| err(e.to_string()))?;
        let (url, credentials) = Endpoint::from_spec(spec.endpoint.as_deref()).settings();
        let publisher = runtime
            .block_on(async {
                let mut b = Publisher::builder(topic.clone()).with_backoff_policy(
                    ExponentialBackoffBuilder::new()
                        .with_initial_delay(BACKOFF.0)
                        .with_maximum_delay(BACKOFF.1)
                        .with_scaling(2.0)
                        .clamp(),
                );
                if let Some(url) = url {
                    b = b.with_endpoint(url);
                }
                if let Some(c) = credentials {
                    b = b.with_credentials(c);
                }
                b.build().await
            })
            .map_err(|e| err(format!("creating the publisher for {topic}: {e}")))?;
        Ok(Self {
            name,
            topic,
            runtime,
            publisher,
            ordering_key,
            attributes,
            pending: Vec::new(),
            rejected: Vec::new(),
        })
    }

    fn publish(&mut self, m: PubsubMessage) {
        let f = self.publisher.publish(m.clone());
        self.pending.push((m, f));
    }

    /// The message for a record, or why it cannot be one.
    fn message(&self, r: &Record) -> Result<PubsubMessage, String> {
        let data = serde_json::to_vec(&r.value).map_err(|e| format!("encoding: {e}"))?;
        if data.len() > MAX_DATA_BYTES {
            return Err(format!(
                "record of {} bytes exceeds Pub/Sub's message limit ({MAX_DATA_BYTES} bytes of data)",
                data.len()
            ));
        }
        let mut attributes = r.headers.clone();
        for (k, expr) in &self.attributes {
            let v = expr
                .eval(&r.value)
                .map_err(|e| format!("attributes.{k}: {e}"))?;
            if let Some(v) = string_of(&v) {
                attributes.retain(|(h, _)| h != k);
                attributes.push((k.clone(), v));
            }
        }
        check_attributes(&attributes)?;
        let key = match &self.ordering_key {
            Some(e) => string_of(&e.eval(&r.value).map_err(|e| format!("orderingKey: {e}"))?),
            None => r.key.as_deref().map(str::to_owned),
        }
        .unwrap_or_default();
        if key.len() > MAX_ORDERING_KEY {
            return Err(format!(
                "ordering key of {} bytes exceeds Pub/Sub's limit of {MAX_ORDERING_KEY}",
                key.len()
            ));
        }
        Ok(PubsubMessage::new()
            .set_data(data)
            .set_attributes(attributes)
            .set_ordering_key(key))
    }

    /// Awaits every pending publish; republishes what failed and can be
    /// retried, until all are accepted or [`RETRY_FOR`] has passed.
    fn settle(&mut self) -> Result<(), SinkError> {
        let started = Instant::now();
        let mut delay = BACKOFF.0;
        let mut attempt = 1u32;
        loop {
            let pending = std::mem::take(&mut self.pending);
            let failed: Vec<(PubsubMessage, PublishError)> = self.runtime.block_on(async {
                let mut failed = Vec::new();
                for (m, f) in pending {
                    if let Err(e) = f.await {
                        failed.push((m, e));
                    }
                }
                failed
            });
            let Some((_, first)) = failed.first() else {
                return Ok(());
            };
            let summary = format!(
                "{} message(s) not published to {}: {first}",
                failed.len(),
                self.topic
            );
            if let Some((_, e)) = failed.iter().find(|(_, e)| !retryable(e)) {
                return Err(self.err(format!("{summary} (not retryable: {e})")));
            }
            if started.elapsed() >= RETRY_FOR {
                return Err(self.err(format!("{summary}; gave up after {RETRY_FOR:?}")));
            }
            tracing::warn!(sink = %self.name, attempt, "{summary}; retrying in {delay:?}");
            std::thread::sleep(delay);
            delay = (delay * 2).min(BACKOFF.1);
            attempt += 1;
            for (m, _) in failed {
                if !m.ordering_key.is_empty() {
                    // A failure pauses the key; its order is ours to keep now.
                    self.publisher.resume_publish(m.ordering_key.clone());
                }
                self.publish(m);
            }
        }
    }

    fn err(&self, message: String) -> SinkError {
        SinkError::Broker {
            name: self.name.clone(),
            message,
        }
    }
}

/// A value as an attribute or key: strings as is, `null` as none, other
/// values as JSON.
fn string_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Pub/Sub refuses a whole publish request for one bad attribute, so a
/// record whose attributes break its limits is refused on its own.
fn check_attributes(attributes: &[(String, String)]) -> Result<(), String> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "{} attributes; Pub/Sub allows {MAX_ATTRIBUTES}",
            attributes.len()
        ));
    }
    for (k, v) in attributes {
        if k.is_empty() || k.len() > MAX_ATTRIBUTE_KEY || k.starts_with("goog") {
            return Err(format!(
                "attribute name {k:?}: must be 1 to {MAX_ATTRIBUTE_KEY} bytes and not start with \"goog\""
            ));
        }
        if v.len() > MAX_ATTRIBUTE_VALUE {
            return Err(format!(
                "attribute {k:?} has {} bytes; Pub/Sub allows {MAX_ATTRIBUTE_VALUE}",
                v.len()
            ));
        }
    }
    Ok(())
}

/// Whether a failed publish may succeed when sent again: not when the
/// request itself is wrong (missing topic, no permission, bad argument).
fn retryable(e: &PublishError) -> bool {
    use google_cloud_gax::error::rpc::Code;
    match e {
        PublishError::OrderingKeyPaused => true,
        PublishError::Rpc(e) => {
            if e.is_authentication() {
                return false;
            }
            !e.status().is_some_and(|s| {
                matches!(
                    s.code,
                    Code::InvalidArgument
                        | Code::NotFound
                        | Code::PermissionDenied
                        | Code::Unauthenticated
                        | Code::FailedPrecondition
                        | Code::OutOfRange
                        | Code::Unimplemented
                )
            })
        }
        _ => false,
    }
}

/// The first `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Sink for PubSubSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for r in records {
            match self.message(r) {
                Ok(m) => self.publish(m),
                Err(e) => self
                    .rejected
                    .push(DeadLetter::new(&self.name, e, r.clone())),
            }
        }
        Ok(())
    }

    fn write_values(&mut self, values: &[Value]) -> Result<(), SinkError> {
        for v in values {
            let data = serde_json::to_vec(v).map_err(|e| self.err(format!("encoding: {e}")))?;
            self.publish(PubsubMessage::new().set_data(data));
        }
        Ok(())
    }

    /// Dead letters carry their provenance as attributes
    /// (`tributary.source.*`, `tributary.step`, `tributary.error`, cut to
    /// Pub/Sub's 1024 bytes) plus the record's headers that fit.
    fn write_dead(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        for d in letters {
            let mut json = d.to_json();
            let mut data =
                serde_json::to_vec(&json).map_err(|e| self.err(format!("encoding: {e}")))?;
            if data.len() > MAX_DATA_BYTES {
                json["record"] =
                    Value::String(format!("<{} bytes, over Pub/Sub's limit>", data.len()));
                data = serde_json::to_vec(&json).map_err(|e| self.err(format!("encoding: {e}")))?;
            }
            let pos = &d.record.position;
            let mut attributes: Vec<(String, String)> = [
                ("tributary.source.topic", &*pos.source),
                ("tributary.source.partition", &pos.partition.to_string()),
                ("tributary.source.offset", &pos.offset.to_string()),
                ("tributary.step", &d.step),
                ("tributary.error", truncate(&d.error, MAX_ATTRIBUTE_VALUE)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            for (k, v) in &d.record.headers {
                if attributes.len() < MAX_ATTRIBUTES
                    && check_attributes(&[(k.clone(), v.clone())]).is_ok()
                {
                    attributes.push((k.clone(), v.clone()));
                }
            }
            self.publish(
                PubsubMessage::new()
                    .set_data(data)
                    .set_attributes(attributes),
            );
        }
        Ok(())
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.rejected)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.settle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_over_the_limits_are_refused_with_the_reason() {
        assert!(check_attributes(&[("k".into(), "v".into())]).is_ok());
        let long = "x".repeat(MAX_ATTRIBUTE_VALUE + 1);
        assert!(
            check_attributes(&[("k".into(), long)])
                .unwrap_err()
                .contains("1024")
        );
        assert!(
            check_attributes(&[("goog-x".into(), "v".into())])
                .unwrap_err()
                .contains("goog")
        );
        let many: Vec<(String, String)> = (0..=MAX_ATTRIBUTES)
            .map(|i| (format!("a{i}"), String::new()))
            .collect();
        assert!(check_attributes(&many).unwrap_err().contains("100"));
    }

    #[test]
    fn values_become_strings_and_null_means_none() {
        assert_eq!(string_of(&Value::from("u1")).as_deref(), Some("u1"));
        assert_eq!(string_of(&serde_json::json!(42)).as_deref(), Some("42"));
        assert_eq!(string_of(&Value::Null), None);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn only_requests_that_can_succeed_later_are_retried() {
        use google_cloud_gax::error::rpc::{Code, Status};
        use std::sync::Arc;
        let rpc = |code| {
            PublishError::Rpc(Arc::new(google_cloud_pubsub::Error::service(
                Status::default().set_code(code).set_message("m"),
            )))
        };
        assert!(retryable(&rpc(Code::Unavailable)));
        assert!(retryable(&rpc(Code::DeadlineExceeded)));
        assert!(retryable(&PublishError::OrderingKeyPaused));
        assert!(!retryable(&rpc(Code::NotFound)));
        assert!(!retryable(&rpc(Code::PermissionDenied)));
        assert!(!retryable(&PublishError::Shutdown));
    }
}
