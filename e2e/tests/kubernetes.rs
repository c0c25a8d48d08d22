//! Smoke tests: the test bed's Kubernetes control plane is real — the API
//! server stores CRDs and custom resources, the controller manager turns
//! Deployments into pods and collects garbage, the scheduler places pods on
//! kwok nodes, RBAC denies what it does not grant, and helm renders charts
//! the API server accepts.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use tributary_e2e::env::TestBed;
use tributary_e2e::fixture::{client, namespace, testbed as bed};
use tributary_e2e::poll;
use tributary_e2e::tools;

const WAIT: Duration = Duration::from_secs(90);
const EVERY: Duration = Duration::from_millis(250);

fn kubectl(bed: &TestBed, args: &[&str], stdin: Option<&str>) -> Result<tools::Output> {
    let kubeconfig = bed.kubeconfig()?;
    let mut all = vec!["--kubeconfig", kubeconfig.to_str().context("path")?];
    all.extend_from_slice(args);
    Ok(tools::run(&bed.bin("kubectl")?, all, stdin)?)
}

fn deployment(name: &str, replicas: i32) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "registry.invalid/none:0"}]}
            }
        }
    }))?)
}

const WIDGET_CRD: &str = r"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.e2e.tributary.dev}
spec:
  group: e2e.tributary.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
            x-kubernetes-validations:
            - {rule: 'self.size <= 10', message: 'size must be at most 10'}
";

#[tokio::test]
async fn crd_and_custom_resource_round_trip_through_kubectl() -> Result<()> {
    let bed = bed();
    let admin = client(&bed.kubeconfig()?).await?;
    let ns = namespace(&admin, "crd").await?;
    kubectl(&bed, &["apply", "-f", "-"], Some(WIDGET_CRD))?;
    kubectl(
        &bed,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.e2e.tributary.dev",
            "--timeout=60s",
        ],
        None,
    )?;
    // Right after Established, discovery may lag a moment: poll the apply.
    let (bed, ns) = (&bed, &ns);
    let widget =
        "apiVersion: e2e.tributary.dev/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n";
    poll::until("the Widget to be created", WAIT, EVERY, || async move {
        kubectl(bed, &["apply", "-n", ns, "-f", "-"], Some(widget)).map(Some)
    })
    .await?;
    let size = kubectl(
        bed,
        &["get", "wdg", "w1", "-n", ns, "-o", "jsonpath={.spec.size}"],
        None,
    )?;
    assert_eq!(size.stdout, "3");

    // The schema and its CEL rule are enforced by the API server.
    let err = kubectl(
        bed,
        &["apply", "-n", ns, "-f", "-"],
        Some(&widget.replace("size: 3", "size: 11")),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("size must be at most 10"), "{err}");
    Ok(())
}

