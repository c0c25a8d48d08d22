//! Apache Pulsar on the test bed's standalone broker, black box: the sink
//! writes keyed messages, and the source loses nothing when one of two
//! replicas on a subscription is killed with SIGKILL while it holds
//! unacknowledged messages.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tributary_e2e::fixture::{testbed, unique};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::{Fleet, tributary_bin};

/// Numbered messages per test.
const N: u64 = 20_000;
/// Runs of the producing pipeline in the kill tests.
const CHUNKS: u64 = 10;
/// Distinct keys (`k0` … `k9`).
const KEYS: u64 = 10;

#[derive(Clone)]
struct Bed {
    url: String,
    admin: String,
    http: reqwest::Client,
}

impl Bed {
    fn load() -> Result<Self> {
        let tb = testbed();
        Ok(Self {
            url: tb.var("PULSAR_URL")?.to_owned(),
            admin: tb.var("PULSAR_ADMIN_URL")?.to_owned(),
            http: reqwest::Client::new(),
        })
    }

    /// The admin REST path of a topic in `public/default`.
    fn topic_path(&self, topic: &str) -> String {
        format!("{}/admin/v2/persistent/public/default/{topic}", self.admin)
    }

    /// Creates a subscription at the start of an empty topic (creating the
    /// topic), so what is produced afterwards can be peeked at.
    async fn subscribe(&self, topic: &str, sub: &str) -> Result<()> {
        let url = format!("{}/subscription/{sub}", self.topic_path(topic));
        let resp = self.http.put(&url).send().await?;
        ensure!(
            resp.status().is_success(),
            "PUT {url}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// The `n`th message (from 1) of `sub`'s backlog: its key and JSON value.
    async fn peek(&self, topic: &str, sub: &str, n: u64) -> Result<(Option<String>, Value)> {
        let url = format!("{}/subscription/{sub}/position/{n}", self.topic_path(topic));
        let resp = self.http.get(&url).send().await?;
        ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
        let key = resp
            .headers()
            .get("X-Pulsar-partition-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let value = serde_json::from_slice(&resp.bytes().await?)?;
        Ok((key, value))
    }

    /// Unacknowledged messages per consumer name of `sub`.
    async fn unacked(&self, topic: &str, sub: &str) -> Result<Vec<(String, u64)>> {
        let url = format!("{}/stats", self.topic_path(topic));
        let stats: Value = self.http.get(&url).send().await?.json().await?;
        let consumers = stats["subscriptions"][sub]["consumers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(consumers
            .iter()
            .map(|c| {
                (
                    c["consumerName"].as_str().unwrap_or_default().to_owned(),
                    c["unackedMessages"].as_u64().unwrap_or(0),
                )
            })
            .collect())
    }
}

/// Writes the numbers `range` as keyed JSON lines and runs a bounded
/// pipeline that sends them to `topic` (the Pulsar sink, keyed by `event.k`).
fn produce(bed: &Bed, topic: &str, range: std::ops::Range<u64>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lines: String = range
        .map(|n| format!("{{\"n\":{n},\"k\":\"k{}\"}}\n", n % KEYS))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines)?;
    let yaml = format!(
        "source: {{file: {{path: in.jsonl}}}}\nsinks:\n  - name: out\n    pulsar: {{serviceUrl: '{}', topic: {topic}, key: event.k}}\n",
        bed.url
    );
    let file = dir.path().join("produce.yaml");
    std::fs::write(&file, yaml)?;
    let out = std::process::Command::new(tributary_bin())
        .args(["run", "-f"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .context("running the producing pipeline")?;
    ensure!(
        out.status.success(),
        "the producing pipeline failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A replica reading `topic` on `sub` into `out.jsonl` next to its pipeline.
fn consumer(bed: &Bed, topic: &str, sub: &str, sub_type: &str) -> Result<Fleet> {
    let yaml = format!(
        "source:\n  pulsar: {{serviceUrl: '{}', topic: {topic}, subscription: {sub}, subscriptionType: {sub_type}}}\nsinks: [{{name: out, file: {{path: out.jsonl}}}}]\ncheckpoint: {{interval: 1s}}\n",
        bed.url
    );
    Ok(Fleet::new(
        &tributary_bin(),
        &yaml,
        &[("RUST_LOG", "info")],
    )?)
}

/// The numbers a replica wrote. A line cut short by SIGKILL is skipped: it
/// was never flushed, so never acknowledged, so redelivered.
fn numbers(dir: &Path) -> Result<Vec<u64>> {
    let path = dir.join("out.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["n"].as_u64())
        .collect())
}

/// Kills replica A once it has output (and so acknowledged) some numbers
/// while the broker counts others it has not acknowledged, then waits for
/// B to output every number.
async fn survives_a_sigkill(sub_type: &str) -> Result<()> {
    let bed = Bed::load()?;
    let topic = unique(&format!("pulsar-{}", sub_type.to_lowercase()));
    let sub = format!("{topic}-sub");
    // The consumers' subscription exists before the first message, so both
    // replicas share all of them.
    bed.subscribe(&topic, &sub).await?;
    let mut a = consumer(&bed, &topic, &sub, sub_type)?;
    let mut b = consumer(&bed, &topic, &sub, sub_type)?;
    a.add()?;
    b.add()?;
    // Produce only once both replicas are subscribed: a replica that joins a
    // Key_Shared subscription late may be handed no key at all, and then
    // there is nothing of A's to kill (seen once on a loaded CI machine).
    let deadline = Deadline::new("both replicas subscribed", Duration::from_secs(60));
    loop {
        a.check_alive()?;
        b.check_alive()?;
        let consumers = bed.unacked(&topic, &sub).await?;
        if consumers.len() >= 2 {
            break;
        }
        deadline.check(&consumers)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let producing = tokio::task::spawn_blocking({
        let (bed, topic) = (bed.clone(), topic.clone());
        // In chunks, so the replicas consume for a few seconds: long
        // enough for A to have flushed some output while holding more.
        move || {
            for chunk in 0..CHUNKS {
                produce(&bed, &topic, chunk * N / CHUNKS..(chunk + 1) * N / CHUNKS)?;
                std::thread::sleep(Duration::from_millis(300));
            }
            anyhow::Ok(())
        }
    });

    // A's consumer is named after its replica and process id.
    let a_name = format!(
        "replica-0-{}",
        a.pid(0).context("replica A is not running")?
    );
    let deadline = Deadline::new(
        "replica A to have output numbers and to hold unacknowledged messages",
        Duration::from_secs(90),
    );
    // A's output after its first flush: once it has flushed again, the
    // first flush's input has been acknowledged (within one poll).
    let mut first_flush = None;
    let held = loop {
        a.check_alive()?;
        b.check_alive()?;
        let unacked = bed.unacked(&topic, &sub).await?;
        let held = unacked.iter().find(|(name, n)| *name == a_name && *n > 0);
        let output = numbers(a.dir())?.len();
        if output > 0 && first_flush.is_none() {
            first_flush = Some(output);
        }
        if let Some((_, n)) = held.filter(|_| first_flush.is_some_and(|f| output > f)) {
            break *n;
        }
        deadline.check((output, &unacked))?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    a.kill9(0)?;
    eprintln!(
        "pulsar {sub_type}: SIGKILLed replica A after {} numbers out, holding {held} unacknowledged message(s)",
        numbers(a.dir())?.len()
    );
    producing.await??;

    let want: BTreeSet<u64> = (0..N).collect();
    let deadline = Deadline::new("every number in the outputs", Duration::from_secs(120));
    let (from_a, from_b) = loop {
        b.check_alive()?;
        let (from_a, from_b) = (numbers(a.dir())?, numbers(b.dir())?);
        let seen: BTreeSet<u64> = from_a.iter().chain(&from_b).copied().collect();
        if seen == want {
            break (from_a, from_b);
        }
        let missing: Vec<&u64> = want.difference(&seen).take(10).collect();
        if let Err(e) = deadline.check(format!(
            "{} missing, e.g. {missing:?}",
            N as usize - seen.len()
        )) {
            b.keep_logs();
            bail!("{e}\n{}", b.log_tails(20));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stopped = b.stop_all(Duration::from_secs(30)).await?;
    ensure!(
        stopped.iter().all(|(_, s)| s.success()),
        "replica B did not stop cleanly: {stopped:?}"
    );
    // What A acknowledged is not redelivered: B did not need to output it all.
    ensure!(
        (from_b.len() as u64) < N,
        "B output all {N} numbers again: A's acknowledgements did not take effect"
    );
    let total = (from_a.len() + from_b.len()) as u64;
    eprintln!(
        "pulsar {sub_type}: {N} numbers out, A wrote {}, B wrote {}, {} duplicate(s)",
        from_a.len(),
        from_b.len(),
        total - N
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_loses_nothing_when_a_replica_is_killed() -> Result<()> {
    survives_a_sigkill("Shared").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_shared_subscription_loses_nothing_when_a_replica_is_killed() -> Result<()> {
    survives_a_sigkill("KeyShared").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_writes_json_with_keys_from_cel() -> Result<()> {
    let bed = Bed::load()?;
    let topic = unique("pulsar-sink");
    bed.subscribe(&topic, "check").await?;
    let (b2, topic2) = (bed.clone(), topic.clone());
    tokio::task::spawn_blocking(move || produce(&b2, &topic2, 0..N)).await??;
    for n in [1, 2, 7, N] {
        let (key, value) = bed.peek(&topic, "check", n).await?;
        let want = n - 1;
        ensure!(value["n"] == want, "message {n}: {value}");
        ensure!(
            key.as_deref() == Some(format!("k{}", want % KEYS).as_str()),
            "message {n}: key {key:?}, value {value}"
        );
    }
    Ok(())
}

/// A Pulsar standalone of this test alone (the shared bed's must never be
/// stopped) on free ports, started like the test bed's from its jars.
struct OwnBroker {
    server: tributary_e2e::server::Server,
    _conf: tempfile::TempDir,
    url: String,
    admin: String,
}

impl OwnBroker {
    fn start() -> Result<Self> {
        use tributary_e2e::server::{Server, free_port};
        let libs = testbed().var("PULSAR_LIBS")?.to_owned();
        let (broker, web, bookie, zk) = (free_port()?, free_port()?, free_port()?, free_port()?);
        let conf = tempfile::tempdir()?;
        let file = conf.path().join("standalone.conf");
        std::fs::write(
            &file,
            format!(
                "clusterName=standalone\nbindAddress=127.0.0.1\nadvertisedAddress=127.0.0.1\n\
                 brokerServicePort={broker}\nwebServicePort={web}\n\
                 managedLedgerDefaultEnsembleSize=1\nmanagedLedgerDefaultWriteQuorum=1\nmanagedLedgerDefaultAckQuorum=1\n\
                 allowAutoTopicCreation=true\nallowAutoTopicCreationType=non-partitioned\n\
                 brokerDeleteInactiveTopicsEnabled=false\nfunctionsWorkerEnabled=false\n\
                 transactionCoordinatorEnabled=false\nnarExtractionDirectory={}\n",
                conf.path().join("nar").display()
            ),
        )?;
        let classpath = format!("{libs}/*");
        let (bookie, zk) = (bookie.to_string(), zk.to_string());
        let file = file.display().to_string();
        let server = Server::start(
            "java",
            &[
                "-Xms256m",
                "-Xmx512m",
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                "-cp",
                &classpath,
                "org.apache.pulsar.PulsarStandaloneStarter",
                "--config",
                &file,
                "-nss",
                "-nfw",
                "--bookkeeper-port",
                &bookie,
                "--zookeeper-port",
                &zk,
                "--metadata-dir",
                "{dir}/metadata",
                "--zookeeper-dir",
                "{dir}/zookeeper",
                "--bookkeeper-dir",
                "{dir}/bookkeeper",
            ],
        )?;
        Ok(Self {
            server,
            _conf: conf,
            url: format!("pulsar://127.0.0.1:{broker}"),
            admin: format!("http://127.0.0.1:{web}"),
        })
    }

    /// Waits until the broker serves `public/default` (as the test bed does).
    async fn ready(&self) -> Result<()> {
        let http = reqwest::Client::new();
        let url = format!("{}/admin/v2/namespaces/public", self.admin);
        let deadline = Deadline::new(
            "the private Pulsar broker to be ready",
            Duration::from_secs(120),
        );
        loop {
            let body = match http.get(&url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            if body.contains("public/default") {
                return Ok(());
            }
            if let Err(e) = deadline.check(&body) {
                let log = std::fs::read_to_string(self.server.log()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                bail!(
                    "{e}\nbroker log tail:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn bed(&self) -> Bed {
        Bed {
            url: self.url.clone(),
            admin: self.admin.clone(),
            http: reqwest::Client::new(),
        }
    }
}

/// The sink through a broker killed with SIGKILL mid-run and started again
/// 20 s later on the same data: the run completes and every number is in
/// the topic (a resend after reconnecting may repeat one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_rides_out_20_seconds_without_its_broker() -> Result<()> {
    const TOTAL: u64 = 100_000;
    let mut broker = OwnBroker::start()?;
    broker.ready().await?;
    let bed = broker.bed();
    let topic = unique("pulsar-outage");
    bed.subscribe(&topic, "check").await?;
    let dir = tempfile::tempdir()?;
    let lines: String = (0..TOTAL)
        .map(|n| format!("{{\"n\":{n},\"k\":\"k{}\"}}\n", n % KEYS))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines)?;
    std::fs::write(
        dir.path().join("produce.yaml"),
        format!(
            "source: {{file: {{path: in.jsonl}}}}\nsinks:\n  - name: out\n    pulsar: {{serviceUrl: '{}', topic: {topic}, key: event.k}}\n",
            bed.url
        ),
    )?;
    let log = std::fs::File::create(dir.path().join("produce.log"))?;
    let mut run = tokio::process::Command::new(tributary_bin())
        .args(["run", "-f"])
        .arg(dir.path().join("produce.yaml"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    // Kill the broker once part of the input is stored, not all of it.
    let deadline = Deadline::new("the first 5,000 messages", Duration::from_secs(60));
    let stored = loop {
        let stats: Value = bed
            .http
            .get(format!("{}/stats", bed.topic_path(&topic)))
            .send()
            .await?
            .json()
            .await
            .unwrap_or_default();
        let backlog = stats["subscriptions"]["check"]["msgBacklog"]
            .as_u64()
            .unwrap_or(0);
        if backlog >= 5_000 {
            break backlog;
        }
        deadline.check(backlog)?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    broker.server.kill9();
    eprintln!(
        "pulsar outage: broker killed with {stored} of {TOTAL} messages stored; down for 20 s"
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    ensure!(
        run.try_wait()?.is_none(),
        "the producing run ended during the outage: {}",
        std::fs::read_to_string(dir.path().join("produce.log")).unwrap_or_default()
    );
    broker.server.restart()?;
    broker.ready().await?;
    eprintln!("pulsar outage: broker up again");
    let status = tokio::time::timeout(Duration::from_secs(180), run.wait())
        .await
        .context("the producing run did not finish within 180 s of the restart")??;
    ensure!(
        status.success(),
        "the producing run failed ({status}): {}",
        std::fs::read_to_string(dir.path().join("produce.log")).unwrap_or_default()
    );
    // Read everything back through the Pulsar source.
    let mut reader = consumer(&bed, &topic, "check", "Shared")?;
    reader.add()?;
    let deadline = Deadline::new("every number read back", Duration::from_secs(120));
    let (distinct, read) = loop {
        let got = numbers(reader.dir())?;
        let distinct: BTreeSet<u64> = got.iter().copied().collect();
        if distinct.len() as u64 == TOTAL {
            break (distinct, got.len());
        }
        reader.check_alive()?;
        if let Err(e) = deadline.check(distinct.len()) {
            let missing: Vec<u64> = (0..TOTAL)
                .filter(|n| !distinct.contains(n))
                .take(10)
                .collect();
            bail!("{e}; first missing: {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "pulsar outage: {TOTAL} written, {} distinct read back, {} repeats",
        distinct.len(),
        read - distinct.len()
    );
    reader.stop_all(Duration::from_secs(30)).await?;
    Ok(())
}
