//! The Pulsar source: one consumer on the pipeline's subscription, stamping
//! a sequence number per message and acknowledging what the engine reports
//! durable.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use pulsar::consumer::{ConsumerOptions, InitialPosition, Message as PulsarMessage};
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, SubType};
use tributary_crds::{PulsarInitialPosition, PulsarSource, PulsarSubscriptionType};

use super::{Exe, connect, full_topic, runtime};
use crate::flow::{Batch, Message, Queue};
use crate::record::Position;
use crate::source::{Acker, BATCH, Decoder, Running, SourceError};

/// How long the consumer waits for a message before it hands over a
/// partial batch and acknowledges what became durable.
const POLL: Duration = Duration::from_millis(100);

/// How long a stopping consumer waits for the engine's last flush.
const DRAIN: Duration = Duration::from_secs(5);

/// Subscribes and starts the consumer thread. Connecting happens here, so a
/// broker that cannot be reached fails the start with its error.
///
/// # Errors
/// [`SourceError::Format`] when the runtime cannot start or the broker
/// refuses the subscription.
pub fn start(
    spec: &PulsarSource,
    decoder: Decoder,
    queue: Arc<Queue>,
    stop: Arc<AtomicBool>,
) -> Result<Running, SourceError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        SourceError::Format(format!("spec.source.pulsar: {what}: {e}"))
    };
    let rt = runtime().map_err(|e| fail("starting the client runtime", &e))?;
    let topic = full_topic(&spec.topic);
    let consumer = rt.block_on(subscribe(spec, &topic)).map_err(|e| {
        fail(
            &format!("subscribing to {topic} at {}", spec.service_url),
            &e,
        )
    })?;
    let durable = Arc::new(AtomicI64::new(i64::MIN));
    let acker = PulsarAcker {
        durable: durable.clone(),
    };
    let mut reader = Reader {
        consumer,
        topic: topic.as_str().into(),
        decoder,
        pending: VecDeque::new(),
        next: 0,
        durable,
    };
    let handle = std::thread::Builder::new()
        .name("source-pulsar".into())
        .spawn(move || {
            if let Err(e) = rt.block_on(reader.run(&queue, &stop)) {
                queue.push(Message::Failed(format!("pulsar source: {e}")));
            }
            rt.block_on(reader.close());
            // Dropping the consumer spawns on the runtime: enter it.
            let _entered = rt.enter();
            drop(reader);
        })
        .map_err(|e| fail("starting the consumer thread", &e))?;
    Ok(Running {
        handle,
        partitions: vec![0],
        bounded: false,
        acker: Some(Box::new(acker)),
    })
}

async fn subscribe(
    spec: &PulsarSource,
    topic: &str,
) -> Result<Consumer<Vec<u8>, Exe>, pulsar::Error> {
    let client = connect(&spec.service_url).await?;
    let sub_type = match spec.subscription_type {
        PulsarSubscriptionType::Shared => SubType::Shared,
        PulsarSubscriptionType::KeyShared => SubType::KeyShared,
    };
    let initial = match spec.initial_position {
        PulsarInitialPosition::Earliest => InitialPosition::Earliest,
        PulsarInitialPosition::Latest => InitialPosition::Latest,
    };
    client
        .consumer()
        .with_topic(topic)
        .with_subscription(&spec.subscription)
        .with_subscription_type(sub_type)
        .with_consumer_name(consumer_name())
        // No client-side ack timeout (the builder's default): a message a
        // window holds for an hour stays with this replica; the broker
        // redelivers it when the replica's connection goes away.
        .with_options(ConsumerOptions::default().with_initial_position(initial))
        .build()
        .await
}

/// This replica in the broker's subscription stats: `POD_NAME` (else
/// `tributary`) and the process id.
fn consumer_name() -> String {
    let pod = std::env::var("POD_NAME")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "tributary".to_owned());
    format!("{pod}-{}", std::process::id())
}

/// Tells the consumer thread which sequence numbers are durable.
struct PulsarAcker {
    durable: Arc<AtomicI64>,
}

impl Acker for PulsarAcker {
    fn ack_below(&mut self, below: i64) {
        self.durable.fetch_max(below, Ordering::Relaxed);
    }
}

/// The consumer thread's state.
struct Reader {
    consumer: Consumer<Vec<u8>, Exe>,
    topic: Arc<str>,
    decoder: Decoder,
    /// Messages handed to the engine and not yet acknowledged, by sequence number.
    pending: VecDeque<(i64, MessageIdData)>,
    /// The next sequence number.
    next: i64,
    /// Everything below this sequence number is durable.
    durable: Arc<AtomicI64>,
}

impl Reader {
    async fn run(&mut self, queue: &Queue, stop: &AtomicBool) -> Result<(), pulsar::Error> {
        while !stop.load(Ordering::Relaxed) {
            self.acknowledge().await?;
            let first = match tokio::time::timeout(POLL, self.consumer.next()).await {
                Err(_) => continue,
                Ok(None) => return Err(pulsar::Error::Custom("the consumer stream ended".into())),
                Ok(Some(m)) => m?,
            };
            let mut batch = Batch {
                partition: 0,
                records: Vec::with_capacity(BATCH),
                dead: Vec::new(),
                created: Some(Instant::now()),
            };
            self.add(&first, &mut batch);
            // Take what already arrived, without waiting, up to a batch.
            while batch.records.len() + batch.dead.len() < BATCH {
                match self.consumer.next().now_or_never() {
                    Some(Some(m)) => self.add(&m?, &mut batch),
                    _ => break,
                }
            }
            // Blocks while the engine is behind (backpressure); the runtime's
            // worker keeps the connection alive meanwhile.
            queue.push(Message::Batch(batch));
        }
        // The engine drains the queue and flushes after the stop; wait a
        // little for it so a clean stop leaves nothing to redeliver.
        let deadline = Instant::now() + DRAIN;
        while self.durable.load(Ordering::Relaxed) < self.next && Instant::now() < deadline {
            self.acknowledge().await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.acknowledge().await
    }

    /// Decodes one message into `batch` under the next sequence number.
    fn add(&mut self, msg: &PulsarMessage<Vec<u8>>, batch: &mut Batch) {
        let seq = self.next;
        self.next += 1;
        self.pending.push_back((seq, msg.message_id().clone()));
        let position = Position {
            source: self.topic.clone(),
            partition: 0,
            offset: seq,
        };
        match self.decoder.decode(&msg.payload.data, position) {
            Ok(mut r) => {
                r.key = msg.key().map(Arc::from);
                r.headers = msg
                    .metadata()
                    .properties
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone()))
                    .collect();
                batch.records.push(r);
            }
            Err(dl) => batch.dead.push(*dl),
        }
    }

    /// Acknowledges every pending message below the durable mark.
    async fn acknowledge(&mut self) -> Result<(), pulsar::Error> {
        let below = self.durable.load(Ordering::Relaxed);
        while let Some((seq, _)) = self.pending.front() {
            if *seq >= below {
                break;
            }
            let Some((_, id)) = self.pending.pop_front() else {
                break;
            };
            self.consumer.ack_with_id(&self.topic, id).await?;
        }
        Ok(())
    }

    /// Closes the consumer so the broker hands what is unacknowledged to
    /// the other replicas at once.
    async fn close(&mut self) {
        let _ = self.consumer.close().await;
    }
}
