//! `tributary-operator`: see `tributary-operator --help`.
//!
//! Starts the metrics server, connects to the apiserver, then either runs
//! the controller (`--leader-elect=false`) or waits as a standby until it
//! holds the Lease. SIGTERM or Ctrl-C stop the controller, let running
//! reconciles finish and release the Lease, so a standby takes over at once.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::{oneshot, watch};
use tributary_operator::cli::Args;
use tributary_operator::leader::LeaseLock;
use tributary_operator::metrics::{Metrics, Readiness};
use tributary_operator::reconcile::Context;
use tributary_operator::{Config, controller, http};

/// How long a stopping leader waits for running reconciles.
const DRAIN: Duration = Duration::from_secs(10);

/// Logs on stderr, JSON lines unless stderr is a terminal (in the cluster).
fn init_tracing() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let json = !std::io::stderr().is_terminal();
    let stderr = std::io::stderr;
    tracing_subscriber::registry()
        .with(filter)
        .with(json.then(|| tracing_subscriber::fmt::layer().json().with_writer(stderr)))
        .with((!json).then(|| tracing_subscriber::fmt::layer().with_writer(stderr)))
        .init();
}

/// Flips to `true` on SIGTERM or Ctrl-C.
fn shutdown_signal() -> Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

#[tokio::main]
async fn main() -> Result<()> {
    // kube links rustls; with more than one backend in a binary rustls has
    // no default provider and panics on the first TLS connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    init_tracing();
    let metrics = Metrics::new().context("registering metrics")?;
    let ready = Arc::new(Readiness::default());
    let state = http::State {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let (bound, serve) = http::bind(args.metrics_addr, state)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    tokio::spawn(serve);
    tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
    let shutdown = shutdown_signal()?;

    let client = Client::try_default()
        .await
        .context("loading the Kubernetes config (KUBECONFIG or in-cluster)")?;
    let version = client
        .apiserver_version()
        .await
        .context("reaching the apiserver")?;
    ready.set();
    let identity = args.identity();
    tracing::info!(apiserver = %version.git_version, %identity, namespace = ?args.namespace, "connected");
    let reporter = Reporter {
        controller: tributary_operator::FIELD_MANAGER.to_owned(),
        instance: Some(identity.clone()),
    };
    let config = Config {
        processor_image: args.processor_image.clone(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        config,
        Recorder::new(client.clone(), reporter),
        metrics.clone(),
    ));
    if !args.leader_elect {
        metrics.leader.set(1);
        controller::run(ctx, args.namespace.as_deref(), stopped(shutdown)).await;
        return Ok(());
    }
    let lock = LeaseLock::new(
        client,
        &args.lease_namespace,
        &args.lease_name,
        &identity,
        args.lease_duration,
    );
    lead(lock, &args, ctx, shutdown).await
}

/// Waits for the Lease, runs the controller while renewing it, and steps
/// down on shutdown. Losing the Lease ends the process with an error (the
/// pod restarts as a standby): simplest, and never two leaders.
async fn lead(
    mut lock: LeaseLock,
    args: &Args,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    // The leader renews every third of the lease; a standby polls every
    // retry period, so after a leader dies without releasing the Lease a
    // standby takes it at most one retry period after it expires.
    let every = args.lease_duration / 3;
    let poll = args.standby_poll();
    let deadline = args.lease_duration * 2 / 3;
    let lease = format!("{}/{}", args.lease_namespace, args.lease_name);
    tracing::info!(%lease, ?poll, "standing by for the leader Lease");
    loop {
        match lock.try_acquire().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, %lease, "could not read or take the Lease"),
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            () = tokio::time::sleep(poll) => {}
        }
    }
    ctx.metrics.leader.set(1);
    tracing::info!(%lease, identity = lock.identity(), "became the leader");
    let mut renewed = Instant::now();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let namespace = args.namespace.clone();
    let metrics = ctx.metrics.clone();
    let mut running = tokio::spawn(async move {
        controller::run(ctx, namespace.as_deref(), async move {
            let _ = stop_rx.await;
        })
        .await;
    });
    let outcome = loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {
                let _ = stop.send(());
                if tokio::time::timeout(DRAIN, &mut running).await.is_err() {
                    tracing::warn!("reconciles still running after {DRAIN:?}; stopping anyway");
                }
                break Ok(());
            }
            _ = &mut running => break Err(anyhow::anyhow!("the controller stopped unexpectedly")),
            () = tokio::time::sleep(every) => {
                // A hung request must not outlive the Lease.
                let attempt = tokio::time::timeout(every, lock.try_acquire()).await;
                match attempt.map_err(anyhow::Error::from).and_then(|r| Ok(r?)) {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => bail!("lost the Lease {lease} to another holder"),
                    Err(error) if renewed.elapsed() < deadline => {
                        tracing::warn!(%error, %lease, "could not renew the Lease; retrying");
                    }
                    Err(error) => {
                        bail!("could not renew the Lease {lease} within {deadline:?}: {error}")
                    }
                }
            }
        }
    };
    metrics.leader.set(0);
    match lock.release().await {
        Ok(()) => tracing::info!(%lease, "released the Lease"),
        Err(error) => tracing::warn!(%error, %lease, "could not release the Lease"),
    }
    outcome
}
