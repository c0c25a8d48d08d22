//! Delivery guarantees of Kafka → filter → tumbling count → Kafka under
//! failures, black box: real `tributary run` processes on the test bed's
//! Kafka, a producer of numbered keyed events, and a checker that compares
//! every window result with the brute-force count.
//!
//! - exactly-once: 3 replicas, one killed with SIGKILL every few seconds and
//!   restarted; a `read_committed` reader sees every result exactly once;
//! - at-least-once: the same chaos; every result at least once, every copy
//!   with the exact count;
//! - network faults: the replicas reach Kafka through toxiproxy, which cuts
//!   them off for 20 s mid-run; they recover by themselves and the output
//!   is still exactly once;
//! - a zombie: one of two replicas is frozen (SIGSTOP) mid-transaction
//!   past its session timeout, the other takes its partitions over, and
//!   when the frozen one wakes its transaction is refused (fenced) and
//!   aborted; the output is still exactly once.

mod kafka_common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kafka_common::Scenario;
use tributary_e2e::kafka::committed;
use tributary_e2e::kafka::output::Check;
use tributary_e2e::kafka::set_proxy;
use tributary_e2e::kafka::workload::Workload;
use tributary_e2e::net::free_addr;
use tributary_e2e::operator::process::{sample_sum, scrape};
use tributary_e2e::poll::until;

/// Events per chaos run, produced over [`PRODUCE_FOR`].
const EVENTS: u64 = 200_000;
const PRODUCE_FOR: Duration = Duration::from_secs(30);
const KILL_EVERY: Duration = Duration::from_secs(4);
const REPLICAS: usize = 3;

/// 40 users, an event every 2 ms: 240 s of event time, 240 windows.
fn workload() -> Workload {
    Workload::new(EVENTS, 40, 2, 1_000)
}

/// Runs the chaos scenario with `guarantee` until the input is consumed
/// and the replicas are stopped, then checks the output with `holds`.
async fn chaos_test(
    prefix: &str,
    guarantee: &'static str,
    holds: fn(&Check) -> bool,
) -> Result<()> {
    let s = Scenario::new(prefix, workload(), guarantee, false).await?;
    let what = format!("{guarantee} checker");
    s.chaos_run(REPLICAS, PRODUCE_FOR, KILL_EVERY, &what, holds)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_holds_while_replicas_are_killed() -> Result<()> {
    chaos_test("eos-chaos", "exactlyOnce", Check::exactly_once).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_loses_nothing_while_replicas_are_killed() -> Result<()> {
    chaos_test("alo-chaos", "atLeastOnce", Check::at_least_once).await
}

/// How long toxiproxy cuts the replicas off.
const CUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20s_network_cut_heals_by_itself_and_stays_exactly_once() -> Result<()> {
    let s = Scenario::new("eos-netcut", workload(), "exactlyOnce", true).await?;
    set_proxy(&s.bed, true).await?;
    let mut fleet = s.fleet(&s.spec)?;
    for _ in 0..2 {
        fleet.add()?;
    }
    let group = s.spec.group();
    let rate = s.workload.events as f64 / PRODUCE_FOR.as_secs_f64();
    let cut = async {
        // Cut once the pipeline is well under way (a third committed).
        s.wait_progress(&group, s.workload.events / 3, &mut fleet)
            .await?;
        set_proxy(&s.bed, false).await?;
        eprintln!(
            "network: proxy disabled for {CUT:?} at {} committed",
            s.progress(&group).unwrap_or(-1)
        );
        tokio::time::sleep(CUT).await;
        anyhow::Ok(())
    };
    let (produced, cut) = tokio::join!(s.produce(rate), cut);
    // Always heal the shared proxy, whatever happened.
    set_proxy(&s.bed, true).await?;
    produced?;
    cut?;
    s.finish(&mut fleet, "network cut", Check::exactly_once)
        .await?;
    Ok(())
}

/// How long the zombie stays frozen: well past the session timeout the
/// replicas run with (6 s), so the group gives its partitions away.
const FROZEN: Duration = Duration::from_secs(15);

/// `tributary_transaction_aborts_total` of the replica serving `/metrics`
/// on `addr`.
fn aborts(addr: std::net::SocketAddr) -> Result<f64> {
    Ok(sample_sum(
        &scrape(addr)?,
        "tributary_transaction_aborts_total",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_is_fenced_when_it_wakes_and_exactly_once_holds() -> Result<()> {
    let s = Scenario::new("eos-zombie", workload(), "exactlyOnce", false).await?;
    let mut fleet = s.fleet(&s.spec)?;
    let addr = free_addr()?;
    let zombie = fleet.add_with_env(&[("TRIBUTARY_METRICS_ADDR", &addr.to_string())])?;
    fleet.add()?;
    let group = s.spec.group();
    let rate = s.workload.events as f64 / PRODUCE_FOR.as_secs_f64();
    let freeze = async {
        s.wait_progress(&group, s.workload.events / 4, &mut fleet)
            .await?;
        let before = aborts(addr)?;
        let at_freeze = committed(&s.bootstrap, &group, &s.spec.input)?;
        fleet.pause(zombie)?;
        eprintln!("zombie: replica-{zombie} frozen at {at_freeze:?} committed, {before} aborts");
        tokio::time::sleep(FROZEN).await;
        let at_wake = committed(&s.bootstrap, &group, &s.spec.input)?;
        fleet.resume(zombie)?;
        eprintln!("zombie: woken; the group committed {at_wake:?} meanwhile");
        // Every partition moved on while the zombie slept: the survivor
        // took the zombie's partitions over.
        let stalled: Vec<usize> = (0..at_freeze.len())
            .filter(|&p| at_wake.get(p) <= at_freeze.get(p))
            .collect();
        ensure!(
            stalled.is_empty(),
            "partitions {stalled:?} made no progress while replica-{zombie} was frozen \
             ({at_freeze:?} → {at_wake:?}): nobody took them over"
        );
        let after = until(
            "the woken zombie to abort its stale transaction",
            Duration::from_secs(60),
            Duration::from_millis(250),
            || async {
                let n = aborts(addr)?;
                anyhow::Ok((n > before).then_some(n))
            },
        )
        .await?;
        anyhow::Ok((before, after))
    };
    let (produced, frozen) = tokio::join!(s.produce(rate), freeze);
    if frozen.is_err() {
        // Never leave a stopped process behind a failed assertion.
        let _ = fleet.resume(zombie);
    }
    produced?;
    let (before, after) = frozen.context("freezing the zombie")?;
    eprintln!("zombie: frozen {FROZEN:?}; its aborts went {before} → {after}");
    s.finish(&mut fleet, "zombie", Check::exactly_once).await?;
    Ok(())
}
