//! The pod runner: processor pods made real on a kwok cluster.
//!
//! kwok marks pods Running without running anything. The pod runner watches
//! pods labelled `app.kubernetes.io/component=processor` and, for each one
//! that is Running and not being deleted, starts the real `tributary` binary
//! as a local process with the container's args and env, its ConfigMap and
//! Secret volumes written to a work directory, and mount paths in args and
//! env (`/etc/tributary/pipeline.yaml`) rewritten to that directory. When the
//! pod goes away, or starts terminating, its process is stopped (SIGTERM,
//! then SIGKILL after the pod's grace period). Scaling a Deployment therefore
//! really adds and removes processors.
//!
//! - [`plan`]: pure: a pod and the objects it references → what to run.
//! - [`supervisor`]: starting, restarting and stopping the processes.
//! - [`handle`]: a `pod-runner` process as a test starts, watches and stops it.
//!
//! # Caveats
//!
//! Every process shares the host network, so a processor that binds a fixed
//! port in several replicas conflicts. The runner therefore sets
//! `TRIBUTARY_METRICS_ADDR=127.0.0.1:0` on every process (see
//! [`supervisor::OVERRIDE_ENV`]); pass `--env` to the runner for any other
//! listen address.

pub mod handle;
pub mod plan;
pub mod supervisor;

/// The label selecting processor pods.
pub const PROCESSOR_SELECTOR: &str = "app.kubernetes.io/component=processor";

/// Identifies one pod across its lifetime (a re-created pod of the same
/// name is a new process).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PodKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl PodKey {
    /// The key of `pod`, if it has been stored by the API server.
    #[must_use]
    pub fn of(pod: &k8s_openapi::api::core::v1::Pod) -> Option<Self> {
        Some(Self {
            namespace: pod.metadata.namespace.clone()?,
            name: pod.metadata.name.clone()?,
            uid: pod.metadata.uid.clone()?,
        })
    }

    /// Directory name of this pod under the runner's work root.
    #[must_use]
    pub fn dir_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Whether the runner should have a process for `pod`: it is Running and
/// not terminating.
#[must_use]
pub fn wants_process(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Running")
}
