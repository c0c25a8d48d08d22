//! The Redis Streams source: one consumer of a consumer group.
//!
//! # Guarantees
//! At-least-once. An entry is acknowledged (`XACK`) only once the engine
//! says it is durable: its results were flushed to every sink and no step
//! holds it in its state. On start a consumer first re-reads its own
//! pending entries (ID `0`: what it had read but not acknowledged before a
//! restart), then reads new entries (`>`). Every `claimIdle / 2` it claims
//! (`XAUTOCLAIM`) entries that have been pending longer than `claimIdle`
//! in any consumer (a dead replica), and refreshes the idle time of the
//! entries it still holds (`XCLAIM ... JUSTID` to itself) so that a live
//! replica's open windows are not claimed away.
//!
//! # Caveats
//! While the engine's queue is full (backpressure), the loop waits and
//! neither acknowledges nor refreshes: held entries older than
//! `claimIdle` may then be claimed by another replica and processed twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Value;
use tributary_crds::{RedisStreamsSource, StartFrom};

use super::conn::Conn;
use super::entry::{self, Entry};
use crate::connector::ack::{self, Ledger, Mark};
use crate::connector::{backoff, instance, runtime};
use crate::flow::{Batch, Message, Queue};
use crate::source::{Decoder, Owner, Running, SourceError};

/// How long a blocking read waits for new entries: short, so that
/// acknowledgements and claims are never late by more than this.
const BLOCK_MS: u64 = 200;
/// IDs per `XACK` / `XCLAIM` call.
const CHUNK: usize = 1000;

fn err(message: impl Into<String>) -> SourceError {
    SourceError::Connect {
        kind: "redisStreams",
        message: message.into(),
    }
}

/// The consumer's state between reads.
struct Reader {
    conn: Conn,
    stream: Arc<str>,
    group: String,
    consumer: String,
    start: &'static str,
    count: u32,
    claim_idle: Duration,
    payload_field: String,
    /// Entry IDs by sequence number.
    ledger: Ledger<String>,
    /// The same IDs, to skip entries `XAUTOCLAIM` hands back to their holder.
    held: HashSet<String>,
    /// IDs released by the mark whose `XACK` has not succeeded yet.
    to_ack: Vec<String>,
    /// Where re-reading this consumer's own pending entries is; `None` once done.
    pending_cursor: Option<String>,
    /// Where the current `XAUTOCLAIM` scan is.
    claim_cursor: String,
    last_claim: Option<Instant>,
    last_refresh: Instant,
}

/// Starts the source: connects, creates the group when absent, then reads
/// on its own thread.
///
/// # Errors
/// [`SourceError::Connect`] when the group has no name or Redis cannot be
/// reached at start.
pub fn start(
    spec: &RedisStreamsSource,
    owner: &Owner,
    decoder: Decoder,
    queue: Arc<Queue>,
    stop: Arc<AtomicBool>,
) -> Result<Running, SourceError> {
    let group = match (&spec.group, &owner.name) {
        (Some(g), _) => g.clone(),
        (None, Some(name)) => format!("{}.{name}", owner.namespace.as_deref().unwrap_or("default")),
        (None, None) => {
            return Err(err(
                "group: required when the file is a bare spec (a whole StreamPipeline defaults it to <namespace>.<name>)",
            ));
        }
    };
    let conn = Conn::new(&spec.url).map_err(|e| err(format!("url: {e}")))?;
    let mut reader = Reader {
        conn,
        stream: Arc::from(spec.stream.as_str()),
        group,
        consumer: spec.consumer.clone().unwrap_or_else(instance),
        start: match spec.start_from {
            StartFrom::Earliest => "0",
            StartFrom::Latest => "$",
        },
        count: spec.batch_size.max(1),
        claim_idle: spec.claim_idle.0,
        payload_field: spec.payload_field.clone(),
        ledger: Ledger::default(),
        held: HashSet::new(),
        to_ack: Vec::new(),
        pending_cursor: Some("0".into()),
        claim_cursor: "0-0".into(),
        last_claim: None,
        last_refresh: Instant::now(),
    };
    let rt = runtime().map_err(|e| err(format!("starting the client runtime: {e}")))?;
    rt.block_on(reader.create_group())?;
    tracing::info!(stream = %reader.stream, group = %reader.group, consumer = %reader.consumer, "reading the Redis stream");
    ack::spawn("redis", move |mark| {
        rt.block_on(reader.run(&decoder, &queue, &stop, &mark));
    })
}

