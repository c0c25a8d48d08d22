//! Kafka pipelines on the test bed, black box: keyed state follows its
//! partitions through rebalances, and bad input goes to the dead-letter
//! topic with its provenance while the rest is processed.

mod kafka_common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kafka_common::{PARTITIONS, Scenario};
use tributary_e2e::kafka::output::Check;
use tributary_e2e::kafka::pipeline::PipelineSpec;
use tributary_e2e::kafka::producer;
use tributary_e2e::kafka::workload::{Landed, Workload, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_moves_with_partitions_when_replicas_go_2_3_1() -> Result<()> {
    let events = 90_000;
    let s = Scenario::new(
        "rebalance",
        Workload::new(events, 30, 2, 1_000),
        "exactlyOnce",
        false,
    )
    .await?;
    // The reference: one replica alone, on the same input, in its own group
    // and output topic.
    let single = PipelineSpec {
        name: format!("{}-single", s.spec.name),
        output: format!("{}-single-out", s.spec.name),
        group: Some(format!("{}-single-group", s.spec.name)),
        ..s.spec.clone()
    };
    tributary_e2e::kafka::create_topic(&s.bootstrap, &single.output, 3).await?;
    let mut reference = s.fleet(&single)?;
    reference.add()?;
    let mut fleet = s.fleet(&s.spec)?;
    fleet.add()?;
    fleet.add()?;

    let group = s.spec.group();
    let scale = async {
        s.wait_progress(&group, events / 3, &mut fleet).await?;
        fleet.add()?;
        eprintln!(
            "rebalance: 2 → 3 replicas at {} committed",
            s.progress(&group).unwrap_or(-1)
        );
        s.wait_progress(&group, 2 * events / 3, &mut fleet).await?;
        let mut failed = fleet.stop_many(&[0], Duration::from_secs(30)).await?;
        failed.extend(fleet.stop_many(&[1], Duration::from_secs(30)).await?);
        ensure!(failed.is_empty(), "scaling down: {failed:?}");
        eprintln!(
            "rebalance: 3 → 1 replica at {} committed",
            s.progress(&group).unwrap_or(-1)
        );
        anyhow::Ok(())
    };
    let (produced, scaled) =
        tokio::join!(s.produce(f64::from(u32::try_from(events)?) / 25.0), scale);
    produced?;
    scaled?;
    s.wait_consumed(&group, &mut fleet, Duration::from_secs(120))
        .await?;
    s.wait_consumed(&single.group(), &mut reference, Duration::from_secs(120))
        .await?;
    let crashed = [fleet.crashes.clone(), reference.crashes.clone()].concat();
    s.stop(&mut fleet).await?;
    s.stop(&mut reference).await?;
    ensure!(
        crashed.is_empty(),
        "replicas exited on their own: {crashed:?}"
    );

    let sorted = |records: Vec<tributary_e2e::kafka::output::OutRecord>| {
        let mut v: Vec<String> = records.into_iter().map(|r| r.value).collect();
        v.sort();
        v
    };
    let scaled_out = s.read(&s.spec.output, true).await?;
    let check = Check::new(&s.workload.expected(), &scaled_out);
    let single_out = sorted(s.read(&single.output, true).await?);
    let scaled_out = sorted(scaled_out);
    eprintln!(
        "rebalance 2→3→1: N={events}, {} results scaled vs {} single; {check}",
        scaled_out.len(),
        single_out.len()
    );
    ensure!(
        scaled_out == single_out,
        "the scaled run's results differ from the single replica's ({} vs {} records)",
        scaled_out.len(),
        single_out.len()
    );
    ensure!(check.exactly_once(), "{check}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_go_to_the_dead_letter_topic_with_provenance() -> Result<()> {
    let good = 100_000;
    let bad_every = 10; // one malformed record after every 10 good ones
    let mut s = Scenario::new(
        "dlq",
        Workload::new(good, 50, 2, 1_000),
        "atLeastOnce",
        false,
    )
    .await?;
    // The default group, `<namespace>.<name>`.
    s.spec.group = None;
    let mut fleet = s.fleet(&s.spec)?;
    fleet.add()?;

    let p = producer(&s.bootstrap)?;
    let mut bad: BTreeSet<Landed> = BTreeSet::new();
    let w = s.workload;
    for chunk in (0..good).collect::<Vec<_>>().chunks(5_000) {
        let sends = chunk.iter().map(|&i| {
            let (p, topic) = (&p, &s.spec.input);
            async move {
                let (key, value) = (w.user(i), w.value(i));
                send(p, topic, None, &key, value.as_bytes()).await?;
                if i % bad_every == bad_every - 1 {
                    let junk = format!("not json {i} {{");
                    return Ok::<_, tributary_e2e::kafka::Error>(Some(
                        send(p, topic, None, &key, junk.as_bytes()).await?,
                    ));
                }
                Ok(None)
            }
        });
        for landed in futures::future::try_join_all(sends)
            .await?
            .into_iter()
            .flatten()
        {
            bad.insert(landed);
        }
    }
    w.produce_flush(&p, &s.spec.input, PARTITIONS).await?;
    ensure!(
        bad.len() == 10_000,
        "produced {} malformed records",
        bad.len()
    );

    s.wait_consumed(&s.spec.group(), &mut fleet, Duration::from_secs(120))
        .await?;
    let crashed = fleet.crashes.clone();
    s.stop(&mut fleet).await?;
    ensure!(
        crashed.is_empty(),
        "the replica exited on its own: {crashed:?}"
    );

    let dead = s.read(&s.spec.dead_letter, false).await?;
    let mut seen = BTreeSet::new();
    for d in &dead {
        let h = |name: &str| {
            d.header(name)
                .with_context(|| format!("dead letter without header {name}: {d:?}"))
        };
        ensure!(h("tributary.source.topic")? == s.spec.input, "{d:?}");
        ensure!(
            !h("tributary.step")?.is_empty() && !h("tributary.error")?.is_empty(),
            "{d:?}"
        );
        let at = Landed {
            partition: h("tributary.source.partition")?.parse()?,
            offset: h("tributary.source.offset")?.parse()?,
        };
        ensure!(
            bad.contains(&at),
            "dead letter for a good record {at:?}: {d:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&d.value)?;
        ensure!(
            v["step"].is_string() && v["error"].is_string(),
            "{}",
            d.value
        );
        seen.insert(at);
    }
    let check = s.check(&s.spec.output, false).await?;
    eprintln!(
        "dead letters: {} malformed produced, {} dead letters ({} distinct); good: {check}",
        bad.len(),
        dead.len(),
        seen.len()
    );
    ensure!(
        seen == bad,
        "{} of {} malformed records reached the dead-letter topic",
        seen.len(),
        bad.len()
    );
    ensure!(
        dead.len() == bad.len(),
        "{} dead letters for {} malformed records",
        dead.len(),
        bad.len()
    );
    ensure!(
        check.at_least_once(),
        "good records not all processed: {check}"
    );
    Ok(())
}

/// Three kinds of bad record through a Kafka → map → Kafka pipeline, each
/// to the dead-letter topic with its provenance: an input over the record
/// limit (`decode`), a CEL error (division by zero in `map`), and an
/// output over the limit (the sink). Every other record is in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cel_errors_and_oversized_records_go_to_the_dead_letter_topic() -> Result<()> {
    use tributary_e2e::fixture::{testbed, unique};
    use tributary_e2e::kafka::create_topic;
    use tributary_e2e::kafka::output::read_to_end;
    use tributary_e2e::process::{Fleet, tributary_bin};

    const N: u64 = 1_000;
    const LIMIT: usize = 4_096;
    let bed = testbed();
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let (input, output, dlq) = (unique("bad-in"), unique("bad-out"), unique("bad-dlq"));
    for t in [&input, &output, &dlq] {
        create_topic(&bootstrap, t, 2).await?;
    }
    // i % 10: 3 → b = 0 (CEL error), 5 → a 3 KiB pad the map doubles (output
    // over the limit), 7 → an 8 KiB pad (input over the limit).
    let kind = |i: u64| match i % 10 {
        3 => "cel",
        5 => "sink",
        7 => "decode",
        _ => "good",
    };
    let p = producer(&bootstrap)?;
    let mut bad = std::collections::BTreeMap::new();
    for i in 0..N {
        let pad = match kind(i) {
            "sink" => "x".repeat(3 * 1024),
            "decode" => "x".repeat(8 * 1024),
            _ => String::new(),
        };
        let b = u64::from(kind(i) != "cel");
        let value = serde_json::json!({"i": i, "a": 10, "b": b, "pad": pad}).to_string();
        let at = send(&p, &input, None, &format!("k{}", i % 7), value.as_bytes()).await?;
        if kind(i) != "good" {
            bad.insert(at, (i, kind(i)));
        }
    }
    let yaml = format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: '{input}', namespace: e2e}}
spec:
  source:
    kafka: {{brokers: '{bootstrap}', topics: ['{input}'], startFrom: earliest}}
    format: {{type: json}}
  steps:
    - map: {{set: {{ratio: \"event.a / event.b\", pad: \"event.pad + event.pad\"}}}}
  sinks:
    - {{name: out, kafka: {{topic: '{output}'}}}}
  deadLetter: {{name: dlq, kafka: {{topic: '{dlq}'}}}}
  checkpoint: {{interval: 1s}}
"
    );
    let limit = LIMIT.to_string();
    let mut fleet = Fleet::new(
        &tributary_bin(),
        &yaml,
        &[("RUST_LOG", "info"), ("TRIBUTARY_MAX_RECORD_BYTES", &limit)],
    )?;
    fleet.add()?;
    let good = N - bad.len() as u64;
    let deadline =
        tributary_e2e::poll::Deadline::new("every record out or dead", Duration::from_secs(120));
    let (out, dead) = loop {
        let out = read_to_end(&bootstrap, &output, false, Duration::from_secs(30)).await?;
        let dead = read_to_end(&bootstrap, &dlq, false, Duration::from_secs(30)).await?;
        if out.len() as u64 >= good && dead.len() >= bad.len() {
            break (out, dead);
        }
        fleet.check_alive()?;
        deadline.check((out.len(), dead.len()))?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    fleet.stop_all(Duration::from_secs(30)).await?;
    let mut seen = std::collections::BTreeMap::new();
    for d in &dead {
        let h = |name: &str| {
            d.header(name)
                .with_context(|| format!("dead letter without header {name}: {d:?}"))
        };
        ensure!(h("tributary.source.topic")? == input, "{d:?}");
        let at = Landed {
            partition: h("tributary.source.partition")?.parse()?,
            offset: h("tributary.source.offset")?.parse()?,
        };
        let (i, want) = *bad
            .get(&at)
            .with_context(|| format!("dead letter for a good record {at:?}: {d:?}"))?;
        let step = h("tributary.step")?;
        let error = h("tributary.error")?;
        let fits = match want {
            "cel" => step.starts_with("map") && error.contains("ivi"),
            "sink" => step == "out" && error.contains("exceeds the limit"),
            _ => step == "decode" && error.contains("exceeds the limit"),
        };
        ensure!(fits, "record {i} ({want}) dead-lettered by {step}: {error}");
        ensure!(
            d.value.len() <= LIMIT,
            "a dead letter of {} bytes is over the limit it reports",
            d.value.len()
        );
        seen.insert(at, want);
    }
    let counts = |which: &str| seen.values().filter(|k| **k == which).count();
    eprintln!(
        "kafka dead letters: {} out (want {good}), {} dead: {} CEL errors, {} oversized outputs, {} oversized inputs",
        out.len(),
        dead.len(),
        counts("cel"),
        counts("sink"),
        counts("decode")
    );
    ensure!(
        seen.len() == bad.len() && dead.len() == bad.len(),
        "{} dead letters ({} distinct) for {} bad records",
        dead.len(),
        seen.len(),
        bad.len()
    );
    let mut numbers = BTreeSet::new();
    for o in &out {
        let v: serde_json::Value = serde_json::from_str(&o.value)?;
        ensure!(v["ratio"] == 10, "{}", o.value);
        numbers.insert(v["i"].as_u64().context("an output without i")?);
    }
    let want: BTreeSet<u64> = (0..N).filter(|i| kind(*i) == "good").collect();
    ensure!(
        numbers == want,
        "the good records out are not the good records in"
    );
    Ok(())
}
