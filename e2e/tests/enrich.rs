//! The `enrich` step against a compacted topic on the test bed's Kafka: the
//! table is read to its end before the first record is enriched, then
//! followed, so an update and a tombstone produced mid-stream are seen by
//! the records read after them. And against a PostgreSQL query with a TTL
//! cache: a changed row is seen by the records after the TTL.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};
use tributary_e2e::fixture::{testbed, unique};
use tributary_e2e::kafka::{create_topic, producer};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::tributary_bin;

const WAIT: Duration = Duration::from_secs(60);

/// Produces `value` (`None`: a tombstone) under `key` and waits for the ack.
async fn put(bootstrap: &str, topic: &str, key: &str, value: Option<Value>) -> Result<()> {
    let p = producer(bootstrap)?;
    let body = value.map(|v| v.to_string());
    let mut rec = FutureRecord::to(topic).key(key);
    if let Some(b) = &body {
        rec = rec.payload(b);
    }
    p.send(rec, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("produce {key} to {topic}"))?;
    Ok(())
}

/// `tributary run` of a stdin pipeline whose output lines arrive on a channel.
struct Run {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    n: u64,
}

impl Run {
    fn start(yaml: &str) -> Result<(tempfile::TempDir, Self)> {
        Self::start_with(yaml, &[])
    }

    fn start_with(yaml: &str, env: &[(&str, &str)]) -> Result<(tempfile::TempDir, Self)> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("pipeline.yaml"), yaml)?;
        let mut child = Command::new(tributary_bin())
            .args(["run", "-q", "-f", "pipeline.yaml"])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawn {}", tributary_bin().display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok((
            dir,
            Self {
                child,
                stdin,
                lines,
                n: 0,
            },
        ))
    }

    /// Sends a record for `user` and returns the enriched record.
    fn send(&mut self, user: &str) -> Result<Value> {
        self.n += 1;
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{}", json!({"n": self.n, "userId": user}))?;
        stdin.flush()?;
        let v = self
            .lines
            .recv_timeout(WAIT)
            .with_context(|| format!("record {} ({user}) not out within {WAIT:?}", self.n))?;
        ensure!(v["n"] == self.n, "out of order: {v}");
        Ok(v)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_is_read_to_its_end_then_followed() -> Result<()> {
    let bed = testbed();
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let topic = unique("enrich-users");
    create_topic(&bootstrap, &topic, 2).await?;
    put(&bootstrap, &topic, "u1", Some(json!({"tier": "bronze"}))).await?;
    put(&bootstrap, &topic, "u2", Some(json!({"tier": "silver"}))).await?;
    put(&bootstrap, &topic, "u1", Some(json!({"tier": "gold"}))).await?;

    let yaml = format!(
        "apiVersion: tributary.dev/v1alpha1\nkind: StreamPipeline\nmetadata: {{name: enrich}}\nspec:\n  source: {{stdin: {{}}}}\n  steps:\n    - enrich: {{table: {{kafka: {{topic: {topic}, brokers: '{bootstrap}'}}}}, key: event.userId, as: user}}\n  sinks: [{{name: out, stdout: {{}}}}]\n"
    );
    let (_dir, mut run) = Run::start(&yaml)?;
    // Read to the end before the step starts: the very first records see
    // the latest row of every key.
    assert_eq!(run.send("u1")?["user"], json!({"tier": "gold"}));
    assert_eq!(run.send("u2")?["user"], json!({"tier": "silver"}));
    assert!(run.send("u3")?.get("user").is_none(), "u3 has no row");

    put(&bootstrap, &topic, "u1", Some(json!({"tier": "platinum"}))).await?;
    put(&bootstrap, &topic, "u2", None).await?;
    let deadline = Deadline::new("the update and the tombstone seen", WAIT);
    loop {
        let (u1, u2) = (run.send("u1")?, run.send("u2")?);
        if u1["user"] == json!({"tier": "platinum"}) && u2.get("user").is_none() {
            break;
        }
        deadline.check((&u1, &u2))?;
        // Polling interval of the deadline loop.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once seen, the new state stays.
    assert_eq!(run.send("u1")?["user"]["tier"], "platinum");
    assert!(run.send("u2")?.get("user").is_none());

    drop(run.stdin.take());
    let status = run.child.wait()?;
    if !status.success() {
        bail!("tributary exited with {status}");
    }
    Ok(())
}

/// Connects to the test bed's PostgreSQL.
async fn postgres(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_table_change_is_seen_once_the_ttl_passes() -> Result<()> {
    let bed = testbed();
    let url = bed.var("POSTGRES_URL")?.to_owned();
    let db = postgres(&url).await?;
    let t = unique("enrich_users").replace('-', "_");
    db.batch_execute(&format!(
        "CREATE TABLE {t} (id integer PRIMARY KEY, tier text NOT NULL);
         INSERT INTO {t} VALUES (1, 'bronze'), (2, 'silver');"
    ))
    .await?;
    let ttl = Duration::from_secs(1);
    let yaml = format!(
        "apiVersion: tributary.dev/v1alpha1\nkind: StreamPipeline\nmetadata: {{name: enrich-pg}}\nspec:\n  source: {{stdin: {{}}}}\n  steps:\n    - enrich: {{table: {{postgres: {{connection: {{env: PG_URL}}, query: 'SELECT tier FROM {t} WHERE id = $1', ttl: 1s}}}}, key: event.userId, as: user}}\n  sinks: [{{name: out, stdout: {{}}}}]\n"
    );
    let (_dir, mut run) = Run::start_with(&yaml, &[("PG_URL", &url)])?;
    assert_eq!(run.send("1")?["user"], json!({"tier": "bronze"}));
    assert_eq!(run.send("2")?["user"], json!({"tier": "silver"}));
    assert!(run.send("3")?.get("user").is_none(), "3 has no row");

    db.batch_execute(&format!(
        "UPDATE {t} SET tier = 'gold' WHERE id = 1; INSERT INTO {t} VALUES (3, 'new');"
    ))
    .await?;
    // Every cached entry (rows and the miss) is older than the TTL after
    // this: waiting out the TTL is the behaviour under test, not a poll.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert_eq!(run.send("1")?["user"], json!({"tier": "gold"}));
    assert_eq!(
        run.send("3")?["user"],
        json!({"tier": "new"}),
        "a cached miss expires too"
    );
    assert_eq!(run.send("2")?["user"], json!({"tier": "silver"}));
    Ok(())
}
