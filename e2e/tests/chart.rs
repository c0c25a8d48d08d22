//! The Helm chart, statically: `helm lint` is clean, and what it renders
//! (CRD included, with default and non-default values) plus the bundled
//! example pipelines pass `kubeconform -strict` against strict schemas: the
//! built-in kinds' from the test bed's API server (the Kubernetes version
//! the chart targets), StreamPipeline's from `crds/generated/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tributary_e2e::env::TestBed;
use tributary_e2e::fixture::testbed;
use tributary_e2e::operator::chart::{chart_dir, helm};
use tributary_e2e::operator::pipeline::kubectl;
use tributary_e2e::operator::{schema, workspace_root};

/// Value sets the chart is rendered with: the defaults, and every switch
/// flipped that needs no schema from outside Kubernetes.
const VALUE_SETS: &[&[&str]] = &[
    &[],
    &[
        "--set",
        "watchNamespace=analytics",
        "--set",
        "leaderElection.enabled=false",
        "--set",
        "replicaCount=1",
        "--set",
        "serviceAccount.name=custom",
        "--set",
        "metrics.service.enabled=false",
    ],
    &[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "serviceMonitor.interval=15s",
        "--set",
        "serviceMonitor.labels.release=prometheus",
    ],
];

/// Schemas for kinds whose definitions neither the test bed's API server
/// nor `crds/generated/` has: (apiVersion, kind, file under `e2e/`). The
/// ServiceMonitor's is written by hand from the fields the chart uses
/// (the test bed runs no prometheus-operator), strict like the others.
const HANDWRITTEN: &[(&str, &str, &str)] = &[(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    "schemas/servicemonitor-monitoring-v1.json",
)];

/// With the defaults and with every value set the chart is rendered with
/// (the ServiceMonitor's included).
#[test]
fn helm_lint_is_clean() -> Result<()> {
    let bed = testbed();
    let chart = chart_dir().display().to_string();
    for values in VALUE_SETS {
        let mut args = vec!["lint", "--strict", &chart];
        args.extend_from_slice(values);
        let out = helm(&bed, &args)?;
        ensure!(
            !out.stdout.contains("[WARNING]") && !out.stdout.contains("[ERROR]"),
            "helm lint {values:?}:\n{}",
            out.stdout
        );
    }
    Ok(())
}

