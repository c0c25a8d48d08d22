//! The usual setup of an operator test: a chart release, a namespace for
//! pipelines that enforces the `restricted` Pod Security Standard, and one
//! operator process that leads.

use std::fmt::Debug;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::{Api, Client};

use super::chart::{self, Release};
use super::pipeline;
use super::process::{Operator, Options};
use super::{Error, Result};
use crate::env::TestBed;
use crate::runner::handle::PodRunner;
use crate::{fixture, poll, tools};

/// How long an operator may take to become the leader of a fresh Lease.
pub const LEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the tests wait for the operator to act on a change.
pub const WAIT: Duration = Duration::from_secs(60);

/// One test's release, pipeline namespace and leading operator.
#[allow(missing_debug_implementations)] // kube::Client is not Debug
pub struct Harness {
    /// The test bed.
    pub bed: TestBed,
    /// An admin client.
    pub client: Client,
    /// The chart release (the operator's identity and Lease).
    pub release: Release,
    /// Where the test's pipelines live (`--namespace` of the operator).
    pub namespace: String,
    /// The operator, leading.
    pub operator: Operator,
}

impl Harness {
    /// Installs the chart, creates the pipeline namespace and starts one
    /// operator, waiting until it holds the Lease.
    ///
    /// # Errors
    ///
    /// When any step fails; a timeout carries the operator's log.
    pub async fn start(prefix: &str) -> Result<Self> {
        Self::start_with(prefix, Duration::from_secs(15)).await
    }

    /// [`Harness::start`] with the operator's `--lease-duration`.
    ///
    /// # Errors
    ///
    /// When any step fails; a timeout carries the operator's log.
    pub async fn start_with(prefix: &str, lease_duration: Duration) -> Result<Self> {
        let bed = fixture::testbed();
        let client = fixture::client(&bed.kubeconfig()?)
            .await
            .map_err(|e| Error::Unexpected(e.to_string()))?;
        let release = chart::install(&bed, prefix)?;
        let namespace = restricted_namespace(&client, &format!("{prefix}-sp")).await?;
        let mut opts = Options::new(&namespace, "leader");
        opts.lease_duration = lease_duration;
        let operator = Operator::start(&release, &opts)?;
        let harness = Self {
            bed,
            client,
            release,
            namespace,
            operator,
        };
        wait_leading(&harness.operator).await?;
        Ok(harness)
    }

    /// The pipelines of the test namespace.
    #[must_use]
    pub fn pipelines(&self) -> Api<DynamicObject> {
        pipeline::api(&self.client, &self.namespace)
    }

    /// Typed objects of the test namespace.
    #[must_use]
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// `kubectl apply` of `yaml` into the test namespace.
    ///
    /// # Errors
    ///
    /// When the API server refuses it.
    pub fn apply(&self, yaml: &str) -> Result<tools::Output> {
        pipeline::apply(&self.bed, &self.namespace, yaml)
    }

    /// `kubectl ARGS… -n NAMESPACE`.
    ///
    /// # Errors
    ///
    /// When kubectl fails.
    pub fn kubectl(&self, args: &[&str]) -> Result<tools::Output> {
        let mut all = args.to_vec();
        all.extend(["-n", &self.namespace]);
        pipeline::kubectl(&self.bed, &all, None)
    }

    /// [`poll::until`] with [`WAIT`]; a timeout carries the operator's log.
    ///
    /// # Errors
    ///
    /// When the deadline passes first.
    pub async fn until<T, E, F, Fut>(&self, what: &str, check: F) -> Result<T>
    where
        E: Debug,
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<Option<T>, E>>,
    {
        poll::until(what, WAIT, pipeline::EVERY, check)
            .await
            .map_err(|e| Error::Unexpected(self.explain(e)))
    }

