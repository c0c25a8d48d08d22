//! The Kafka load benchmark (a program, not a test): how many events per
//! second and per core the release `tributary` processes from Kafka to
//! Kafka, and its end-to-end latency at half that rate.
//!
//! ```sh
//! e2e/testbed up && . /tmp/tributary-testbed/env
//! cargo build --release -p tributary-processor --bin tributary
//! cargo run --release -p tributary-e2e --bin kafka-load -- --events 2000000
//! ```
//!
//! For each guarantee (`exactlyOnce`, `atLeastOnce`) it runs the pipeline
//! Kafka → filter → map → tumbling window (1 s, per user: count, sum) →
//! Kafka, one processor process, in two phases:
//!
//! 1. throughput: the input topic (6 partitions) is filled with `--events`
//!    clickstream events as fast as the broker takes them, then the
//!    processor drains it. Events/s per core = events ÷ the processor's CPU
//!    time (user + system, from `/proc/<pid>/stat`); the wall rate is from
//!    the first to the last committed offset advance;
//! 2. latency: a producer paced at half the measured wall rate writes
//!    events whose event time is their produce time, a few every
//!    millisecond (not in bursts: a window's closing event would wait for
//!    the next burst, and that wait would count as the pipeline's). A
//!    window `[s, e)` can only be known complete at wall time `e` (event
//!    time = produce time), so a result's latency is measured from
//!    `windowEnd`: *emitted* = the output record's Kafka timestamp (set
//!    when the processor produced it) − `windowEnd`; *visible* = the wall
//!    time a `read_committed` reader received it − `windowEnd` (for
//!    exactly-once this includes waiting for the transaction commit, i.e.
//!    up to one checkpoint interval).
//!
//! `--peer kafka-streams` runs the same job in the same run with Kafka
//! Streams (`e2e/peers/kafka-streams/`, built with Maven on first use): the
//! same input topic, both phases, the same figures, one JVM process with
//! one stream thread and the same commit interval.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tributary_e2e::env::TestBed;
use tributary_e2e::fixture::unique;
use tributary_e2e::kafka::workload::pace;
use tributary_e2e::kafka::{self, create_topic, producer, reader};
use tributary_e2e::process::Fleet;

/// The Kafka Streams peer's Maven project.
const PEER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/kafka-streams");

#[derive(Parser, Debug)]
#[command(about = "Kafka → tributary → Kafka throughput and latency")]
struct Args {
    /// Events for the throughput phase.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Input partitions.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Distinct users (window keys).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// The processor binary (a release build).
    #[arg(long, default_value = "target/release/tributary")]
    bin: std::path::PathBuf,
    /// Guarantees to measure, comma separated.
    #[arg(long, default_value = "exactlyOnce,atLeastOnce", value_delimiter = ',')]
    guarantee: Vec<String>,
    /// `checkpoint.interval` of the pipeline.
    #[arg(long, default_value = "1s")]
    checkpoint: String,
    /// Seconds of paced input in the latency phase.
    #[arg(long, default_value_t = 20)]
    latency_seconds: u64,
    /// Latency phase rate (events/s); default half the measured wall rate.
    #[arg(long)]
    rate: Option<f64>,
    /// Also run the same job with a peer engine (`kafka-streams`).
    #[arg(long)]
    peer: Option<Engine>,
    /// Leave `partitionedBy` undeclared: the window's records go through a
    /// repartition topic (the throughput phase then also waits for it to
    /// be consumed).
    #[arg(long)]
    repartition: bool,
}

/// Who runs the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Engine {
    /// The `tributary` binary.
    Tributary,
    /// The Kafka Streams program of `e2e/peers/kafka-streams`.
    KafkaStreams,
}

impl Engine {
    fn label(self) -> &'static str {
        match self {
            Self::Tributary => "tributary",
            Self::KafkaStreams => "kafka-streams",
        }
    }
}

/// A running job: a `tributary` fleet of one, or the peer's JVM.
enum Job {
    Tributary(Fleet),
    Peer {
        child: std::process::Child,
        log: std::path::PathBuf,
    },
}

