//! Smoke tests: the test bed's Apache Kafka (KRaft, one node) is real —
//! topics, consumer groups with several members, committed offsets and high
//! watermarks (lag), transactions with `send_offsets_to_transaction`, and a
//! toxiproxy in front of it that really cuts connections.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tributary_e2e::fixture::{testbed as bed, unique};
use tributary_e2e::kafka::{config, create_topic, set_proxy};
use tributary_e2e::poll::{self, Deadline};

const WAIT: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(10);

fn consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> Result<StreamConsumer> {
    let mut c = config(bootstrap);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    Ok(c.create()?)
}

/// Polls `consumer` once for up to `within`; `None` on a quiet poll.
async fn poll_once(
    consumer: &StreamConsumer,
    within: Duration,
) -> Result<Option<(i32, i64, String)>> {
    match tokio::time::timeout(within, consumer.recv()).await {
        Err(_) => Ok(None),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(m)) => Ok(Some((
            m.partition(),
            m.offset(),
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        ))),
    }
}

/// Reads values from `consumer` until `done` holds for everything read.
async fn drain_until(
    consumer: &StreamConsumer,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>> {
    let deadline = Deadline::new(what, WAIT);
    let mut values = Vec::new();
    while !done(&values) {
        while let Some((_, _, v)) = poll_once(consumer, Duration::from_millis(200)).await? {
            values.push(v);
        }
        deadline.check(&values)?;
    }
    Ok(values)
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: &str,
    value: &str,
) -> Result<()> {
    producer
        .send(
            FutureRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value),
            TIMEOUT,
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}/{partition}: {e}"))?;
    Ok(())
}

#[tokio::test]
async fn a_group_of_two_splits_four_partitions_commits_and_shows_lag() -> Result<()> {
    let bed = bed();
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?;
    let topic = unique("smoke-group");
    let group = unique("smoke-group");
    create_topic(bootstrap, &topic, 4).await?;

    let members = [
        consumer(bootstrap, &group, &[])?,
        consumer(bootstrap, &group, &[])?,
    ];
    for m in &members {
        m.subscribe(&[&topic])?;
    }
    // Keep both members polling until the group has settled on 2 + 2.
    let deadline = Deadline::new("both members to own 2 partitions each", WAIT);
    loop {
        for m in &members {
            if let Some(msg) = poll_once(m, Duration::from_millis(100)).await? {
                bail!("unexpected message before producing: {msg:?}");
            }
        }
        let counts: Vec<usize> = members
            .iter()
            .map(|m| m.assignment().map(|a| a.count()))
            .collect::<Result<_, _>>()?;
        if counts == [2, 2] {
            break;
        }
        deadline.check(&counts)?;
    }

    let producer: FutureProducer = config(bootstrap).create()?;
    for i in 0..40 {
        produce(&producer, &topic, i % 4, &format!("k{i}"), &format!("v{i}")).await?;
    }

    // Each member sees exactly the 20 records of its own 2 partitions.
    let mut seen: Vec<BTreeMap<(i32, i64), String>> = vec![BTreeMap::new(), BTreeMap::new()];
    let deadline = Deadline::new("all 40 records consumed", WAIT);
    while seen.iter().map(BTreeMap::len).sum::<usize>() < 40 {
        for (m, got) in members.iter().zip(seen.iter_mut()) {
            while let Some((p, o, v)) = poll_once(m, Duration::from_millis(100)).await? {
                got.insert((p, o), v);
            }
        }
        deadline.check(seen.iter().map(BTreeMap::len).collect::<Vec<_>>())?;
    }
    assert_eq!(seen[0].len(), 20);
    assert_eq!(seen[1].len(), 20);
    for m in &members {
        m.commit_consumer_state(CommitMode::Sync)?;
    }

    // Committed offsets and high watermarks, read from outside the group.
    let observer = consumer(bootstrap, &group, &[])?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition(&topic, p);
    }
    let committed = observer.committed_offsets(tpl.clone(), TIMEOUT)?;
    for p in 0..4 {
        let offset = committed
            .find_partition(&topic, p)
            .context("partition")?
            .offset();
        assert_eq!(offset, Offset::Offset(10), "partition {p}");
        let (low, high) = observer.fetch_watermarks(&topic, p, TIMEOUT)?;
        assert_eq!((low, high), (0, 10), "partition {p}");
    }

    // Five more records on partition 0 are lag until someone commits them.
    for i in 0..5 {
        produce(&producer, &topic, 0, "late", &format!("late{i}")).await?;
    }
    let (_, high) = observer.fetch_watermarks(&topic, 0, TIMEOUT)?;
    let committed = observer.committed_offsets(tpl, TIMEOUT)?;
    let Offset::Offset(c) = committed.find_partition(&topic, 0).context("p0")?.offset() else {
        bail!("no committed offset on partition 0");
    };
    assert_eq!(high - c, 5, "lag on partition 0");
    Ok(())
}

