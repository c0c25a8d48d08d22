//! What the operator e2e tests need around the `tributary-operator` binary.
//!
//! Under kwok the chart's operator pod never runs, so the tests install the
//! chart (CRD, ServiceAccount, RBAC, Deployment) for real and run the
//! operator binary as a local process that authenticates with a token of the
//! chart's ServiceAccount: it has exactly the permissions the chart grants,
//! and the API server's audit log records its requests under that identity.
//!
//! # Layout
//!
//! - [`chart`]: the CRD (once per test process), `helm install` into a fresh
//!   namespace, and a kubeconfig holding the ServiceAccount's token.
//! - [`process`]: one operator process (start, metrics, SIGKILL, stop on drop).
//! - [`harness`]: the usual setup: release, `restricted` pipeline namespace,
//!   one leading operator.
//! - [`pipeline`]: `StreamPipeline` objects through the dynamic API, their
//!   conditions, and `kubectl` with the admin kubeconfig.
//! - [`schema`]: strict JSON schemas for kubeconform, made offline from the
//!   API server's OpenAPI and the CRD.
//! - [`audit`]: the audit log's requests of one user, and RBAC rules as
//!   `(apiGroup, resource, verb)` sets to compare with them.

pub mod audit;
pub mod chart;
pub mod harness;
pub mod pipeline;
pub mod process;
pub mod schema;

/// Errors of the operator helpers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The test bed is not described.
    #[error(transparent)]
    Env(#[from] crate::env::Error),
    /// A CLI (`kubectl`, `helm`) failed.
    #[error(transparent)]
    Tool(#[from] crate::tools::Error),
    /// An API call failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// A file could not be read or written, or a process not started.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Something the test bed or a tool returned was not what was expected.
    #[error("{0}")]
    Unexpected(String),
}

impl Error {
    /// An [`Error::Io`] saying what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// Result of the operator helpers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The workspace root (the parent of `e2e/`).
#[must_use]
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(
            || std::path::PathBuf::from(".."),
            std::path::Path::to_path_buf,
        )
}
