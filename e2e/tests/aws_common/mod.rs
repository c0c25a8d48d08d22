//! What the tests that talk to moto share: an AWS SDK config pointed at the
//! test bed's moto server with its dummy credentials, and Kinesis streams.
// Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_cloudwatch::config::{Credentials, Region};
use tributary_e2e::env::TestBed;
use tributary_e2e::poll;

/// AWS config pointed at moto with the test bed's dummy credentials.
pub async fn config(bed: &TestBed) -> Result<aws_config::SdkConfig> {
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(bed.var("AWS_ENDPOINT_URL")?)
        .region(Region::new(bed.var("AWS_REGION")?.to_owned()))
        .credentials_provider(Credentials::new(
            bed.var("AWS_ACCESS_KEY_ID")?,
            bed.var("AWS_SECRET_ACCESS_KEY")?,
            None,
            None,
            "testbed",
        ))
        .load()
        .await)
}

/// Creates a Kinesis stream of `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(
    kinesis: &aws_sdk_kinesis::Client,
    name: &str,
    shards: i32,
) -> Result<()> {
    kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await?;
    poll::until(
        "the stream to become ACTIVE",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            let d = kinesis
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await?;
            let active = d
                .stream_description_summary()
                .is_some_and(|s| s.stream_status().as_str() == "ACTIVE");
            anyhow::Ok(active.then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// Writes `(partition key, data)` entries with `PutRecords`, `per_call` at
/// a time; fails when moto refuses any entry.
pub async fn put_records(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    entries: Vec<(String, String)>,
    per_call: usize,
) -> Result<()> {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    for chunk in entries.chunks(per_call) {
        let mut req = kinesis.put_records().stream_name(stream);
        for (key, data) in chunk {
            req = req.records(
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()?,
            );
        }
        let out = req.send().await?;
        anyhow::ensure!(
            out.failed_record_count().unwrap_or(0) == 0,
            "moto refused records"
        );
    }
    Ok(())
}

/// The lease items: shard id → (owner, checkpoint, parents).
pub async fn leases(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<BTreeMap<String, (Option<String>, Option<String>, Vec<String>)>> {
    let items = dynamo
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await?;
    let text = |i: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
                k: &str| { i.get(k).and_then(|v| v.as_s().ok()).cloned() };
    Ok(items
        .items()
        .iter()
        .filter_map(|i| {
            let parents = i
                .get("parentShardIds")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|p| p.as_s().ok().cloned()).collect())
                .unwrap_or_default();
            Some((
                text(i, "leaseKey")?,
                (text(i, "leaseOwner"), text(i, "checkpoint"), parents),
            ))
        })
        .collect())
}
