//! The Redis Streams sink: one `XADD` per record, pipelined per flush.
//!
//! # Guarantees
//! At-least-once. Entries are buffered and written at each flush, in
//! pipelines of [`CHUNK`] commands; a pipeline that fails (Redis down,
//! connection lost) is retried with backoff, and the flush — and so the
//! engine, and through its queue the source — waits until Redis is back
//! (backpressure), for up to [`GIVE_UP`]. A pipeline that failed midway
//! is written again whole, so a failure may duplicate entries.

use std::time::{Duration, Instant};

use serde_json::Value;
use tributary_crds::RedisStreamsSink;

use super::conn::Conn;
use crate::connector::{backoff, runtime};
use crate::record::Record;
use crate::sink::{DeadLetter, Sink, SinkError};

/// Commands per pipeline.
pub const CHUNK: usize = 1000;
/// Entries buffered before `write` flushes on its own.
const MAX_BUFFERED: usize = 10_000;
/// How long a flush retries before the sink reports a failure.
pub const GIVE_UP: Duration = Duration::from_secs(300);

/// One entry to add: the payload and extra fields.
struct Pending {
    payload: Vec<u8>,
    fields: Vec<(&'static str, String)>,
}

/// Writes records to a Redis stream.
pub struct RedisSink {
    name: String,
    stream: String,
    max_len: Option<u64>,
    payload_field: String,
    rt: tokio::runtime::Runtime,
    conn: Conn,
    pending: Vec<Pending>,
}

impl RedisSink {
    /// A sink for `spec` named `name`; connects at the first flush.
    ///
    /// # Errors
    /// [`SinkError::Broker`] for a URL that does not parse.
    pub fn open(name: String, spec: &RedisStreamsSink) -> Result<Self, SinkError> {
        let broker = |message: String| SinkError::Broker {
            name: name.clone(),
            message,
        };
        let conn = Conn::new(&spec.url).map_err(|e| broker(format!("redisStreams.url: {e}")))?;
        let rt = runtime().map_err(|e| broker(format!("starting the client runtime: {e}")))?;
        Ok(Self {
            stream: spec.stream.clone(),
            max_len: spec.max_len,
            payload_field: spec.payload_field.clone(),
            rt,
            conn,
            pending: Vec::new(),
            name,
        })
    }

    fn add(&mut self, value: &Value, fields: Vec<(&'static str, String)>) -> Result<(), SinkError> {
        let payload = serde_json::to_vec(value).map_err(|e| SinkError::Broker {
            name: self.name.clone(),
            message: format!("encoding a record: {e}"),
        })?;
        self.pending.push(Pending { payload, fields });
        if self.pending.len() >= MAX_BUFFERED {
            self.flush()?;
        }
        Ok(())
    }

    fn pipeline(&self, chunk: &[Pending]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for p in chunk {
            let cmd = pipe.cmd("XADD").arg(&self.stream);
            if let Some(n) = self.max_len {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg("*").arg(&self.payload_field).arg(&p.payload);
            for (k, v) in &p.fields {
                cmd.arg(*k).arg(v);
            }
            cmd.ignore();
        }
        pipe
    }
}

impl Sink for RedisSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for r in records {
            self.add(&r.value, Vec::new())?;
        }
        Ok(())
    }

    fn write_values(&mut self, values: &[Value]) -> Result<(), SinkError> {
        for v in values {
            self.add(v, Vec::new())?;
        }
        Ok(())
    }

    fn write_dead(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        for d in letters {
            self.add(&d.to_json(), d.provenance().to_vec())?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let started = Instant::now();
        let mut failures = 0u32;
        while !self.pending.is_empty() {
            let n = self.pending.len().min(CHUNK);
            let pipe = self.pipeline(&self.pending[..n]);
            let conn = &mut self.conn;
            match self.rt.block_on(conn.pipe(&pipe)) {
                Ok(()) => {
                    self.pending.drain(..n);
                    failures = 0;
                }
                Err(e) if started.elapsed() < GIVE_UP => {
                    if failures == 0 {
                        tracing::warn!(sink = %self.name, stream = %self.stream, error = %e, "XADD failed; retrying until Redis is back");
                    }
                    let pause = backoff(failures);
                    self.rt.block_on(async { tokio::time::sleep(pause).await });
                    failures += 1;
                }
                Err(e) => {
                    return Err(SinkError::Broker {
                        name: self.name.clone(),
                        message: format!(
                            "XADD to {} failed for {}s: {e}",
                            self.stream,
                            GIVE_UP.as_secs()
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}
