//! The Kinesis source thread: it discovers shards, keeps this worker's
//! leases (renew, take, steal) and reads the shards it holds with
//! `GetRecords`, on a current-thread tokio runtime of its own.
//!
//! # Guarantees
//! At-least-once (see the [module](super) docs). A shard is read from the
//! checkpoint in its lease (`AFTER_SEQUENCE_NUMBER`), else from
//! `startFrom`; a child shard only once its parents reached `SHARD_END`
//! ([`super::shards::readable`]), so per partition key the order survives
//! a reshard.
//!
//! # Caveats
//! Enhanced fan-out (`SubscribeToShard`) is not used: moto, the emulator
//! this connector is tested against, does not serve it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{Shard, ShardIteratorType};
use prometheus::{IntGauge, IntGaugeVec, Opts};
use tributary_crds::{KinesisSource, KinesisStart};

use super::balance::{Candidate, to_take};
use super::exactly_once::PgCheckpointer;
use super::lease::{Lease, LeaseTable, Outcome};
use super::ledger::{Checkpointer, Ledger};
use super::shards::{ShardInfo, index, readable};
use super::{KinesisError, runtime, sdk_config, worker_id};
use crate::flow::{Batch, Message, Queue};
use crate::record::Position;
use crate::runtime::Metrics;
use crate::source::{Decoder, Running};

/// Records asked for per `GetRecords` call.
const LIMIT: i32 = 1000;
/// How long a shard that returned nothing rests (Kinesis allows five
/// `GetRecords` per shard and second).
const IDLE: Duration = Duration::from_millis(200);
/// How long a throttled or failing shard rests.
const BACKOFF: Duration = Duration::from_secs(1);

/// What the source needs besides its spec.
pub struct Context {
    /// Decodes payloads and stamps event time.
    pub decoder: Decoder,
    /// Where batches go.
    pub queue: Arc<Queue>,
    /// The queue's capacity: reading pauses while it is full, so a slow
    /// engine never keeps the lease cycle from running.
    pub capacity: usize,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// The lease table's name.
    pub table: String,
    /// The engine's metrics (the lag gauge is registered there).
    pub metrics: Arc<Metrics>,
    /// The pipeline's name (metrics label).
    pub pipeline: String,
    /// `exactlyOnce` into Postgres: positions come from and go to the
    /// database (see [`super::exactly_once`]).
    pub exactly_once: Option<ExactlyOnce>,
}

/// Where `exactlyOnce` positions live.
pub struct ExactlyOnce {
    /// The writer every Postgres sink of the run shares.
    pub writer: crate::sink::postgres::SharedWriter,
    /// Its connection string (the source reads positions on its own).
    pub url: String,
    /// The pipeline's name in the positions table.
    pub pipeline: String,
}

/// Reads shard positions on the source thread's runtime (the writer's
/// connection belongs to the engine thread).
struct PositionReader {
    url: String,
    pipeline: String,
    client: Option<tokio_postgres::Client>,
}

impl PositionReader {
    async fn load(&mut self, stream: &str, shard: &str) -> Result<Option<String>, String> {
        if self
            .client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .map_err(|e| crate::sink::postgres::describe(&e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "postgres connection closed");
                }
            });
            self.client = Some(client);
        }
        let Some(c) = &self.client else {
            return Err("no connection".into());
        };
        crate::sink::postgres::shards::load(c, &self.pipeline, stream, shard)
            .await
            .map_err(|e| crate::sink::postgres::describe(&e))
    }
}

/// The lease table name for a pipeline: `leaseTable`, else
/// `tributary-<namespace>-<name>` (`default` and the stream name when the
/// run has no resource metadata), with characters DynamoDB refuses
/// replaced by `-`.
#[must_use]
pub fn table_name(spec: &KinesisSource, name: Option<&str>, namespace: Option<&str>) -> String {
    if let Some(t) = spec.lease_table.as_deref().filter(|t| !t.trim().is_empty()) {
        return t.to_owned();
    }
    let raw = format!(
        "tributary-{}-{}",
        namespace.unwrap_or("default"),
        name.unwrap_or(&spec.stream)
    );
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(255)
        .collect()
}