impl Job {
    /// Starts `engine` on `input` → `output` as consumer group `name`.
    fn start(
        args: &Args,
        engine: Engine,
        names: (&str, &str, &str),
        bootstrap: &str,
        guarantee: &str,
    ) -> Result<Self> {
        let (name, input, output) = names;
        match engine {
            Engine::Tributary => {
                let mut yaml =
                    pipeline(name, bootstrap, input, output, guarantee, &args.checkpoint);
                if args.repartition {
                    yaml = yaml.replace(", partitionedBy: [event.userId]", "");
                }
                let mut fleet = Fleet::new(&args.bin, &yaml, &[("RUST_LOG", "warn")])?;
                fleet.add()?;
                Ok(Self::Tributary(fleet))
            }
            Engine::KafkaStreams => {
                let commit_ms = humantime::parse_duration(&args.checkpoint)
                    .with_context(|| format!("--checkpoint {}", args.checkpoint))?
                    .as_millis()
                    .to_string();
                let log = std::env::temp_dir().join(format!("{name}.log"));
                let out = std::fs::File::create(&log)?;
                let child = std::process::Command::new("java")
                    .arg("-cp")
                    .arg(format!(
                        "{PEER_DIR}/target/classes:{PEER_DIR}/target/dependency/*"
                    ))
                    .arg("dev.tributary.peer.TumblingPeer")
                    .args([bootstrap, input, output, name, guarantee, &commit_ms])
                    .stdout(out.try_clone()?)
                    .stderr(out)
                    .spawn()
                    .context("starting java (the Kafka Streams peer)")?;
                Ok(Self::Peer { child, log })
            }
        }
    }

    fn pid(&self) -> Result<u32> {
        match self {
            Self::Tributary(f) => f.pid(0).context("processor pid"),
            Self::Peer { child, .. } => Ok(child.id()),
        }
    }

    fn running(&mut self) -> bool {
        match self {
            Self::Tributary(f) => !f.running().is_empty(),
            Self::Peer { child, .. } => matches!(child.try_wait(), Ok(None)),
        }
    }

    fn log_tails(&self) -> String {
        match self {
            Self::Tributary(f) => f.log_tails(20),
            Self::Peer { log, .. } => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            }
        }
    }

    async fn stop(&mut self) -> Result<()> {
        match self {
            Self::Tributary(f) => {
                f.stop_all(Duration::from_secs(30)).await?;
            }
            Self::Peer { child, .. } => {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(30);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        Ok(())
    }
}

/// Compiles the peer and copies its dependencies (Maven, from Maven
/// Central into `~/.m2`; quick once cached).
fn build_peer() -> Result<()> {
    let status = std::process::Command::new("mvn")
        .args(["-q", "-f", &format!("{PEER_DIR}/pom.xml")])
        .args(["package", "dependency:copy-dependencies"])
        .status()
        .context("running mvn (the Kafka Streams peer is built with Maven)")?;
    if !status.success() {
        bail!("building the Kafka Streams peer failed: mvn exited {status}");
    }
    Ok(())
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default(),
    )
    .unwrap_or(i64::MAX)
}

/// Clickstream-like event `i` (deterministic but for `ts`/`sentMs`).
fn event(i: u64, keys: u64, ts: i64) -> (String, String) {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let user = format!("u{}", z % keys);
    let action = ["view", "click", "click", "purchase", "scroll"]
        [usize::try_from((z >> 20) % 5).unwrap_or(0)];
    let value = format!(
        r#"{{"userId":"{user}","sessionId":"s{}","action":"{action}","page":"/p/{}","amount":{}.{:02},"latencyMs":{},"ts":{ts},"sentMs":{}}}"#,
        (z >> 8) % 100_000,
        (z >> 12) % 500,
        (z >> 24) % 200,
        (z >> 32) % 100,
        (z >> 40) % 900,
        now_ms()
    );
    (user, value)
}

fn pipeline(
    name: &str,
    brokers: &str,
    input: &str,
    output: &str,
    guarantee: &str,
    checkpoint: &str,
) -> String {
    format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: '{name}', namespace: bench}}
