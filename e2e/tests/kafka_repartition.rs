//! Keyed state behind an internal repartition topic, black box: the
//! producer keys events by `id`, so one user's events are spread over every
//! partition, and the pipeline's window counts per `user` without a
//! `partitionedBy` declaration. Only re-keying gives every user's count in
//! one task; a per-partition count would be split into partial results,
//! which the checker reports as wrong counts and duplicates.
//!
//! The runs are the chaos of `kafka_eos.rs`, under each guarantee: replicas killed
//! with SIGKILL every few seconds and restarted, so tasks of both stages
//! move and restore (the downstream ones by replaying the repartition
//! topic, control records with upstream watermarks included).

mod kafka_common;

use std::time::Duration;

use anyhow::{Result, ensure};
use kafka_common::Scenario;
use tributary_e2e::kafka::output::Check;
use tributary_e2e::kafka::workload::Workload;
use tributary_e2e::kafka::{committed, high_watermarks, low_watermarks};

const EVENTS: u64 = 100_000;
const PRODUCE_FOR: Duration = Duration::from_secs(25);
const KILL_EVERY: Duration = Duration::from_secs(4);
const REPLICAS: usize = 3;

/// Runs the chaos scenario through the repartition topic with
/// `guarantee` and checks the output with `holds`.
async fn chaos_through_repartition(
    prefix: &str,
    guarantee: &'static str,
    holds: fn(&Check) -> bool,
) -> Result<()> {
    // 40 users, an event every 2 ms: 200 s of event time, 200 windows.
    let workload = Workload::new(EVENTS, 40, 2, 1_000).keyed_by_id();
    let mut s = Scenario::new(prefix, workload, guarantee, false).await?;
    s.spec.repartition = true;
    let what = format!("repartitioned {guarantee} checker");
    s.chaos_run(REPLICAS, PRODUCE_FOR, KILL_EVERY, &what, holds)
        .await?;

    // The records did go through the internal topic: its partitions hold
    // at least every click (plus watermarks, and records of aborted
    // transactions or repeated after a kill).
    // Named after the window step (`name: clicks-per-user`), not its index.
    let internal = s.spec.repartition_topic().expect("re-keyed");
    let written: i64 = high_watermarks(&s.bootstrap, &internal)?.iter().sum();
    let clicks = s.workload.expected().values().sum::<u64>();
    eprintln!("{internal}: {written} offsets for {clicks} clicks");
    ensure!(
        written >= i64::try_from(clicks)?,
        "{internal} holds {written} offsets, fewer than the {clicks} clicks re-keyed through it"
    );
    // What every task had committed past was purged while the replicas
    // were being killed (and the checker above says restores still
    // found everything they replay).
    let low = low_watermarks(&s.bootstrap, &internal)?;
    let done = committed(&s.bootstrap, &s.spec.group(), &internal)?;
    let purged: i64 = low.iter().sum();
    eprintln!("{internal}: {purged} offsets purged (low watermarks {low:?}, committed {done:?})");
    ensure!(
        purged > 0,
        "nothing was purged from {internal} (low watermarks {low:?})"
    );
    ensure!(
        low.iter().zip(&done).all(|(l, c)| l <= c),
        "{internal} was purged past a committed offset: low watermarks {low:?}, committed {done:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_keyed_unlike_the_input_is_exactly_once_through_a_repartition_topic() -> Result<()>
{
    chaos_through_repartition("repartition-eos", "exactlyOnce", Check::exactly_once).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_keyed_unlike_the_input_loses_nothing_through_a_repartition_topic() -> Result<()> {
    chaos_through_repartition("repartition-alo", "atLeastOnce", Check::at_least_once).await
}