    /// Waits for condition `type_` = `status` (and `reason`) of the current
    /// generation of pipeline `name`; a timeout carries the operator's log.
    ///
    /// # Errors
    ///
    /// When the deadline passes first.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Result<DynamicObject> {
        pipeline::wait_condition(&self.pipelines(), name, type_, status, reason, WAIT)
            .await
            .map_err(|e| Error::Unexpected(self.explain(e)))
    }

    /// Waits until pipeline `name` is `Ready=True` for its current generation.
    ///
    /// # Errors
    ///
    /// When the deadline passes first.
    pub async fn wait_ready(&self, name: &str) -> Result<DynamicObject> {
        self.wait_condition(name, "Ready", "True", None).await
    }

    /// The pipeline config the operator rendered for `name`: the
    /// `pipeline.yaml` key of ConfigMap `NAME-pipeline`.
    ///
    /// # Errors
    ///
    /// When the ConfigMap or its key is missing.
    pub async fn rendered(&self, name: &str) -> Result<String> {
        let cm_name = format!("{name}-pipeline");
        let cm: k8s_openapi::api::core::v1::ConfigMap = self.api().get(&cm_name).await?;
        cm.data
            .and_then(|mut d| d.remove("pipeline.yaml"))
            .ok_or_else(|| Error::Unexpected(format!("ConfigMap {cm_name} has no pipeline.yaml")))
    }

    /// Waits for an events.k8s.io Event with `reason` about pipeline `name`
    /// in the test namespace; a timeout lists the reasons seen.
    ///
    /// # Errors
    ///
    /// When the deadline passes first.
    pub async fn wait_event(&self, name: &str, reason: &str) -> Result<Event> {
        let events: Api<Event> = self.api();
        self.until(&format!("an Event {reason} about {name}"), || {
            let events = events.clone();
            async move {
                let list = events.list(&ListParams::default()).await?;
                let seen: Vec<String> =
                    list.items.iter().filter_map(|e| e.reason.clone()).collect();
                let hit = list.items.into_iter().find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                });
                match hit {
                    Some(e) => Ok(Some(e)),
                    None => Err(Error::Unexpected(format!("events so far: {seen:?}"))),
                }
            }
        })
        .await
    }

    /// Starts the pod runner (`runner`, the test's `CARGO_BIN_EXE_pod-runner`)
    /// for the test namespace with the built `tributary`, work directories
    /// under `work`: the processor pods the operator creates then really run.
    ///
    /// # Errors
    ///
    /// When `tributary` is not built or the runner cannot start.
    pub fn pod_runner(&self, runner: &Path, work: &Path) -> Result<PodRunner> {
        let tributary = crate::process::tributary_bin();
        if !tributary.is_file() {
            return Err(Error::Unexpected(format!(
                "{} is missing: cargo build -p tributary-processor --bin tributary",
                tributary.display()
            )));
        }
        PodRunner::start(
            runner,
            &self.bed.kubeconfig()?,
            &self.namespace,
            &tributary,
            work,
        )
        .map_err(|e| Error::Unexpected(e.to_string()))
    }

    /// `err` with the operator's last log lines, for a failing test.
    #[must_use]
    pub fn explain(&self, err: impl std::fmt::Display) -> String {
        format!(
            "{err}\n--- operator log ({}), last lines:\n{}",
            self.operator.log.display(),
            self.operator.log_tail(40)
        )
    }
}

impl Drop for Harness {
    /// Deletes the test's pipeline namespace (without waiting), so a test bed
    /// kept up across runs does not fill its nodes with old processor pods.
    fn drop(&mut self) {
        let _ = pipeline::kubectl(
            &self.bed,
            &["delete", "namespace", &self.namespace, "--wait=false"],
            None,
        );
    }
}

/// Creates a namespace `prefix-<n>` labelled to enforce the `restricted`
/// Pod Security Standard: a processor pod that breaks it is never created,
/// so its Deployment never becomes available.
///
/// # Errors
///
/// When the API server refuses.
pub async fn restricted_namespace(client: &Client, prefix: &str) -> Result<String> {
    let mut name = fixture::unique(prefix);
    name.truncate(63);
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest"
            }
        }
    }))
    .map_err(|e| Error::Unexpected(e.to_string()))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(name)
}

/// Waits until `operator` reports `tributary_operator_leader 1`.
///
/// # Errors
///
/// When it exits or does not lead in time (with its log).
pub async fn wait_leading(operator: &Operator) -> Result<()> {
    poll::until(
        &format!("operator {} to lead", operator.identity),
        LEAD_TIMEOUT,
        pipeline::EVERY,
        || async {
            operator.check_alive()?;
            let leader = operator.metric("tributary_operator_leader")?;
            Ok::<_, Error>((leader == Some(1.0)).then_some(()))
        },
    )
    .await
    .map_err(|e| {
        Error::Unexpected(format!(
            "{e}\n--- operator log ({}):\n{}",
            operator.log.display(),
            operator.log_tail(40)
        ))
    })
}
