//! The engine: one thread that pulls batches from the source queue, runs
//! them through the steps, advances watermarks and writes the sinks.
//!
//! # Guarantees
//! Local runs are at-least-once: sinks are flushed every
//! `checkpoint.interval` and at the end. A bounded source ends the run:
//! the final watermark is +∞, every open window fires, sinks are flushed.

mod align;
pub mod chain;
mod metrics;
mod progress;
mod serve;
mod sides;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use metrics::{LatencyHistogram, Metrics};
pub use progress::Progress;
pub use serve::serve;
pub use sides::side_spec;

use tributary_crds::{LateEvents, StreamPipelineSpec};

use crate::flow::{Message, Queue};
use crate::sink::postgres::SharedWriter;
use crate::sink::{self, SinkError};
use crate::source::{self, SourceError};
use crate::step::{self, StepError};
use crate::time::Watermarks;
use chain::{Outputs, advance, finish, push, push_other, tick};
use sides::Sides;

/// A duration in milliseconds from the environment variable `var`, else
/// `default`: the knobs tests turn to see in seconds what takes minutes.
#[must_use]
pub(crate) fn env_millis(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(default, Duration::from_millis)
}

/// Why a run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The spec is invalid.
    #[error("invalid pipeline:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<tributary_crds::FieldError>),
    /// A source failed to start or while reading.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The source reported a failure.
    #[error("source failed: {0}")]
    SourceFailed(String),
    /// A step stopped the pipeline.
    #[error(transparent)]
    Step(#[from] StepError),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A connector (Kafka) failed to start or cannot go on.
    #[error(transparent)]
    Connector(Box<dyn std::error::Error + Send + Sync>),
}

/// Where `exactlyOnce` positions of a Kinesis source live.
#[cfg(feature = "kinesis")]
type Eos = crate::connector::kinesis::source::ExactlyOnce;
/// Nothing without the Kinesis connector.
#[cfg(not(feature = "kinesis"))]
type Eos = std::convert::Infallible;

/// Opens one sink spec, given the name to use when it has none.
pub(crate) type OpenSink<'a> =
    dyn FnMut(&tributary_crds::SinkSpec, &str) -> Result<Box<dyn sink::Sink>, SinkError> + 'a;

/// How often the engine wakes without input: timers, triggers, idleness.
const TICK: Duration = Duration::from_millis(100);

/// A pipeline ready to run.
pub struct Pipeline {
    pub(crate) spec: StreamPipelineSpec,
    pub(crate) base: std::path::PathBuf,
    /// `metadata.name` of a whole resource (metrics label, default group).
    pub(crate) name: Option<String>,
    /// `metadata.namespace` of a whole resource.
    pub(crate) namespace: Option<String>,
    /// Counters (shared with the progress reporter).
    pub metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
}

