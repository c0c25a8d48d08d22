//! The kube-runtime `Controller`: a watch on `StreamPipeline`s and on every
//! child kind (filtered to the operator's label), so that editing or
//! deleting a child reconciles its owner at once.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource};
use tributary_crds::StreamPipeline;

use crate::children::MANAGED_SELECTOR;
use crate::reconcile::{Context, error_policy, reconcile};

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves, then lets running
/// reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    // `any_semantic`: initial lists come from the apiserver's watch cache,
    // not etcd; children are filtered to the operator's label.
    let children = watcher::Config::default()
        .any_semantic()
        .labels(MANAGED_SELECTOR);
    let controller = Controller::new(
        api::<StreamPipeline>(&client, namespace),
        watcher::Config::default().any_semantic(),
    )
    .owns(api::<ConfigMap>(&client, namespace), children.clone())
    .owns(api::<Deployment>(&client, namespace), children.clone())
    .owns(api::<Service>(&client, namespace), children.clone())
    .owns(api::<PodDisruptionBudget>(&client, namespace), children)
    .graceful_shutdown_on(shutdown);
    let store = controller.store();
    let metrics = ctx.metrics.clone();
    // Deleted pipelines are never reconciled, so the gauge also follows the
    // cache on a timer.
    let gauge = tokio::spawn({
        let (store, metrics) = (store.clone(), metrics.clone());
        async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                metrics
                    .pipelines
                    .set(i64::try_from(store.state().len()).unwrap_or(i64::MAX));
            }
        }
    });
    // The autoscaler runs with the controller: only on the leader.
    let autoscaler = tokio::spawn(crate::autoscale::run::run(ctx.clone(), store.clone()));
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            metrics
                .pipelines
                .set(i64::try_from(store.state().len()).unwrap_or(i64::MAX));
            match result {
                Ok((obj, _)) => tracing::debug!(pipeline = %obj, "reconciled"),
                Err(error) => tracing::warn!(%error, "controller"),
            }
            futures::future::ready(())
        })
        .await;
    gauge.abort();
    autoscaler.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        // As main.rs: kube links rustls with more than one backend.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Never connected: building the watches' URLs needs no server.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        Client::try_from(config).unwrap()
    }

    /// Without `--namespace` the pipelines and every child kind are watched
    /// cluster-wide (one watch each), so a pipeline in any namespace is
    /// reconciled; with it, only that namespace's. (An e2e run of the
    /// all-namespaces mode would reconcile the other tests' pipelines on
    /// the shared test bed, so the scope is checked here.)
    #[tokio::test]
    async fn watches_all_namespaces_unless_one_is_given() {
        let c = client();
        assert_eq!(
            api::<StreamPipeline>(&c, None).resource_url(),
            "/apis/tributary.dev/v1alpha1/streampipelines"
        );
        assert_eq!(
            api::<Deployment>(&c, None).resource_url(),
            "/apis/apps/v1/deployments"
        );
        assert_eq!(
            api::<ConfigMap>(&c, None).resource_url(),
            "/api/v1/configmaps"
        );
        assert_eq!(
            api::<StreamPipeline>(&c, Some("analytics")).resource_url(),
            "/apis/tributary.dev/v1alpha1/namespaces/analytics/streampipelines"
        );
        assert_eq!(
            api::<PodDisruptionBudget>(&c, Some("analytics")).resource_url(),
            "/apis/policy/v1/namespaces/analytics/poddisruptionbudgets"
        );
    }
}