/// Starts the source: creates the lease table if needed, then reads on
/// its own thread. The returned [`Running`] carries the checkpointing
/// [`Acker`](crate::source::Acker).
///
/// # Errors
/// When the runtime cannot start or the lease table cannot be created.
pub fn start(spec: &KinesisSource, ctx: Context) -> Result<Running, KinesisError> {
    let rt = runtime("checkpointer")?;
    let config = rt.block_on(sdk_config(&spec.region, spec.endpoint.as_deref()));
    let table = LeaseTable::new(aws_sdk_dynamodb::Client::new(&config), ctx.table.clone());
    rt.block_on(table.ensure())?;
    let me = worker_id(spec.consumer_id.as_deref());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let start_at = match (spec.start_from, &spec.at_timestamp) {
        (KinesisStart::AtTimestamp, Some(t)) => Some(
            humantime::parse_rfc3339_weak(t.trim()).map_err(|e| KinesisError::Config {
                field: "atTimestamp",
                message: e.to_string(),
            })?,
        ),
        (KinesisStart::AtTimestamp, None) => {
            return Err(KinesisError::Config {
                field: "atTimestamp",
                message: "required when startFrom is AT_TIMESTAMP".into(),
            });
        }
        _ => None,
    };
    let metrics = SourceMetrics::register(&ctx.metrics, &ctx.pipeline);
    let positions = ctx.exactly_once.as_ref().map(|e| PositionReader {
        url: e.url.clone(),
        pipeline: e.pipeline.clone(),
        client: None,
    });
    let checkpointer = Checkpointer::new(ledger.clone(), table.clone(), me.clone(), rt);
    let acker: Box<dyn crate::source::Acker> = match &ctx.exactly_once {
        Some(e) => Box::new(
            PgCheckpointer::new(
                ledger.clone(),
                e.writer.clone(),
                e.pipeline.clone(),
                spec.stream.clone(),
                checkpointer,
            )
            .map_err(|message| KinesisError::Config {
                field: "(exactlyOnce positions table)",
                message,
            })?,
        ),
        None => Box::new(checkpointer),
    };
    tracing::info!(worker = %me, table = %ctx.table, stream = %spec.stream, "kinesis source starting");
    let worker = Worker {
        kinesis: Client::new(&config),
        table: table.clone(),
        me: me.clone(),
        stream: spec.stream.as_str().into(),
        start_from: spec.start_from,
        start_at,
        lease_duration: spec.lease_duration.0,
        ledger: ledger.clone(),
        held: BTreeMap::new(),
        seen: HashMap::new(),
        live_shards: HashSet::new(),
        metrics,
        positions,
        ctx,
    };
    let handle = std::thread::Builder::new()
        .name("source-kinesis".into())
        .spawn(move || match runtime("source runtime") {
            Ok(rt) => rt.block_on(worker.run()),
            Err(e) => worker.ctx.queue.push(Message::Failed(e.to_string())),
        })
        .map_err(|source| KinesisError::Start {
            what: "source thread",
            source,
        })?;
    Ok(Running {
        handle,
        partitions: Vec::new(),
        bounded: false,
        acker: Some(acker),
    })
}

/// `tributary_kinesis_millis_behind_latest` and `tributary_kinesis_leases`.
struct SourceMetrics {
    lag: IntGaugeVec,
    leases: IntGauge,
}

impl SourceMetrics {
    fn register(metrics: &Metrics, pipeline: &str) -> Self {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("pipeline", pipeline);
        let lag = IntGaugeVec::new(
            opts(
                "tributary_kinesis_millis_behind_latest",
                "MillisBehindLatest of the last GetRecords of each shard this replica reads.",
            ),
            &["stream", "shard"],
        );
        let leases = IntGauge::with_opts(opts(
            "tributary_kinesis_leases",
            "Shard leases this replica holds.",
        ));
        match (lag, leases) {
            (Ok(lag), Ok(leases)) => {
                let _ = metrics.registry.register(Box::new(lag.clone()));
                let _ = metrics.registry.register(Box::new(leases.clone()));
                Self { lag, leases }
            }
            _ => unreachable!("constant metric options are valid"),
        }
    }
}

