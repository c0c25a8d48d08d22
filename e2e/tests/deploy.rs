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
/// apiserver's validation (server-side dry run). `deploy/` itself is not
/// applied for real: it owns the cluster-wide names (namespace
/// `tributary-system`, ClusterRole `tributary-operator`, the CRD) that
/// every other test and engineer on the shared test bed uses;
/// [`the_overlay_applied_for_real_installs_a_running_operator`] applies the
/// overlay under names of its own instead.
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

/// A kustomization wrapping the single-namespace overlay so that it can be
/// applied for real next to everyone else's objects: every name prefixed
/// with `ns-`, every namespaced object moved to `ns`, and the two shared
/// objects (the CRD, which the tests install themselves, and namespace
/// `tributary-system`) left out. The overlay is used as it is, so what is
/// applied is exactly what `kubectl apply -k deploy/overlays/...` applies,
/// renamed.
fn isolated_overlay(dir: &Path, ns: &str) -> Result<()> {
    // Kustomize refuses an absolute resource path: climb from `dir` to `/`.
    let overlay = repo()
        .join("deploy/overlays/single-namespace")
        .canonicalize()?;
    let up = "../".repeat(dir.canonicalize()?.components().count().saturating_sub(1));
    let overlay = format!(
        "{up}{}",
        overlay.display().to_string().trim_start_matches('/')
    );
    let delete = |api: &str, kind: &str| {
        format!(
            "  - target: {{kind: {kind}}}\n    patch: |-\n      $patch: delete\n      apiVersion: {api}\n      kind: {kind}\n      metadata: {{name: unused}}\n"
        )
    };
    let text = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\nnamePrefix: {ns}-\nresources:\n  - {overlay}\npatches:\n{}{}",
        delete("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        delete("v1", "Namespace"),
    );
    std::fs::write(dir.join("kustomization.yaml"), text)?;
    Ok(())
}

/// `kubectl apply -k` of the example overlay, for real: the operator's
/// ServiceAccount, RBAC, Service and Deployment are created (the cluster
/// objects bound to the namespaced ServiceAccount), the Deployment becomes
/// available in a namespace that enforces the `restricted` Pod Security
/// Standard (kwok runs its pod), and `kubectl delete -k` removes it all.
#[test]
fn the_overlay_applied_for_real_installs_a_running_operator() -> Result<()> {
    let bed = bed();
    install_crd(&bed)?;
    let ns = unique("kustomize");
    let work = tempfile::tempdir()?;
    isolated_overlay(work.path(), &ns)?;
    let dir = work.path().to_str().context("path")?;
    let built = kubectl(&bed, &["kustomize", dir])?.stdout;
    ensure!(
        !built.contains("kind: CustomResourceDefinition") && !built.contains("kind: Namespace"),
        "the shared objects were not left out:\n{built}"
    );
    kubectl(&bed, &["create", "namespace", &ns])?;
    kubectl(
        &bed,
        &[
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    )?;
    let result = check_overlay_install(&bed, dir, &ns);
    let deleted = kubectl(&bed, &["delete", "-k", dir, "--wait=false"]);
    let _ = kubectl(&bed, &["delete", "namespace", &ns, "--wait=false"]);
    result?;
    deleted?;
    let name = format!("{ns}-tributary-operator");
    for (kind, namespaced) in [
        ("clusterrole", false),
        ("clusterrolebinding", false),
        ("serviceaccount", true),
    ] {
        let mut args = vec![
            "get",
            kind,
            name.as_str(),
            "--ignore-not-found",
            "-o",
            "name",
        ];
        if namespaced {
            args.extend(["-n", ns.as_str()]);
        }
        let left = kubectl(&bed, &args)?.stdout;
        ensure!(left.trim().is_empty(), "`kubectl delete -k` left {left}");
    }
    Ok(())
}

fn check_overlay_install(bed: &TestBed, dir: &str, ns: &str) -> Result<()> {
    let name = format!("{ns}-tributary-operator");
    kubectl(bed, &["apply", "-k", dir])?;
    let get = |args: &[&str]| -> Result<serde_json::Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&kubectl(bed, &all)?.stdout)?)
    };
    let sa = get(&["serviceaccount", &name, "-n", ns])?;
    ensure!(sa["metadata"]["name"] == name.as_str());
    let role = get(&["clusterrole", &name])?;
    ensure!(
        role["rules"].as_array().is_some_and(|r| !r.is_empty()),
        "the ClusterRole has no rules: {role}"
    );
    let binding = get(&["clusterrolebinding", &name])?;
    ensure!(
        binding["roleRef"]["name"] == name.as_str()
            && binding["subjects"][0]["name"] == name.as_str()
            && binding["subjects"][0]["namespace"] == ns,
        "the ClusterRoleBinding does not bind the overlay's ServiceAccount: {binding}"
    );
    let leader = format!("{name}-leader-election");
    get(&["role", &leader, "-n", ns])?;
    let rb = get(&["rolebinding", &leader, "-n", ns])?;
    ensure!(
        rb["subjects"][0]["name"] == name.as_str(),
        "the leader-election RoleBinding does not bind the ServiceAccount: {rb}"
    );
    get(&["service", &name, "-n", ns])?;
    let d = get(&["deployment", &name, "-n", ns])?;
    let pod = &d["spec"]["template"]["spec"];
    ensure!(
        pod["serviceAccountName"] == name.as_str(),
        "the Deployment runs as {}",
        pod["serviceAccountName"]
    );
    let args = pod["containers"][0]["args"].to_string();
    ensure!(
        d["spec"]["replicas"] == 1 && args.contains("--namespace=analytics"),
        "the overlay's patch is missing: replicas {}, args {args}",
        d["spec"]["replicas"]
    );
    // kwok runs the pod once the namespace's `restricted` admission let it in.
    let deadline = Deadline::new(
        "the overlay's operator Deployment to be available",
        Duration::from_secs(90),
    );
    loop {
        let d = get(&["deployment", &name, "-n", ns])?;
        if d["status"]["availableReplicas"] == 1 {
            return Ok(());
        }
        let events = kubectl(
            bed,
            &[
                "get",
                "events",
                "-n",
                ns,
                "-o",
                "custom-columns=R:.reason,M:.message",
                "--no-headers",
            ],
        )
        .map(|o| o.stdout)
        .unwrap_or_default();
        deadline.check(format!("status {}; events:\n{events}", d["status"]))?;
        std::thread::sleep(Duration::from_millis(500));
    }
}
