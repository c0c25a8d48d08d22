//! What the join tests share: orders and payments that interleave in
//! event time, the nested-loop join they are checked against, and a
//! pipeline whose main source is a file.
// Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use tributary_e2e::poll;
use tributary_e2e::process::Fleet;

/// The first record's event time.
pub const BASE: i64 = 1_700_000_000_000;
/// The joins' `within`.
pub const WITHIN_MS: i64 = 500;
/// Far past every record's time: moves the watermark past them all.
pub const TICK: i64 = BASE + 3_600_000;

/// Orders (left): key `k<i % 7>`, ten a second.
pub fn orders(n: i64) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("o{i}"), "k": format!("k{}", i % 7), "ts": BASE + i * 100}))
        .collect()
}

/// Payments (right): keys `k0`..`k4` and `k9` (which no order has), times
/// that interleave with the orders' and run backwards in places.
pub fn payments(n: i64) -> Vec<Value> {
    (0..n)
        .map(|j| {
            let jitter = (j * 37) % 400;
            let k = if j % 11 == 0 { 9 } else { j % 5 };
            json!({"id": format!("p{j}"), "k": format!("k{k}"), "ts": BASE + j * 70 - jitter})
        })
        .collect()
}

pub fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or("-")
}

/// `left id / right id` of every row of a nested-loop join of `kind`
/// (`-` for a missing side).
pub fn nested_loop(left: &[Value], right: &[Value], kind: &str) -> BTreeMap<String, u32> {
    let near = |l: &Value, r: &Value| {
        l["k"] == r["k"]
            && (l["ts"].as_i64().unwrap_or(0) - r["ts"].as_i64().unwrap_or(0)).abs() <= WITHIN_MS
    };
    let mut rows = BTreeMap::new();
    for l in left {
        let mut matched = false;
        for r in right.iter().filter(|r| near(l, r)) {
            matched = true;
            *rows.entry(format!("{}/{}", id(l), id(r))).or_default() += 1;
        }
        if !matched && matches!(kind, "left" | "full") {
            *rows.entry(format!("{}/-", id(l))).or_default() += 1;
        }
    }
    if matches!(kind, "right" | "full") {
        for r in right.iter().filter(|r| !left.iter().any(|l| near(l, r))) {
            *rows.entry(format!("-/{}", id(r))).or_default() += 1;
        }
    }
    rows
}

/// One output value as `left id / right id`.
pub fn row(v: &Value) -> String {
    format!("{}/{}", id(v), id(&v["other"]))
}

/// Compares the rows seen with the expected ones: `Ok(Some(repeats))` once
/// every expected row is there, `Err` on a row no join would make.
pub fn compare(seen: &BTreeMap<String, u32>, want: &BTreeMap<String, u32>) -> Result<Option<u32>> {
    if let Some(extra) = seen.keys().find(|k| !want.contains_key(*k)) {
        let (l, r) = extra.split_once('/').unwrap_or((extra, ""));
        let related: Vec<String> = want
            .keys()
            .chain(seen.keys())
            .filter(|k| {
                (l != "-" && k.starts_with(&format!("{l}/")))
                    || (r != "-" && k.ends_with(&format!("/{r}")))
            })
            .map(|k| format!("{k}×{}", seen.get(k).copied().unwrap_or(0)))
            .collect();
        anyhow::bail!(
            "the output has {extra}, which the nested-loop join does not; rows of its records (× times seen): {related:?}"
        );
    }
    let missing = want.keys().filter(|k| !seen.contains_key(*k)).count();
    Ok((missing == 0).then(|| seen.values().map(|n| n - 1).sum()))
}

/// The expected rows not seen, for a failure message.
pub fn missing(seen: &BTreeMap<String, u32>, want: &BTreeMap<String, u32>) -> String {
    let gone: Vec<&String> = want.keys().filter(|k| !seen.contains_key(*k)).collect();
    format!(
        "{} of {} rows missing, such as {:?}",
        gone.len(),
        want.len(),
        gone.iter().take(12).collect::<Vec<_>>()
    )
}

/// A join of a file with another source, into a file: the file is the
/// main source ([`FileJoin::file_main`]) or the `with` side
/// ([`FileJoin::file_side`]).
pub struct FileJoin {
    _dir: tempfile::TempDir,
    out: std::path::PathBuf,
    /// The pipeline.
    pub yaml: String,
}

impl FileJoin {
    /// A file of `orders` joined (`kind`) with the `with` source given as
    /// YAML.
    pub fn file_main(orders: &[Value], with: &str, kind: &str, bound: &str) -> Result<Self> {
        Self::build(orders, kind, bound, |file| (file, with.to_owned()))
    }

    /// The source given as YAML joined (`kind`) with a file of `payments`.
    pub fn file_side(main: &str, payments: &[Value], kind: &str, bound: &str) -> Result<Self> {
        Self::build(payments, kind, bound, |file| (main.to_owned(), file))
    }

    /// `sources` places the file's source YAML: (main, with).
    fn build(
        lines: &[Value],
        kind: &str,
        bound: &str,
        sources: impl FnOnce(String) -> (String, String),
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let input = dir.path().join("input.jsonl");
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(&input, text.join("\n") + "\n")?;
        let out = dir.path().join("out.jsonl");
        let (main, with) = sources(format!("file: {{path: '{}'}}", input.display()));
        let yaml = format!(
            r#"
source:
  {main}
  eventTime: {{field: event.ts}}
  watermark: {{maxOutOfOrderness: {bound}}}
steps:
  - join:
      with: {{{with}}}
      type: {kind}
      "on": {{left: event.k, right: other.k}}
      within: {WITHIN_MS}ms
sinks:
  - {{name: out, file: {{path: '{}'}}}}
checkpoint: {{interval: 1s}}
"#,
            out.display()
        );
        Ok(Self {
            _dir: dir,
            out,
            yaml,
        })
    }

    /// Waits for every row of `want` (a nested-loop `kind` join) in the
    /// output, each once: a run without failures repeats nothing.
    pub async fn exactly(
        &self,
        want: &BTreeMap<String, u32>,
        fleet: &Fleet,
        kind: &str,
    ) -> Result<()> {
        let repeats = poll::until(
            &format!("every row of the nested-loop {kind} join"),
            Duration::from_secs(90),
            Duration::from_millis(300),
            || async { compare(&self.rows()?, want) },
        )
        .await
        .map_err(|e| {
            let seen = self.rows().unwrap_or_default();
            anyhow::anyhow!("{e}; {}\n{}", missing(&seen, want), fleet.log_tails(30))
        })?;
        ensure!(
            repeats == 0,
            "{repeats} rows repeated in a run without failures"
        );
        Ok(())
    }

    /// The rows in the output file so far.
    pub fn rows(&self) -> Result<BTreeMap<String, u32>> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut rows = BTreeMap::new();
        for line in text.lines() {
            *rows.entry(row(&serde_json::from_str(line)?)).or_default() += 1;
        }
        Ok(rows)
    }
}
