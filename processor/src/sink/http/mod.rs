//! The HTTP sink: batches of records POSTed as JSON arrays.
//!
//! # Guarantees
//! At-least-once. A batch is sent until the endpoint answers 2xx: a failed
//! request (no answer, timeout, 5xx, 408, 429) is retried with exponential
//! backoff, and after `circuitBreaker.failures` failures in a row the
//! breaker opens: no request for `openFor`, then one probe. While the
//! endpoint is down, `write` and `flush` block, so the engine stops
//! pulling from the source (backpressure) and nothing is dropped. A batch
//! the endpoint refuses for good (another 4xx) goes to the dead-letter
//! sink, record by record, with the answer as the error.
//!
//! # Caveats
//! A request that timed out may have been processed: the retry repeats it
//! (duplicates, never loss). While blocked, the sink does not see a stop
//! request; the process's stop grace period ends it, and an acknowledging
//! source redelivers what was not acknowledged.

mod breaker;

use std::time::{Duration, Instant};

use tributary_crds::HttpSink as HttpSinkSpec;

pub use breaker::{Breaker, State, Transition};

use super::{DeadLetter, Sink, SinkError};
use crate::http::{Endpoint, backoff, metrics};
use crate::record::Record;

/// POSTs batches of records to one URL.
pub struct HttpSink {
    name: String,
    endpoint: Endpoint,
    batch_size: usize,
    backoff: Duration,
    breaker: Breaker,
    max_backoff: Duration,
    pending: Vec<Record>,
    rejected: Vec<DeadLetter>,
}

impl HttpSink {
    /// A sink for `spec`.
    #[must_use]
    pub fn new(name: String, spec: &HttpSinkSpec) -> Self {
        let open_for = spec.circuit_breaker.open_for.0;
        metrics::circuit(&name, 0, false);
        Self {
            endpoint: Endpoint::new(&spec.url, &spec.headers, spec.timeout.0),
            name,
            batch_size: spec.batch_size.max(1) as usize,
            backoff: spec.backoff.0,
            breaker: Breaker::new(spec.circuit_breaker.failures, open_for),
            max_backoff: open_for.max(spec.backoff.0),
            pending: Vec::new(),
            rejected: Vec::new(),
        }
    }

    /// The breaker's state (for tests and logs).
    #[must_use]
    pub fn state(&self) -> State {
        self.breaker.state()
    }

    /// Sends the first `n` pending records until the endpoint takes them
    /// or refuses them for good.
    fn deliver(&mut self, n: usize) {
        let batch: Vec<Record> = self.pending.drain(..n).collect();
        let body = crate::http::json_array(batch.iter().map(|r| &r.value));
        let mut failures = 0;
        loop {
            match self.breaker.permit(Instant::now()) {
                Err(wait) => {
                    std::thread::sleep(wait);
                    continue;
                }
                Ok(t) => self.note(t, None),
            }
            let (result, took) = self.endpoint.post(&body);
            metrics::request("sink", &self.name, result.is_ok(), took);
            match result {
                Ok(_) => {
                    let t = self.breaker.success();
                    self.note(t, None);
                    return;
                }
                Err(e) if !e.retryable() => {
                    // The endpoint is up and said no: not the breaker's business.
                    let t = self.breaker.success();
                    self.note(t, None);
                    let error = format!("POST {} refused the batch: {e}", self.endpoint.url());
                    tracing::warn!(sink = %self.name, records = batch.len(), %error, "sending the batch to the dead-letter sink");
                    let step = format!("sink:{}", self.name);
                    self.rejected
                        .extend(batch.into_iter().map(|r| DeadLetter::new(&step, &error, r)));
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let t = self.breaker.failure(Instant::now());
                    self.note(t, Some(&e.to_string()));
                    if matches!(self.breaker.state(), State::Closed { .. }) {
                        tracing::debug!(sink = %self.name, error = %e, failures, "request failed; retrying");
                        std::thread::sleep(backoff::delay(
                            self.backoff,
                            failures,
                            self.max_backoff,
                        ));
                    }
                }
            }
        }
    }

    /// Logs and publishes a breaker transition.
    fn note(&self, t: Option<Transition>, error: Option<&str>) {
        let Some(t) = t else { return };
        let state = self.breaker.state();
        metrics::circuit(&self.name, state.code(), t == Transition::Opened);
        match t {
            Transition::Opened => {
                tracing::warn!(sink = %self.name, url = %self.endpoint.url(), error = error.unwrap_or_default(), "circuit breaker open: the endpoint is failing; holding the pipeline until a probe succeeds")
            }
            Transition::Probing => {
                tracing::info!(sink = %self.name, "circuit breaker half-open: probing the endpoint")
            }
            Transition::Closed => {
                tracing::info!(sink = %self.name, "circuit breaker closed: the endpoint answers again")
            }
        }
    }
}

impl Sink for HttpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.pending.extend_from_slice(records);
        while self.pending.len() >= self.batch_size {
            self.deliver(self.batch_size);
        }
        Ok(())
    }

    fn write_values(&mut self, values: &[serde_json::Value]) -> Result<(), SinkError> {
        let records: Vec<Record> = values.iter().map(|v| Record::new(v.clone(), 0)).collect();
        self.write(&records)
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.rejected)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        while !self.pending.is_empty() {
            self.deliver(self.batch_size.min(self.pending.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