/// Every YAML document of `text` that is a Kubernetes object.
fn objects(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if v.get("kind").is_some() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Every example pipeline file under `deploy/examples/` (not its data).
fn examples() -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![workspace_root().join("deploy/examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "data") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Writes a strict schema for every (apiVersion, kind) in `wanted` into
/// `dir`: StreamPipeline from the generated CRD, the rest from the API
/// server's OpenAPI v3.
fn write_schemas(bed: &TestBed, wanted: &BTreeSet<(String, String)>, dir: &Path) -> Result<()> {
    let crd_path = workspace_root().join("crds/generated/streampipeline.yaml");
    let crd: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&crd_path)?)?;
    let custom = schema::from_crd(&crd);
    ensure!(!custom.is_empty(), "no schema in {}", crd_path.display());
    for (api_version, kind, s) in &custom {
        std::fs::write(
            dir.join(schema::file_name(api_version, kind)),
            serde_json::to_vec(s)?,
        )?;
    }
    for (api_version, kind, file) in HANDWRITTEN {
        std::fs::copy(
            workspace_root().join("e2e").join(file),
            dir.join(schema::file_name(api_version, kind)),
        )
        .with_context(|| format!("copying e2e/{file}"))?;
    }
    let versions: BTreeSet<&str> = wanted
        .iter()
        .filter(|(v, k)| !custom.iter().any(|(cv, ck, _)| cv == v && ck == k))
        .filter(|(v, k)| !HANDWRITTEN.iter().any(|(hv, hk, _)| hv == v && hk == k))
        .map(|(v, _)| v.as_str())
        .collect();
    for api_version in versions {
        let path = format!("/openapi/v3/{}", schema::openapi_path(api_version));
        let doc: Value =
            serde_json::from_str(&kubectl(bed, &["get", "--raw", &path], None)?.stdout)?;
        for (_, kind) in wanted.iter().filter(|(v, _)| v == api_version) {
            let s = schema::from_openapi(&doc, api_version, kind)
                .with_context(|| format!("{api_version} {kind} is not in {path}"))?;
            std::fs::write(
                dir.join(schema::file_name(api_version, kind)),
                serde_json::to_vec(&s)?,
            )?;
        }
    }
    Ok(())
}

/// Runs `kubeconform -strict` on `files` with the schemas in `dir`; returns
/// its exit and the JSON summary it printed.
fn kubeconform(bed: &TestBed, dir: &Path, files: &[PathBuf]) -> Result<(bool, String)> {
    let location = dir.join(schema::LOCATION).display().to_string();
    let mut args = vec![
        "-strict".to_owned(),
        "-summary".to_owned(),
        "-output".to_owned(),
        "json".to_owned(),
        "-schema-location".to_owned(),
        location,
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    // Results go to stdout whether or not they pass, so not tools::run.
    let out = std::process::Command::new(bed.bin("kubeconform")?)
        .args(&args)
        .output()
        .context("running kubeconform")?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn the_rendered_chart_and_the_examples_pass_kubeconform_strict() -> Result<()> {
    let bed = testbed();
    let work = tempfile::tempdir()?;
    let chart = chart_dir().display().to_string();
    let mut files = Vec::new();
    let mut docs = Vec::new();
    for (i, values) in VALUE_SETS.iter().enumerate() {
        let mut args = vec![
            "template",
            "tributary",
            &chart,
            "--include-crds",
            "--namespace",
            "tributary-system",
        ];
        args.extend_from_slice(values);
        let rendered = helm(&bed, &args)?.stdout;
        let file = work.path().join(format!("chart-{i}.yaml"));
        std::fs::write(&file, &rendered)?;
        docs.extend(objects(&rendered)?);
        files.push(file);
    }
    for example in examples()? {
        docs.extend(objects(&std::fs::read_to_string(&example)?)?);
        files.push(example);
    }
    let wanted: BTreeSet<(String, String)> = docs
        .iter()
        .filter_map(|d| {
            Some((
                d["apiVersion"].as_str()?.to_owned(),
                d["kind"].as_str()?.to_owned(),
            ))
        })
        .collect();
    ensure!(
        wanted.iter().any(|(_, k)| k == "StreamPipeline")
            && wanted.iter().any(|(_, k)| k == "Deployment")
            && wanted.iter().any(|(_, k)| k == "ServiceMonitor"),
        "expected chart objects and example pipelines, got {wanted:?}"
    );
    let schemas = work.path().join("schemas");
    std::fs::create_dir_all(&schemas)?;
    write_schemas(&bed, &wanted, &schemas)?;

    let (ok, out) = kubeconform(&bed, &schemas, &files)?;
    ensure!(ok, "kubeconform -strict refused:\n{out}");
    let report: Value =
        serde_json::from_str(&out).with_context(|| format!("kubeconform output: {out}"))?;
    let summary = &report["summary"];
    eprintln!("kubeconform -strict on {} files: {summary}", files.len());
    ensure!(
        summary["valid"].as_u64() == Some(docs.len() as u64)
            && summary["skipped"].as_u64() == Some(0),
        "every object must be validated (none skipped): {} objects, summary {summary}",
        docs.len()
    );

    // The schemas are strict: an unknown field, in a built-in kind, in a
    // pipeline and in a ServiceMonitor, is refused.
    let bad = work.path().join("bad.yaml");
    for (what, yaml) in [
        (
            "a Deployment",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 1, replica: 2, selector: {}, template: {}}\n",
        ),
        (
            "a StreamPipeline",
            "apiVersion: tributary.dev/v1alpha1\nkind: StreamPipeline\nmetadata: {name: x}\nspec: {source: {generator: {}}, sinks: [{name: o, stdout: {}}], replica: 2}\n",
        ),
        (
            "a ServiceMonitor",
            "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {selector: {}, endpoints: [{port: metrics}], replica: 2}\n",
        ),
    ] {
        std::fs::write(&bad, yaml)?;
        let (ok, out) = kubeconform(&bed, &schemas, std::slice::from_ref(&bad))?;
        ensure!(
            !ok && out.contains("replica"),
            "{what} with an unknown field passed:\n{out}"
        );
    }
    Ok(())
}

/// `helm template` of the chart with `values`, as objects.
fn render(bed: &TestBed, values: &[&str]) -> Result<Vec<Value>> {
    let chart = chart_dir().display().to_string();
    let mut args = vec![
        "template",
        "tributary",
        &chart,
        "--namespace",
        "monitoring-test",
    ];
    args.extend_from_slice(values);
    objects(&helm(bed, &args)?.stdout)
}

/// kubeconform checks the ServiceMonitor's shape; this checks that it
/// would find the operator: same namespace as the metrics Service, a
/// selector the Service's labels satisfy, the Service's port by name, and
/// the values passed through. It is off by default.
#[test]
fn the_service_monitor_scrapes_the_operator_metrics_service() -> Result<()> {
    let bed = testbed();
    let by_kind = |objs: &[Value], kind: &str| -> Vec<Value> {
        objs.iter().filter(|o| o["kind"] == kind).cloned().collect()
    };
    let defaults = render(&bed, &[])?;
    ensure!(
        by_kind(&defaults, "ServiceMonitor").is_empty(),
        "a ServiceMonitor is rendered by default (prometheus-operator may not be installed)"
    );
    let objs = render(&bed, VALUE_SETS[2])?;
    let (monitors, services) = (by_kind(&objs, "ServiceMonitor"), by_kind(&objs, "Service"));
    let [monitor] = &monitors[..] else {
        anyhow::bail!("expected one ServiceMonitor with serviceMonitor.enabled=true: {monitors:?}");
    };
    let [service] = &services[..] else {
        anyhow::bail!("expected one Service: {services:?}");
    };
    ensure!(
        monitor["metadata"]["namespace"] == "monitoring-test"
            && service["metadata"]["namespace"] == "monitoring-test",
        "the ServiceMonitor and the Service belong in the release namespace"
    );
    ensure!(
        monitor["metadata"]["labels"]["release"] == "prometheus",
        "serviceMonitor.labels are not on the ServiceMonitor: {}",
        monitor["metadata"]
    );
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .context("spec.selector.matchLabels")?;
    ensure!(
        !selector.is_empty(),
        "an empty selector matches every Service"
    );
    for (k, v) in selector {
        ensure!(
            service["metadata"]["labels"][k] == *v,
            "the Service's labels {} do not satisfy the ServiceMonitor's selector {k}={v}",
            service["metadata"]["labels"]
        );
    }
    let endpoints = monitor["spec"]["endpoints"]
        .as_array()
        .context("spec.endpoints")?;
    ensure!(endpoints.len() == 1, "one endpoint: {endpoints:?}");
    let ep = &endpoints[0];
    let port_names: Vec<&Value> = service["spec"]["ports"]
        .as_array()
        .context("Service ports")?
        .iter()
        .map(|p| &p["name"])
        .collect();
    ensure!(
        port_names.contains(&&ep["port"]),
        "endpoint port {} is not a port of the Service {port_names:?}",
        ep["port"]
    );
    ensure!(
        ep["path"] == "/metrics" && ep["interval"] == "15s",
        "endpoint {ep}"
    );

    // Without the Service there is nothing to scrape: refused, not rendered.
    let chart = chart_dir().display().to_string();
    let err = helm(
        &bed,
        &[
            "template",
            "tributary",
            &chart,
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "metrics.service.enabled=false",
        ],
    )
    .err()
    .context("serviceMonitor.enabled without the metrics Service was rendered")?;
    ensure!(
        err.to_string().contains("metrics.service.enabled"),
        "the refusal should name metrics.service.enabled: {err}"
    );
    Ok(())
}
