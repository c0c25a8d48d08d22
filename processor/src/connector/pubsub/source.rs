//! The Pub/Sub source: a streaming pull on a subscription.
//!
//! The engine's sources are threads; this one runs a small tokio runtime
//! (see [`client::runtime`]) whose worker drives the gRPC stream and the
//! client's lease loop, while the source thread turns messages into
//! records and blocks on the engine's queue when it is full. Blocking
//! there does not stop the lease loop, so held messages keep their
//! deadlines extended under backpressure too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use google_cloud_pubsub::client::Subscriber;
use google_cloud_pubsub::model::Message as PubsubMessage;
use google_cloud_pubsub::subscriber::handler::Handler;
use google_cloud_pubsub::subscriber::{MessageStream, ShutdownBehavior};
use tributary_crds::PubSubSource;

use super::PubSubError;
use super::client::{self, Endpoint};
use super::ledger::Ledger;
use crate::flow::{Batch, Message, Queue};
use crate::record::{Position, Record};
use crate::sink::DeadLetter;
use crate::source::{Acker, BATCH, Decoder, Running, SourceError};

/// Header with the Pub/Sub message id (dead-letter provenance).
pub const MESSAGE_ID: &str = "pubsub.messageId";
/// Header with the publish time, RFC 3339 with milliseconds.
pub const PUBLISH_TIME: &str = "pubsub.publishTime";

/// How long a message is leased at most: as long as a step holds it. The
/// engine acknowledges it once it is durable, however long a window is.
const MAX_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How often an idle source looks at the stop flag.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// How long a stop waits for the last acknowledgements to reach Pub/Sub.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The client's pieces that must outlive the source thread until the
/// engine's last acknowledgement: the stream (its lease loop sends the
/// acks) and the runtime that drives it.
struct Session {
    runtime: tokio::runtime::Runtime,
    stream: MessageStream,
}

