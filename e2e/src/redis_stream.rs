//! Redis Streams as the tests see them: entries carry one JSON record in
//! their `data` field, as the processor's Redis source and sink expect.

use std::time::Duration;

use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamPendingReply, StreamRangeReply};

/// A connection to the Redis at `url`.
///
/// # Errors
/// When Redis cannot be reached.
pub async fn connect(url: &str) -> Result<MultiplexedConnection> {
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

/// Adds one entry per item of `data` to `stream`, `per_second` at most
/// (in pipelines of a tenth of that, every 100 ms); each entry also gets
/// the `extra` field–value pairs.
///
/// # Errors
/// When Redis fails.
pub async fn add_paced(
    url: &str,
    stream: &str,
    data: &[String],
    per_second: usize,
    extra: &[(&str, &str)],
) -> Result<()> {
    let mut con = connect(url).await?;
    for chunk in data.chunks((per_second / 10).max(1)) {
        let mut pipe = redis::pipe();
        for d in chunk {
            let cmd = pipe.cmd("XADD").arg(stream).arg("*").arg("data").arg(d);
            for (field, value) in extra {
                cmd.arg(field).arg(value);
            }
            cmd.ignore();
        }
        pipe.query_async::<()>(&mut con).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The `data` fields of every entry of `stream`, in stream order.
///
/// # Errors
/// When Redis fails or an entry has no `data` field.
pub async fn data(con: &mut MultiplexedConnection, stream: &str) -> Result<Vec<String>> {
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(con)
        .await?;
    reply
        .ids
        .iter()
        .map(|e| {
            e.get("data")
                .with_context(|| format!("entry {} of {stream} has no data field", e.id))
        })
        .collect()
}

/// Entries of `group` on `stream` not acknowledged yet: in total, and for
/// `consumer`.
///
/// # Errors
/// When Redis fails.
pub async fn pending(
    con: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    consumer: &str,
) -> Result<(u64, u64)> {
    let reply: StreamPendingReply = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(con)
        .await?;
    Ok(match reply {
        StreamPendingReply::Data(d) => {
            let mine = d
                .consumers
                .iter()
                .find(|c| c.name == consumer)
                .map_or(0, |c| c.pending as u64);
            (d.count as u64, mine)
        }
        _ => (0, 0),
    })
}
