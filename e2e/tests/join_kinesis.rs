//! Joins with a Kinesis stream (moto). As the `with` side, read through a
//! DynamoDB lease table: the shard's checkpoint must stop right before the
//! record the join still holds, and a replica restarted after `kill -9`
//! must read nothing the join had let go of — and that record again.
//!
//! File of orders `right` join payments (one shard), then a tick far
//! ahead in event time: every row exactly once, the checkpoint at the last
//! payment (the held tick not checkpointed) and staying there. After the
//! kill and restart, the main file is read again but no payment is (no
//! pair comes out again), and a second tick releases the first, which the
//! restarted replica must have read again: its unmatched row is the whole
//! new output.

mod aws_common;
mod join_common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::{Value, json};
use tributary_e2e::fixture::{testbed as bed, unique};
use tributary_e2e::poll;
use tributary_e2e::process::{Fleet, tributary_bin};

use join_common::{FileJoin, TICK, nested_loop, orders, payments};

/// Writes `values` to `stream` in order (one partition key: one shard);
/// returns the sequence number of the last.
async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, values: &[Value]) -> Result<String> {
    let mut last = None;
    for chunk in values.chunks(100) {
        let mut req = kinesis.put_records().stream_name(stream);
        for v in chunk {
            req = req.records(
                PutRecordsRequestEntry::builder()
                    .partition_key("p")
                    .data(Blob::new(v.to_string()))
                    .build()?,
            );
        }
        let out = req.send().await?;
        ensure!(
            out.failed_record_count().unwrap_or(0) == 0,
            "moto refused records"
        );
        last = out
            .records()
            .last()
            .and_then(|r| r.sequence_number())
            .map(str::to_owned);
    }
    last.context("nothing was written")
}

/// The checkpoint of the one lease in `table`, if any.
async fn checkpoint(dynamo: &aws_sdk_dynamodb::Client, table: &str) -> Result<Option<String>> {
    let leases = aws_common::leases(dynamo, table).await?;
    Ok(leases.into_values().next().and_then(|(_, cp, _)| cp))
}

/// A Kinesis source spec on the test bed's moto, leases in `table`.
fn source_yaml(bed: &tributary_e2e::env::TestBed, stream: &str, table: &str) -> Result<String> {
    Ok(format!(
        "kinesis: {{stream: {stream}, region: {}, endpoint: '{}', leaseTable: {table}, leaseDuration: 3s}}",
        bed.var("AWS_REGION")?,
        bed.var("AWS_ENDPOINT_URL")?
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_side_checkpoints_only_what_the_join_let_go_of() -> Result<()> {
    let bed = bed();
    let aws = aws_common::config(&bed).await?;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let (stream, table) = (unique("jk-payments"), unique("jk-leases"));
    aws_common::create_stream(&kinesis, &stream, 1).await?;
    let (left, right) = (orders(400), payments(600));
    let want = nested_loop(&left, &right, "right");
    let with = source_yaml(&bed, &stream, &table)?;
    let main = FileJoin::file_main(&left, &with, "right", "5s")?;
    let mut fleet = Fleet::new(&tributary_bin(), &main.yaml, &[])?;
    fleet.add()?;
    let last_payment = put(&kinesis, &stream, &right).await?;
    let tick = json!({"id": "tick", "k": "none", "ts": TICK});
    let tick_seq = put(&kinesis, &stream, std::slice::from_ref(&tick)).await?;
    main.exactly(&want, &fleet, "right").await?;

    poll::until(
        "the shard checkpointed at the last payment",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            anyhow::Ok(
                (checkpoint(&dynamo, &table).await?.as_deref() == Some(&last_payment))
                    .then_some(()),
            )
        },
    )
    .await?;
    // Two more checkpoint intervals: the held tick must not be checkpointed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = checkpoint(&dynamo, &table).await?;
    ensure!(
        now.as_deref() == Some(&last_payment),
        "the checkpoint moved to {now:?} past the last payment {last_payment} (the tick, which the join holds, is {tick_seq})"
    );

    fleet.kill9(0)?;
    fleet.start(0)?;
    // The restarted replica (its file sink starts the output afresh) takes
    // the lease once it expires (3 s) and reads from the checkpoint: the
    // tick only, so no payment meets the orders read again. A second tick
    // releases the first: its unmatched row is the only output.
    let tick2 = json!({"id": "tick2", "k": "none", "ts": TICK + 60_000});
    put(&kinesis, &stream, std::slice::from_ref(&tick2)).await?;
    let after = BTreeMap::from([("-/tick".to_owned(), 1)]);
    main.exactly(&after, &fleet, "right").await?;
    // A checkpoint interval more for anything read again to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = main.rows()?;
    ensure!(
        rows == after,
        "after the restart the output is {rows:?}, not just the tick's row: the replica read again what was checkpointed"
    );
    eprintln!(
        "join_kinesis: {} orders right join {} payments: {} rows exactly once across a kill; checkpoint held at the last payment, the tick read again",
        left.len(),
        right.len(),
        want.len()
    );
    fleet.finish(Duration::from_secs(30)).await?;
    Ok(())
}

/// The other way round: a Kinesis main source joined with a file. The
/// shards are found after the run starts, and the file ends at once; the
/// run must neither end with it nor let the watermark run ahead and make
/// every Kinesis record late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_main_source_is_joined_with_a_file() -> Result<()> {
    let bed = bed();
    let aws = aws_common::config(&bed).await?;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let (stream, table) = (unique("jk-orders"), unique("jk-leases"));
    aws_common::create_stream(&kinesis, &stream, 1).await?;
    let (left, right) = (orders(400), payments(600));
    let want = nested_loop(&left, &right, "left");
    let main = source_yaml(&bed, &stream, &table)?;
    let join = FileJoin::file_side(&main, &right, "left", "5s")?;
    let mut fleet = Fleet::new(&tributary_bin(), &join.yaml, &[])?;
    fleet.add()?;
    // The orders, then a tick that moves the watermark past all of them.
    let tick = json!({"id": "tick", "k": "none", "ts": TICK});
    put(&kinesis, &stream, &left).await?;
    put(&kinesis, &stream, std::slice::from_ref(&tick)).await?;
    join.exactly(&want, &fleet, "left").await?;
    eprintln!(
        "join_kinesis: a Kinesis stream of {} orders left join a file of {} payments: {} rows exactly once",
        left.len(),
        right.len(),
        want.len()
    );
    fleet.finish(Duration::from_secs(30)).await?;
    Ok(())
}
