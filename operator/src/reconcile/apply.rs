//! Server-side apply of the children, each read first so that the caller
//! can tell a creation, a spec-driven change and repaired drift apart.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::children::Children;
use crate::{Error, FIELD_MANAGER, Result};

/// One child before and after the apply.
#[derive(Clone, Debug)]
pub struct Applied<K> {
    /// What the apiserver had (None: it was missing).
    pub before: Option<K>,
    /// What it has now.
    pub after: K,
}

impl<K: Resource> Applied<K> {
    /// Whether the apply changed the object: its spec (generation) where
    /// the kind has one, else any field (resourceVersion), or the labels
    /// or owner references the operator sets.
    pub fn changed(&self, desired: &K) -> bool {
        let Some(before) = &self.before else {
            return true;
        };
        let (b, a) = (before.meta(), self.after.meta());
        let content = if a.generation.is_some() {
            b.generation != a.generation
        } else {
            b.resource_version != a.resource_version
        };
        let labels_kept = desired
            .labels()
            .iter()
            .all(|(k, v)| before.labels().get(k) == Some(v));
        let owned = desired
            .owner_references()
            .iter()
            .all(|o| before.owner_references().contains(o));
        content || !labels_kept || !owned
    }
}

/// Every child after the apply.
#[derive(Clone, Debug)]
pub struct AppliedChildren {
    /// The ConfigMap.
    pub configmap: Applied<ConfigMap>,
    /// The Deployment.
    pub deployment: Applied<Deployment>,
    /// The Service.
    pub service: Applied<Service>,
    /// The PodDisruptionBudget.
    pub pdb: Applied<PodDisruptionBudget>,
}

async fn apply<K>(client: &Client, ns: &str, desired: &K) -> Result<Applied<K>>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = desired.name_any();
    let what = |verb: &str| format!("{verb} {} {ns}/{name}", K::kind(&()));
    let before = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(what("reading")))?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let after = api
        .patch(&name, &params, &Patch::Apply(desired))
        .await
        .map_err(Error::kube(what("applying")))?;
    Ok(Applied { before, after })
}

/// Applies every child, the ConfigMap first so that new pods find the
/// config they are rolled for; the rest concurrently.
///
/// # Errors
/// The first apiserver error.
pub async fn all(client: &Client, ns: &str, desired: &Children) -> Result<AppliedChildren> {
    let configmap = apply(client, ns, &desired.configmap).await?;
    let (deployment, service, pdb) = futures::try_join!(
        apply(client, ns, &desired.deployment),
        apply(client, ns, &desired.service),
        apply(client, ns, &desired.pdb),
    )?;
    Ok(AppliedChildren {
        configmap,
        deployment,
        service,
        pdb,
    })
}