#[tokio::test]
async fn deployment_of_three_ends_with_three_running_pods_on_kwok_nodes() -> Result<()> {
    let bed = bed();
    let admin = client(&bed.kubeconfig()?).await?;
    let ns = namespace(&admin, "deploy").await?;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    deployments
        .create(&PostParams::default(), &deployment("web", 3)?)
        .await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let (pods, deployments) = (&pods, &deployments);
    let running = poll::until("3 Running pods on kwok nodes", WAIT, EVERY, || async move {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        let on_kwok: Vec<String> = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .filter(|n| n.starts_with("kwok-node-"))
            .collect();
        anyhow::Ok((on_kwok.len() == 3).then_some(on_kwok))
    })
    .await?;
    assert_eq!(running.len(), 3);
    poll::until(
        "the Deployment to report 3 available",
        WAIT,
        EVERY,
        || async move {
            let d = deployments.get("web").await?;
            anyhow::Ok((d.status.and_then(|s| s.available_replicas) == Some(3)).then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn deleting_the_owner_cascades_through_the_garbage_collector() -> Result<()> {
    let bed = bed();
    let admin = client(&bed.kubeconfig()?).await?;
    let ns = namespace(&admin, "gc").await?;

    // Deployment -> ReplicaSet -> Pods, all owned.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(admin.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    deployments
        .create(&PostParams::default(), &deployment("owned", 2)?)
        .await?;
    let pods_ref = &pods;
    poll::until("the ReplicaSet's 2 pods", WAIT, EVERY, || async move {
        let n = pods_ref
            .list(&ListParams::default().labels("app=owned"))
            .await?
            .items
            .len();
        anyhow::Ok((n == 2).then_some(()))
    })
    .await?;
    assert_eq!(
        replica_sets.list(&ListParams::default()).await?.items.len(),
        1
    );

    // A plain owner reference on a ConfigMap is honoured too.
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}}))?,
        )
        .await?;
    let uid = owner.metadata.uid.context("owner uid")?;
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
        ]}}))?,
    )
    .await?;

    deployments
        .delete("owned", &DeleteParams::background())
        .await?;
    cms.delete("owner", &DeleteParams::background()).await?;
    let (replica_sets, pods, cms) = (&replica_sets, &pods, &cms);
    poll::until(
        "ReplicaSets, pods and the child ConfigMap to be collected",
        WAIT,
        EVERY,
        || async move {
            let rs = replica_sets.list(&ListParams::default()).await?.items.len();
            let p = pods.list(&ListParams::default()).await?.items.len();
            let child = cms.get_opt("child").await?.is_some();
            anyhow::Ok((rs == 0 && p == 0 && !child).then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn restricted_identity_is_forbidden_what_rbac_does_not_grant() -> Result<()> {
    let bed = bed();
    let restricted = client(&bed.kubeconfig_restricted()?).await?;
    const NS: &str = "tributary-restricted";

    // Granted: reading ConfigMaps in its namespace.
    Api::<ConfigMap>::namespaced(restricted.clone(), NS)
        .list(&ListParams::default())
        .await
        .context("the restricted identity should list ConfigMaps in its namespace")?;

    let forbidden = |r: kube::Result<_>| match r {
        Err(kube::Error::Api(s)) if s.code == 403 => true,
        other => panic!("expected 403 Forbidden, got {other:?}"),
    };
    assert!(forbidden(
        Api::<Secret>::namespaced(restricted.clone(), NS)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<ConfigMap>::namespaced(restricted.clone(), "default")
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<Namespace>::all(restricted.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "not-allowed"}}))?,
            )
            .await
            .map(|_| ())
    ));

    // kubectl agrees, through the same kubeconfig.
    let kc = bed.kubeconfig_restricted()?;
    let kc = kc.to_str().context("path")?;
    let out = tools::run(
        &bed.bin("kubectl")?,
        [
            "--kubeconfig",
            kc,
            "auth",
            "can-i",
            "create",
            "deployments",
            "-n",
            NS,
        ],
        None,
    );
    assert!(matches!(&out, Err(tools::Error::Failed { .. })), "{out:?}");
    let who = tools::run(
        &bed.bin("kubectl")?,
        [
            "--kubeconfig",
            kc,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    )?;
    assert_eq!(who.stdout, "tributary-restricted");
    Ok(())
}

#[tokio::test]
async fn helm_lints_and_renders_a_chart_the_api_server_accepts() -> Result<()> {
    let bed = bed();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/smoke");
    let chart = chart.to_str().context("path")?;
    let helm = bed.bin("helm")?;
    let lint = tools::run(&helm, ["lint", "--strict", chart], None)?;
    assert!(
        lint.stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{}",
        lint.stdout
    );

    let rendered = tools::run(
        &helm,
        ["template", "rel", chart, "--set", "message=from-e2e"],
        None,
    )?;
    assert!(
        rendered.stdout.contains("name: rel-smoke"),
        "{}",
        rendered.stdout
    );
    assert!(
        rendered.stdout.contains("message: \"from-e2e\""),
        "{}",
        rendered.stdout
    );

    // The rendered manifest passes the API server's own validation.
    let admin = client(&bed.kubeconfig()?).await?;
    let ns = namespace(&admin, "helm").await?;
    kubectl(
        &bed,
        &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
        Some(&rendered.stdout),
    )?;
    // kubeconform is built and runs (schemas are fetched by callers that have them).
    let version = tools::run(&bed.bin("kubeconform")?, ["-v"], None)?;
    assert!(!version.stdout.trim().is_empty() || !version.stderr.trim().is_empty());
    Ok(())
}
