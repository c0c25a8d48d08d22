//! HTTP calls: the `http` step (a user's function behind HTTP, usually a
//! sidecar container in the processor pod) and the HTTP sink's circuit
//! breaker. See `docs/udf.md` and `docs/connectors.md`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, OnFailure};

/// `http`: sends records in batches to a user's service and replaces each
/// record with the service's answer for it.
///
/// The service receives a JSON array of record values (`POST`,
/// `Content-Type: application/json`) and answers with a JSON array of the
/// same length in the same order: element `i` is the new value of record
/// `i` (an object), or `null` to drop it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpStep {
    /// URL to POST batches to, e.g. `http://localhost:8080/enrich` for a sidecar.
    pub url: String,
    /// Most records in one request; default 100.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Longest wait for one request (connect, send, answer); default 5s.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Further attempts after a failed request (connection refused, timeout,
    /// HTTP 5xx, 408, 429); default 3. Other 4xx answers and malformed
    /// answers are not retried.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Pause before the first retry; it doubles with each retry (at most 10s). Default 100ms.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    /// Batches in flight at once; default 4. Output order is input order whatever this is.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// What happens to the records of a batch that failed after its retries:
    /// `deadLetter` (default; with the error), `drop`, `warn` (pass them on
    /// unchanged, logged) or `fail` (stop the pipeline).
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Extra request headers (not for secrets: they are stored in the spec).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl Default for HttpStep {
    fn default() -> Self {
        Self {
            url: String::new(),
            batch_size: default_batch_size(),
            timeout: default_timeout(),
            retries: default_retries(),
            backoff: default_backoff(),
            concurrency: default_concurrency(),
            on_failure: OnFailure::default(),
            headers: BTreeMap::new(),
        }
    }
}

/// When an endpoint keeps failing, stop calling it for a while, then probe.
///
/// Closed: requests flow; `failures` consecutive failed requests open it.
/// Open: no request for `openFor` (the sink blocks, so the pipeline stops
/// pulling from its source). Then half-open: one probe request; success
/// closes it, failure opens it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Consecutive failed requests that open the breaker; default 5.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long the breaker stays open before a probe; default 10s.
    #[serde(default = "default_open_for")]
    pub open_for: Duration,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            failures: default_failures(),
            open_for: default_open_for(),
        }
    }
}

pub(crate) const fn default_batch_size() -> u32 {
    100
}

pub(crate) const fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

const fn default_retries() -> u32 {
    3
}

pub(crate) const fn default_backoff() -> Duration {
    Duration::from_millis(100)
}

const fn default_concurrency() -> u32 {
    4
}

const fn default_failures() -> u32 {
    5
}

const fn default_open_for() -> Duration {
    Duration::from_secs(10)
}
