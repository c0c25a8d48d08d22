//! The pod runner makes processor pods real: scaling a Deployment of
//! `tributary run -f /etc/tributary/pipeline.yaml` from 1 to 2 to 0 starts
//! and stops local `tributary` processes, each running the pipeline from
//! the pod's ConfigMap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tributary_e2e::runner::handle::{PodRunner, alive};
use tributary_e2e::{fixture, poll};

const WAIT: Duration = Duration::from_secs(90);
const EVERY: Duration = Duration::from_millis(250);

/// An unbounded pipeline (50 events/s) writing to a file relative to the
/// process's working directory, so each replica writes its own file.
const PIPELINE: &str = "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {name: runner-smoke}
spec:
  source: {generator: {profile: clickstream, rate: 50, keys: 10, seed: 1}}
  steps: []
  sinks: [{name: out, file: {path: out.jsonl}}]
";

/// The `tributary` binary: `TRIBUTARY_BIN`, else the workspace's debug build.
fn tributary_bin() -> PathBuf {
    std::env::var_os("TRIBUTARY_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/tributary"),
        PathBuf::from,
    )
}

/// The runner's view: (pod name, pid, work dir) of every live process.
fn running(runner: &PodRunner) -> Result<Vec<(String, u32, PathBuf)>> {
    Ok(runner
        .running()?
        .into_iter()
        .map(|r| (r.pod, r.pid, r.workdir))
        .collect())
}

/// Adds the runner's log to a failure.
fn report(runner: &PodRunner, e: impl Into<anyhow::Error>) -> anyhow::Error {
    e.into()
        .context(format!("pod-runner log:\n{}", runner.log_text()))
}

/// Where the pod's relative `out.jsonl` lands: the processor resolves
/// relative sink paths against the pipeline file's directory (the mounted
/// ConfigMap); the working directory is the fallback.
fn output_file(workdir: &Path) -> PathBuf {
    let beside_config = workdir.join("volumes/config/out.jsonl");
    if beside_config.exists() {
        beside_config
    } else {
        workdir.join("out.jsonl")
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// Waits until exactly `n` processes run, each alive and each writing
/// pipeline output that keeps growing.
async fn expect_processes(runner: &PodRunner, n: usize) -> Result<Vec<(String, u32, PathBuf)>> {
    let procs = poll::until(
        &format!("{n} live processors"),
        WAIT,
        EVERY,
        || async move {
            runner.check()?;
            let procs = running(runner)?;
            let ok = procs.len() == n && procs.iter().all(|(_, pid, _)| alive(*pid));
            anyhow::Ok(ok.then_some(procs))
        },
    )
    .await?;
    for (pod, _, dir) in &procs {
        let first = poll::until(&format!("output from {pod}"), WAIT, EVERY, || {
            let out = output_file(dir);
            async move { anyhow::Ok(Some(lines(&out)).filter(|n| *n > 0)) }
        })
        .await?;
        let out = output_file(dir);
        poll::until(
            &format!("{pod}'s output to keep growing"),
            WAIT,
            EVERY,
            || {
                let out = out.clone();
                async move { anyhow::Ok((lines(&out) > first).then_some(())) }
            },
        )
        .await?;
        let last = std::fs::read_to_string(&out)?;
        let record = last.lines().next().context("a line")?;
        serde_json::from_str::<Value>(record)
            .with_context(|| format!("{pod} wrote a line that is not JSON: {record}"))?;
    }
    Ok(procs)
}

async fn scale(deployments: &Api<Deployment>, replicas: i32) -> Result<()> {
    deployments
        .patch(
            "runner-smoke",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn scaling_a_processor_deployment_starts_and_stops_processes() -> Result<()> {
    let bed = fixture::testbed();
    let bin = tributary_bin();
    ensure!(
        bin.is_file(),
        "the processor binary {} is missing: build it with `cargo build -p tributary-processor --bin tributary` (e2e/run.sh does) or set TRIBUTARY_BIN",
        bin.display()
    );
    let kubeconfig = bed.kubeconfig()?;
    let client = fixture::client(&kubeconfig).await?;
    let ns = fixture::namespace(&client, "runner").await?;
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "runner-smoke"},
                "data": {"pipeline.yaml": PIPELINE}
            }))?,
        )
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let labels = json!({
        "app.kubernetes.io/name": "tributary-processor",
        "app.kubernetes.io/instance": "runner-smoke",
        "app.kubernetes.io/component": "processor"
    });
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "runner-smoke"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "terminationGracePeriodSeconds": 10,
                            "containers": [{
                                "name": "processor",
                                "image": "ghcr.io/tributary/processor:0.1.0",
                                "command": ["tributary"],
                                "args": ["run", "-f", "/etc/tributary/pipeline.yaml"],
                                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/tributary", "readOnly": true}]
                            }],
                            "volumes": [{"name": "config", "configMap": {"name": "runner-smoke"}}]
                        }
                    }
                }
            }))?,
        )
        .await?;

    let work = tempfile::tempdir()?;
    let runner = PodRunner::start(
        Path::new(env!("CARGO_BIN_EXE_pod-runner")),
        &kubeconfig,
        &ns,
        &bin,
        work.path(),
    )
    .context("starting pod-runner")?;

    let one = expect_processes(&runner, 1)
        .await
        .map_err(|e| report(&runner, e))?;
    scale(&deployments, 2).await?;
    let two = expect_processes(&runner, 2)
        .await
        .map_err(|e| report(&runner, e))?;
    assert!(
        two.iter()
            .any(|(pod, pid, _)| (pod, pid) == (&one[0].0, &one[0].1)),
        "scaling up must keep the first processor: {one:?} -> {two:?}"
    );
    scale(&deployments, 0).await?;
    let (two, runner_ref) = (&two, &runner);
    poll::until("every processor to stop", WAIT, EVERY, || async move {
        runner_ref.check()?;
        let gone = running(runner_ref)?.is_empty() && two.iter().all(|(_, pid, _)| !alive(*pid));
        anyhow::Ok(gone.then_some(()))
    })
    .await
    .map_err(|e| report(&runner, e))?;
    Ok(())
}
