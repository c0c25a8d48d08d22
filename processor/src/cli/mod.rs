//! The subcommands.

mod bench;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tributary_processor::runtime::Progress;
use tributary_processor::{Pipeline, RunError};

pub use bench::bench;

/// Logs go to stderr: human-readable on a terminal, JSON lines otherwise
/// (in the cluster), filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

fn load(file: &Path) -> anyhow::Result<tributary_crds::LoadedPipeline> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    tributary_crds::load_pipeline(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

fn base_dir(file: &Path) -> &Path {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `tributary run -f FILE`.
pub fn run(
    file: &Path,
    quiet: bool,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let loaded = load(file)?;
    let cloud_watch = loaded
        .spec
        .metrics
        .as_ref()
        .and_then(|m| m.cloud_watch.clone());
    let pipeline = match Pipeline::new(loaded.spec, base_dir(file)) {
        Ok(p) => p.with_identity(loaded.name.clone(), loaded.namespace.clone()),
        Err(RunError::Invalid(errs)) => {
            for e in &errs {
                eprintln!("{}: {e}", file.display());
            }
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(addr) = metrics_addr {
        let name = loaded.name.as_deref().unwrap_or("pipeline");
        let bound = tributary_processor::runtime::serve(addr, pipeline.metrics.clone(), name)
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
    }
    let stop = pipeline.stop_handle();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handlers")?;
    }
    let progress = (!quiet && std::io::stderr().is_terminal())
        .then(|| Progress::start(pipeline.metrics.clone()));
    let exporter = cloud_watch
        .map(|cw| export_to_cloudwatch(&cw, &pipeline, loaded.name.as_deref(), file))
        .transpose()?;
    let result = pipeline.run();
    // The last interval of a bounded run, or of one stopped by SIGTERM.
    drop(exporter);
    let summary = match result {
        Ok(s) => s,
        // `tributary run ... | head` closes our stdout: stop quietly, as Unix tools do.
        Err(RunError::Sink(tributary_processor::sink::SinkError::Write { source, .. }))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    drop(progress);
    let name = loaded.name.as_deref().unwrap_or("pipeline");
    tracing::info!(
        pipeline = name,
        records_in = summary.records_in,
        records_out = summary.records_out,
        dead_letters = summary.dead_letters,
        seconds = summary.elapsed.as_secs_f64(),
        "run finished"
    );
    Ok(ExitCode::SUCCESS)
}

/// The exporter thread of `spec.metrics.cloudWatch`, publishing as the
/// pipeline `metadata.name`, or the file stem of a bare spec; it publishes
/// a last time when dropped.
#[cfg(feature = "cloudwatch")]
fn export_to_cloudwatch(
    cw: &tributary_crds::CloudWatchExport,
    pipeline: &Pipeline,
    name: Option<&str>,
    file: &Path,
) -> anyhow::Result<tributary_processor::connector::cloudwatch::Exporter> {
    use tributary_processor::connector::cloudwatch::{Exporter, Identity};
    let pipeline_name = name.map_or_else(
        || {
            file.file_stem().map_or_else(
                || "pipeline".to_owned(),
                |s| s.to_string_lossy().into_owned(),
            )
        },
        str::to_owned,
    );
    Ok(Exporter::start(
        cw,
        pipeline.metrics.clone(),
        Identity::new(pipeline_name),
    )?)
}

/// Without the `cloudwatch` feature the export cannot run: refuse rather
/// than silently publish nothing.
#[cfg(not(feature = "cloudwatch"))]
fn export_to_cloudwatch(
    _: &tributary_crds::CloudWatchExport,
    _: &Pipeline,
    _: Option<&str>,
    _: &Path,
) -> anyhow::Result<std::convert::Infallible> {
    anyhow::bail!(
        "spec.metrics.cloudWatch: this tributary was built without the cloudwatch feature"
    )
}

/// `tributary validate -f FILE`.
pub fn validate(file: &Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let loaded = match tributary_crds::load_pipeline(&text) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match tributary_crds::validate(&loaded.spec) {
        Ok(()) => {
            println!("{}: valid", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `tributary schema`.
pub fn schema() -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let schema = schemars::schema_for!(tributary_crds::StreamPipeline);
    let text = serde_json::to_string_pretty(&schema)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        // `tributary schema | head` closes stdout early: not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
