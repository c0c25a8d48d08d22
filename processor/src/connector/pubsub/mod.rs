//! Google Cloud Pub/Sub: a streaming-pull source and a batched-publish
//! sink, through Google's `google-cloud-pubsub` client.
//!
//! # Layout
//! - `client`: where to connect (endpoint, emulator, credentials), resource
//!   names, the small tokio runtime each connector runs its client on.
//! - `ledger`: the sequence numbers stamped on received messages and the
//!   acknowledgements they stand for.
//! - `source`: the streaming pull, records from messages, the [`Acker`].
//! - `sink`: batched publish, retries, dead letters with provenance.
//!
//! # Guarantees
//! At-least-once, both ways. The source acknowledges a message only after
//! every result it led to was flushed and no step holds it any more
//! ([`Acker`]); until then the client extends its ack deadline
//! (`ModifyAckDeadline`) every few seconds, so a slow window does not make
//! Pub/Sub redeliver it. A crash lets the deadlines expire and Pub/Sub
//! redelivers to whichever subscriber pulls next. The sink waits for the
//! message id of every publish before a flush returns and retries what
//! failed, so a flush that returns lost nothing; a crash before it returns
//! repeats output after redelivery.
//!
//! [`Acker`]: crate::source::Acker

mod client;
mod ledger;
mod sink;
mod source;

pub use sink::PubSubSink;
pub use source::start;

/// A Pub/Sub client could not be set up or cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// The runtime thread for the client could not start.
    #[error("cannot start the Pub/Sub client runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Building the client failed (credentials, endpoint).
    #[error("cannot create the Pub/Sub client for {target}: {message}")]
    Client {
        /// The topic or subscription.
        target: String,
        /// What the client said.
        message: String,
    },
}
