// Each test file includes this module and uses only part of it.
#![allow(dead_code)]

//! What the Kafka pipeline tests share: topics and replicas of one
//! scenario, the chaos loop, waiting until the input is consumed, and
//! reading the results back.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tributary_e2e::env::TestBed;
use tributary_e2e::fixture::{testbed, unique};
use tributary_e2e::kafka::output::{Check, OutRecord, read_to_end};
use tributary_e2e::kafka::pipeline::PipelineSpec;
use tributary_e2e::kafka::workload::Workload;
use tributary_e2e::kafka::{self, create_topic, lag, producer};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::{Fleet, tributary_bin};

/// Partitions of every input topic.
pub const PARTITIONS: i32 = 6;

/// Environment of every replica: quicker failure detection than the
/// defaults where the processor honours it (`TRIBUTARY_KAFKA_*`), repartition
/// topics purged every 2 s instead of 30 (so a chaos run restores through
/// purged partitions), and logs that say what the Kafka code does.
pub const REPLICA_ENV: &[(&str, &str)] = &[
    ("RUST_LOG", "info"),
    ("TRIBUTARY_KAFKA_SESSION_TIMEOUT_MS", "6000"),
    ("TRIBUTARY_REPARTITION_PURGE_MS", "2000"),
];

/// Topics, a pipeline and its input, for one test.
pub struct Scenario {
    /// The test bed.
    pub bed: TestBed,
    /// Direct bootstrap (producers and readers of the test).
    pub bootstrap: String,
    /// The input.
    pub workload: Workload,
    /// The pipeline the replicas run.
    pub spec: PipelineSpec,
}

impl Scenario {
    /// Creates fresh input, output and dead-letter topics for a pipeline
    /// with `guarantee`; its replicas reach Kafka through toxiproxy when
    /// `proxied`.
    pub async fn new(
        prefix: &str,
        workload: Workload,
        guarantee: &'static str,
        proxied: bool,
    ) -> Result<Self> {
        let bed = testbed();
        let bootstrap = bed.var("KAFKA_BOOTSTRAP")?.to_owned();
        let name = unique(prefix);
        let spec = PipelineSpec {
            brokers: bed
                .var(if proxied {
                    "KAFKA_BOOTSTRAP_PROXIED"
                } else {
                    "KAFKA_BOOTSTRAP"
                })?
                .to_owned(),
            input: format!("{name}-in"),
            output: format!("{name}-out"),
            dead_letter: format!("{name}-dlq"),
            group: Some(format!("{name}-group")),
            guarantee,
            checkpoint: "1s",
            window: "1s",
            repartition: false,
            name,
        };
        create_topic(&bootstrap, &spec.input, PARTITIONS).await?;
        create_topic(&bootstrap, &spec.output, 3).await?;
        create_topic(&bootstrap, &spec.dead_letter, 1).await?;
        Ok(Self {
            bed,
            bootstrap,
            workload,
            spec,
        })
    }

    /// A fleet of replicas of `spec` (none started yet).
    pub fn fleet(&self, spec: &PipelineSpec) -> Result<Fleet> {
        Ok(Fleet::new(&tributary_bin(), &spec.yaml(), REPLICA_ENV)?)
    }

    /// Produces the whole workload at `rate` events/s (0: at once), then
    /// the flush events that close every window.
    pub async fn produce(&self, rate: f64) -> Result<()> {
        let p = producer(&self.bootstrap)?;
        self.workload
            .produce(&p, &self.spec.input, 0..self.workload.events, rate)
            .await?;
        self.workload
            .produce_flush(&p, &self.spec.input, PARTITIONS)
            .await?;
        Ok(())
    }

    /// Starts `replicas` replicas, produces the workload over
    /// `produce_for` while a chaos loop kills a random replica with SIGKILL
    /// every `kill_every` and restarts it, then finishes as [`finish`]
    /// does; at least 3 kills are required.
    ///
    /// [`finish`]: Scenario::finish
    pub async fn chaos_run(
        &self,
        replicas: usize,
        produce_for: Duration,
        kill_every: Duration,
        what: &str,
        holds: fn(&Check) -> bool,
    ) -> Result<Check> {
        let mut fleet = self.fleet(&self.spec)?;
        for _ in 0..replicas {
            fleet.add()?;
        }
        let rate = self.workload.events as f64 / produce_for.as_secs_f64();
        tokio::select! {
            r = self.produce(rate) => r?,
            r = tributary_e2e::process::chaos(&mut fleet, kill_every) => r?,
        }
        let kills = fleet.kills;
        let what = format!("{what}, {kills} kills (kill -9)");
        let check = self.finish(&mut fleet, &what, holds).await?;
        ensure!(kills >= 3, "the chaos loop killed only {kills} replicas");
        Ok(check)
    }

    /// Records of `group` committed on the input so far.
    pub fn progress(&self, group: &str) -> Result<i64> {
        Ok(kafka::committed(&self.bootstrap, group, &self.spec.input)?
            .iter()
            .sum())
    }