spec:
  source:
    kafka: {{brokers: '{brokers}', topics: ['{input}'], group: '{name}', startFrom: earliest, partitionedBy: [event.userId]}}
    format: {{type: json}}
    eventTime: {{field: event.ts, format: epochMillis}}
    watermark: {{maxOutOfOrderness: 0s}}
  steps:
    - filter: \"event.action != 'scroll'\"
    - map: {{set: {{cents: \"event.amount * 100.0\"}}, remove: [page]}}
    - window:
        type: tumbling
        size: 1s
        keyBy: [event.userId]
        aggregate: [{{name: events, fn: count}}, {{name: cents, fn: sum, of: event.cents}}]
  sinks:
    - {{name: out, kafka: {{topic: '{output}', key: event.userId}}}}
  guarantee: {guarantee}
  checkpoint: {{interval: {checkpoint}}}
"
    )
}

/// Produces `count` events at `rate` per second (0: as fast as possible);
/// event time is `ts(i)`. Returns the achieved rate.
///
/// Paced sends go out in 1 ms steps without waiting for earlier
/// deliveries: in bursts (say every 20 ms) a window's first later event —
/// the one that closes it — would wait for the next burst, and that wait
/// would be counted as the pipeline's latency.
async fn produce(
    p: &FutureProducer,
    topic: &str,
    count: u64,
    keys: u64,
    rate: f64,
    ts: impl Fn(u64) -> i64,
) -> Result<f64> {
    /// Deliveries awaited at most at once when unpaced.
    const IN_FLIGHT: usize = 200_000;
    let started = Instant::now();
    let step = if rate > 0.0 {
        ((rate / 1000.0) as u64).max(1)
    } else {
        20_000
    };
    let mut inflight = FuturesUnordered::new();
    let delivered = |r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, _>| match r
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(anyhow::anyhow!("producing: {e}")),
        Err(_) => Err(anyhow::anyhow!("producing: the producer went away")),
    };
    let mut i = 0;
    while i < count {
        let end = (i + step).min(count);
        for n in i..end {
            let (key, value) = event(n, keys, ts(n));
            loop {
                match p.send_result(FutureRecord::to(topic).key(&key).payload(&value)) {
                    Ok(delivery) => {
                        inflight.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // The local queue is full: wait for a delivery.
                        if let Some(r) = inflight.next().await {
                            delivered(r)?;
                        }
                    }
                    Err((e, _)) => bail!("producing: {e}"),
                }
            }
        }
        while inflight.len() > IN_FLIGHT {
            if let Some(r) = inflight.next().await {
                delivered(r)?;
            }
        }
        while let Some(Some(r)) = inflight.next().now_or_never() {
            delivered(r)?;
        }
        i = end;
        pace(started, i, rate).await;
    }
    while let Some(r) = inflight.next().await {
        delivered(r)?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// User + system CPU seconds of process `pid`.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(ticks_in(&stat)? as f64 / clock_ticks())
}

/// CPU seconds per thread of `pid`, busiest first (`name`, seconds): shows
/// whether one thread (the engine) or librdkafka's threads are the limit.
fn thread_cpu(pid: u32) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: u32 = task?.file_name().to_string_lossy().parse()?;
        let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))?;
        out.push((
            name.trim().to_owned(),
            ticks_in(&stat)? as f64 / clock_ticks(),
        ));
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(out)
}

