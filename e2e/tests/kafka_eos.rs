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
//!   is still exactly once.

mod kafka_common;

use std::time::Duration;

use anyhow::{Result, ensure};
use kafka_common::Scenario;
use tributary_e2e::kafka::output::Check;
use tributary_e2e::kafka::set_proxy;
use tributary_e2e::kafka::workload::Workload;
use tributary_e2e::process::chaos;

/// Events per chaos run, produced over [`PRODUCE_SECONDS`].
const EVENTS: u64 = 200_000;
const PRODUCE_SECONDS: f64 = 30.0;
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
    let mut fleet = s.fleet(&s.spec)?;
    for _ in 0..REPLICAS {
        fleet.add()?;
    }
    let rate = s.workload.events as f64 / PRODUCE_SECONDS;
    tokio::select! {
        r = s.produce(rate) => r?,
        r = chaos(&mut fleet, KILL_EVERY) => r?,
    }
    let kills = fleet.kills;
    let group = s.spec.group();
    s.wait_consumed(&group, &mut fleet, Duration::from_secs(150))
        .await?;
    let crashed = fleet.crashes.clone();
    s.stop(&mut fleet).await?;
    let exactly_once = guarantee == "exactlyOnce";
    let check = s.check(&s.spec.output, exactly_once).await?;
    let verdict = if holds(&check) { "PASS" } else { "FAIL" };
    eprintln!(
        "{guarantee} checker: N={} events, {kills} kills (kill -9), {verdict}: {check}",
        s.workload.events
    );
    ensure!(
        crashed.is_empty(),
        "replicas exited on their own: {crashed:?}\n{}",
        fleet.log_tails(20)
    );
    ensure!(kills >= 3, "the chaos loop killed only {kills} replicas");
    ensure!(holds(&check), "{guarantee} does not hold: {check}");
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
    let rate = s.workload.events as f64 / PRODUCE_SECONDS;
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
    s.wait_consumed(&group, &mut fleet, Duration::from_secs(150))
        .await?;
    let crashed = fleet.crashes.clone();
    s.stop(&mut fleet).await?;
    let check = s.check(&s.spec.output, true).await?;
    eprintln!(
        "network cut: N={} events, {}: {check}",
        s.workload.events,
        if check.exactly_once() { "PASS" } else { "FAIL" }
    );
    ensure!(
        crashed.is_empty(),
        "replicas exited during the cut instead of recovering: {crashed:?}"
    );
    ensure!(
        check.exactly_once(),
        "not exactly once after the cut: {check}"
    );
    Ok(())
}
