//! Amazon Kinesis: a source whose shards are leased to the replicas through
//! a DynamoDB table (as the Kinesis Client Library does) and a `PutRecords`
//! sink.
//!
//! # Guarantees
//! At-least-once, both ways; exactly-once from a Kinesis source into
//! PostgreSQL sinks with stateless steps (see [`exactly_once`]). The source checkpoints a shard (the sequence
//! number stored in its lease) only below what the engine acknowledged as
//! durable ([`crate::source::Acker`]); a replica that dies, or a lease that
//! moves, makes its successor re-read from that checkpoint, so records may
//! arrive twice, never zero times. The sink retries failed entries, which
//! may write a record twice and may reorder records of one partition key
//! across a retry.
//!
//! # Layout
//! - [`shards`]: the shard graph (stable indices, which shards may be read:
//!   a child only after its parents reached `SHARD_END`).
//! - [`balance`]: which leases a worker takes or steals (pure).
//! - [`lease`]: the DynamoDB lease table (create, scan, renew, take,
//!   checkpoint, release) with conditional writes on the lease counter.
//! - [`ledger`]: global sequence numbers to shard sequence numbers, and the
//!   [`Acker`](crate::source::Acker) that turns acknowledgements into
//!   checkpoints.
//! - [`source`]: the source thread (a current-thread tokio runtime): shard
//!   discovery, the lease cycle, `GetRecords` readers.
//! - [`exactly_once`]: the acknowledgement that commits rows and shard
//!   positions in one Postgres transaction (`exactlyOnce`).
//! - [`batch`] and [`sink`]: `PutRecords` batching and the sink.

pub mod balance;
pub mod batch;
pub mod exactly_once;
pub mod lease;
pub mod ledger;
pub mod shards;
pub mod sink;
pub mod source;

pub use sink::KinesisSink;
pub use source::start;

/// A Kinesis or DynamoDB call failed, or the source cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    /// An AWS API call failed.
    #[error("{call}: {message}")]
    Api {
        /// The operation (`GetRecords`, `UpdateItem`, …).
        call: &'static str,
        /// The error, with its service code.
        message: String,
    },
    /// The runtime or thread could not be created.
    #[error("cannot start the kinesis {what}: {source}")]
    Start {
        /// What could not start.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A setting is unusable (validation catches these first).
    #[error("spec.source.kinesis.{field}: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl KinesisError {
    /// An API error, with the service's code and message when it has one.
    pub fn api<E, R>(call: &'static str, e: &aws_sdk_kinesis::error::SdkError<E, R>) -> Self
    where
        E: std::error::Error + aws_sdk_kinesis::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        let message = match e.as_service_error() {
            Some(s) => format!(
                "{}: {}",
                s.code().unwrap_or("error"),
                s.message().unwrap_or_default()
            ),
            None => aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
        };
        Self::Api { call, message }
    }
}

/// A current-thread tokio runtime for a connector's own thread (the engine
/// is synchronous; each connector drives its async client on its side).
///
/// # Errors
/// When the runtime cannot be built.
pub fn runtime(what: &'static str) -> Result<tokio::runtime::Runtime, KinesisError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| KinesisError::Start { what, source })
}

/// The AWS configuration for `region` and an optional `endpoint` override;
/// credentials come from the default chain (environment, web identity,
/// instance role).
pub async fn sdk_config(region: &str, endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()));
    if let Some(e) = endpoint.filter(|e| !e.is_empty()) {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

/// This replica's name in the lease table: `consumerId`, else
/// [`instance`](crate::connector::instance) (`POD_NAME`, else the host name
/// and process id).
#[must_use]
pub fn worker_id(configured: Option<&str>) -> String {
    match configured.filter(|s| !s.trim().is_empty()) {
        Some(id) => id.to_owned(),
        None => crate::connector::instance(),
    }
}