    /// Waits until `group` has committed at least `records` input records.
    pub async fn wait_progress(&self, group: &str, records: u64, fleet: &mut Fleet) -> Result<()> {
        let want = i64::try_from(records)?;
        let what = format!("{group} to commit {want} records");
        self.wait_group(&what, fleet, Duration::from_secs(90), || {
            Ok(self.progress(group)? >= want)
        })
        .await
    }

    /// Waits until `group` has committed every input record (flush events
    /// included: every window has fired and its result is committed).
    pub async fn wait_consumed(
        &self,
        group: &str,
        fleet: &mut Fleet,
        within: Duration,
    ) -> Result<()> {
        let what = format!("{group} to consume {}", self.spec.input);
        self.wait_group(&what, fleet, within, || {
            Ok(lag(&self.bootstrap, group, &self.spec.input)? == 0)
        })
        .await
    }

    /// Polls `done` until it holds; fails at once when a replica exits on
    /// its own. A broker call that fails (a slow answer under load) is
    /// "not yet", reported if the deadline passes.
    async fn wait_group(
        &self,
        what: &str,
        fleet: &mut Fleet,
        within: Duration,
        done: impl Fn() -> Result<bool>,
    ) -> Result<()> {
        let deadline = Deadline::new(what, within);
        loop {
            fleet.check_alive()?;
            let last = match done() {
                Ok(true) => return Ok(()),
                Ok(false) => "not yet".to_owned(),
                Err(e) => format!("{e:#}"),
            };
            let running = fleet.running().len();
            if let Err(e) = deadline.check(format!("{last}; {running} replicas running")) {
                anyhow::bail!("{e}\n{}", fleet.log_tails(15));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops every replica with SIGTERM and checks each exited 0.
    pub async fn stop(&self, fleet: &mut Fleet) -> Result<()> {
        let failed = fleet.stop_all(Duration::from_secs(30)).await?;
        ensure!(
            failed.is_empty(),
            "replicas exited non-zero after SIGTERM: {failed:?}\n{}",
            fleet.log_tails(15)
        );
        Ok(())
    }

    /// Waits until the input is consumed, stops the replicas, and checks
    /// that none exited on its own and that the output `holds` (read with
    /// `read_committed` under `exactlyOnce`); `what` names the scenario in
    /// the figures printed and in failures.
    pub async fn finish(
        &self,
        fleet: &mut Fleet,
        what: &str,
        holds: fn(&Check) -> bool,
    ) -> Result<Check> {
        let group = self.spec.group();
        self.wait_consumed(&group, fleet, Duration::from_secs(150))
            .await?;
        if let Some(internal) = self.spec.repartition_topic() {
            // Input consumed is not output done: the windows run behind
            // the repartition topic. Once they are done it drains: an idle
            // pipeline writes nothing into it, and the committed offsets
            // are past the transaction markers.
            self.wait_complete(fleet, Duration::from_secs(120)).await?;
            let what = format!("{group} to drain {internal}");
            self.wait_group(&what, fleet, Duration::from_secs(60), || {
                Ok(lag(&self.bootstrap, &group, &internal)? == 0)
            })
            .await?;
        }
        let crashed = fleet.crashes.clone();
        self.stop(fleet).await?;
        let read_committed = self.spec.guarantee == "exactlyOnce";
        let check = self.check(&self.spec.output, read_committed).await?;
        let verdict = if holds(&check) { "PASS" } else { "FAIL" };
        eprintln!(
            "{what}: N={} events, {verdict}: {check}",
            self.workload.events
        );
        ensure!(
            crashed.is_empty(),
            "{what}: replicas exited on their own instead of recovering: {crashed:?}\n{}",
            fleet.log_tails(20)
        );
        ensure!(
            holds(&check),
            "{what}: {} does not hold: {check}",
            self.spec.guarantee
        );
        Ok(check)
    }

    /// Waits until every expected result is in the output (read
    /// `read_committed` under `exactlyOnce`).
    pub async fn wait_complete(&self, fleet: &mut Fleet, within: Duration) -> Result<()> {
        let read_committed = self.spec.guarantee == "exactlyOnce";
        let deadline = Deadline::new("every expected result in the output", within);
        loop {
            fleet.check_alive()?;
            let check = self.check(&self.spec.output, read_committed).await?;
            if check.missing.is_empty() {
                return Ok(());
            }
            if let Err(e) = deadline.check(format!("{check}")) {
                anyhow::bail!("{e}\n{}", fleet.log_tails(15));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Every record of `topic`, read with `read_committed` when asked.
    pub async fn read(&self, topic: &str, read_committed: bool) -> Result<Vec<OutRecord>> {
        read_to_end(
            &self.bootstrap,
            topic,
            read_committed,
            Duration::from_secs(60),
        )
        .await
        .with_context(|| format!("reading {topic}"))
    }

    /// The output compared with the expectation.
    pub async fn check(&self, output: &str, read_committed: bool) -> Result<Check> {
        let records = self.read(output, read_committed).await?;
        Ok(Check::new(&self.workload.expected(), &records))
    }
}
