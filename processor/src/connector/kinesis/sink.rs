//! The Kinesis sink: JSON values to a stream with `PutRecords`, buffered
//! between flushes and sent in calls within the API's limits.
//!
//! # Guarantees
//! At-least-once. A flush returns once every buffered record was accepted:
//! entries a call reports as failed (throttled, internal errors) are
//! retried alone with backoff, so a retried record may be written twice
//! (the first attempt may have landed) and may come after later records
//! of its partition key. While entries fail the flush waits (backpressure);
//! after [`RETRY_FOR`] it fails and the run stops, so a checkpoint never
//! covers a lost record.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};
use serde_json::Value;
use tributary_crds::KinesisSink as Spec;

use super::batch::{MAX_RECORD_BYTES, backoff, calls};
use super::{KinesisError, runtime, sdk_config};
use crate::expr::Expr;
use crate::record::Record;
use crate::sink::{DeadLetter, Sink, SinkError};

/// How long a flush keeps retrying failed entries before it fails: long
/// enough to ride out a stream or network outage of a minute or two (the
/// engine waits meanwhile, and the source pauses when its queue is full).
pub const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// Buffered entries that trigger a send before the flush (bounds memory).
const EAGER: usize = 5 * super::batch::MAX_RECORDS;

/// Writes records to a Kinesis stream.
pub struct KinesisSink {
    name: String,
    stream: String,
    client: Client,
    rt: tokio::runtime::Runtime,
    key: Option<Expr>,
    /// (partition key, data) waiting for the next send.
    buf: Vec<(String, Vec<u8>)>,
    rejected: Vec<DeadLetter>,
    /// Spreads records without a key over the shards.
    counter: u64,
}

impl KinesisSink {
    /// Opens the sink `name` for `spec`.
    ///
    /// # Errors
    /// When the partition key does not compile or the runtime cannot start.
    pub fn open(name: String, spec: &Spec) -> Result<Self, SinkError> {
        let key = spec
            .partition_key
            .as_deref()
            .map(|k| Expr::compile(k, &crate::expr::env()))
            .transpose()
            .map_err(|e| SinkError::Broker {
                name: name.clone(),
                message: format!("partitionKey: {e}"),
            })?;
        let rt = runtime("sink runtime").map_err(|e| SinkError::Broker {
            name: name.clone(),
            message: e.to_string(),
        })?;
        let config = rt.block_on(sdk_config(&spec.region, spec.endpoint.as_deref()));
        Ok(Self {
            name,
            stream: spec.stream.clone(),
            client: Client::new(&config),
            rt,
            key,
            buf: Vec::new(),
            rejected: Vec::new(),
            counter: 0,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::Broker {
            name: self.name.clone(),
            message: e.to_string(),
        }
    }

    fn next_key(&mut self) -> String {
        self.counter += 1;
        self.counter.to_string()
    }

    /// Queues one entry, or rejects it as too large.
    fn push(&mut self, key: String, data: Vec<u8>) -> Result<(), String> {
        let size = key.len() + data.len();
        if size > MAX_RECORD_BYTES {
            return Err(format!(
                "record of {size} bytes (data and partition key) exceeds Kinesis' limit of {MAX_RECORD_BYTES} bytes"
            ));
        }
        self.buf.push((key, data));
        Ok(())
    }

    /// Sends everything buffered, retrying failed entries.
    fn send(&mut self) -> Result<(), SinkError> {
        let mut pending = std::mem::take(&mut self.buf);
        let mut attempt = 0;
        let give_up = std::time::Instant::now() + RETRY_FOR;
        while !pending.is_empty() {
            attempt += 1;
            let failed = self
                .rt
                .block_on(put_all(&self.client, &self.stream, pending))
                .map_err(|e| self.err(e))?;
            if failed.entries.is_empty() {
                break;
            }
            if std::time::Instant::now() + backoff(attempt) > give_up {
                return Err(self.err(format!(
                    "{} records still failing after {attempt} attempts over {}s (last error: {})",
                    failed.entries.len(),
                    RETRY_FOR.as_secs(),
                    failed.last_error
                )));
            }
            tracing::warn!(
                sink = %self.name,
                failed = failed.entries.len(),
                error = %failed.last_error,
                "retrying failed PutRecords entries"
            );
            std::thread::sleep(backoff(attempt));
            pending = failed.entries;
        }
        Ok(())
    }
}

/// Entries a round did not write, and why the last one failed.
struct Failed {
    entries: Vec<(String, Vec<u8>)>,
    last_error: String,
}

/// One `PutRecords` round over `entries`: the entries the service refused
/// (per-entry errors, or whole calls that failed) come back for a retry.
async fn put_all(
    client: &Client,
    stream: &str,
    entries: Vec<(String, Vec<u8>)>,
) -> Result<Failed, KinesisError> {
    let sizes: Vec<usize> = entries.iter().map(|(k, d)| k.len() + d.len()).collect();
    let mut failed = Failed {
        entries: Vec::new(),
        last_error: String::new(),
    };
    let mut entries = entries.into_iter();
    for call in calls(&sizes) {
        let chunk: Vec<(String, Vec<u8>)> = entries.by_ref().take(call.len()).collect();
        let mut req = client.put_records().stream_name(stream);
        for (key, data) in &chunk {
            req = req.records(
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()
                    .map_err(|e| KinesisError::Api {
                        call: "PutRecords",
                        message: e.to_string(),
                    })?,
            );
        }
        match req.send().await {
            Ok(out) if out.failed_record_count().unwrap_or(0) == 0 => {}
            Ok(out) => keep_refused(chunk, out.records(), &mut failed),
            Err(e) => {
                failed.last_error = KinesisError::api("PutRecords", &e).to_string();
                failed.entries.extend(chunk);
            }
        }
    }
    Ok(failed)
}

/// Adds the entries of `chunk` that `results` (the answer to the call that
/// sent them, in request order) did not accept to `failed`. An entry with
/// no result at all (a short answer) counts as refused: it is retried, not
/// assumed written.
fn keep_refused(
    chunk: Vec<(String, Vec<u8>)>,
    results: &[PutRecordsResultEntry],
    failed: &mut Failed,
) {
    let sent = chunk.len();
    for (i, entry) in chunk.into_iter().enumerate() {
        match results.get(i) {
            Some(r) if r.error_code().is_none() => {}
            Some(r) => {
                failed.last_error = format!(
                    "{}: {}",
                    r.error_code().unwrap_or_default(),
                    r.error_message().unwrap_or_default()
                );
                failed.entries.push(entry);
            }
            None => {
                failed.last_error = format!(
                    "PutRecords answered {} results for {sent} entries",
                    results.len()
                );
                failed.entries.push(entry);
            }
        }
    }
}

/// A partition key from a CEL value: strings as they are, anything else as
/// its JSON text.
fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Sink for KinesisSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for r in records {
            let key = match &self.key {
                Some(expr) => match expr.eval(&r.value) {
                    Ok(v) => key_text(&v),
                    Err(e) => {
                        let dl =
                            DeadLetter::new(&self.name, format!("partitionKey: {e}"), r.clone());
                        self.rejected.push(dl);
                        continue;
                    }
                },
                None => match r.key.as_deref() {
                    Some(k) => k.to_owned(),
                    None => self.next_key(),
                },
            };
            if key.is_empty() || key.chars().count() > 256 {
                let msg = format!(
                    "partitionKey: Kinesis needs 1 to 256 characters, got {}",
                    key.chars().count()
                );
                self.rejected
                    .push(DeadLetter::new(&self.name, msg, r.clone()));
                continue;
            }
            let data = serde_json::to_vec(&r.value).map_err(|e| self.err(e))?;
            if let Err(msg) = self.push(key, data) {
                self.rejected
                    .push(DeadLetter::new(&self.name, msg, r.clone()));
            }
        }
        if self.buf.len() >= EAGER {
            self.send()?;
        }
        Ok(())
    }

