//! `tributary`: run, validate and inspect StreamPipelines.
//!
//! The same YAML runs locally and in the cluster: `tributary run -f
//! pipeline.yaml` takes a whole `StreamPipeline` or just its spec.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Records are allocated on the source thread and freed on the engine
/// thread; glibc's allocator handles that cross-thread pattern poorly
/// (malloc/free were a third of the profile), mimalloc well.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tributary: a Kubernetes-native stream processor.
#[derive(Parser)]
#[command(name = "tributary", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until its bounded source ends (or Ctrl-C / SIGTERM).
    Run {
        /// The pipeline: a StreamPipeline resource or just its spec (YAML or JSON).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Never show the progress line, even on a terminal.
        #[arg(short, long)]
        quiet: bool,
        /// Serve /metrics, /healthz and /readyz here (e.g. 0.0.0.0:9090).
        #[arg(long, env = "TRIBUTARY_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Check a pipeline with the operator's rules; exit 1 naming each bad field.
    Validate {
        /// The pipeline file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Print the JSON schema of a StreamPipeline (for editors).
    Schema,
    /// Measure throughput and latency of the engine on built-in workloads.
    Bench {
        /// Events per workload.
        #[arg(long, default_value_t = 5_000_000)]
        events: u64,
        /// Distinct keys.
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging();
    let result = match cli.command {
        Command::Run {
            file,
            quiet,
            metrics_addr,
        } => cli::run(&file, quiet, metrics_addr),
        Command::Validate { file } => cli::validate(&file),
        Command::Schema => cli::schema(),
        Command::Bench { events, keys } => cli::bench(events, keys),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
