//! Errors of one reconcile.

/// Why a reconcile failed; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the apiserver failed (apply, status patch, get).
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing, e.g. `applying Deployment clicks`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The resource lacks a field the apiserver always sets (name, namespace, uid).
    #[error("StreamPipeline is missing metadata.{0}")]
    MissingMetadata(&'static str),
}

impl Error {
    /// A short, bounded label for the `reason` of the failure metric.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(s) if s.code == 409 => "conflict",
                kube::Error::Api(s) if s.code == 403 => "forbidden",
                kube::Error::Api(s) if s.code == 404 => "not_found",
                kube::Error::Api(_) => "api",
                _ => "client",
            },
            Self::MissingMetadata(_) => "metadata",
        }
    }

    /// Wraps a client error with what was being done.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }
}

/// The result of reconcile steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;
