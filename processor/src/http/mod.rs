//! A small blocking HTTP client for JSON batches, shared by the `http` step
//! (user functions behind HTTP) and the HTTP sink.
//!
//! The engine is synchronous (one thread runs the steps and writes the
//! sinks), so the client is too: `ureq` without TLS is a few small crates,
//! where an async client would bring a runtime into the hot path.
//!
//! # Layout
//! - [`Endpoint`]: one URL with its headers and timeout; `post` sends bytes.
//! - [`backoff`]: the exponential retry pause.
//! - [`metrics`]: requests, failures, latency and circuit state.

pub mod backoff;
pub mod metrics;
#[cfg(test)]
pub(crate) mod test_server;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Largest answer read (a batch of enriched records).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// A request that did not get a 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer: connection refused or reset, timeout, DNS.
    #[error("{0}")]
    Transport(String),
    /// The endpoint answered with a non-2xx status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
}

impl CallError {
    /// Whether trying again may help: no answer, 5xx, 408 and 429. Other
    /// 4xx answers say the request itself is wrong.
    #[must_use]
    pub fn retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        }
    }
}

/// The JSON array of `values`, the body of a batch.
#[must_use]
pub fn json_array<'a>(values: impl Iterator<Item = &'a serde_json::Value>) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    body.push(b'[');
    for (i, v) in values.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        // Writing a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, v);
    }
    body.push(b']');
    body
}

/// One URL that receives JSON bodies.
pub struct Endpoint {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
}

impl Endpoint {
    /// An endpoint with a per-request `timeout` (connect, send and answer).
    #[must_use]
    pub fn new(url: &str, headers: &BTreeMap<String, String>, timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build();
        Self {
            agent: config.into(),
            url: url.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `body` as `application/json`; returns the answer's body and
    /// how long the call took.
    ///
    /// # Errors
    /// [`CallError`] when there is no answer or it is not 2xx.
    pub fn post(&self, body: &[u8]) -> (Result<Vec<u8>, CallError>, Duration) {
        let started = Instant::now();
        let result = self.post_inner(body);
        (result, started.elapsed())
    }

    fn post_inner(&self, body: &[u8]) -> Result<Vec<u8>, CallError> {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req
            .send(body)
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let answer = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| CallError::Transport(format!("reading the answer: {e}")))?;
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            let text = String::from_utf8_lossy(&answer);
            Err(CallError::Status {
                status,
                body: text.chars().take(200).collect(),
            })
        }
    }
}