/// A shard this worker holds.
struct Held {
    counter: i64,
    index: i32,
    /// The last sequence number read (where a new iterator starts).
    last: Option<String>,
    iterator: Option<String>,
    /// Read to its end (waiting for `SHARD_END` to be checkpointed).
    ended: bool,
    rest_until: Instant,
    /// `exactlyOnce`: `last` is the position stored in the database.
    positioned: bool,
}

/// A lease's counter and owner as last seen, and since when.
struct Seen {
    counter: i64,
    owner: Option<String>,
    since: Instant,
}

struct Worker {
    kinesis: Client,
    table: LeaseTable,
    me: String,
    stream: Arc<str>,
    start_from: KinesisStart,
    start_at: Option<std::time::SystemTime>,
    lease_duration: Duration,
    ledger: Arc<Mutex<Ledger>>,
    held: BTreeMap<String, Held>,
    seen: HashMap<String, Seen>,
    live_shards: HashSet<String>,
    metrics: SourceMetrics,
    positions: Option<PositionReader>,
    ctx: Context,
}

impl Worker {
    async fn run(mut self) {
        if let Err(e) = self.discover().await {
            self.ctx.queue.push(Message::Failed(format!(
                "spec.source.kinesis: cannot list the shards of stream {}: {e}",
                self.stream
            )));
            return;
        }
        let cycle_every = self.lease_duration / 3;
        let (mut next_list, mut next_cycle) =
            (Instant::now() + self.lease_duration, Instant::now());
        while !self.ctx.stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_list {
                next_list = Instant::now() + self.lease_duration;
                if let Err(e) = self.discover().await {
                    tracing::warn!(error = %e, "listing shards failed; retrying");
                }
            }
            if Instant::now() >= next_cycle {
                next_cycle = Instant::now() + cycle_every;
                if let Err(e) = self.cycle().await {
                    tracing::warn!(error = %e, "lease cycle failed; retrying");
                }
            }
            let read = if self.ctx.queue.len() < self.ctx.capacity {
                self.read_round().await
            } else {
                0
            };
            if read == 0 {
                let until_cycle = next_cycle.saturating_duration_since(Instant::now());
                tokio::time::sleep(IDLE.min(until_cycle).max(Duration::from_millis(10))).await;
            }
        }
        let keep: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| !h.ended)
            .map(|(k, _)| k.clone())
            .collect();
        if let Ok(mut l) = self.ledger.lock() {
            l.set_release(keep);
        }
    }

    /// Lists the stream's shards and adds a lease for each new one.
    async fn discover(&mut self) -> Result<(), KinesisError> {
        let mut shards: Vec<Shard> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = match token.take() {
                Some(t) => self.kinesis.list_shards().next_token(t),
                None => self.kinesis.list_shards().stream_name(&*self.stream),
            };
            let page = req
                .send()
                .await
                .map_err(|e| KinesisError::api("ListShards", &e))?;
            shards.extend(page.shards().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        let known: HashSet<String> = self.seen.keys().cloned().collect();
        for shard in &shards {
            if !known.contains(shard.shard_id()) {
                let info = ShardInfo {
                    id: shard.shard_id().to_owned(),
                    parents: shard
                        .parent_shard_id()
                        .into_iter()
                        .chain(shard.adjacent_parent_shard_id())
                        .map(str::to_owned)
                        .collect(),
                };
                self.table.create(&info).await?;
            }
        }
        self.live_shards = shards.iter().map(|s| s.shard_id().to_owned()).collect();
        Ok(())
    }

    /// One lease cycle: check and renew what this worker holds, then take
    /// free or expired leases up to the fair share, or steal one.
    async fn cycle(&mut self) -> Result<(), KinesisError> {
        let leases = self.table.scan().await?;
        let now = Instant::now();
        for l in &leases {
            let fresh = Seen {
                counter: l.counter,
                owner: l.owner.clone(),
                since: now,
            };
            let s = self.seen.entry(l.shard.id.clone()).or_insert(fresh);
            if s.counter != l.counter || s.owner != l.owner {
                *s = Seen {
                    counter: l.counter,
                    owner: l.owner.clone(),
                    since: now,
                };
            }
        }
        let by_key: HashMap<&str, &Lease> =
            leases.iter().map(|l| (l.shard.id.as_str(), l)).collect();
        let mine: Vec<String> = self.held.keys().cloned().collect();
        for key in mine {
            let lease = by_key.get(key.as_str());
            if lease.is_some_and(|l| l.finished()) {
                self.drop_lease(&key, false);
                continue;
            }
            let Some(counter) = self.held.get(&key).map(|h| h.counter) else {
                continue;
            };
            if lease.is_none_or(|l| l.owner.as_deref() != Some(self.me.as_str())) {
                self.drop_lease(&key, true);
                continue;
            }
            match self.table.renew(&key, &self.me, counter).await? {
                Outcome::Done(c) => {
                    if let Some(h) = self.held.get_mut(&key) {
                        h.counter = c;
                    }
                    if let Some(s) = self.seen.get_mut(&key) {
                        s.counter = c;
                        s.since = now;
                    }
                }
                Outcome::Lost => self.drop_lease(&key, true),
            }
        }
        let finished: HashSet<&str> = leases
            .iter()
            .filter(|l| l.finished())
            .map(|l| l.shard.id.as_str())
            .collect();
        let known: HashSet<&str> = leases
            .iter()
            .map(|l| l.shard.id.as_str())
            .chain(self.live_shards.iter().map(String::as_str))
            .collect();
        let candidates: Vec<Candidate<'_>> = leases
            .iter()
            .filter(|l| !l.finished() && readable(&l.shard, &finished, &known))
            .map(|l| {
                let key = l.shard.id.as_str();
                // A lease under this worker's name that it does not hold
                // is a previous incarnation's (same pod name): free.
                let owner = l
                    .owner
                    .as_deref()
                    .filter(|o| *o != self.me || self.held.contains_key(key));
                let expired = owner.is_some_and(|o| o != self.me)
                    && self
                        .seen
                        .get(key)
                        .is_some_and(|s| now.duration_since(s.since) > self.lease_duration);
                Candidate {
                    key,
                    owner,
                    expired,
                }
            })
            .collect();
        for key in to_take(&candidates, &self.me) {
            let Some(seen) = by_key.get(key) else {
                continue;
            };
            match self.table.take(key, &self.me, seen.counter).await? {
                Outcome::Done(lease) => {
                    tracing::info!(shard = key, from = ?seen.owner, checkpoint = ?lease.checkpoint, "took lease");
                    if let Some(s) = self.seen.get_mut(key) {
                        *s = Seen {
                            counter: lease.counter,
                            owner: lease.owner.clone(),
                            since: now,
                        };
                    }
                    self.held.insert(
                        key.to_owned(),
                        Held {
                            counter: lease.counter,
                            index: index(key),
                            last: lease.checkpoint.clone(),
                            iterator: None,
                            ended: false,
                            rest_until: now,
                            positioned: self.positions.is_none(),
                        },
                    );
                }
                Outcome::Lost => {
                    tracing::debug!(shard = key, "lease moved before it could be taken")
                }
            }
        }
        self.metrics
            .leases
            .set(i64::try_from(self.held.len()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Stops reading a shard: finished, or `lost` to another worker (what
    /// was read from it then must not checkpoint it).
    fn drop_lease(&mut self, key: &str, lost: bool) {
        self.held.remove(key);
        if lost {
            tracing::info!(shard = key, "lease lost to another worker");
            if let Ok(mut l) = self.ledger.lock() {
                l.void(key);
            }
        }
        let _ = self.metrics.lag.remove_label_values(&[&*self.stream, key]);
    }

    /// A fresh iterator for a held shard: after the last record read (or
    /// the checkpoint), else where `startFrom` says.
    async fn iterator(
        &self,
        key: &str,
        last: Option<&str>,
    ) -> Result<Option<String>, KinesisError> {
        let req = self
            .kinesis
            .get_shard_iterator()
            .stream_name(&*self.stream)
            .shard_id(key);
        let req = match (last, self.start_from) {
            (Some(seq), _) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            (None, KinesisStart::TrimHorizon) => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            (None, KinesisStart::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
            (None, KinesisStart::AtTimestamp) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .set_timestamp(
                    self.start_at
                        .map(aws_sdk_kinesis::primitives::DateTime::from),
                ),
        };
        let out = req
            .send()
            .await
            .map_err(|e| KinesisError::api("GetShardIterator", &e))?;
        Ok(out.shard_iterator().map(str::to_owned))
    }

    /// One `GetRecords` per held shard that is due; returns the records read.
    async fn read_round(&mut self) -> usize {
        if self.positions.is_some() {
            let reopen = match self.ledger.lock() {
                Ok(mut l) => l.take_reopen(),
                Err(_) => Vec::new(),
            };
            for key in reopen {
                if let Some(h) = self.held.get_mut(&key) {
                    h.positioned = false;
                    h.iterator = None;
                    h.ended = false;
                }
            }
        }
        let keys: Vec<String> = self.held.keys().cloned().collect();
        let mut total = 0;
        for key in keys {
            if self.ctx.stop.load(Ordering::Relaxed) {
                break;
            }
            match self.read_shard(&key).await {
                Ok(n) => total += n,
                Err(e) => {
                    tracing::warn!(shard = %key, error = %e, "reading the shard failed; retrying");
                    if let Some(h) = self.held.get_mut(&key) {
                        h.rest_until = Instant::now() + BACKOFF;
                        h.iterator = None;
                    }
                }
            }
        }
        total
    }

    async fn read_shard(&mut self, key: &str) -> Result<usize, KinesisError> {
        let Some(h) = self.held.get(key) else {
            return Ok(0);
        };
        if h.ended || Instant::now() < h.rest_until {
            return Ok(0);
        }
        if !h.positioned {
            return self.position(key).await;
        }
        let iterator = match h.iterator.clone() {
            Some(it) => it,
            None => {
                let last = h.last.clone();
                match self.iterator(key, last.as_deref()).await? {
                    Some(it) => it,
                    None => {
                        self.end_shard(key);
                        return Ok(0);
                    }
                }
            }
        };
        let out = match self
            .kinesis
            .get_records()
            .shard_iterator(iterator)
            .limit(LIMIT)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let svc = e.as_service_error();
                if svc.is_some_and(|s| s.is_expired_iterator_exception()) {
                    if let Some(h) = self.held.get_mut(key) {
                        h.iterator = None;
                    }
                    return Ok(0);
                }
                if svc.is_some_and(|s| s.is_provisioned_throughput_exceeded_exception()) {
                    if let Some(h) = self.held.get_mut(key) {
                        h.rest_until = Instant::now() + BACKOFF;
                    }
                    return Ok(0);
                }
                return Err(KinesisError::api("GetRecords", &e));
            }
        };
        if let Some(ms) = out.millis_behind_latest() {
            self.metrics
                .lag
                .with_label_values(&[&*self.stream, key])
                .set(ms);
        }
        let n = out.records().len();
        if n > 0 {
            self.hand_over(key, out.records());
        }
        let Some(h) = self.held.get_mut(key) else {
            return Ok(n);
        };
        h.iterator = out.next_shard_iterator().map(str::to_owned);
        if n == 0 {
            h.rest_until = Instant::now() + IDLE;
        }
        if h.iterator.is_none() {
            self.end_shard(key);
        }
        Ok(n)
    }

    /// `exactlyOnce`: reads where the shard's output ends in the database
    /// (`SHARD_END`: nothing left to read).
    async fn position(&mut self, key: &str) -> Result<usize, KinesisError> {
        let Some(reader) = self.positions.as_mut() else {
            return Ok(0);
        };
        let stored = match reader.load(&self.stream, key).await {
            Ok(s) => s,
            Err(message) => {
                if let Some(h) = self.held.get_mut(key) {
                    h.rest_until = Instant::now() + BACKOFF;
                }
                return Err(KinesisError::Api {
                    call: "reading the shard position from postgres",
                    message,
                });
            }
        };
        tracing::info!(shard = key, position = ?stored, "reading from the position stored in postgres");
        if let Ok(mut l) = self.ledger.lock() {
            l.set_stored(key, stored.clone());
        }
        let Some(h) = self.held.get_mut(key) else {
            return Ok(0);
        };
        h.positioned = true;
        h.iterator = None;
        if stored.as_deref() == Some(super::lease::SHARD_END) {
            self.end_shard(key);
        } else {
            h.last = stored;
        }
        Ok(0)
    }

    /// The shard is closed and read to its end: `SHARD_END` is checkpointed
    /// once everything read before is durable, and its children unblock.
    fn end_shard(&mut self, key: &str) {
        tracing::info!(shard = key, "shard read to its end");
        if let Some(h) = self.held.get_mut(key) {
            h.ended = true;
        }
        if let Ok(mut l) = self.ledger.lock() {
            l.end(&Arc::from(key));
        }
    }

    /// Decodes records of one shard into a batch and queues it.
    fn hand_over(&mut self, key: &str, records: &[aws_sdk_kinesis::types::Record]) {
        let Some(h) = self.held.get_mut(key) else {
            return;
        };
        let shard: Arc<str> = key.into();
        let seqs: Vec<String> = records
            .iter()
            .map(|r| r.sequence_number().to_owned())
            .collect();
        h.last = seqs.last().cloned();
        let first = match self.ledger.lock().map(|mut l| l.stamp(&shard, seqs)) {
            Ok(Some(first)) => first,
            // Read from a position another replica's commit overtook: the
            // shard is read again from the stored one.
            Ok(None) | Err(_) => return,
        };
        let mut batch = Batch {
            partition: h.index,
            records: Vec::with_capacity(records.len()),
            dead: Vec::new(),
            created: Some(Instant::now()),
        };
        for (i, r) in records.iter().enumerate() {
            let position = Position {
                source: self.stream.clone(),
                partition: h.index,
                offset: first + i64::try_from(i).unwrap_or(i64::MAX),
            };
            let arrival = r
                .approximate_arrival_timestamp()
                .and_then(|t| t.to_millis().ok())
                .unwrap_or_else(crate::source::now_ms);
            let partition_key = r.partition_key().unwrap_or_default();
            let headers = vec![
                ("kinesis.shardId".to_owned(), key.to_owned()),
                (
                    "kinesis.sequenceNumber".to_owned(),
                    r.sequence_number().to_owned(),
                ),
                ("kinesis.partitionKey".to_owned(), partition_key.to_owned()),
            ];
            match self
                .ctx
                .decoder
                .decode_at(r.data().as_ref(), position, arrival)
            {
                Ok(mut rec) => {
                    rec.key = Some(partition_key.into());
                    rec.headers = headers;
                    batch.records.push(rec);
                }
                Err(mut dl) => {
                    dl.record.headers = headers;
                    batch.dead.push(*dl);
                }
            }
        }
        self.ctx.queue.push(Message::Batch(batch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_table_is_named_after_the_pipeline() {
        let spec = KinesisSource {
            stream: "clicks".into(),
            ..KinesisSource::default()
        };
        assert_eq!(table_name(&spec, Some("p"), Some("ns")), "tributary-ns-p");
        assert_eq!(table_name(&spec, None, None), "tributary-default-clicks");
        let spec = KinesisSource {
            lease_table: Some("mine".into()),
            ..spec
        };
        assert_eq!(table_name(&spec, Some("p"), Some("ns")), "mine");
    }
}