#[tokio::test]
async fn a_transaction_commits_output_and_consumer_offsets_together() -> Result<()> {
    let bed = bed();
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?;
    let input = unique("smoke-tx-in");
    let output = unique("smoke-tx-out");
    let group = unique("smoke-tx");
    create_topic(bootstrap, &input, 1).await?;
    create_topic(bootstrap, &output, 1).await?;
    let plain: FutureProducer = config(bootstrap).create()?;
    for i in 0..5 {
        produce(&plain, &input, 0, "k", &format!("in{i}")).await?;
    }

    let source = consumer(bootstrap, &group, &[("isolation.level", "read_committed")])?;
    source.subscribe(&[&input])?;
    let values = drain_until(&source, "the 5 input records", |v| v.len() >= 5).await?;

    let tx: FutureProducer = config(bootstrap)
        .set("transactional.id", unique("smoke-tx-id"))
        .set("transaction.timeout.ms", "30000")
        .create()?;
    tx.init_transactions(TIMEOUT)?;

    // An aborted transaction leaves nothing visible.
    tx.begin_transaction()?;
    produce(&tx, &output, 0, "k", "aborted").await?;
    tx.abort_transaction(TIMEOUT)?;

    // A committed one publishes the output and the group's offsets at once.
    tx.begin_transaction()?;
    for v in &values {
        produce(&tx, &output, 0, "k", &format!("out-{v}")).await?;
    }
    let positions = source.position()?;
    tx.send_offsets_to_transaction(
        &positions,
        &source.group_metadata().context("group metadata")?,
        TIMEOUT,
    )?;
    tx.commit_transaction(TIMEOUT)?;

    let observer = consumer(bootstrap, &group, &[])?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&input, 0);
    let committed = observer.committed_offsets(tpl, TIMEOUT)?;
    assert_eq!(
        committed.find_partition(&input, 0).context("p0")?.offset(),
        Offset::Offset(5)
    );

    let reader = consumer(
        bootstrap,
        &unique("smoke-tx-read"),
        &[("isolation.level", "read_committed")],
    )?;
    reader.subscribe(&[&output])?;
    let mut out = drain_until(&reader, "the 5 committed output records", |v| v.len() >= 5).await?;
    // Nothing else arrives: the aborted record stays invisible.
    while let Some((_, _, v)) = poll_once(&reader, Duration::from_millis(500)).await? {
        out.push(v);
    }
    assert_eq!(out, ["out-in0", "out-in1", "out-in2", "out-in3", "out-in4"]);
    Ok(())
}

#[tokio::test]
async fn toxiproxy_cuts_a_kafka_connection_and_restores_it() -> Result<()> {
    let bed = bed();
    let direct = bed.var("KAFKA_BOOTSTRAP")?;
    let proxied = bed.var("KAFKA_BOOTSTRAP_PROXIED")?;
    let topic = unique("smoke-toxi");
    create_topic(direct, &topic, 1).await?;
    set_proxy(&bed, true).await?;

    let producer: FutureProducer = config(proxied)
        .set("message.timeout.ms", "3000")
        .set("reconnect.backoff.max.ms", "500")
        .create()?;
    produce(&producer, &topic, 0, "k", "before").await?;

    set_proxy(&bed, false).await?;
    let cut = producer
        .send(
            FutureRecord::to(&topic)
                .partition(0)
                .key("k")
                .payload("during"),
            TIMEOUT,
        )
        .await;
    assert!(
        cut.is_err(),
        "produce through a disabled proxy succeeded: {cut:?}"
    );

    set_proxy(&bed, true).await?;
    let (producer, topic) = (&producer, &topic);
    poll::until(
        "producing through the restored proxy",
        WAIT,
        Duration::from_millis(200),
        || async move { produce(producer, topic, 0, "k", "after").await.map(Some) },
    )
    .await?;

    // Both successful records are in the log, read directly.
    let reader = consumer(direct, &unique("smoke-toxi"), &[])?;
    reader.subscribe(&[topic])?;
    let values = drain_until(&reader, "the records produced through the proxy", |v| {
        v.iter().any(|v| v == "after")
    })
    .await?;
    assert_eq!(values.first().map(String::as_str), Some("before"));
    assert!(!values.iter().any(|v| v == "during"), "{values:?}");
    Ok(())
}
