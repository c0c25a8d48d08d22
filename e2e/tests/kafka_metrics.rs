//! What a Kafka pipeline shows an operator, black box: `/metrics` while it
//! runs (lag per partition, per-step counters, state, checkpoints,
//! rebalances, the end-to-end latency histogram, restores) and `/readyz`
//! while a restarted replica restores its state — false until it is done.
//! The restored state is then checked by the output: hour-long windows
//! that span the restart must hold every record of the first run.

mod kafka_common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use kafka_common::{PARTITIONS, Scenario};
use tributary_e2e::kafka::producer;
use tributary_e2e::kafka::workload::Workload;
use tributary_e2e::net::free_addr;
use tributary_e2e::operator::process::{http_get, sample_lines, sample_sum, scrape};
use tributary_e2e::poll::{Deadline, until};

/// Records before the restart: all of them are held by open windows,
/// which the restarted replica must get back (from the changelog).
const EVENTS: u64 = 100_000;
const HOUR_MS: i64 = 3_600_000;

/// The sample lines of metric `name` (any labels).
fn series<'a>(body: &'a str, name: &'a str) -> Vec<&'a str> {
    sample_lines(body, name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_run_and_readyz_waits_for_the_restore() -> Result<()> {
    // 40 users, an event every 2 ms: 200 s of event time in one or two
    // hour-long windows that stay open until the flush.
    let mut s = Scenario::new(
        "metrics",
        Workload::new(EVENTS, 40, 2, HOUR_MS),
        "exactlyOnce",
        false,
    )
    .await?;
    s.spec.window = "1h";
    let addr = free_addr()?;
    let mut fleet = s.fleet(&s.spec)?;
    fleet.add_with_env(&[("TRIBUTARY_METRICS_ADDR", &addr.to_string())])?;
    let group = s.spec.group();
    let p = producer(&s.bootstrap)?;
    s.workload
        .produce(&p, &s.spec.input, 0..EVENTS, 0.0)
        .await?;
    s.wait_progress(&group, EVENTS, &mut fleet).await?;

    // The first run, everything consumed and committed: the lag gauge
    // (refreshed from librdkafka's statistics every 2 s) comes down to 0
    // on each of the partitions.
    let body = until(
        "consumer lag 0 reported for every partition",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let body = scrape(addr)?;
            let lag = series(&body, "tributary_kafka_consumer_lag");
            let partitions: BTreeSet<&str> = lag
                .iter()
                .filter_map(|l| l.split("partition=\"").nth(1)?.split('"').next())
                .collect();
            let all = partitions.len() == usize::try_from(PARTITIONS)?;
            let drained = sample_sum(&body, "tributary_kafka_consumer_lag") == 0.0;
            if all && drained {
                anyhow::Ok(Some(body))
            } else {
                anyhow::bail!("lag series: {lag:?}")
            }
        },
    )
    .await?;
    let in_total = sample_sum(&body, "tributary_records_in_total");
    ensure!(
        in_total >= EVENTS as f64,
        "tributary_records_in_total is {in_total}, {EVENTS} were consumed"
    );
    let clicks = (0..EVENTS).filter(|&i| Workload::is_click(i)).count() as f64;
    let filtered_in = series(&body, "tributary_step_records_in_total")
        .iter()
        .find(|l| l.contains("filter"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    ensure!(
        filtered_in.is_some_and(|n| n >= EVENTS as f64),
        "the filter step's input counter is {filtered_in:?}, want {EVENTS}:\n{:?}",
        series(&body, "tributary_step_records_in_total")
    );
    let dropped = series(&body, "tributary_step_records_dropped_total")
        .iter()
        .find(|l| l.contains("filter"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    ensure!(
        dropped.is_some_and(|n| n >= EVENTS as f64 - clicks),
        "the filter step dropped {dropped:?}, the input holds {} views",
        EVENTS as f64 - clicks
    );
    for (name, least) in [
        ("tributary_state_size", 1.0),
        ("tributary_rebalances_total", 1.0),
        ("tributary_checkpoint_duration_seconds_count", 1.0),
        ("tributary_end_to_end_latency_seconds_count", EVENTS as f64),
    ] {
        let v = sample_sum(&body, name);
        ensure!(v >= least, "{name} is {v}, want at least {least}");
    }
    let e2e_buckets = series(&body, "tributary_end_to_end_latency_seconds_bucket");
    ensure!(
        e2e_buckets.iter().any(|l| l.contains("le=\"+Inf\"")),
        "no end-to-end latency histogram: {e2e_buckets:?}"
    );
    let (code, _) = http_get(addr, "/readyz")?;
    ensure!(code == 200, "/readyz answered {code} in a steady run");

    // kill -9 and restart: the new process reads its windows back from the
    // changelog, and is not ready meanwhile.
    fleet.kill9(0)?;
    fleet.start(0)?;
    let deadline = Deadline::new(
        "the restarted replica to be unready while it restores, then ready",
        Duration::from_secs(120),
    );
    let mut seen = Vec::new();
    let mut unready = false;
    loop {
        fleet.check_alive()?;
        let code = http_get(addr, "/readyz").map_or(0, |(code, _)| code);
        if seen.last() != Some(&code) {
            seen.push(code);
        }
        unready |= code == 503;
        // Ready after having been unready, and the partitions assigned.
        if unready
            && code == 200
            && series(&scrape(addr)?, "tributary_kafka_consumer_lag").len()
                == usize::try_from(PARTITIONS)?
        {
            break;
        }
        if let Err(e) = deadline.check(format!("/readyz answers so far: {seen:?}")) {
            bail!("{e}\n{}", fleet.log_tails(20));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("readiness after the restart (0 = not listening): {seen:?}");
    // Every task took its state from the changelog, none replayed.
    let restores = scrape(addr)?;
    let restored = |from: &str| {
        sample_lines(&restores, "tributary_state_restores_total")
            .filter(|l| l.contains(&format!("from=\"{from}\"")))
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            })
            .sum::<f64>()
    };
    ensure!(
        restored("changelog") >= f64::from(PARTITIONS) && restored("replay") == 0.0,
        "restores after kill -9: {} from the changelog, {} by replay (want every partition \
         from the changelog)",
        restored("changelog"),
        restored("replay")
    );

    // Close every window: the restored state must hold the whole first run.
    s.workload
        .produce_flush(&p, &s.spec.input, PARTITIONS)
        .await?;
    s.wait_consumed(&group, &mut fleet, Duration::from_secs(120))
        .await?;
    let body = scrape(addr)?;
    let in_after = sample_sum(&body, "tributary_records_in_total");
    ensure!(
        in_after < 1_000.0,
        "the restarted replica counted {in_after} records in: the {EVENTS} it re-read to \
         restore its state are not input"
    );
    s.stop(&mut fleet).await?;
    let check = s.check(&s.spec.output, true).await?;
    ensure!(
        check.exactly_once(),
        "the windows restored after kill -9 do not hold the first run: {check}"
    );
    Ok(())
}