/// What the source thread and the [`PubSubAcker`] share.
#[derive(Default)]
struct Shared {
    ledger: Mutex<Ledger<Handler>>,
    /// Filled by the source thread when it ends.
    session: Mutex<Option<Session>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data is a queue of handles; a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the streaming pull of `spec` on its own thread.
///
/// # Errors
/// [`SourceError::Client`] when the client cannot be created.
pub fn start(
    spec: &PubSubSource,
    decoder: Decoder,
    queue: Arc<Queue>,
    stop: Arc<AtomicBool>,
) -> Result<Running, SourceError> {
    let path = client::subscription_path(&spec.project, &spec.subscription);
    let runtime = client::runtime("pubsub-source").map_err(connector)?;
    let (url, credentials) = Endpoint::from_spec(spec.endpoint.as_deref()).settings();
    let subscriber = runtime
        .block_on(async {
            let mut b = Subscriber::builder();
            if let Some(url) = url {
                b = b.with_endpoint(url);
            }
            if let Some(c) = credentials {
                b = b.with_credentials(c);
            }
            b.build().await
        })
        .map_err(|e| {
            connector(PubSubError::Client {
                target: path.clone(),
                message: e.to_string(),
            })
        })?;
    let stream = {
        // Building the stream spawns the lease loop on the runtime.
        let _guard = runtime.enter();
        subscriber
            .subscribe(&path)
            .set_max_lease_extension(spec.ack_deadline.0)
            .set_max_lease(MAX_LEASE)
            .set_max_outstanding_messages(i64::from(spec.max_outstanding))
            .set_shutdown_behavior(ShutdownBehavior::NackImmediately)
            .build()
    };
    let shared = Arc::new(Shared::default());
    let reader = Reader {
        name: Arc::from(spec.subscription.as_str()),
        path,
        decoder,
        shared: shared.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("source-pubsub".into())
        .spawn(move || reader.run(runtime, stream, &queue, &stop))
        .map_err(|source| SourceError::Open {
            path: "pubsub source thread".into(),
            source,
        })?;
    Ok(Running {
        handle,
        partitions: vec![0],
        bounded: false,
        acker: Some(Box::new(PubSubAcker { shared })),
    })
}

fn connector(e: PubSubError) -> SourceError {
    SourceError::Client(e.to_string())
}

/// The source thread's state.
struct Reader {
    /// The subscription's short name (`position.source`).
    name: Arc<str>,
    /// Its full path, for errors.
    path: String,
    decoder: Decoder,
    shared: Arc<Shared>,
}

impl Reader {
    fn run(
        self,
        runtime: tokio::runtime::Runtime,
        mut stream: MessageStream,
        queue: &Queue,
        stop: &AtomicBool,
    ) {
        let failure = runtime.block_on(self.pull(&mut stream, queue, stop));
        if let Some(e) = failure
            && !stop.load(Ordering::Relaxed)
        {
            queue.push(Message::Failed(e));
        }
        *lock(&self.shared.session) = Some(Session { runtime, stream });
    }

    /// Pulls until `stop` is set; returns why it ended otherwise.
    async fn pull(
        &self,
        stream: &mut MessageStream,
        queue: &Queue,
        stop: &AtomicBool,
    ) -> Option<String> {
        let mut batch = new_batch();
        loop {
            // The pending `next()` is kept across idle checks: it may be in
            // the middle of (re)opening the stream with backoff.
            let next = stream.next();
            tokio::pin!(next);
            let item = loop {
                if batch.records.is_empty() && batch.dead.is_empty() {
                    tokio::select! {
                        item = &mut next => break item,
                        () = tokio::time::sleep(IDLE_CHECK) => {
                            if stop.load(Ordering::Relaxed) {
                                return None;
                            }
                        }
                    }
                } else {
                    // Hand over what we have as soon as nothing more is
                    // ready: latency stays low, batches stay large under load.
                    tokio::select! {
                        biased;
                        item = &mut next => break item,
                        () = std::future::ready(()) => {
                            queue.push(Message::Batch(std::mem::replace(&mut batch, new_batch())));
                        }
                    }
                }
            };
            match item {
                Some(Ok((m, handler))) => {
                    let seq = lock(&self.shared.ledger).push(handler);
                    match to_record(&self.decoder, &self.name, seq, &m) {
                        Ok(r) => batch.records.push(r),
                        Err(dl) => batch.dead.push(*dl),
                    }
                }
                Some(Err(e)) => return Some(format!("pulling from {}: {e}", self.path)),
                None => return Some(format!("the stream of {} closed", self.path)),
            }
            if batch.records.len() + batch.dead.len() >= BATCH || stop.load(Ordering::Relaxed) {
                queue.push(Message::Batch(std::mem::replace(&mut batch, new_batch())));
            }
            if stop.load(Ordering::Relaxed) {
                return None;
            }
        }
    }
}

fn new_batch() -> Batch {
    Batch {
        partition: 0,
        records: Vec::with_capacity(64),
        dead: Vec::new(),
        created: Some(Instant::now()),
    }
}

/// A record from a message: the data decoded per `format`, the attributes
/// and the message id and publish time as headers, the ordering key as
/// the key, `seq` as the offset. Event time comes from `eventTime`
/// (processing time when absent), as for every source.
///
/// # Errors
/// A dead letter, with the same headers, when the data cannot be decoded.
pub fn to_record(
    decoder: &Decoder,
    name: &Arc<str>,
    seq: i64,
    m: &PubsubMessage,
) -> Result<Record, Box<DeadLetter>> {
    let position = Position {
        source: name.clone(),
        partition: 0,
        offset: seq,
    };
    let mut headers: Vec<(String, String)> = m
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    headers.sort_unstable();
    headers.push((MESSAGE_ID.to_owned(), m.message_id.clone()));
    if let Some(t) = &m.publish_time {
        headers.push((
            PUBLISH_TIME.to_owned(),
            rfc3339_millis(t.seconds(), t.nanos()),
        ));
    }
    let key = (!m.ordering_key.is_empty()).then(|| Arc::from(m.ordering_key.as_str()));
    match decoder.decode(&m.data[..], position) {
        Ok(mut r) => {
            r.headers = headers;
            r.key = key;
            Ok(r)
        }
        Err(mut dl) => {
            dl.record.headers = headers;
            dl.record.key = key;
            Err(dl)
        }
    }
}

/// `seconds` and `nanos` since the epoch as RFC 3339 with milliseconds.
fn rfc3339_millis(seconds: i64, nanos: i32) -> String {
    let secs = u64::try_from(seconds).unwrap_or(0);
    let nanos = u32::try_from(nanos).unwrap_or(0);
    let t = std::time::UNIX_EPOCH + Duration::new(secs, nanos);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Acknowledges what the engine says is durable; on drop (the run is
/// over) nacks the rest so Pub/Sub redelivers it at once, and waits for
/// the acknowledgements to be sent.
struct PubSubAcker {
    shared: Arc<Shared>,
}

impl Acker for PubSubAcker {
    fn ack_below(&mut self, below: i64) {
        lock(&self.shared.ledger).ack_below(below);
    }
}

impl Drop for PubSubAcker {
    fn drop(&mut self) {
        let held = lock(&self.shared.ledger).take_all();
        if !held.is_empty() {
            tracing::info!(
                messages = held.len(),
                "pubsub: releasing messages that are not durable; Pub/Sub redelivers them"
            );
        }
        drop(held);
        let session = lock(&self.shared.session).take();
        if let Some(Session { runtime, stream }) = session {
            let token = stream.shutdown_token();
            let flushed = runtime
                .block_on(async { tokio::time::timeout(SHUTDOWN_WAIT, token.shutdown()).await });
            if flushed.is_err() {
                tracing::warn!(
                    "pubsub: acknowledgements not confirmed within {SHUTDOWN_WAIT:?}; unacknowledged messages will be redelivered"
                );
            }
            drop(stream);
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(yaml: &str) -> Decoder {
        let spec: tributary_crds::SourceSpec = serde_yaml_ng::from_str(yaml).unwrap();
        Decoder::new(&spec).unwrap()
    }

    fn message(data: &str) -> PubsubMessage {
        // The model's serde form is the REST API's JSON.
        let m: PubsubMessage = serde_json::from_value(serde_json::json!({
            "messageId": "m-17",
            "orderingKey": "user-1",
            "attributes": {"b": "2", "a": "1"},
            "publishTime": "2023-11-14T22:13:20.123Z",
        }))
        .unwrap();
        m.set_data(data.to_owned())
    }

    #[test]
    fn data_is_the_payload_and_attributes_become_headers() {
        let d = decoder("{stdin: {}, eventTime: {field: event.ts}}");
        let r = to_record(
            &d,
            &Arc::from("orders-sub"),
            42,
            &message(r#"{"n": 1, "ts": 5000}"#),
        )
        .unwrap();
        assert_eq!(r.value, serde_json::json!({"n": 1, "ts": 5000}));
        assert_eq!(r.event_time, 5000);
        assert_eq!(r.key.as_deref(), Some("user-1"));
        assert_eq!(r.position.offset, 42);
        assert_eq!(&*r.position.source, "orders-sub");
        let h: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            h,
            [
                ("a", "1"),
                ("b", "2"),
                (MESSAGE_ID, "m-17"),
                (PUBLISH_TIME, "2023-11-14T22:13:20.123Z")
            ]
        );
    }

    #[test]
    fn undecodable_data_is_a_dead_letter_naming_the_message() {
        let d = decoder("{stdin: {}}");
        let dl = to_record(&d, &Arc::from("orders-sub"), 7, &message("{not json")).unwrap_err();
        assert_eq!(dl.step, "decode");
        assert_eq!(dl.record.position.offset, 7);
        assert!(
            dl.record
                .headers
                .contains(&(MESSAGE_ID.to_owned(), "m-17".to_owned()))
        );
        assert_eq!(dl.to_json()["headers"][MESSAGE_ID], "m-17");
    }
}
