//! Shared pieces of the e2e tests: the loaded test bed, unique names, and
//! Kubernetes clients for the test bed's identities.

use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::env::TestBed;

/// Errors building fixtures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The test bed is not described.
    #[error(transparent)]
    Env(#[from] crate::env::Error),
    /// A kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Its path.
        path: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An API call failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// The test bed, or a panic that says to run `e2e/testbed up`.
///
/// # Panics
///
/// When the test bed is not up: e2e tests fail rather than skip.
#[must_use]
pub fn testbed() -> TestBed {
    TestBed::load().unwrap_or_else(|e| panic!("{e}"))
}

/// `prefix-<nanoseconds>`: a name no earlier run or parallel test used.
#[must_use]
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{nanos}")
}

/// Installs rustls' ring crypto provider as the process default.
///
/// A test binary linking both kube (ring) and the AWS SDK (aws-lc-rs) has
/// two rustls backends and therefore no default; rustls then panics on the
/// first TLS client. Installing one explicitly settles it; later calls are
/// no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client authenticated by `kubeconfig`.
///
/// # Errors
///
/// When the file cannot be read or describes no usable cluster.
pub async fn client(kubeconfig: &Path) -> Result<Client, Error> {
    install_crypto_provider();
    let err = |source: Box<dyn std::error::Error + Send + Sync>| Error::Kubeconfig {
        path: kubeconfig.display().to_string(),
        source,
    };
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.into()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.into()))?;
    Client::try_from(config).map_err(|e| err(e.into()))
}

/// Creates a fresh namespace `prefix-<n>` (at most 63 characters), so
/// tests run in parallel without clashing.
///
/// # Errors
///
/// When the API server refuses.
pub async fn namespace(client: &Client, prefix: &str) -> Result<String, Error> {
    let mut name = unique(prefix);
    name.truncate(63);
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(name)
}
