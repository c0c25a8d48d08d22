//! The Pub/Sub source and sink against the test bed's emulator: nothing is
//! lost when a replica is killed, held messages keep their lease, records
//! land with their data and attributes, dead letters name their message,
//! and a sink rides out 20 s without the server.
//!
//! The emulator keeps everything in memory (its `--data-dir` holds only its
//! env file): a restarted emulator has no topics, subscriptions or messages.
//! So "the server is down" is a toxiproxy proxy of the test's own between
//! the processor and the shared emulator, switched off for 20 s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tributary_e2e::fixture::{testbed, unique};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::{Fleet, tributary_bin};
use tributary_e2e::pubsub::{Emulator, Proxy, Pulled};

const ENV: &[(&str, &str)] = &[("RUST_LOG", "info")];

/// How often an empty pull is repeated.
const POLL: Duration = Duration::from_millis(200);

/// An input topic and subscription, and an output topic and subscription
/// to read what the pipeline wrote.
struct Topics {
    input: String,
    input_sub: String,
    output: String,
    output_sub: String,
}

async fn topics(ps: &Emulator, prefix: &str, ack_deadline: u32) -> Result<Topics> {
    let t = Topics {
        input: unique(&format!("{prefix}-in")),
        input_sub: unique(&format!("{prefix}-in-sub")),
        output: unique(&format!("{prefix}-out")),
        output_sub: unique(&format!("{prefix}-out-sub")),
    };
    ps.create_topic(&t.input).await?;
    ps.create_subscription(&t.input_sub, &t.input, ack_deadline)
        .await?;
    ps.create_topic(&t.output).await?;
    ps.create_subscription(&t.output_sub, &t.output, 60).await?;
    Ok(t)
}

fn numbered(from: u64, to: u64) -> Vec<(String, BTreeMap<String, String>)> {
    (from..to)
        .map(|n| {
            (
                json!({"n": n}).to_string(),
                BTreeMap::from([("n".to_owned(), n.to_string())]),
            )
        })
        .collect()
}

/// Pulls `sub` into `seen` until `done(seen)` or the deadline.
async fn collect(
    ps: &Emulator,
    sub: &str,
    seen: &mut Vec<Pulled>,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[Pulled]) -> bool,
) -> Result<()> {
    let deadline = Deadline::new(what, timeout);
    while !done(seen) {
        let got = ps.drain(sub).await?;
        if got.is_empty() {
            deadline.check(format!("{} messages so far", seen.len()))?;
            tokio::time::sleep(POLL).await;
        }
        seen.extend(got);
    }
    Ok(())
}

fn data(p: &Pulled) -> Result<Value> {
    serde_json::from_str(&p.data).with_context(|| format!("output is not JSON: {:?}", p.data))
}

fn numbers(out: &[Pulled]) -> BTreeSet<u64> {
    out.iter()
        .filter_map(|p| data(p).ok()?["n"].as_u64())
        .collect()
}

fn pipeline(name: &str, ps: &Emulator, source: &str, steps: &str, sinks: &str) -> String {
    format!(
        "apiVersion: tributary.dev/v1alpha1\nkind: StreamPipeline\nmetadata: {{name: {name}}}\nspec:\n  source:\n{source}\n  steps: {steps}\n  sinks:\n{sinks}\n  checkpoint: {{interval: 1s}}\n",
    )
    .replace("$PROJECT", &ps.project)
    .replace("$HOST", &ps.host)
}

fn source(sub: &str, extra: &str) -> String {
    format!("    pubsub: {{project: $PROJECT, subscription: {sub}, endpoint: '$HOST'{extra}}}")
}

fn sink(topic: &str, extra: &str) -> String {
    format!(
        "    - name: out\n      pubsub: {{project: $PROJECT, topic: {topic}, endpoint: '$HOST'{extra}}}"
    )
}

