//! The NATS JetStream source: a durable pull consumer shared by the replicas.
//!
//! # Guarantees
//! At-least-once. The consumer acknowledges explicitly: a message is
//! acknowledged only once the engine says it is durable (its results
//! flushed, no step holding it). A message not acknowledged within
//! `ackWait` of its delivery is redelivered by the server — to any
//! replica. So that messages a live replica holds in open windows are not
//! redelivered, the source sends an in-progress acknowledgement
//! (`+WPI`, which restarts the `ackWait` timer) for every held message
//! every `ackWait / 3`. A replica that dies stops doing so, and its
//! messages are redelivered to the others after at most `ackWait`.
//!
//! # Caveats
//! While the engine's queue is full (backpressure), the loop waits and
//! sends no in-progress acknowledgements; messages held longer than
//! `ackWait` may then be redelivered and processed twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::Acker as NatsAcker;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tributary_crds::{NatsSource, StartFrom};

use crate::connector::ack::{self, Ledger, Mark};
use crate::connector::{backoff, runtime};
use crate::flow::{Batch, Message, Queue};
use crate::record::Position;
use crate::source::{Decoder, Owner, Running, SourceError};

/// Header with the stream name.
pub const STREAM_HEADER: &str = "nats.stream";
/// Header with the message's stream sequence.
pub const SEQ_HEADER: &str = "nats.seq";
/// Header with the subject the message was published to.
pub const SUBJECT_HEADER: &str = "nats.subject";

/// How long a pull request waits for messages: short, so that
/// acknowledgements are never late by more than this.
const PULL_EXPIRES: Duration = Duration::from_millis(300);

fn err(message: impl Into<String>) -> SourceError {
    SourceError::Connect {
        kind: "nats",
        message: message.into(),
    }
}

/// A message in flight: its stream sequence and how to acknowledge it.
struct Held {
    stream_seq: u64,
    acker: NatsAcker,
}

struct Reader {
    client: async_nats::Client,
    consumer: PullConsumer,
    stream: Arc<str>,
    count: usize,
    ack_wait: Duration,
    ledger: Ledger<Held>,
    /// Stream sequences in the ledger, to skip redeliveries of held messages.
    held: HashSet<u64>,
    last_progress: Instant,
    /// Acknowledgements were published but not flushed yet.
    unflushed: bool,
}

/// The durable name: the spec's, else `<namespace>-<name>` (JetStream
/// names cannot hold dots).
fn durable(spec: &NatsSource, owner: &Owner) -> Result<String, SourceError> {
    match (&spec.durable, &owner.name) {
        (Some(d), _) => Ok(d.clone()),
        (None, Some(name)) => Ok(format!(
            "{}-{name}",
            owner.namespace.as_deref().unwrap_or("default")
        )
        .replace(['.', '*', '>', ' '], "_")),
        (None, None) => Err(err(
            "durable: required when the file is a bare spec (a whole StreamPipeline defaults it to <namespace>-<name>)",
        )),
    }
}

/// Connects to the server (retrying in the background after a loss).
pub(super) async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