/// What the run did, for the summary line.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Records read.
    pub records_in: u64,
    /// Records written.
    pub records_out: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Pipeline {
    /// Validates `spec` and prepares a run; relative paths resolve against `base`.
    ///
    /// # Errors
    /// [`RunError::Invalid`] with every problem in the spec.
    pub fn new(spec: StreamPipelineSpec, base: &Path) -> Result<Self, RunError> {
        tributary_crds::validate(&spec).map_err(RunError::Invalid)?;
        Ok(Self {
            spec,
            base: base.to_owned(),
            name: None,
            namespace: None,
            metrics: Arc::new(Metrics::default()),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Sets the resource's `metadata.name` and `metadata.namespace` (the
    /// default Kafka consumer group is `<namespace>.<name>`).
    #[must_use]
    pub fn with_identity(mut self, name: Option<String>, namespace: Option<String>) -> Self {
        self.name = name;
        self.namespace = namespace;
        self
    }

    /// A flag that stops the run (Ctrl-C, SIGTERM): sources stop, the
    /// engine drains what is queued, flushes and returns.
    #[must_use]
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Opens the sinks; Postgres sinks on `pg` when given (`exactlyOnce`:
    /// the source's acknowledgement commits them).
    fn open_outputs(&self, pg: Option<&SharedWriter>) -> Result<Outputs, SinkError> {
        #[cfg(feature = "kafka")]
        {
            let max = crate::connector::kafka::max_bytes();
            let mut kafka = crate::connector::kafka::SinkOpener::new(
                &self.spec,
                &self.base,
                None,
                pg.cloned(),
                max,
            );
            self.open_outputs_with(&mut |s, name| kafka.open(s, name))
        }
        #[cfg(not(feature = "kafka"))]
        self.open_outputs_with(&mut |s, name| match (&s.postgres, pg) {
            (Some(p), Some(w)) => {
                let name = if s.name.is_empty() { name } else { &s.name };
                let sink = sink::postgres::PostgresSink::open(name.to_owned(), p, w.clone(), true)?;
                Ok(Box::new(sink) as Box<dyn sink::Sink>)
            }
            _ => sink::open(s, name, &self.base),
        })
    }

    /// `exactlyOnce` from Kinesis into Postgres: the writer the sinks share
    /// and where the source keeps its positions.
    #[cfg(feature = "kinesis")]
    fn kinesis_exactly_once(
        &self,
    ) -> Result<Option<crate::connector::kinesis::source::ExactlyOnce>, RunError> {
        let Some(k) = &self.spec.source.kinesis else {
            return Ok(None);
        };
        let table = crate::connector::kinesis::source::table_name(
            k,
            self.name.as_deref(),
            self.namespace.as_deref(),
        );
        crate::connector::kinesis::exactly_once::open(&self.spec, table)
            .map_err(RunError::SourceFailed)
    }

    /// Opens the sinks with `open` (connectors open their own kinds).
    pub(crate) fn open_outputs_with(&self, open: &mut OpenSink<'_>) -> Result<Outputs, SinkError> {
        let side_targets: Vec<String> = self
            .spec
            .steps
            .iter()
            .filter_map(|s| s.window.as_ref()?.late_events())
            .filter_map(|l| {
                if let LateEvents::SideOutput(n) = l {
                    Some(n)
                } else {
                    None
                }
            })
            .collect();
        let mut main = Vec::new();
        let mut named = HashMap::new();
        for (i, s) in self.spec.sinks.iter().enumerate() {
            let sink = open(s, &format!("sink-{i}"))?;
            if side_targets.contains(&s.name) {
                named.insert(Arc::from(s.name.as_str()), sink);
            } else {
                main.push(sink);
            }
        }
        let dead = self
            .spec
            .dead_letter
            .as_ref()
            .map(|d| open(d, "deadLetter"))
            .transpose()?;
        Ok(Outputs::new(main, named, dead))
    }

    /// Runs until a bounded source ends or the stop flag is set.
    ///
    /// # Errors
    /// [`RunError`] when a source, step or sink fails.
    pub fn run(self) -> Result<Summary, RunError> {
        if self.spec.source.kafka.is_some() {
            #[cfg(feature = "kafka")]
            return crate::connector::kafka::run(&self);
            #[cfg(not(feature = "kafka"))]
            return Err(SourceError::Unsupported("kafka (built without the kafka feature)").into());
        }
        let started = Instant::now();
        let bp = &self.spec.backpressure;
        let queue = Arc::new(Queue::new(
            bp.max_in_flight as usize,
            bp.on_overflow,
            bp.sample_rate.unwrap_or(1.0),
        ));
        let mut steps = step::build_at(&self.spec, &self.base)?;
        self.metrics
            .init_steps(steps.iter().map(|s| s.name().to_owned()));
        #[cfg(feature = "kinesis")]
        let eos = self.kinesis_exactly_once()?;
        #[cfg(not(feature = "kinesis"))]
        let eos: Option<Eos> = None;
        let mut outputs = self.open_outputs(eos.as_ref().map(|e| &e.writer))?;
        let wm_spec = &self.spec.source.watermark;
        let event_time = self.spec.source.event_time.is_some();
        let mut watermarks = Watermarks::new(
            wm_spec.max_out_of_orderness.as_millis_i64(),
            wm_spec.idle_timeout.map(|d| d.as_millis_i64()),
        );
        let gate = self.gate();
        let mut running = match &gate {
            Some(gate) => self.start_aligned_source(&queue, gate)?,
            None => self.start_source(&queue, eos)?,
        };
        let mut sides = Sides::start(&self, &queue, gate.as_ref())?;
        // Both inputs of a join hold the watermark back, those that find
        // their partitions as they go through a stand-in.
        let mut waiting = sides::Waiting::new(&running, &sides);
        let partitions: Vec<i32> = running
            .partitions
            .iter()
            .copied()
            .chain(sides.partitions())
            .chain(waiting.ids())
            .collect();
        let now = source::now_ms();
        for p in &partitions {
            watermarks.register(*p, now);
        }
        self.metrics.ready.store(true, Ordering::Relaxed);
        let flush_every = self
            .spec
            .checkpoint
            .interval
            .0
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(10));
        let mut last_flush = Instant::now();
        let mut last_tick = Instant::now();
        let mut last_wm = i64::MIN;
        // One past the largest input offset pushed through the steps (for
        // the source's acknowledgements).
        let mut next_offset = i64::MIN;
        let m = self.metrics.clone();
        let result = loop {
            let msg = queue.pop(TICK);
            let stopping = self.stop.load(Ordering::Relaxed);
            match msg {
                Some(Message::Batch(batch)) => {
                    Metrics::add(
                        &m.records_in,
                        (batch.records.len() + batch.dead.len()) as u64,
                    );
                    let now = source::now_ms();
                    if let Some(max) = batch.records.iter().map(|r| r.event_time).max() {
                        watermarks.observe(batch.partition, max, now);
                        if let Some(stand_in) = waiting.arrived(batch.partition) {
                            watermarks.end(stand_in);
                        }
                    }
                    let join = sides.step_of(batch.partition);
                    // Dead letters count as consumed: they are durable once
                    // the dead-letter sink flushes. A join's second input
                    // numbers its records on its own.
                    let offsets = batch
                        .records
                        .iter()
                        .chain(batch.dead.iter().map(|d| &d.record))
                        .map(|r| r.position.offset);
                    match (join, offsets.max()) {
                        (None, Some(last)) => next_offset = next_offset.max(last + 1),
                        (Some(at), Some(last)) => sides.pushed(at, last),
                        (_, None) => {}
                    }
                    for d in batch.dead {
                        outputs.dead_letter(d, &m)?;
                    }
                    let pushed = match join {
                        Some(at) => push_other(&mut steps, at, batch.records, &mut outputs, &m),
                        None => push(&mut steps, 0, batch.records, &mut outputs, &m),
                    };
                    if let Err(e) = pushed {
                        break Err(e);
                    }
                    if let Some(created) = batch.created {
                        m.latency.record(created.elapsed());
                    }
                }
                Some(Message::End { partition }) => watermarks.end(partition),
                Some(Message::Failed(e)) => break Err(RunError::SourceFailed(e)),
                None if stopping && queue.is_empty() => break Ok(()),
                None => {}
            }
            if last_tick.elapsed() >= TICK || watermarks.all_ended() {
                last_tick = Instant::now();
                let now = source::now_ms();
                if !event_time {
                    // Processing time: every partition's clock is now
                    // (those a source discovered later too).
                    watermarks.observe_all(now);
                }
                let wm = watermarks.current(now);
                if wm > last_wm {
                    last_wm = wm;
                    m.watermark.store(wm, Ordering::Relaxed);
                    advance(&mut steps, wm, &mut outputs, &m)?;
                }
                tick(&mut steps, now, &mut outputs, &m)?;
                m.backpressure_dropped.store(
                    queue.stats.dropped.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                m.state_size.store(
                    steps.iter().map(|s| s.state_size() as u64).sum(),
                    Ordering::Relaxed,
                );
            }
            if last_flush.elapsed() >= flush_every {
                last_flush = Instant::now();
                outputs.flush(&m)?;
                sides.acknowledge(running.acker.as_mut(), &mut steps, next_offset);
            }
            if watermarks.all_ended() && queue.is_empty() && !sides.endless() {
                break Ok(());
            }
        };
        self.stop.store(true, Ordering::Relaxed);
        result?;
        if watermarks.all_ended() && !sides.endless() {
            advance(&mut steps, i64::MAX, &mut outputs, &m)?;
            finish(&mut steps, &mut outputs, &m)?;
        }
        outputs.flush(&m)?;
        sides.acknowledge(running.acker.as_mut(), &mut steps, next_offset);
        let _ = running.handle.join();
        sides.join();
        Ok(Summary {
            records_in: Metrics::get(&m.records_in),
            records_out: Metrics::get(&m.records_out),
            dead_letters: Metrics::get(&m.dead_letters),
            elapsed: started.elapsed(),
        })
    }
}

impl Pipeline {
    /// The alignment gate of a pipeline whose joins run in event time: the
    /// main source is input 0, the `n`-th join's `with` source input `n + 1`.
    fn gate(&self) -> Option<Arc<align::Gate>> {
        let bound = align::bound_of(&self.spec)?;
        let joins = self.spec.steps.iter().filter(|s| s.join.is_some()).count();
        let idle = self
            .spec
            .source
            .watermark
            .idle_timeout
            .map_or(align::DEFAULT_IDLE, |d| d.0.min(align::DEFAULT_IDLE));
        let idle = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        Some(Arc::new(align::Gate::new(joins + 1, bound, idle)))
    }

    /// Starts the main source into a queue of its own and a forwarder that
    /// moves its batches into `queue` through the alignment `gate`; the
    /// returned handle is the forwarder's (it joins the source's).
    fn start_aligned_source(
        &self,
        queue: &Arc<Queue>,
        gate: &Arc<align::Gate>,
    ) -> Result<source::Running, RunError> {
        let inner = Arc::new(Queue::new(
            4 * source::BATCH,
            tributary_crds::Overflow::Block,
            1.0,
        ));
        let running = self.start_source(&inner, None)?;
        let input = sides::Input {
            inner,
            outer: queue.clone(),
            offset: 0,
            open: sides::open_partitions(&running),
            gate: Some((gate.clone(), 0)),
        };
        let handle = input
            .spawn("source-aligned".into(), &self.stop, running.handle)
            .map_err(|source| SourceError::Open {
                path: "source forwarder thread".into(),
                source,
            })?;
        Ok(source::Running { handle, ..running })
    }

    /// Starts the source thread; broker connectors that need the pipeline's
    /// identity and metrics start their own.
    fn start_source(
        &self,
        queue: &Arc<Queue>,
        eos: Option<Eos>,
    ) -> Result<source::Running, RunError> {
        #[cfg(feature = "kinesis")]
        if let Some(k) = &self.spec.source.kinesis {
            use crate::connector::kinesis;
            let ctx = kinesis::source::Context {
                decoder: source::Decoder::new(&self.spec.source)?,
                queue: queue.clone(),
                capacity: self.spec.backpressure.max_in_flight as usize,
                stop: self.stop.clone(),
                table: kinesis::source::table_name(
                    k,
                    self.name.as_deref(),
                    self.namespace.as_deref(),
                ),
                metrics: self.metrics.clone(),
                pipeline: self.name.clone().unwrap_or_else(|| "local".to_owned()),
                exactly_once: eos,
            };
            return kinesis::start(k, ctx).map_err(|e| RunError::Connector(Box::new(e)));
        }
        let _ = eos;
        let owner = source::Owner {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        };
        Ok(source::start(
            &self.spec.source,
            &self.base,
            &owner,
            queue.clone(),
            self.stop.clone(),
        )?)
    }
}
