//! `pod-runner`: runs the real `tributary` binary for every Running
//! processor pod on the test bed (see `tributary_e2e::runner`).
//!
//! ```text
//! pod-runner [--namespace NS] [--selector LABELS] [--bin PATH] [--work-dir DIR] [--env K=V]...
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use tributary_e2e::runner::plan::{self, Objects};
use tributary_e2e::runner::supervisor::Supervisor;
use tributary_e2e::runner::{PROCESSOR_SELECTOR, PodKey, wants_process};

/// Watches processor pods and runs `tributary` locally for each Running one.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Only pods in this namespace (default: all namespaces).
    #[arg(long, short)]
    namespace: Option<String>,
    /// Label selector of the pods to run.
    #[arg(long, default_value = PROCESSOR_SELECTOR)]
    selector: String,
    /// The processor binary.
    #[arg(long, env = "TRIBUTARY_BIN", default_value = "target/debug/tributary")]
    bin: PathBuf,
    /// Where pods' work directories and `running.json` go (default:
    /// `$TRIBUTARY_TESTBED_DIR/pods`, else `/tmp/tributary-testbed/pods`).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Extra environment for every process, `NAME=VALUE` (repeatable).
    #[arg(long = "env", value_parser = parse_kv)]
    env: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    tributary_e2e::fixture::install_crypto_provider();
    let bin = std::path::absolute(&args.bin).context("resolving --bin")?;
    anyhow::ensure!(
        bin.is_file(),
        "processor binary {} not found; build it with `cargo build -p tributary-processor --bin tributary` or set TRIBUTARY_BIN",
        bin.display()
    );
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        std::env::var_os("TRIBUTARY_TESTBED_DIR")
            .map_or_else(|| PathBuf::from("/tmp/tributary-testbed"), PathBuf::from)
            .join("pods")
    });
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let work_dir = std::path::absolute(work_dir)?;

    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes (is KUBECONFIG set to the test bed's?)")?;
    let pods: Api<Pod> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let watch = reflector(
        writer,
        watcher(pods, watcher::Config::default().labels(&args.selector)),
    )
    .default_backoff();
    let mut watch = std::pin::pin!(watch);

    let mut sup = Supervisor::new(bin, work_dir.clone(), args.env.into_iter().collect());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Pods whose plan failed (missing ConfigMap…), retried on every tick.
    let mut failing: BTreeMap<PodKey, String> = BTreeMap::new();
    let mut listed = false;
    tracing::info!(selector = %args.selector, work_dir = %work_dir.display(), "pod runner watching");

    loop {
        tokio::select! {
            event = watch.next() => match event {
                // The store holds every pod once the first listing is done.
                Some(Ok(watcher::Event::InitDone)) => listed = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "watch error"),
                None => anyhow::bail!("pod watch ended"),
            },
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
        if !listed {
            continue;
        }
        let wanted: BTreeMap<PodKey, std::sync::Arc<Pod>> = store
            .state()
            .into_iter()
            .filter(|p| wants_process(p))
            .filter_map(|p| PodKey::of(&p).map(|k| (k, p)))
            .collect();
        let gone: Vec<PodKey> = sup
            .pods()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        if !gone.is_empty() {
            sup.stop(&gone).await?;
        }
        failing.retain(|k, _| wanted.contains_key(k));
        for (key, pod) in &wanted {
            if sup.has(key) {
                continue;
            }
            let result = async {
                let objects = fetch_objects(&client, &key.namespace, pod).await?;
                let plan = plan::plan(pod, &objects, &sup.workdir(key))?;
                sup.start(key, plan)?;
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = result {
                let msg = format!("{e:#}");
                if failing.get(key) != Some(&msg) {
                    tracing::warn!(pod = %key, error = %msg, "cannot run pod (will retry)");
                }
                failing.insert(key.clone(), msg);
            } else {
                failing.remove(key);
            }
        }
        sup.reap()?;
    }
    tracing::info!("shutting down; stopping every processor");
    sup.stop_all().await?;
    Ok(())
}

/// Fetches the ConfigMaps and Secrets `pod` references; absent ones are left
/// out so the plan reports them (or skips them when optional).
async fn fetch_objects(client: &Client, namespace: &str, pod: &Pod) -> Result<Objects> {
    let refs = plan::references(pod);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut objects = Objects::default();
    for name in &refs.config_maps {
        if let Some(cm) = cms.get_opt(name).await? {
            objects.config_maps.insert(name.clone(), cm);
        }
    }
    for name in &refs.secrets {
        if let Some(s) = secrets.get_opt(name).await? {
            objects.secrets.insert(name.clone(), s);
        }
    }
    Ok(objects)
}