    fn write_values(&mut self, values: &[Value]) -> Result<(), SinkError> {
        for v in values {
            let key = self.next_key();
            let data = serde_json::to_vec(v).map_err(|e| self.err(e))?;
            self.push(key, data).map_err(|m| self.err(m))?;
        }
        Ok(())
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.rejected)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_are_text() {
        assert_eq!(key_text(&Value::String("u1".into())), "u1");
        assert_eq!(key_text(&serde_json::json!(42)), "42");
    }

    fn ok(seq: &str) -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .sequence_number(seq)
            .shard_id("shardId-000000000000")
            .build()
    }

    fn refused(code: &str) -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .error_code(code)
            .error_message("Rate exceeded for shard shardId-000000000001")
            .build()
    }

    fn entries(n: u8) -> Vec<(String, Vec<u8>)> {
        (0..n).map(|i| (format!("k{i}"), vec![i])).collect()
    }

    fn empty() -> Failed {
        Failed {
            entries: Vec::new(),
            last_error: String::new(),
        }
    }

    #[test]
    fn only_the_refused_entries_of_a_partial_failure_are_retried() {
        let mut failed = empty();
        let results = [
            ok("1"),
            refused("ProvisionedThroughputExceededException"),
            ok("2"),
            refused("InternalFailure"),
        ];
        keep_refused(entries(4), &results, &mut failed);
        assert_eq!(
            failed.entries,
            vec![("k1".to_owned(), vec![1]), ("k3".to_owned(), vec![3])]
        );
        assert!(
            failed
                .last_error
                .starts_with("InternalFailure: Rate exceeded")
        );
    }

    #[test]
    fn entries_without_a_result_are_retried_not_assumed_written() {
        let mut failed = empty();
        keep_refused(entries(3), &[ok("1")], &mut failed);
        assert_eq!(failed.entries.len(), 2);
        assert_eq!(failed.entries[0].0, "k1");
        assert_eq!(
            failed.last_error,
            "PutRecords answered 1 results for 3 entries"
        );
    }

    #[test]
    fn a_fully_accepted_call_leaves_nothing() {
        let mut failed = empty();
        keep_refused(entries(2), &[ok("1"), ok("2")], &mut failed);
        assert!(failed.entries.is_empty());
    }
}