#[tokio::test]
async fn two_replicas_one_killed_lose_nothing() -> Result<()> {
    let bed = testbed();
    let ps = Emulator::from_bed(&bed)?;
    let t = topics(&ps, "ps-kill", 10).await?;
    let n = 2000;
    // One fleet per replica, so each tags its output: which replica wrote
    // what shows that the killed one was consuming.
    let yaml = |replica: &str| {
        pipeline(
            "pubsub-kill",
            &ps,
            &source(&t.input_sub, ", ackDeadline: 10s, maxOutstanding: 100"),
            "[]",
            &sink(
                &t.output,
                &format!(", attributes: {{replica: \"'{replica}'\"}}"),
            ),
        )
    };
    let mut a = Fleet::new(&tributary_bin(), &yaml("a"), ENV)?;
    let mut b = Fleet::new(&tributary_bin(), &yaml("b"), ENV)?;
    a.add()?;
    b.add()?;
    let mut out = Vec::new();
    for chunk in (0..600).step_by(100) {
        ps.publish(&t.input, &numbered(chunk, chunk + 100)).await?;
    }
    collect(
        &ps,
        &t.output_sub,
        &mut out,
        "replica a to write 100 records",
        Duration::from_secs(60),
        |o| {
            o.iter()
                .filter(|p| p.attributes.get("replica").is_some_and(|r| r == "a"))
                .count()
                >= 100
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", a.log_tails(20), b.log_tails(20)))?;
    // Keep input flowing while a dies: it holds unacknowledged messages.
    for chunk in (600..1000).step_by(100) {
        ps.publish(&t.input, &numbered(chunk, chunk + 100)).await?;
    }
    a.kill9(0)?;
    let seen_before_kill = out.len();
    for chunk in (1000..n).step_by(100) {
        ps.publish(&t.input, &numbered(chunk, chunk + 100)).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    collect(
        &ps,
        &t.output_sub,
        &mut out,
        "every number to come out",
        Duration::from_secs(120),
        |o| numbers(o).len() as u64 == n,
    )
    .await
    .map_err(|e| {
        let missing: Vec<u64> = (0..n)
            .filter(|i| !numbers(&out).contains(i))
            .take(20)
            .collect();
        anyhow::anyhow!("{e}; first missing: {missing:?}\n{}", b.log_tails(30))
    })?;
    b.check_alive()?;
    let failed = b.stop_all(Duration::from_secs(30)).await?;
    ensure!(
        failed.is_empty(),
        "replica b did not stop cleanly: {failed:?}\n{}",
        b.log_tails(30)
    );
    // Everything a record carries from its message is passed on.
    for p in &out {
        let d = data(p)?;
        ensure!(
            p.attributes.get("n").map(String::as_str)
                == d["n"].as_u64().map(|n| n.to_string()).as_deref(),
            "attribute n does not match the data: {p:?}"
        );
        ensure!(
            p.attributes.contains_key("pubsub.messageId"),
            "no message id header: {p:?}"
        );
        ensure!(
            p.attributes.contains_key("pubsub.publishTime"),
            "no publish time header: {p:?}"
        );
    }
    let by = |r: &str| {
        out.iter()
            .filter(|p| p.attributes.get("replica").is_some_and(|x| x == r))
            .count()
    };
    println!(
        "pubsub kill: {n} numbers in, {} messages out ({} duplicates); replica a wrote {}, b wrote {}; {} read before the kill",
        out.len(),
        out.len() as u64 - n,
        by("a"),
        by("b"),
        seen_before_kill,
    );
    ps.delete(&[&t.input_sub, &t.output_sub], &[&t.input, &t.output])
        .await;
    Ok(())
}

/// A free port on loopback (for a processor's metrics).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `tributary_records_in_total` of a processor serving metrics on `port`.
async fn records_in(port: u16) -> Result<u64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    text.lines()
        .filter(|l| l.starts_with("tributary_records_in_total"))
        .find_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .context("no tributary_records_in_total")
}

fn signal(fleet: &Fleet, signal: nix::sys::signal::Signal) -> Result<()> {
    let pid = fleet.pid(0).context("the replica is not running")?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
    nix::sys::signal::kill(pid, signal)?;
    Ok(())
}

fn session_counts(out: &[Pulled]) -> Result<Vec<u64>> {
    out.iter()
        .map(|p| data(p)?["count"].as_u64().context("no count"))
        .collect()
}

#[tokio::test]
async fn messages_held_past_the_ack_deadline_are_not_redelivered() -> Result<()> {
    let bed = testbed();
    let ps = Emulator::from_bed(&bed)?;
    let t = topics(&ps, "ps-lease", 10).await?;
    // The control: the same pipeline on a second subscription of the same
    // topic, frozen (SIGSTOP) for 20 s after it received everything, so it
    // sends no extensions. Its redelivered messages prove the emulator
    // expires leases of a streaming pull after 10 s: without the
    // extensions, the pipeline under test would see them too.
    let frozen = Topics {
        input: t.input.clone(),
        input_sub: unique("ps-lease-frozen-sub"),
        output: unique("ps-lease-frozen-out"),
        output_sub: unique("ps-lease-frozen-out-sub"),
    };
    ps.create_subscription(&frozen.input_sub, &t.input, 10)
        .await?;
    ps.create_topic(&frozen.output).await?;
    ps.create_subscription(&frozen.output_sub, &frozen.output, 60)
        .await?;
    let n = 50;
    // The session closes 25 s after the last record: every record is held
    // (unacknowledged) for more than twice the 10 s deadline.
    let yaml = |t: &Topics| {
        pipeline(
            "pubsub-lease",
            &ps,
            &source(&t.input_sub, ", ackDeadline: 10s"),
            "[{window: {type: session, gap: 25s, aggregate: [{name: count, fn: count}]}}]",
            &sink(&t.output, ""),
        )
    };
    let mut fleet = Fleet::new(&tributary_bin(), &yaml(&t), ENV)?;
    fleet.add()?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut control = Fleet::new(
        &tributary_bin(),
        &yaml(&frozen),
        &[("RUST_LOG", "info"), ("TRIBUTARY_METRICS_ADDR", &addr)],
    )?;
    control.add()?;
    ps.publish(&t.input, &numbered(0, n)).await?;
    let deadline = Deadline::new(
        "the control to receive every message",
        Duration::from_secs(60),
    );
    loop {
        let got = records_in(port).await;
        if matches!(got, Ok(c) if c >= n) {
            break;
        }
        deadline.check(got)?;
        tokio::time::sleep(POLL).await;
    }
    signal(&control, nix::sys::signal::Signal::SIGSTOP)?;
    // The fault: 20 s without extensions, twice the deadline.
    tokio::time::sleep(Duration::from_secs(20)).await;
    signal(&control, nix::sys::signal::Signal::SIGCONT)?;

    let mut out = Vec::new();
    collect(
        &ps,
        &t.output_sub,
        &mut out,
        "the session result",
        Duration::from_secs(120),
        |o| !o.is_empty(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", fleet.log_tails(30)))?;
    let mut control_out = Vec::new();
    collect(
        &ps,
        &frozen.output_sub,
        &mut control_out,
        "the frozen control to count redelivered messages",
        Duration::from_secs(120),
        |o| session_counts(o).is_ok_and(|c| c.iter().sum::<u64>() > n),
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "control: the emulator must redeliver messages whose lease was not extended: {e}\n{}",
            control.log_tails(30)
        )
    })?;
    fleet.check_alive()?;
    let counts = session_counts(&out)?;
    ensure!(
        counts == [n],
        "one session of exactly {n} records expected (a redelivery would add records), got {counts:?}\n{}",
        fleet.log_tails(30)
    );
    let r = data(&out[0])?;
    let held_ms = r["windowEnd"].as_i64().unwrap_or(0) - r["windowStart"].as_i64().unwrap_or(0);
    println!(
        "pubsub lease: {n} records held in one session of {held_ms} ms past a 10 s deadline, counted once; the frozen control counted {:?}",
        session_counts(&control_out)?
    );
    let failed = fleet.stop_all(Duration::from_secs(30)).await?;
    ensure!(failed.is_empty(), "{failed:?}\n{}", fleet.log_tails(30));
    ps.delete(
        &[
            &t.input_sub,
            &t.output_sub,
            &frozen.input_sub,
            &frozen.output_sub,
        ],
        &[&t.input, &t.output, &frozen.output],
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn the_sink_writes_data_attributes_keys_and_dead_letters() -> Result<()> {
    let bed = testbed();
    let ps = Emulator::from_bed(&bed)?;
    let t = topics(&ps, "ps-sink", 10).await?;
    let dlq = unique("ps-sink-dlq");
    let dlq_sub = unique("ps-sink-dlq-sub");
    ps.create_topic(&dlq).await?;
    ps.create_subscription(&dlq_sub, &dlq, 60).await?;
    let yaml = pipeline(
        "pubsub-sink",
        &ps,
        "    file: {path: in.jsonl}",
        "[]",
        &sink(
            &t.output,
            ", orderingKey: event.user, attributes: {user: event.user, amount: event.amount, none: 'null'}",
        ),
    ) + &format!(
        "  deadLetter: {{pubsub: {{project: {}, topic: {dlq}, endpoint: '{}'}}}}\n",
        ps.project, ps.host
    );
    let mut fleet = Fleet::new(&tributary_bin(), &yaml, ENV)?;
    let records: Vec<Value> = (0..20)
        .map(|i| json!({"i": i, "user": format!("u{}", i % 3), "amount": f64::from(i) * 1.5}))
        .collect();
    let mut lines: Vec<String> = records.iter().map(Value::to_string).collect();
    lines.insert(5, "{not json".to_owned());
    std::fs::write(fleet.dir().join("in.jsonl"), lines.join("\n") + "\n")?;
    fleet.add()?;
    let deadline = Deadline::new("the bounded run to end", Duration::from_secs(60));
    while !fleet.running().is_empty() {
        deadline.check(fleet.log_tails(20))?;
        tokio::time::sleep(POLL).await;
    }
    ensure!(
        fleet.crashes.iter().all(|(_, s)| s.success()),
        "{:?}\n{}",
        fleet.crashes,
        fleet.log_tails(30)
    );
    let mut out = Vec::new();
    collect(
        &ps,
        &t.output_sub,
        &mut out,
        "20 records",
        Duration::from_secs(30),
        |o| o.len() >= 20,
    )
    .await?;
    let mut got: Vec<Value> = out.iter().map(data).collect::<Result<_>>()?;
    got.sort_by_key(|v| v["i"].as_i64());
    ensure!(got == records, "data differs: {got:?}");
    for p in &out {
        let d = data(p)?;
        let user = d["user"].as_str().unwrap_or_default();
        ensure!(
            p.ordering_key == user,
            "ordering key {:?} for {d}",
            p.ordering_key
        );
        ensure!(
            p.attributes.get("user").map(String::as_str) == Some(user),
            "{p:?}"
        );
        ensure!(
            p.attributes.get("amount") == Some(&d["amount"].to_string()),
            "{p:?}"
        );
        ensure!(
            !p.attributes.contains_key("none"),
            "a null attribute is left out: {p:?}"
        );
    }
    let mut dead = Vec::new();
    collect(
        &ps,
        &dlq_sub,
        &mut dead,
        "the dead letter",
        Duration::from_secs(30),
        |d| !d.is_empty(),
    )
    .await?;
    let d = &dead[0];
    ensure!(dead.len() == 1, "{dead:?}");
    ensure!(
        d.attributes.get("tributary.step").map(String::as_str) == Some("decode"),
        "{d:?}"
    );
    ensure!(
        d.attributes
            .get("tributary.source.offset")
            .map(String::as_str)
            == Some("6"),
        "{d:?}"
    );
    ensure!(data(d)?["record"]["raw"] == "{not json", "{d:?}");
    ps.delete(
        &[&t.input_sub, &t.output_sub, &dlq_sub],
        &[&t.input, &t.output, &dlq],
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn a_bad_message_becomes_a_dead_letter_naming_its_message_id() -> Result<()> {
    let bed = testbed();
    let ps = Emulator::from_bed(&bed)?;
    let t = topics(&ps, "ps-dead", 10).await?;
    let yaml = pipeline(
        "pubsub-dead",
        &ps,
        &source(&t.input_sub, ""),
        "[]",
        &sink(&t.output, ""),
    ) + &format!(
        "  deadLetter: {{pubsub: {{project: {}, topic: {}, endpoint: '{}'}}}}\n",
        ps.project, t.output, ps.host
    );
    let mut fleet = Fleet::new(&tributary_bin(), &yaml, ENV)?;
    fleet.add()?;
    let ids = ps
        .publish(
            &t.input,
            &[(
                "{broken".to_owned(),
                BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            )],
        )
        .await?;
    let mut out = Vec::new();
    collect(
        &ps,
        &t.output_sub,
        &mut out,
        "the dead letter",
        Duration::from_secs(60),
        |o| !o.is_empty(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", fleet.log_tails(30)))?;
    let d = &out[0];
    ensure!(d.attributes.get("pubsub.messageId") == ids.first(), "{d:?}");
    ensure!(
        d.attributes.get("tributary.step").map(String::as_str) == Some("decode"),
        "{d:?}"
    );
    let body = data(d)?;
    ensure!(
        body["headers"]["pubsub.messageId"].as_str() == ids.first().map(String::as_str),
        "{body}"
    );
    ensure!(body["headers"]["k"] == "v", "{body}");
    let failed = fleet.stop_all(Duration::from_secs(30)).await?;
    ensure!(failed.is_empty(), "{failed:?}\n{}", fleet.log_tails(30));
    ps.delete(&[&t.input_sub, &t.output_sub], &[&t.input, &t.output])
        .await;
    Ok(())
}

#[tokio::test]
async fn the_sink_loses_nothing_while_the_server_is_away_for_20s() -> Result<()> {
    let bed = testbed();
    let ps = Emulator::from_bed(&bed)?;
    let t = topics(&ps, "ps-down", 10).await?;
    let proxy = Proxy::create(&bed, &unique("pubsub-down"), &ps.host).await?;
    let n: u64 = 6000;
    let yaml = pipeline(
        "pubsub-down",
        &ps,
        &format!("    generator: {{count: {n}, rate: 200, keys: 50, seed: 7}}"),
        "[]",
        &sink(&t.output, ", attributes: {user: event.userId}"),
    )
    .replace(
        &format!("endpoint: '{}'", ps.host),
        &format!("endpoint: '{}'", proxy.listen),
    );
    let mut fleet = Fleet::new(&tributary_bin(), &yaml, ENV)?;
    fleet.add()?;
    let ids = |o: &[Pulled]| -> BTreeSet<String> {
        o.iter()
            .filter_map(|p| Some(data(p).ok()?["eventId"].as_str()?.to_owned()))
            .collect()
    };
    let mut out = Vec::new();
    collect(
        &ps,
        &t.output_sub,
        &mut out,
        "1000 records before the outage",
        Duration::from_secs(60),
        |o| ids(o).len() >= 1000,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", fleet.log_tails(30)))?;
    proxy.set_enabled(false).await?;
    // The outage itself lasts 20 s; the output keeps being read meanwhile.
    // What was in flight at the cut may still show up in the first 2 s;
    // after that nothing may land: the cut is real.
    let cut = tokio::time::Instant::now();
    let back = cut + Duration::from_secs(20);
    let mut settled = None;
    while tokio::time::Instant::now() < back {
        out.extend(ps.drain(&t.output_sub).await?);
        if settled.is_none() && cut.elapsed() >= Duration::from_secs(2) {
            settled = Some(ids(&out).len());
        }
        tokio::time::sleep(POLL).await;
    }
    let during = ids(&out).len();
    proxy.set_enabled(true).await?;
    ensure!(
        settled == Some(during),
        "events landed while the sink was cut off from the server: {settled:?} distinct 2 s into the cut, {during} at its end"
    );
    ensure!(
        (during as u64) < n,
        "the run had sent all {n} events before the cut: the outage tested nothing"
    );
    let deadline = Deadline::new(
        "the generator run to end after the outage",
        Duration::from_secs(180),
    );
    while !fleet.running().is_empty() {
        out.extend(ps.drain(&t.output_sub).await?);
        deadline.check(fleet.log_tails(20))?;
        tokio::time::sleep(POLL).await;
    }
    ensure!(
        fleet.crashes.iter().all(|(_, s)| s.success()),
        "the run failed: {:?}\n{}",
        fleet.crashes,
        fleet.log_tails(40)
    );
    collect(
        &ps,
        &t.output_sub,
        &mut out,
        "every event",
        Duration::from_secs(60),
        |o| ids(o).len() as u64 == n,
    )
    .await
    .map_err(|e| {
        let seen = ids(&out);
        let missing: Vec<String> = (0..n)
            .map(|i| format!("e{i}"))
            .filter(|e| !seen.contains(e))
            .take(20)
            .collect();
        anyhow::anyhow!("{e}; first missing: {missing:?}\n{}", fleet.log_tails(40))
    })?;
    for p in &out {
        let d = data(p)?;
        ensure!(
            p.attributes.get("user").map(String::as_str) == d["userId"].as_str(),
            "{p:?}"
        );
    }
    println!(
        "pubsub outage: {n} events, {} messages out ({} duplicates), {during} distinct before the server came back",
        out.len(),
        out.len() as u64 - n
    );
    proxy.delete().await?;
    ps.delete(&[&t.input_sub, &t.output_sub], &[&t.input, &t.output])
        .await;
    Ok(())
}

#[test]
fn the_bundled_example_validates() -> Result<()> {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples/connectors/pubsub.yaml");
    let out = std::process::Command::new(tributary_bin())
        .args(["validate", "-f"])
        .arg(&example)
        .output()?;
    ensure!(
        out.status.success(),
        "tributary validate -f {}: {}\n{}",
        example.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
