//! The `http` step: records go in batches to a user's service (a UDF,
//! usually a sidecar on localhost) and come back changed, dropped or
//! failed. See `docs/udf.md`.
//!
//! # Guarantees
//! Output order is input order, whatever `concurrency` is: the batches of
//! one input are sent in parallel and their answers put back in order.
//! The step holds no record between calls, so it adds nothing to what a
//! restart replays; a replayed record is sent again (the service should be
//! a function of its input).

mod protocol;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tributary_crds::{HttpStep, OnFailure};

use super::{Emit, Step, StepError};
use crate::http::{CallError, Endpoint, backoff, metrics};
use crate::record::Record;
use crate::sink::DeadLetter;
use protocol::Verdict;

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The `http` step.
pub struct Http {
    name: String,
    endpoint: Endpoint,
    batch_size: usize,
    retries: u32,
    backoff: Duration,
    concurrency: usize,
    on_failure: OnFailure,
}

impl Http {
    /// A step calling `spec.url`.
    #[must_use]
    pub fn new(name: String, spec: &HttpStep) -> Self {
        Self {
            endpoint: Endpoint::new(&spec.url, &spec.headers, spec.timeout.0),
            name,
            batch_size: spec.batch_size.max(1) as usize,
            retries: spec.retries,
            backoff: spec.backoff.0,
            concurrency: spec.concurrency.max(1) as usize,
            on_failure: spec.on_failure,
        }
    }

    /// Sends one batch, retrying what may succeed later; the verdicts or
    /// the last error.
    fn call(&self, records: &[Record]) -> Result<Vec<Verdict>, String> {
        let body = protocol::request(records.iter().map(|r| &r.value));
        let mut retry = 0;
        loop {
            let (result, took) = self.endpoint.post(&body);
            metrics::request("step", &self.name, result.is_ok(), took);
            let err = match result {
                Ok(answer) => return protocol::answer(&answer, records.len()),
                Err(e) => e,
            };
            if !err.retryable() || retry >= self.retries {
                return Err(describe(&err, retry + 1, self.endpoint.url()));
            }
            retry += 1;
            std::thread::sleep(backoff::delay(self.backoff, retry, MAX_BACKOFF));
        }
    }

    /// Calls every batch, up to `concurrency` at once; results in order.
    fn call_all(&self, batches: &[&[Record]]) -> Vec<Result<Vec<Verdict>, String>> {
        let workers = self.concurrency.min(batches.len());
        if workers <= 1 {
            return batches.iter().map(|b| self.call(b)).collect();
        }
        let next = AtomicUsize::new(0);
        let mut results: Vec<Option<Result<Vec<Verdict>, String>>> = vec![None; batches.len()];
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(batch) = batches.get(i) else {
                                return done;
                            };
                            done.push((i, self.call(batch)));
                        }
                    })
                })
                .collect();
            for h in handles {
                // A worker only panics if `call` does, which it does not.
                if let Ok(done) = h.join() {
                    for (i, r) in done {
                        results[i] = Some(r);
                    }
                }
            }
        });
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("the request thread stopped".into())))
            .collect()
    }

    /// Applies `onFailure` to one failed record.
    fn failed(&self, record: Record, error: &str, emit: &mut Emit) -> Result<(), StepError> {
        match self.on_failure {
            OnFailure::DeadLetter => {
                emit.dead.push(DeadLetter::new(&self.name, error, record));
            }
            OnFailure::Drop => emit.dropped += 1,
            OnFailure::Warn => emit.out.push(record),
            OnFailure::Fail => {
                return Err(StepError::Failed {
                    step: self.name.clone(),
                    message: error.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// The error a dead letter carries.
fn describe(err: &CallError, attempts: u32, url: &str) -> String {
    format!("POST {url} failed after {attempts} attempt(s): {err}")
}

impl Step for Http {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> super::Snapshot {
        super::Snapshot::Stateless
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        if input.is_empty() {
            return Ok(());
        }
        let results = {
            let batches: Vec<&[Record]> = input.chunks(self.batch_size).collect();
            self.call_all(&batches)
        };
        let mut records = input.into_iter();
        for result in results {
            let n = self.batch_size.min(records.len());
            match result {
                Ok(verdicts) => {
                    for (mut record, verdict) in records.by_ref().take(n).zip(verdicts) {
                        match verdict {
                            Verdict::Replace(v) => {
                                record.value = v;
                                emit.out.push(record);
                            }
                            Verdict::Drop => emit.dropped += 1,
                            Verdict::Invalid(e) => self.failed(record, &e, emit)?,
                        }
                    }
                }
                Err(e) => {
                    if self.on_failure != OnFailure::Fail {
                        tracing::warn!(step = %self.name, records = n, error = %e, on_failure = ?self.on_failure, "a batch of the http step failed");
                    }
                    for record in records.by_ref().take(n) {
                        self.failed(record, &e, emit)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
