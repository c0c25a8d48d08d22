//! Smoke tests: the test bed's other servers are real — moto (Kinesis and
//! CloudWatch through the Rust AWS SDK), the Pub/Sub emulator, Redis
//! streams, NATS JetStream and PostgreSQL.

mod aws_common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use aws_sdk_kinesis::primitives::Blob;
use serde_json::{Value, json};
use tributary_e2e::fixture::{testbed as bed, unique};
use tributary_e2e::poll::Deadline;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn kinesis_create_put_get_through_moto() -> Result<()> {
    let bed = bed();
    let kinesis = aws_sdk_kinesis::Client::new(&aws_common::config(&bed).await?);
    let stream = unique("smoke");
    aws_common::create_stream(&kinesis, &stream, 1).await?;
    let kinesis = &kinesis;
    let stream = &stream;
    let put = kinesis
        .put_record()
        .stream_name(stream)
        .partition_key("user-1")
        .data(Blob::new(r#"{"action":"click"}"#))
        .send()
        .await?;
    let shards = kinesis.list_shards().stream_name(stream).send().await?;
    let shard = shards.shards()[0].shard_id().to_owned();
    assert_eq!(put.shard_id(), shard);
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(&shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await?
        .shard_iterator()
        .context("shard iterator")?
        .to_owned();
    let records = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await?;
    let data: Vec<&[u8]> = records
        .records()
        .iter()
        .map(|r| r.data().as_ref())
        .collect();
    assert_eq!(data, [br#"{"action":"click"}"#.as_slice()]);
    assert!(records.millis_behind_latest().is_some());
    Ok(())
}

#[tokio::test]
async fn cloudwatch_put_and_get_metric_data_through_moto() -> Result<()> {
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat};
    let bed = bed();
    let cw = aws_sdk_cloudwatch::Client::new(&aws_common::config(&bed).await?);
    let namespace = unique("Tributary/E2E");
    let dimension = Dimension::builder().name("Pipeline").value("smoke").build();
    cw.put_metric_data()
        .namespace(&namespace)
        .metric_data(
            MetricDatum::builder()
                .metric_name("Lag")
                .dimensions(dimension.clone())
                .value(42.0)
                .unit(aws_sdk_cloudwatch::types::StandardUnit::Count)
                .build(),
        )
        .send()
        .await?;
    let now = std::time::SystemTime::now();
    let query = MetricDataQuery::builder()
        .id("lag")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(&namespace)
                        .metric_name("Lag")
                        .dimensions(dimension)
                        .build(),
                )
                .period(60)
                .stat("Sum")
                .build(),
        )
        .build();
    let out = cw
        .get_metric_data()
        .metric_data_queries(query)
        .start_time((now - Duration::from_secs(600)).into())
        .end_time((now + Duration::from_secs(600)).into())
        .send()
        .await?;
    let values: Vec<f64> = out
        .metric_data_results()
        .iter()
        .flat_map(|r| r.values().iter().copied())
        .collect();
    assert_eq!(values, [42.0]);
    Ok(())
}

#[tokio::test]
async fn pubsub_emulator_publish_and_pull() -> Result<()> {
    let bed = bed();
    let base = format!(
        "http://{}/v1/projects/{}",
        bed.var("PUBSUB_EMULATOR_HOST")?,
        bed.var("PUBSUB_PROJECT_ID")?
    );
    let http = reqwest::Client::new();
    let topic = unique("smoke-topic");
    let sub = unique("smoke-sub");
    let call = |method: reqwest::Method, path: String, body: Value| {
        let req = http.request(method, format!("{base}/{path}")).json(&body);
        async move {
            let resp = req.send().await?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            ensure!(status.is_success(), "{status}: {body}");
            anyhow::Ok(body)
        }
    };
    call(reqwest::Method::PUT, format!("topics/{topic}"), json!({})).await?;
    call(
        reqwest::Method::PUT,
        format!("subscriptions/{sub}"),
        json!({"topic": format!("projects/{}/topics/{topic}", bed.var("PUBSUB_PROJECT_ID")?), "ackDeadlineSeconds": 10}),
    )
    .await?;
    // "hello pubsub", base64.
    let published = call(
        reqwest::Method::POST,
        format!("topics/{topic}:publish"),
        json!({"messages": [{"data": "aGVsbG8gcHVic3Vi", "attributes": {"k": "v"}}]}),
    )
    .await?;
    ensure!(
        published["messageIds"]
            .as_array()
            .is_some_and(|a| a.len() == 1),
        "{published}"
    );

    let deadline = Deadline::new("the published message to be pulled", WAIT);
    let message = loop {
        let pulled = call(
            reqwest::Method::POST,
            format!("subscriptions/{sub}:pull"),
            json!({"maxMessages": 10}),
        )
        .await?;
        if let Some(m) = pulled["receivedMessages"]
            .as_array()
            .and_then(|a| a.first())
        {
            break m.clone();
        }
        deadline.check(&pulled)?;
    };
    assert_eq!(message["message"]["data"], "aGVsbG8gcHVic3Vi");
    assert_eq!(message["message"]["attributes"]["k"], "v");
    call(
        reqwest::Method::POST,
        format!("subscriptions/{sub}:acknowledge"),
        json!({"ackIds": [message["ackId"]]}),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn redis_stream_xadd_then_xreadgroup() -> Result<()> {
    use redis::AsyncCommands;
    use redis::streams::{StreamReadOptions, StreamReadReply};
    let bed = bed();
    let client = redis::Client::open(bed.var("REDIS_URL")?)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let stream = unique("smoke-stream");
    let id: String = con
        .xadd(&stream, "*", &[("user", "u1"), ("action", "click")])
        .await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("0")
        .query_async(&mut con)
        .await?;
    let reply: StreamReadReply = con
        .xread_options(
            &[&stream],
            &[">"],
            &StreamReadOptions::default().group("g", "c1").count(10),
        )
        .await?;
    let entries = &reply.keys.first().context("no stream in reply")?.ids;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, id);
    assert_eq!(entries[0].get::<String>("action").as_deref(), Some("click"));
    let acked: i64 = con.xack(&stream, "g", &[&id]).await?;
    assert_eq!(acked, 1);
    Ok(())
}

#[tokio::test]
async fn nats_jetstream_publish_and_consume() -> Result<()> {
    use async_nats::jetstream::{self, consumer::pull, stream};
    use futures::StreamExt;
    let bed = bed();
    let client = async_nats::connect(bed.var("NATS_URL")?).await?;
    let js = jetstream::new(client);
    let name = unique("SMOKE").replace('-', "_");
    let subject = format!("{name}.events");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await?;
    let ack = js
        .publish(subject.clone(), "hello jetstream".into())
        .await?
        .await?;
    assert_eq!(ack.sequence, 1);
    let consumer = js
        .get_stream(&name)
        .await?
        .create_consumer(pull::Config {
            durable_name: Some("smoke".into()),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    let msg = messages
        .next()
        .await
        .context("no message fetched")?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(msg.subject.as_str(), subject);
    assert_eq!(&msg.payload[..], b"hello jetstream");
    msg.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[tokio::test]
async fn postgres_insert_and_select() -> Result<()> {
    let bed = bed();
    let (client, connection) =
        tokio_postgres::connect(bed.var("POSTGRES_URL")?, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(connection);
    let table = unique("smoke").replace('-', "_");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (k text PRIMARY KEY, clicks bigint NOT NULL)"
        ))
        .await?;
    client
        .execute(
            &format!("INSERT INTO {table} VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET clicks = EXCLUDED.clicks"),
            &[&"u1", &3_i64],
        )
        .await?;
    let row = client
        .query_one(&format!("SELECT k, clicks FROM {table}"), &[])
        .await?;
    assert_eq!(row.get::<_, String>(0), "u1");
    assert_eq!(row.get::<_, i64>(1), 3);
    drop(client);
    conn.await??;
    Ok(())
}