/// Starts the source: connects, creates or binds the durable consumer,
/// then pulls on its own thread.
///
/// # Errors
/// [`SourceError::Connect`] when the server, the stream or the consumer
/// cannot be reached or created at start.
pub fn start(
    spec: &NatsSource,
    owner: &Owner,
    decoder: Decoder,
    queue: Arc<Queue>,
    stop: Arc<AtomicBool>,
) -> Result<Running, SourceError> {
    let durable = durable(spec, owner)?;
    let rt = runtime().map_err(|e| err(format!("starting the client runtime: {e}")))?;
    let (client, consumer) = rt.block_on(async {
        let client = connect(&spec.url)
            .await
            .map_err(|e| err(format!("url: cannot connect to {}: {e}", spec.url)))?;
        let js = jetstream::new(client.clone());
        let stream = js.get_stream(&spec.stream).await.map_err(|e| {
            err(format!(
                "stream: cannot open JetStream stream {:?} ({e}); create it first (nats stream add)",
                spec.stream
            ))
        })?;
        let config = pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: spec.subject.clone().unwrap_or_default(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: spec.ack_wait.0,
            deliver_policy: match spec.start_from {
                StartFrom::Earliest => DeliverPolicy::All,
                StartFrom::Latest => DeliverPolicy::New,
            },
            max_ack_pending: spec.max_ack_pending,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer::<pull::Config>(&durable, config)
            .await
            .map_err(|e| err(format!("durable: cannot create or bind consumer {durable:?}: {e}")))?;
        Ok::<_, SourceError>((client, consumer))
    })?;
    tracing::info!(stream = %spec.stream, %durable, "pulling from JetStream");
    let mut reader = Reader {
        client,
        consumer,
        stream: Arc::from(spec.stream.as_str()),
        count: spec.batch_size.max(1) as usize,
        ack_wait: spec.ack_wait.0,
        ledger: Ledger::default(),
        held: HashSet::new(),
        last_progress: Instant::now(),
        unflushed: false,
    };
    ack::spawn("nats", move |mark| {
        rt.block_on(reader.run(&decoder, &queue, &stop, &mark));
    })
}

impl Reader {
    async fn run(&mut self, decoder: &Decoder, queue: &Queue, stop: &AtomicBool, mark: &Mark) {
        let mut failures = 0u32;
        loop {
            self.acknowledge(mark).await;
            if stop.load(Ordering::Relaxed) {
                // The engine drains the queue, flushes and acknowledges
                // once more before it joins this thread: wait for that.
                let until = Instant::now() + Duration::from_secs(2);
                while !self.ledger.is_empty() && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.acknowledge(mark).await;
                }
                // Acknowledgements are plain publishes: send them before exiting.
                let _ = self.client.flush().await;
                return;
            }
            self.progress().await;
            match self.pull(decoder).await {
                Ok(batch) => {
                    failures = 0;
                    if !batch.records.is_empty() || !batch.dead.is_empty() {
                        queue.push(Message::Batch(batch));
                    }
                }
                Err(e) => {
                    tracing::warn!(stream = %self.stream, error = %e, "JetStream pull failed; retrying");
                    tokio::time::sleep(backoff(failures)).await;
                    failures += 1;
                }
            }
        }
    }

    /// Acknowledges every message below the engine's mark.
    /// Acknowledgements are plain publishes: they are confirmed once the
    /// client flushed them to the server.
    async fn acknowledge(&mut self, mark: &Mark) {
        let below = mark.get();
        let released = self.ledger.release_below(below);
        if released.is_empty() && !self.unflushed {
            mark.done(below);
            return;
        }
        for h in released {
            self.held.remove(&h.stream_seq);
            // A lost acknowledgement only means a redelivery.
            if let Err(e) = h.acker.ack().await {
                tracing::debug!(error = %e, "acknowledgement not sent");
            }
        }
        self.unflushed = true;
        match self.client.flush().await {
            Ok(()) => {
                self.unflushed = false;
                mark.done(below);
            }
            Err(e) => tracing::debug!(error = %e, "acknowledgements not flushed"),
        }
    }

    /// Restarts the `ackWait` timer of every held message.
    async fn progress(&mut self) {
        if self.last_progress.elapsed() < self.ack_wait / 3 {
            return;
        }
        self.last_progress = Instant::now();
        for h in self.ledger.iter() {
            if let Err(e) = h.acker.ack_with(AckKind::Progress).await {
                tracing::debug!(error = %e, "in-progress acknowledgement not sent");
            }
        }
    }

    /// One pull request: up to `count` messages, decoded.
    async fn pull(&mut self, decoder: &Decoder) -> Result<Batch, async_nats::Error> {
        let mut messages = self
            .consumer
            .batch()
            .max_messages(self.count)
            .expires(PULL_EXPIRES)
            .messages()
            .await?;
        let mut batch = Batch {
            partition: 0,
            records: Vec::with_capacity(self.count),
            dead: Vec::new(),
            created: Some(Instant::now()),
        };
        while let Some(msg) = messages.next().await {
            let msg = msg?;
            let (stream_seq, delivered) = match msg.info() {
                Ok(info) => (info.stream_sequence, info.delivered),
                Err(e) => {
                    tracing::warn!(error = %e, "a message without JetStream metadata; skipped");
                    continue;
                }
            };
            let (msg, acker) = msg.split();
            if !self.held.insert(stream_seq) {
                // Redelivered while still held here: keep it alive, once.
                let _ = acker.ack_with(AckKind::Progress).await;
                continue;
            }
            let seq = self.ledger.push(Held { stream_seq, acker });
            let position = Position {
                source: self.stream.clone(),
                partition: 0,
                offset: seq,
            };
            let mut headers = vec![
                (STREAM_HEADER.to_owned(), self.stream.to_string()),
                (SEQ_HEADER.to_owned(), stream_seq.to_string()),
                (SUBJECT_HEADER.to_owned(), msg.subject.to_string()),
            ];
            if delivered > 1 {
                headers.push(("nats.delivered".to_owned(), delivered.to_string()));
            }
            if let Some(h) = &msg.headers {
                for (name, values) in h.iter() {
                    for v in values {
                        headers.push((name.to_string(), v.to_string()));
                    }
                }
            }
            match decoder.decode(&msg.payload, position) {
                Ok(mut r) => {
                    r.headers = headers;
                    batch.records.push(r);
                }
                Err(mut dl) => {
                    dl.record.headers = headers;
                    batch.dead.push(*dl);
                }
            }
        }
        Ok(batch)
    }
}