/// utime + stime (clock ticks) of a `stat` line.
fn ticks_in(stat: &str) -> Result<u64> {
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc_pid_stat(5); `after` starts at field 3.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Records in `input`, asking again while the broker is busy (a
/// coordinator that is still loading answers `NotCoordinator`).
/// Whether the repartition topic in front of the window is consumed: at
/// most one checkpoint's control records behind per partition (each
/// checkpoint writes every upstream task's watermark into every partition
/// and, under `exactlyOnce`, a commit marker).
fn repartitioned(bootstrap: &str, group: &str, partitions: i32) -> bool {
    let topic = format!("{group}-step2-repartition");
    let n = i64::from(partitions);
    kafka::lag(bootstrap, group, &topic).is_ok_and(|lag| lag <= n * (n + 2))
}

async fn input_size(bootstrap: &str, input: &str) -> Result<i64> {
    let mut attempt = 0;
    loop {
        match kafka::high_watermarks(bootstrap, input) {
            Ok(h) => return Ok(h.iter().sum()),
            Err(e) if attempt < 20 => {
                eprintln!("reading the input's size: {e}; retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

struct Throughput {
    wall: f64,
    steady: f64,
    cpu: f64,
}

async fn throughput(
    args: &Args,
    engine: Engine,
    bootstrap: &str,
    input: &str,
    guarantee: &str,
) -> Result<Throughput> {
    let name = unique(&format!(
        "load-{}-{}",
        engine.label(),
        guarantee.to_lowercase()
    ));
    let output = format!("{name}-out");
    create_topic(bootstrap, &output, args.partitions).await?;
    let started = Instant::now();
    let mut job = Job::start(args, engine, (&name, input, &output), bootstrap, guarantee)?;
    let pid = job.pid()?;
    let total: i64 = input_size(bootstrap, input).await?;
    let mut first: Option<(Instant, i64)> = None;
    let mut last = (started, 0);
    let mut cpu = 0.0;
    loop {
        // A slow broker answer is not the end of the run: poll again.
        let done: i64 = match kafka::committed(bootstrap, &name, input) {
            Ok(c) => c.iter().sum(),
            Err(e) => {
                eprintln!("{guarantee}: polling the group: {e}");
                last.1
            }
        };
        let now = Instant::now();
        if done > last.1 {
            // The first commit ends the startup (process start, group
            // join, first checkpoint): the steady rate counts from there.
            if first.is_none() {
                first = Some((now, done));
            }
            last = (now, done);
            cpu = cpu_seconds(pid)?;
        }
        if done >= total && !args.repartition {
            break;
        }
        if done >= total && repartitioned(bootstrap, &name, args.partitions) {
            // The window's stage finished too: that is the end.
            cpu = cpu_seconds(pid)?;
            last.0 = Instant::now();
            break;
        }
        if !job.running() || started.elapsed() > Duration::from_secs(600) {
            bail!(
                "the processor stopped or stalled at {done}/{total}:\n{}",
                job.log_tails()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let threads = thread_cpu(pid)?;
    eprintln!(
        "{guarantee}: busiest threads (CPU s): {}",
        threads
            .iter()
            .take(5)
            .map(|(n, s)| format!("{n} {s:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    job.stop().await?;
    let (t0, n0) = first.unwrap_or((started, 0));
    let wall = last.0.duration_since(started).as_secs_f64();
    let span = last.0.duration_since(t0).as_secs_f64();
    Ok(Throughput {
        wall,
        // Too few commits to see a steady state: the whole run's rate.
        steady: if span > 2.0 {
            (total - n0) as f64 / span
        } else {
            total as f64 / wall
        },
        cpu,
    })
}

struct Latency {
    rate: f64,
    results: usize,
    emitted: (i64, i64),
    visible: (i64, i64),
}

fn p50_p99(mut v: Vec<i64>) -> (i64, i64) {
    v.sort_unstable();
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(-1)
    };
    (at(0.5), at(0.99))
}

async fn latency(
    args: &Args,
    engine: Engine,
    bootstrap: &str,
    guarantee: &str,
    rate: f64,
) -> Result<Latency> {
    let name = unique(&format!(
        "lat-{}-{}",
        engine.label(),
        guarantee.to_lowercase()
    ));
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    create_topic(bootstrap, &input, args.partitions).await?;
    create_topic(bootstrap, &output, args.partitions).await?;
    let mut job = Job::start(args, engine, (&name, &input, &output), bootstrap, guarantee)?;
    let consumer: StreamConsumer = reader(bootstrap, &unique("lat-reader"), true)?;
    consumer.subscribe(&[&output])?;
    let p = producer(bootstrap)?;
    let count = (rate * args.latency_seconds as f64) as u64;
    let t_start = now_ms();
    let produced = produce(&p, &input, count, args.keys, rate, |_| now_ms());
    let collect = async {
        let mut got = Vec::new();
        let stop_at = Instant::now() + Duration::from_secs(args.latency_seconds + 5);
        while Instant::now() < stop_at {
            if let Ok(Ok(m)) =
                tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
            {
                let arrival = now_ms();
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default())?;
                let end = v["windowEnd"].as_i64().unwrap_or_default();
                got.push((end, m.timestamp().to_millis().unwrap_or(arrival), arrival));
            }
        }
        anyhow::Ok(got)
    };
    let (produced, got) = tokio::join!(produced, collect);
    produced?;
    let got = got?;
    job.stop().await?;
    let t_end = t_start + i64::try_from(args.latency_seconds)? * 1000;
    // Skip the first 5 s (startup, group join) and windows that could not
    // close before the producer stopped.
    let kept: Vec<_> = got
        .into_iter()
        .filter(|(end, _, _)| *end > t_start + 5_000 && *end <= t_end)
        .collect();
    // A window's results leave together when the watermark passes its
    // end: the first says how long until the engine knew, the last how
    // long emitting all of them took.
    let mut per_window: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (end, ts, _) in &kept {
        let e = per_window.entry(*end).or_insert((i64::MAX, i64::MIN));
        *e = (e.0.min(ts - end), e.1.max(ts - end));
    }
    let firsts = p50_p99(per_window.values().map(|w| w.0).collect());
    let lasts = p50_p99(per_window.values().map(|w| w.1).collect());
    eprintln!(
        "{guarantee}: {} windows: the first result of a window emitted p50/p99 {}/{} ms after its end, the last {}/{} ms",
        per_window.len(),
        firsts.0,
        firsts.1,
        lasts.0,
        lasts.1
    );
    Ok(Latency {
        rate,
        results: kept.len(),
        emitted: p50_p99(kept.iter().map(|(e, ts, _)| ts - e).collect()),
        visible: p50_p99(kept.iter().map(|(e, _, a)| a - e).collect()),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !args.bin.is_file() {
        bail!(
            "{} is missing: cargo build --release -p tributary-processor --bin tributary",
            args.bin.display()
        );
    }
    let mut engines = vec![Engine::Tributary];
    if let Some(peer) = args.peer.filter(|p| *p != Engine::Tributary) {
        build_peer()?;
        engines.push(peer);
    }
    let bed = TestBed::load()?;
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let input = unique("load-in");
    create_topic(&bootstrap, &input, args.partitions).await?;
    let p = producer(&bootstrap)?;
    let base = 1_700_000_000_000;
    let keys = args.keys;
    let produce_rate = produce(&p, &input, args.events, keys, 0.0, |i| {
        base + i64::try_from(i).unwrap_or(0)
    })
    .await?;
    eprintln!("produced {} events at {produce_rate:.0}/s", args.events);

    let mut rows = BTreeMap::new();
    for g in &args.guarantee {
        for &engine in &engines {
            let e = engine.label();
            let t = throughput(&args, engine, &bootstrap, &input, g).await?;
            eprintln!(
                "{e} {g}: throughput wall {:.1}s steady {:.0}/s cpu {:.1}s",
                t.wall, t.steady, t.cpu
            );
            let rate = args.rate.unwrap_or(t.steady / 2.0);
            let l = latency(&args, engine, &bootstrap, g, rate).await?;
            rows.insert((g.clone(), e), (t, l));
        }
    }
    println!(
        "\n{} events, {} partitions, {} keys, checkpoint {}, producer {produce_rate:.0} ev/s\n",
        args.events, args.partitions, args.keys, args.checkpoint
    );
    println!(
        "| guarantee | engine | wall s | steady ev/s | CPU s | cores used | ev/s per core (CPU) | latency rate ev/s | results | emitted p50/p99 ms | visible p50/p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for ((g, e), (t, l)) in rows {
        // Kafka Streams stamps a window result with event time, not with
        // the time it produced it: its "emitted" figure means nothing.
        let emitted = if e == Engine::Tributary.label() {
            format!("{}/{}", l.emitted.0, l.emitted.1)
        } else {
            "n/a".to_owned()
        };
        println!(
            "| {g} | {e} | {:.1} | {:.0} | {:.1} | {:.2} | {:.0} | {:.0} | {} | {emitted} | {}/{} |",
            t.wall,
            t.steady,
            t.cpu,
            t.cpu / t.wall,
            args.events as f64 / t.cpu.max(1e-3),
            l.rate,
            l.results,
            l.visible.0,
            l.visible.1
        );
    }
    Ok(())
}
