//! The install paths without the operator running: the CRD is one the
//! real apiserver accepts, every bundled pipeline passes its schema and CEL
//! rules, and `kubectl apply -k deploy/` installs the same operator as the
//! Helm chart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tributary_e2e::env::TestBed;
use tributary_e2e::fixture::{testbed as bed, unique};
use tributary_e2e::operator::chart;
use tributary_e2e::poll::Deadline;
use tributary_e2e::tools::{self, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kubectl(bed: &TestBed, args: &[&str]) -> Result<Output> {
    let kubeconfig = bed.kubeconfig()?;
    let mut all = vec![
        "--kubeconfig",
        kubeconfig.to_str().context("kubeconfig path")?,
    ];
    all.extend_from_slice(args);
    Ok(tools::run(&bed.bin("kubectl")?, all, None)?)
}

/// Installs the generated CRD (server-side, shared by every test) and
/// waits until the apiserver serves it.
fn install_crd(bed: &TestBed) -> Result<()> {
    Ok(chart::apply_crds(
        bed,
        &repo().join("crds/generated/streampipeline.yaml"),
    )?)
}

/// Every example in `deploy/examples/` (local and cluster ones).
fn examples() -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for dir in [
        "deploy/examples",
        "deploy/examples/cluster",
        "deploy/examples/connectors",
    ] {
        for entry in std::fs::read_dir(repo().join(dir))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Regression: the generated CRD was once refused by the apiserver (a bare
/// `on` read as a boolean, CEL rules over budget) while every unit test
/// passed. Installing it for real, and having the apiserver check every
/// bundled pipeline against it, is the only proof.
#[test]
fn the_apiserver_accepts_the_crd_and_every_bundled_pipeline() -> Result<()> {
    let bed = bed();
    install_crd(&bed)?;
    let ns = unique("examples");
    kubectl(&bed, &["create", "namespace", &ns])?;
    let examples = examples()?;
    ensure!(
        examples.len() >= 6,
        "expected the bundled examples, found {examples:?}"
    );
    // The discovery cache of a fresh CRD can lag a moment behind Established.
    let deadline = Deadline::new(
        "the apiserver serves streampipelines",
        Duration::from_secs(30),
    );
    while let Err(e) = kubectl(&bed, &["get", "streampipelines", "-n", &ns]) {
        deadline.check(e.to_string())?;
        std::thread::sleep(Duration::from_millis(200));
    }
    for path in &examples {
        let file = path.to_str().context("path")?;
        kubectl(
            &bed,
            &[
                "apply",
                "--dry-run=server",
                "--validate=strict",
                "-n",
                &ns,
                "-f",
                file,
            ],
        )
        .with_context(|| format!("the apiserver refused {file}"))?;
    }
    // The schema's descriptions are the types' doc comments.
    let explain = kubectl(&bed, &["explain", "streampipeline.spec.source"])?.stdout;
    ensure!(
        explain.contains("Consume Kafka topics in a consumer group"),
        "kubectl explain streampipeline.spec.source lacks the doc comments:\n{explain}"
    );
    kubectl(&bed, &["delete", "namespace", &ns, "--wait=false"])?;
    Ok(())
}

/// `deploy/base/operator.yaml` is `helm template` of the chart with its
/// defaults, so both install paths install the same operator.
#[test]
fn kustomize_base_is_the_rendered_chart() -> Result<()> {
    let bed = bed();
    let chart = repo().join("charts/tributary");
    let rendered = tools::run(
        &bed.bin("helm")?,
        [
            "template",
            "tributary",
            chart.to_str().context("path")?,
            "--namespace",
            "tributary-system",
        ],
        None,
    )?;
    let on_disk = std::fs::read_to_string(repo().join("deploy/base/operator.yaml"))?;
    ensure!(
        rendered.stdout == on_disk,
        "deploy/base/operator.yaml differs from the rendered chart; run `make manifests`"
    );
    Ok(())
}

/// `kubectl apply -k deploy/` and the example overlay render and pass the
/// apiserver's validation (server-side dry run: nothing is installed).
#[test]
fn kubectl_apply_k_installs_the_operator() -> Result<()> {
    let bed = bed();
    install_crd(&bed)?;
    let base = repo().join("deploy");
    let base = base.to_str().context("path")?;
    let built = kubectl(&bed, &["kustomize", base])?.stdout;
    for kind in [
        "kind: CustomResourceDefinition",
        "kind: Namespace",
        "kind: ServiceAccount",
        "kind: ClusterRole",
        "kind: ClusterRoleBinding",
        "kind: Role",
        "kind: RoleBinding",
        "kind: Service",
        "kind: Deployment",
    ] {
        ensure!(
            built.lines().any(|l| l == kind),
            "`kubectl kustomize deploy/` has no {kind}"
        );
    }
    // The namespace must exist for a dry run of the namespaced objects.
    let _ = kubectl(&bed, &["create", "namespace", "tributary-system"]);
    kubectl(&bed, &["apply", "--dry-run=server", "-k", base])?;
    let overlay = repo().join("deploy/overlays/single-namespace");
    let overlay = kubectl(&bed, &["kustomize", overlay.to_str().context("path")?])?.stdout;
    ensure!(
        overlay.contains("--namespace=analytics") && overlay.contains("replicas: 1"),
        "the single-namespace overlay did not patch the operator:\n{overlay}"
    );
    Ok(())
}