impl Reader {
    /// `XGROUP CREATE ... MKSTREAM`, accepting a group that exists.
    async fn create_group(&mut self) -> Result<(), SourceError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&*self.stream)
            .arg(&self.group)
            .arg(self.start)
            .arg("MKSTREAM");
        match self.conn.query::<()>(&cmd).await {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(err(format!(
                "creating consumer group {} on stream {}: {e}",
                self.group, self.stream
            ))),
        }
    }

    async fn run(&mut self, decoder: &Decoder, queue: &Queue, stop: &AtomicBool, mark: &Mark) {
        let mut failures = 0u32;
        loop {
            if stop.load(Ordering::Relaxed) {
                // The engine drains the queue, flushes and acknowledges
                // once more before it joins this thread: wait for that.
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    if self.acknowledge(mark).await.is_ok() && self.ledger.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return;
            }
            match self.step(mark).await {
                Ok(entries) => {
                    failures = 0;
                    self.push(entries, decoder, queue);
                }
                Err(e) => {
                    if e.code() == Some("NOGROUP") {
                        tracing::warn!(group = %self.group, "the consumer group is gone; creating it again");
                        let _ = self.create_group().await;
                    } else {
                        tracing::warn!(stream = %self.stream, error = %e, "Redis call failed; retrying");
                    }
                    tokio::time::sleep(backoff(failures)).await;
                    failures += 1;
                }
            }
        }
    }

    /// One round: acknowledge, keep held entries fresh, then read pending,
    /// claimed or new entries.
    async fn step(&mut self, mark: &Mark) -> redis::RedisResult<Vec<Entry>> {
        self.acknowledge(mark).await?;
        self.refresh().await?;
        if let Some(cursor) = self.pending_cursor.clone() {
            let entries = self.read(&cursor, None).await?;
            match entries.last() {
                Some(last) => self.pending_cursor = Some(last.id.clone()),
                None => self.pending_cursor = None,
            }
            return Ok(entries);
        }
        let claim_every = self.claim_idle / 2;
        if self.last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&*self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(u64::try_from(self.claim_idle.as_millis()).unwrap_or(u64::MAX))
                .arg(&self.claim_cursor)
                .arg("COUNT")
                .arg(self.count);
            let (next, claimed) = entry::parse_autoclaim(self.conn.query::<Value>(&cmd).await?)
                .map_err(|e| {
                    redis::RedisError::from((redis::ErrorKind::Parse, "XAUTOCLAIM", e.to_string()))
                })?;
            if next == "0-0" {
                self.last_claim = Some(Instant::now());
            }
            self.claim_cursor = next;
            let fresh: Vec<Entry> = claimed
                .into_iter()
                .filter(|e| !self.held.contains(&e.id))
                .collect();
            if !fresh.is_empty() {
                tracing::info!(
                    entries = fresh.len(),
                    "claimed entries idle in other consumers"
                );
                return Ok(fresh);
            }
        }
        self.read(">", Some(BLOCK_MS)).await
    }

    async fn read(&mut self, from: &str, block: Option<u64>) -> redis::RedisResult<Vec<Entry>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.count);
        if let Some(ms) = block {
            cmd.arg("BLOCK").arg(ms);
        }
        cmd.arg("STREAMS").arg(&*self.stream).arg(from);
        entry::parse_read(self.conn.query::<Value>(&cmd).await?).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Parse, "XREADGROUP", e.to_string()))
        })
    }

    /// `XACK`s every entry below the engine's mark (and deleted ones).
    async fn acknowledge(&mut self, mark: &Mark) -> redis::RedisResult<()> {
        let below = mark.get();
        for id in self.ledger.release_below(below) {
            self.held.remove(&id);
            self.to_ack.push(id);
        }
        while !self.to_ack.is_empty() {
            let n = self.to_ack.len().min(CHUNK);
            let mut cmd = redis::cmd("XACK");
            cmd.arg(&*self.stream)
                .arg(&self.group)
                .arg(&self.to_ack[..n]);
            self.conn.query::<i64>(&cmd).await?;
            self.to_ack.drain(..n);
        }
        mark.done(below);
        Ok(())
    }

    /// Resets the idle time of the entries this consumer holds, so that no
    /// other consumer claims them while they wait in a window.
    async fn refresh(&mut self) -> redis::RedisResult<()> {
        if self.last_refresh.elapsed() < self.claim_idle / 3 {
            return Ok(());
        }
        self.last_refresh = Instant::now();
        let ids: Vec<&String> = self.ledger.iter().collect();
        for chunk in ids.chunks(CHUNK) {
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&*self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID");
            self.conn.query::<Value>(&cmd).await?;
        }
        Ok(())
    }

    /// Turns entries into a batch for the engine; deleted ones are acknowledged.
    fn push(&mut self, entries: Vec<Entry>, decoder: &Decoder, queue: &Queue) {
        if entries.is_empty() {
            return;
        }
        let mut batch = Batch {
            partition: 0,
            records: Vec::with_capacity(entries.len()),
            dead: Vec::new(),
            created: Some(Instant::now()),
        };
        for e in entries {
            let Some(fields) = e.fields else {
                // Trimmed while pending: nothing to process.
                self.to_ack.push(e.id);
                continue;
            };
            if !self.held.insert(e.id.clone()) {
                continue;
            }
            let seq = self.ledger.push(e.id.clone());
            match entry::to_record(
                &self.stream,
                &e.id,
                fields,
                &self.payload_field,
                decoder,
                seq,
            ) {
                Ok(r) => batch.records.push(r),
                Err(dl) => batch.dead.push(*dl),
            }
        }
        if !batch.records.is_empty() || !batch.dead.is_empty() {
            queue.push(Message::Batch(batch));
        }
    }
}
