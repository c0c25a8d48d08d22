//! Window state restored from a compacted changelog topic, black box.
//!
//! The pipeline counts clicks per user in 60 s tumbling windows, keyed as
//! the input is partitioned (`partitionedBy: [event.user]`), so each task
//! (one per input partition) holds its users' open windows. The run:
//!
//! 1. batch A (half the events, all in the first window) is produced and
//!    one replica consumes it: the group commits the end of every
//!    partition while every window is still open, held in task state;
//! 2. the replica is killed with SIGKILL and every input record below the
//!    committed offsets is deleted (`DeleteRecords`), so nothing can be
//!    re-read: a restore that replays the input from the oldest record a
//!    window holds finds an empty log;
//! 3. batch B (the other half, same window, same users) and one event per
//!    partition a year later, which closes the window, are produced, and a
//!    fresh replica of the same group runs until the input is consumed.
//!
//! Each user's count is A + B only if the new replica got A's state from
//! somewhere other than the input: the snapshots each task wrote at its
//! checkpoints into `<group>-changelog`, which must exist and be compacted
//! (the latest snapshot per task is kept whatever its age). Replaying the
//! input instead gives B's count alone.
//!
//! Under `exactlyOnce` a `read_committed` reader must see every result
//! once; under `atLeastOnce` at least once, every copy with the exact count.

mod kafka_common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kafka_common::{PARTITIONS, Scenario};
use tributary_e2e::kafka::output::Check;
use tributary_e2e::kafka::workload::Workload;
use tributary_e2e::kafka::{
    committed, delete_records, high_watermarks, low_watermarks, producer, topic_config,
};

/// Events of both batches; batch A is the first half.
const EVENTS: u64 = 2_000;
const HALF: u64 = EVENTS / 2;
const WINDOW_MS: i64 = 60_000;
/// Event time of event 0: a window boundary.
const START_MS: i64 = 1_700_000_040_000;
const _: () = assert!(START_MS % WINDOW_MS == 0);
/// Wrong results a failure lists.
const SHOWN: usize = 10;

/// 40 users, an event every 20 ms from a window boundary: 40 s of event
/// time, all in the first 60 s window (about 20 clicks per user and batch).
fn workload() -> Workload {
    Workload {
        start_ms: START_MS,
        ..Workload::new(EVENTS, 40, 20, WINDOW_MS)
    }
}

/// Runs the scenario of the module doc under `guarantee`.
async fn state_survives_a_purged_input(prefix: &str, guarantee: &'static str) -> Result<()> {
    let started = Instant::now();
    let exactly_once = guarantee == "exactlyOnce";
    let mut s = Scenario::new(prefix, workload(), guarantee, false).await?;
    s.spec.window = "60s";
    s.spec.checkpoint = "500ms";
    let (group, input) = (s.spec.group(), s.spec.input.clone());
    let p = producer(&s.bootstrap)?;

    // Batch A, consumed and committed while every window stays open.
    s.workload.produce(&p, &input, 0..HALF, 0.0).await?;
    let mut fleet = s.fleet(&s.spec)?;
    let replica = fleet.add()?;
    s.wait_consumed(&group, &mut fleet, Duration::from_secs(90))
        .await?;
    let done = committed(&s.bootstrap, &group, &input)?;
    fleet.kill9(replica)?;

    // Nothing below the committed offsets can be read again.
    delete_records(&s.bootstrap, &input, &done)
        .await
        .with_context(|| format!("deleting {input} below {done:?}"))?;
    let low = low_watermarks(&s.bootstrap, &input)?;
    ensure!(
        low == done && low.iter().sum::<i64>() == i64::try_from(HALF)?,
        "{input}: low watermarks {low:?} after deleting below the committed {done:?} \
         ({HALF} records of batch A)"
    );
    eprintln!("{group}: committed {done:?}, replica killed, {input} purged up to there");

    // Batch B, then the events that close the window, for a new replica.
    s.workload.produce(&p, &input, HALF..EVENTS, 0.0).await?;
    s.workload.produce_flush(&p, &input, PARTITIONS).await?;
    fleet.start(replica)?;
    s.wait_consumed(&group, &mut fleet, Duration::from_secs(120))
        .await?;
    s.stop(&mut fleet).await?;
    ensure!(
        fleet.crashes.is_empty(),
        "replicas exited on their own: {:?}\n{}",
        fleet.crashes,
        fleet.log_tails(20)
    );

    let check = s.check(&s.spec.output, exactly_once).await?;
    let summary = format!(
        "{} records read for {} results expected",
        check.records, check.expected
    );
    eprintln!("{guarantee}: {summary}");
    let mut problems = problems(&s.workload, &check, exactly_once);
    let total = problems.len();
    if total > SHOWN {
        problems.truncate(SHOWN);
        problems.push(format!("… and {} more", total - SHOWN));
    }
    ensure!(
        problems.is_empty(),
        "{guarantee}: {total} wrong window results after a restore without the input \
         ({summary}):\n  {}",
        problems.join("\n  ")
    );

    // The state came from the changelog topic, compacted.
    let changelog = format!("{group}-changelog");
    let snapshots: i64 = high_watermarks(&s.bootstrap, &changelog)
        .with_context(|| format!("{changelog}, the changelog of {group}"))?
        .iter()
        .sum();
    ensure!(snapshots > 0, "{changelog} is empty: no snapshot written");
    let config = topic_config(&s.bootstrap, &changelog).await?;
    let policy = config.get("cleanup.policy").map(String::as_str);
    ensure!(
        policy == Some("compact"),
        "{changelog}: cleanup.policy {policy:?}, want \"compact\""
    );
    eprintln!(
        "{changelog}: cleanup.policy=compact, {snapshots} offsets; took {:.0?}",
        started.elapsed()
    );
    Ok(())
}

/// One line per wrong result: the count seen and the count wanted, a
/// missing result, or (with `exactly_once`) a repeated one.
fn problems(w: &Workload, check: &Check, exactly_once: bool) -> Vec<String> {
    let window = |(user, start): &(String, i64)| {
        format!("{user} window {}", (start - w.start_ms) / w.window_ms)
    };
    let mut out: Vec<String> = check
        .wrong
        .iter()
        .map(|(key, want, got)| {
            format!(
                "{}: count {got}, want {want} (state not restored from the changelog?)",
                window(key)
            )
        })
        .collect();
    out.extend(
        check
            .missing
            .iter()
            .map(|k| format!("{}: no result", window(k))),
    );
    if exactly_once {
        out.extend(
            check
                .duplicated
                .iter()
                .map(|(k, n)| format!("{}: {n} results, want one", window(k))),
        );
    }
    out.extend(check.unexpected.iter().map(|v| format!("unexpected: {v}")));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_window_state_is_restored_from_the_changelog_not_the_input() -> Result<()> {
    state_survives_a_purged_input("changelog-eos", "exactlyOnce").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_window_state_is_restored_from_the_changelog_not_the_input() -> Result<()> {
    state_survives_a_purged_input("changelog-alo", "atLeastOnce").await
}
