//! The objects a `StreamPipeline` owns, built by pure functions of the
//! pipeline and the operator [`Config`](crate::Config), so that every field
//! is unit-tested without a server.
//!
//! All children share the labels of [`labels`], an owner reference with
//! `controller: true` (garbage collection removes them with the pipeline),
//! and the pipeline's name (the ConfigMap adds `-pipeline`).

pub mod configmap;
pub mod deployment;
pub mod pdb;
pub mod secrets;
pub mod service;

#[cfg(test)]
pub(crate) mod fixture;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};
use tributary_crds::StreamPipeline;

pub use configmap::configmap;
pub use deployment::deployment;
pub use pdb::pdb;
pub use service::service;

/// The processor's metrics port (container, Service).
pub const METRICS_PORT: i32 = 9090;
/// The name of that port.
pub const METRICS_PORT_NAME: &str = "metrics";
/// The label whose value is the pipeline's name; the selector of every child.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by` value: children the operator manages.
pub const MANAGED_BY: &str = "tributary-operator";
/// The label selector of every child kind the operator watches.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=tributary-operator";

/// The labels of every child and of the processor pods.
#[must_use]
pub fn labels(sp: &StreamPipeline) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "tributary-processor"),
        (INSTANCE_LABEL, sp.name_any().as_str()),
        ("app.kubernetes.io/component", "processor"),
        ("app.kubernetes.io/managed-by", MANAGED_BY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The selector of the processor pods: only the instance label, so a label
/// added later never orphans running pods.
#[must_use]
pub fn selector(sp: &StreamPipeline) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(INSTANCE_LABEL.to_owned(), sp.name_any())])),
        ..LabelSelector::default()
    }
}

/// `status.selector` (the scale subresource's label selector path).
#[must_use]
pub fn selector_string(sp: &StreamPipeline) -> String {
    format!("{INSTANCE_LABEL}={}", sp.name_any())
}

/// Metadata of a child named `name`: namespace, labels and the controller
/// owner reference (`controller` and `blockOwnerDeletion` set).
#[must_use]
pub fn metadata(sp: &StreamPipeline, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: sp.namespace(),
        labels: Some(labels(sp)),
        // kube sets `controller`; `blockOwnerDeletion` keeps a foreground
        // deletion of the pipeline waiting for its children.
        owner_references: sp.controller_owner_ref(&()).map(|mut o| {
            o.block_owner_deletion = Some(true);
            vec![o]
        }),
        ..ObjectMeta::default()
    }
}

/// The desired children of one pipeline.
#[derive(Clone, Debug)]
pub struct Children {
    /// The rendered pipeline.
    pub configmap: k8s_openapi::api::core::v1::ConfigMap,
    /// The processors.
    pub deployment: k8s_openapi::api::apps::v1::Deployment,
    /// The processors' metrics.
    pub service: k8s_openapi::api::core::v1::Service,
    /// At most one processor down in voluntary disruptions.
    pub pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget,
}

impl Children {
    /// Builds every child of `sp`.
    #[must_use]
    pub fn desired(sp: &StreamPipeline, cfg: &crate::Config) -> Self {
        Self {
            configmap: configmap(sp, cfg),
            deployment: deployment(sp, cfg),
            service: service(sp, cfg),
            pdb: pdb(sp, cfg),
        }
    }
}
