//! The `enrich` step through `tributary run`: the bundled example attaches
//! the right rows, and a table rewritten while the pipeline runs is seen by
//! the records read after it.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{DEADLINE, command, copy_examples, json_lines, tributary};

#[test]
fn the_example_attaches_customers_and_dead_letters_the_unknown_ones() {
    let scratch = tempfile::tempdir().expect("tempdir");
    copy_examples(scratch.path());
    let out = tributary(&["run", "-q", "-f", "enrich-local.yaml"], scratch.path());
    assert!(out.status.success(), "{}\n{}", out.status, out.stderr);
    let read = |p: &str| json_lines(&std::fs::read_to_string(scratch.path().join(p)).unwrap());
    let enriched = read("out/orders-enriched.jsonl");
    assert_eq!(enriched.len(), 28);
    for r in &enriched {
        assert_eq!(r["customer"]["customerId"], r["customerId"], "{r}");
    }
    assert_eq!(enriched[0]["customer"]["tier"], "gold");
    let misses: Vec<_> = read("out/orders-enriched.dlq.jsonl")
        .into_iter()
        .filter(|d| d["step"] == "enrich-0")
        .map(|d| d["error"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        misses,
        [
            "no row for key \"c-11\"",
            "no row for key \"c-11\"",
            "no row for key \"c-12\""
        ]
    );
}

/// A `tributary run` reading records from its stdin, whose stdout lines
/// arrive on a channel.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
}

impl Running {
    fn start(dir: &std::path::Path) -> Self {
        let mut child = command(&["run", "-q", "-f", "pipeline.yaml"], dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tributary");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("read stdout");
                if !line.trim().is_empty() && tx.send(serde_json::from_str(&line).unwrap()).is_err()
                {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// Sends one record and returns the enriched record it becomes.
    fn send(&mut self, n: u64) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{}", json!({"n": n, "userId": "u1"})).expect("write stdin");
        stdin.flush().expect("flush stdin");
        match self.lines.recv_timeout(DEADLINE) {
            Ok(v) => {
                assert_eq!(v["n"], n, "records come out in order");
                v
            }
            Err(RecvTimeoutError::Timeout) => panic!("record {n} not out after {DEADLINE:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("tributary exited before record {n}"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_table_rewritten_mid_stream_is_seen_by_later_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = dir.path().join("users.jsonl");
    std::fs::write(&table, "{\"id\": \"u1\", \"tier\": \"gold\"}\n").unwrap();
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        "apiVersion: tributary.dev/v1alpha1\nkind: StreamPipeline\nmetadata: {name: t}\nspec:\n  source: {stdin: {}}\n  steps:\n    - enrich: {table: {file: {path: users.jsonl}}, key: event.userId, as: user}\n  sinks: [{name: out, stdout: {}}]\n",
    )
    .unwrap();
    let mut run = Running::start(dir.path());
    let mut n = 0;
    for _ in 0..2 {
        assert_eq!(run.send(n)["user"]["tier"], "gold");
        n += 1;
    }

    // Rewrite the table the way a writer should: a new file renamed over it.
    let next = dir.path().join("users.jsonl.tmp");
    std::fs::write(&next, "{\"id\": \"u1\", \"tier\": \"platinum\"}\n").unwrap();
    std::fs::rename(&next, &table).unwrap();

    // Records keep flowing; the reload happens on the step's next tick.
    let started = Instant::now();
    let mut tiers = Vec::new();
    loop {
        let tier = run.send(n)["user"]["tier"].clone();
        n += 1;
        tiers.push(tier.clone());
        if tier == "platinum" {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the rewritten table was not seen within {DEADLINE:?}: {tiers:?}"
        );
        // Polling interval: one record per 20 ms while waiting for the reload.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        tiers[..tiers.len() - 1].iter().all(|t| t == "gold"),
        "{tiers:?}"
    );
    for _ in 0..3 {
        assert_eq!(
            run.send(n)["user"]["tier"],
            "platinum",
            "once seen, the new row stays"
        );
        n += 1;
    }

    drop(run.stdin.take());
    let status = run.child.wait().expect("wait");
    assert!(status.success(), "{status}");
}
