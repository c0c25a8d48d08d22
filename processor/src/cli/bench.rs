//! `tributary bench`: the engine on built-in workloads, measured as
//! events/s per core (CPU time, not wall time, so two busy threads on two
//! cores count as two cores) and processing latency p50/p99.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tributary_processor::Pipeline;

/// CPU seconds used by this process so far (user + system), from
/// `/proc/self/stat` (clock ticks of 1/100 s on Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The window step of the window workloads.
fn window(shape: &str) -> String {
    format!(
        "window: {{{shape}, keyBy: [event.userId], aggregate: [{{name: clicks, fn: count}}, {{name: revenue, fn: sum, of: event.amount}}]}}"
    )
}

/// A CEP sequence per user: a view, then a cart addition, then a purchase
/// within a minute (relaxed contiguity, skip past the last event).
const CEP_SEQUENCE: &str = "cep: {keyBy: [event.userId], pattern: {sequence: [{name: view, when: \"event.action == 'view'\"}, {name: cart, when: \"event.action == 'add_to_cart'\"}, {name: buy, when: \"event.action == 'purchase'\"}], within: 1m, skip: skipPastLastEvent}, emit: {name: funnel}}";

/// An interval join of the workload's clicks with a second clickstream of
/// `events` events over the same users and clock (another seed), records
/// at most 1s apart.
fn join(events: u64, keys: u64, kind: &str) -> String {
    format!(
        "join: {{with: {{generator: {{profile: clickstream, count: {events}, keys: {keys}, seed: 7, startTime: 1700000000000, timeStep: 1ms}}}}, type: {kind}, on: {{left: event.userId, right: other.userId}}, within: 1s}}"
    )
}

fn workload(name: &str, events: u64, keys: u64, step: &str) -> anyhow::Result<()> {
    let yaml = format!(
        "source:\n  generator: {{profile: clickstream, count: {events}, keys: {keys}, seed: 42, startTime: 1700000000000, timeStep: 1ms}}\n  eventTime: {{field: event.ts}}\nsteps:\n  - {step}\nsinks: [{{name: out, blackhole: {{}}}}]\n"
    );
    let spec = tributary_crds::load_pipeline(&yaml)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .spec;
    let pipeline = Pipeline::new(spec, Path::new("."))?;
    let metrics = pipeline.metrics.clone();
    let cpu0 = cpu_seconds().unwrap_or(0.0);
    let summary = pipeline.run()?;
    let cpu = (cpu_seconds().unwrap_or(0.0) - cpu0).max(0.01);
    let wall = summary.elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let n = summary.records_in as f64;
    let p = |q| {
        metrics
            .latency
            .quantile(q)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
            * 1000.0
    };
    println!(
        "{name:<34} {events:>10} events  {:>6.2}s wall  {:>6.2}s cpu  {:>10.0} events/s  {:>10.0} events/s/core  latency p50 {:.2}ms p99 {:.2}ms  results {}",
        wall,
        cpu,
        n / wall,
        n / cpu,
        p(0.5),
        p(0.99),
        summary.records_out
    );
    Ok(())
}

/// Rows of the enrichment workload's table.
const TABLE_ROWS: u64 = 10_000;

/// Writes a JSON-lines table of users `u0`… to a temporary file.
fn users_table(rows: u64) -> anyhow::Result<std::path::PathBuf> {
    use std::fmt::Write as _;
    let mut text = String::new();
    for i in 0..rows {
        let tier = ["gold", "silver", "bronze"][usize::try_from(i % 3)?];
        writeln!(
            text,
            "{{\"userId\":\"u{i}\",\"tier\":\"{tier}\",\"country\":\"C{}\"}}",
            i % 50
        )?;
    }
    let path = std::env::temp_dir().join(format!(
        "tributary-bench-users-{}.jsonl",
        std::process::id()
    ));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs the built-in workloads.
pub fn bench(events: u64, keys: u64) -> anyhow::Result<ExitCode> {
    println!("generator -> window by userId (count, sum) -> blackhole sink; {keys} keys");
    workload(
        "tumbling 1m",
        events,
        keys,
        &window("type: tumbling, size: 1m"),
    )?;
    workload(
        "sliding 1m / 1s",
        events,
        keys,
        &window("type: sliding, size: 1m, slide: 1s"),
    )?;
    workload(
        "session gap 30s",
        events,
        keys,
        &window("type: session, gap: 30s"),
    )?;
    println!(
        "generator -> cep by userId (view -> add_to_cart -> purchase within 1m) -> blackhole sink"
    );
    workload("cep sequence (3 steps, 1m)", events, keys, CEP_SEQUENCE)?;
    println!(
        "generator -> interval join by userId with a second generator (same rate, 1s) -> blackhole sink; events of both inputs"
    );
    workload(
        "interval join inner (1s)",
        events,
        keys,
        &join(events, keys, "inner"),
    )?;
    workload(
        "interval join full (1s)",
        events,
        keys,
        &join(events, keys, "full"),
    )?;
    println!(
        "generator -> anomaly by userId (rolling z-score of latencyMs over 100 values) -> blackhole sink"
    );
    workload(
        "anomaly zscore (window 100)",
        events,
        keys,
        "anomaly: {method: zscore, of: event.latencyMs, threshold: 4, window: 100, keyBy: [event.userId]}",
    )?;
    println!(
        "generator -> enrich by userId from a {TABLE_ROWS}-row JSON-lines table -> blackhole sink"
    );
    let table = users_table(TABLE_ROWS)?;
    let enrich = workload(
        "enrich (file table, 10k rows)",
        events,
        keys,
        &format!(
            "enrich: {{table: {{file: {{path: '{}', keyField: userId}}}}, key: event.userId, as: user}}",
            table.display()
        ),
    );
    let _ = std::fs::remove_file(&table);
    enrich?;
    Ok(ExitCode::SUCCESS)
}
