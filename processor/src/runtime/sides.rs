//! The second inputs of `join` steps: each `with` source runs like the
//! main one, on its own thread, and its batches reach the engine through
//! the main queue under partition ids of their own, so the engine's
//! watermark is the minimum over both inputs and a batch can be routed to
//! its join step instead of the first step.
//!
//! When the joins run in event time, every input — the main source too —
//! goes through a forwarder that waits at the run's alignment [`Gate`]
//! (see `super::align`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tributary_crds::{JoinSource, SourceSpec};

use super::Pipeline;
use super::align::Gate;
use crate::flow::{Message, Queue};
use crate::source::{self, Acker, BATCH, SourceError};
use crate::step::Step;
use crate::step::join::Downstream;

/// Partition ids of the `with` source of step `i` start at
/// `SIDE_PARTITIONS * (i + 1)`, far above any broker's partition count, so
/// they never collide with the main source's.
const SIDE_PARTITIONS: i32 = 1 << 20;

/// The `with` sources of a pipeline's joins, once started.
#[derive(Default)]
pub struct Sides {
    /// The partition ids each source had when it started (the watermark
    /// waits for them).
    started: Vec<i32>,
    /// The indices of the join steps with a `with` source.
    joins: Vec<usize>,
    /// The `with` sources that acknowledge their records (brokers).
    acks: Vec<SideAcks>,
    /// The mark the main source was last told.
    main_asked: i64,
    /// A source that finds its partitions as it goes runs: the run ends
    /// only when stopped, whatever the partitions known so far say.
    endless: bool,
    /// The stand-in partitions of such sources (see [`Waiting`]).
    waiting: Vec<i32>,
    handles: Vec<JoinHandle<()>>,
}

/// What a broker `with` source has been told is durable.
struct SideAcks {
    /// The join step's index.
    step: usize,
    acker: Box<dyn Acker>,
    /// One past the largest offset of the source pushed into the join.
    next_offset: i64,
    /// The mark it was last told.
    asked: i64,
}

/// Inputs that find their partitions as they go (Kinesis shards): each
/// holds the watermark back with a stand-in partition until its first
/// batch arrives, or an input that ended early (a file) would let the
/// watermark run to the end and make all of it late.
#[derive(Debug, Default)]
pub struct Waiting(Vec<i32>);

impl Waiting {
    /// Stand-ins for the main source (when `main` finds its partitions as
    /// it goes) and for each such `with` source of `sides`.
    #[must_use]
    pub fn new(main: &source::Running, sides: &Sides) -> Self {
        let mut ids = sides.waiting.clone();
        if open_partitions(main).is_none() {
            ids.push(SIDE_PARTITIONS - 1);
        }
        Self(ids)
    }

    /// The stand-in partition ids, to register with the watermark.
    pub fn ids(&self) -> impl Iterator<Item = i32> + '_ {
        self.0.iter().copied()
    }

    /// A batch of `partition` arrived: the stand-in of its input, if it
    /// still waited, to be ended.
    pub fn arrived(&mut self, partition: i32) -> Option<i32> {
        let input = partition / SIDE_PARTITIONS;
        let i = self.0.iter().position(|w| w / SIDE_PARTITIONS == input)?;
        Some(self.0.swap_remove(i))
    }
}

/// The partitions `running` starts with, for [`Input::open`]; `None`
/// when it finds them as it goes.
#[must_use]
pub fn open_partitions(running: &source::Running) -> Option<usize> {
    (!running.partitions.is_empty()).then_some(running.partitions.len())
}

/// Where `acker` confirmed it acknowledged up to, else what it was `asked`.
fn confirmed(acker: &dyn Acker, asked: i64) -> i64 {
    acker.confirmed_below().unwrap_or(asked)
}

impl Sides {
    /// Starts the `with` source of every `join` step of the pipeline,
    /// forwarding into `queue` through `gate` (the `n`-th join's input is
    /// gate input `n + 1`).
    ///
    /// # Errors
    /// [`SourceError`] when one cannot start.
    pub fn start(
        pipeline: &Pipeline,
        queue: &Arc<Queue>,
        gate: Option<&Arc<Gate>>,
    ) -> Result<Self, SourceError> {
        let spec = &pipeline.spec;
        let stop = &pipeline.stop;
        let mut sides = Self::default();
        let joins = spec.steps.iter().enumerate();
        let joins = joins.filter_map(|(i, s)| Some((i, s.join.as_ref()?)));
        for (n, (i, join)) in joins.enumerate() {
            let offset = i32::try_from(i + 1)
                .ok()
                .and_then(|n| n.checked_mul(SIDE_PARTITIONS))
                .ok_or(SourceError::Unsupported(
                    "more join steps than partition ids",
                ))?;
            let inner = Arc::new(Queue::new(4 * BATCH, tributary_crds::Overflow::Block, 1.0));
            let mut running =
                start_with(pipeline, i, join, &inner).map_err(|e| SourceError::Side {
                    step: i,
                    source: Box::new(e),
                })?;
            sides
                .started
                .extend(running.partitions.iter().map(|p| p + offset));
            if open_partitions(&running).is_none() {
                sides.endless = true;
                sides.waiting.push(offset + SIDE_PARTITIONS - 1);
            }
            sides.joins.push(i);
            if let Some(acker) = running.acker.take() {
                sides.acks.push(SideAcks {
                    step: i,
                    acker,
                    next_offset: i64::MIN,
                    asked: 0,
                });
            }
            let input = Input {
                inner,
                outer: queue.clone(),
                offset,
                open: open_partitions(&running),
                gate: gate.map(|g| (g.clone(), n + 1)),
            };
            let handle = input
                .spawn(format!("join-input-{i}"), stop, running.handle)
                .map_err(|source| SourceError::Open {
                    path: format!("spec.steps[{i}].join.with thread"),
                    source,
                })?;
            sides.handles.push(handle);
        }
        Ok(sides)
    }

    /// Notes that offsets of the `with` source of join step `step` up to
    /// `last` went into the join.
    pub fn pushed(&mut self, step: usize, last: i64) {
        if let Some(a) = self.acks.iter_mut().find(|a| a.step == step) {
            a.next_offset = a.next_offset.max(last.saturating_add(1));
        }
    }

    /// After a flush: tells the main source (`main`, when it acknowledges)
    /// and every acknowledging `with` source what is durable — everything
    /// pushed so far (`next_main`: one past the main source's largest
    /// offset), except what a step still holds, what a step after a join
    /// still holds a result of, and the partners a redelivered record
    /// would need (see `step::join`'s `acks`).
    pub fn acknowledge(
        &mut self,
        main: Option<&mut Box<dyn Acker>>,
        steps: &mut [Box<dyn Step>],
        next_main: i64,
    ) {
        // What the brokers confirmed: below these, nothing comes back.
        let main_done = main
            .as_deref()
            .map_or(i64::MIN, |a| confirmed(a.as_ref(), self.main_asked));
        let mut main_mark = match &main {
            Some(_) => {
                let held = steps.iter().filter_map(|s| s.main_low_water()).min();
                held.unwrap_or(i64::MAX).min(next_main)
            }
            // Read again from its start: nothing of it is acknowledged.
            None => i64::MIN,
        };
        // Per `with` source: what its broker confirmed, and how far the
        // join and the steps after it let its mark go.
        let mut sides = Vec::with_capacity(self.acks.len());
        for a in &self.acks {
            let done = confirmed(a.acker.as_ref(), a.asked);
            let later = steps.get(a.step + 1..).unwrap_or_default();
            let downstream = Downstream {
                low_water: super::chain::low_water(later),
                empty: later.iter().all(|s| s.state_size() == 0),
            };
            let held = steps.get_mut(a.step).and_then(|step| {
                step.acked(main_done, done);
                step.side_low_water(downstream)
            });
            sides.push((done, held.unwrap_or(i64::MAX).min(a.next_offset)));
        }
        // Then each join keeps the partners a redelivered record would
        // need; one join lowering the main's mark can bring records back
        // for another, so until the main's mark holds still.
        let mut marks: Vec<i64> = sides.iter().map(|&(_, held)| held).collect();
        loop {
            let before = main_mark;
            for ((a, &(done, held)), mark) in self.acks.iter().zip(&sides).zip(marks.iter_mut()) {
                if let Some(step) = steps.get(a.step) {
                    (main_mark, *mark) = step.cross_marks(main_mark, held, (main_done, done));
                }
            }
            if main_mark == before {
                break;
            }
        }
        if let Some(acker) = main {
            acker.ack_below(main_mark);
            self.main_asked = self.main_asked.max(main_mark);
        }
        for (a, mark) in self.acks.iter_mut().zip(marks) {
            a.acker.ack_below(mark);
            a.asked = a.asked.max(mark);
        }
    }

    /// The join step a batch of engine partition `p` goes to, if it is a
    /// `with` source's: its range of ids names the step, so a partition
    /// the source discovered later is routed too.
    #[must_use]
    pub fn step_of(&self, p: i32) -> Option<usize> {
        let step = usize::try_from(p / SIDE_PARTITIONS).ok()?.checked_sub(1)?;
        self.joins.contains(&step).then_some(step)
    }

    /// Whether a `with` source finds its partitions as it goes (Kinesis):
    /// then the run does not end when the partitions known so far did.
    #[must_use]
    pub fn endless(&self) -> bool {
        self.endless
    }

    /// The engine partition ids every `with` source had when it started.
    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.started.iter().copied()
    }

    /// Waits for the sources' threads (after they ended or were stopped).
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

/// The `with` source as a source spec: its kind, with the main source's
/// format, event time and watermark unless it overrides them.
#[must_use]
pub fn side_spec(main: &SourceSpec, with: &JoinSource) -> SourceSpec {
    SourceSpec {
        file: with.file.clone(),
        generator: with.generator.clone(),
        redis_streams: with.redis_streams.clone(),
        nats: with.nats.clone(),
        pubsub: with.pubsub.clone(),
        pulsar: with.pulsar.clone(),
        kinesis: with.kinesis.clone(),
        format: with.format.clone().unwrap_or_else(|| main.format.clone()),
        event_time: with.event_time.clone().or_else(|| main.event_time.clone()),
        watermark: main.watermark.clone(),
        ..SourceSpec::default()
    }
}

/// Starts the `with` source of `join` (step `i`) into `inner`. A broker
/// side's default consumer group, durable or lease table is the main
/// source's default with `-join<i>` appended, so it never shares one with
/// the main source, even on the same stream.
fn start_with(
    pipeline: &Pipeline,
    i: usize,
    join: &tributary_crds::JoinStep,
    inner: &Arc<Queue>,
) -> Result<source::Running, SourceError> {
    let spec = &pipeline.spec;
    let stop = &pipeline.stop;
    let side = side_spec(&spec.source, &join.with);
    if let Some(k) = &join.with.kafka {
        return start_kafka(k, &side, inner, stop);
    }
    let owner = source::Owner {
        name: pipeline.name.as_ref().map(|n| format!("{n}-join{i}")),
        namespace: pipeline.namespace.clone(),
    };
    if let Some(k) = &join.with.kinesis {
        return start_kinesis(pipeline, k, &side, &owner, inner);
    }
    source::start(&side, &pipeline.base, &owner, inner.clone(), stop.clone())
}

#[cfg(feature = "kinesis")]
fn start_kinesis(
    pipeline: &Pipeline,
    k: &tributary_crds::KinesisSource,
    side: &SourceSpec,
    owner: &source::Owner,
    inner: &Arc<Queue>,
) -> Result<source::Running, SourceError> {
    use crate::connector::kinesis;
    let name = owner
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-join", k.stream));
    let ctx = kinesis::source::Context {
        decoder: source::Decoder::new(side)?,
        queue: inner.clone(),
        capacity: 4 * BATCH,
        stop: pipeline.stop.clone(),
        table: kinesis::source::table_name(k, Some(&name), owner.namespace.as_deref()),
        metrics: pipeline.metrics.clone(),
        pipeline: name,
        exactly_once: None,
    };
    kinesis::start(k, ctx).map_err(|e| SourceError::Client(e.to_string()))
}

#[cfg(not(feature = "kinesis"))]
fn start_kinesis(
    _: &Pipeline,
    _: &tributary_crds::KinesisSource,
    _: &SourceSpec,
    _: &source::Owner,
    _: &Arc<Queue>,
) -> Result<source::Running, SourceError> {
    Err(SourceError::Unsupported(
        "join.with.kinesis (built without the kinesis feature)",
    ))
}

#[cfg(feature = "kafka")]
fn start_kafka(
    k: &tributary_crds::JoinKafka,
    side: &SourceSpec,
    inner: &Arc<Queue>,
    stop: &Arc<AtomicBool>,
) -> Result<source::Running, SourceError> {
    crate::connector::kafka::plain::start(
        k,
        source::Decoder::new(side)?,
        inner.clone(),
        stop.clone(),
    )
}

#[cfg(not(feature = "kafka"))]
fn start_kafka(
    _: &tributary_crds::JoinKafka,
    _: &SourceSpec,
    _: &Arc<Queue>,
    _: &Arc<AtomicBool>,
) -> Result<source::Running, SourceError> {
    Err(SourceError::Unsupported(
        "join.with.kafka (built without the kafka feature)",
    ))
}

/// One input's forwarder: moves messages from the source's own queue
/// (`inner`) into the engine's (`outer`), shifting partition ids by
/// `offset`, until its `open` partitions ended, it failed, or the run
/// stops; with a gate, each batch first waits its turn there.
pub struct Input {
    /// The source's own bounded queue.
    pub inner: Arc<Queue>,
    /// The engine's queue.
    pub outer: Arc<Queue>,
    /// Added to every partition id.
    pub offset: i32,
    /// Partitions that have not ended; `None` for a source that finds its
    /// partitions as it goes (Kinesis shards), which ends only when stopped
    /// or failed.
    pub open: Option<usize>,
    /// The alignment gate and this input's index in it.
    pub gate: Option<(Arc<Gate>, usize)>,
}

impl Input {
    /// Runs the forwarder on its own thread; it joins `source` (the
    /// source's thread) before it ends.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(
        self,
        name: String,
        stop: &Arc<AtomicBool>,
        source: JoinHandle<()>,
    ) -> std::io::Result<JoinHandle<()>> {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.forward(&stop, source))
    }

    fn forward(mut self, stop: &AtomicBool, source: JoinHandle<()>) {
        const WAIT: Duration = Duration::from_millis(100);
        while self.open != Some(0) && !stop.load(Ordering::Relaxed) {
            match self.inner.pop(WAIT) {
                Some(Message::Batch(mut b)) => {
                    if let Some((gate, me)) = &self.gate {
                        let max = b.records.iter().map(|r| r.event_time).max();
                        gate.pass(*me, max, stop);
                    }
                    b.partition += self.offset;
                    self.outer.push(Message::Batch(b));
                }
                Some(Message::End { partition }) => {
                    if let Some(open) = &mut self.open {
                        *open = open.saturating_sub(1);
                    }
                    self.outer.push(Message::End {
                        partition: partition + self.offset,
                    });
                }
                Some(Message::Failed(e)) => {
                    let e = if self.offset == 0 {
                        e
                    } else {
                        format!("join input: {e}")
                    };
                    self.outer.push(Message::Failed(e));
                    break;
                }
                None => {}
            }
        }
        // Ended, failed or stopping: hold nobody back any more.
        if let Some((gate, me)) = &self.gate {
            gate.end(*me);
        }
        // A stopped source may still be blocked on a full queue: drain it so
        // its thread can see the stop flag and end.
        while !source.is_finished() {
            let _ = self.inner.pop(WAIT);
        }
        let _ = source.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stand_in_ends_with_the_first_batch_of_its_own_input() {
        // The main source's stand-in, and that of the side at offset 2·N.
        let mut w = Waiting(vec![SIDE_PARTITIONS - 1, 3 * SIDE_PARTITIONS - 1]);
        assert_eq!(w.arrived(SIDE_PARTITIONS + 2), None, "another input");
        assert_eq!(
            w.arrived(2 * SIDE_PARTITIONS + 5),
            Some(3 * SIDE_PARTITIONS - 1)
        );
        assert_eq!(w.arrived(2 * SIDE_PARTITIONS), None, "already ended");
        assert_eq!(w.arrived(0), Some(SIDE_PARTITIONS - 1), "the main source's");
        assert_eq!(w.ids().count(), 0);
    }

    #[test]
    fn a_partition_is_routed_by_its_range_even_when_discovered_later() {
        let sides = Sides {
            started: vec![2 * SIDE_PARTITIONS],
            joins: vec![1],
            acks: Vec::new(),
            main_asked: 0,
            endless: false,
            waiting: Vec::new(),
            handles: Vec::new(),
        };
        assert_eq!(sides.step_of(2 * SIDE_PARTITIONS), Some(1));
        assert_eq!(
            sides.step_of(2 * SIDE_PARTITIONS + 7),
            Some(1),
            "a new partition"
        );
        assert_eq!(sides.step_of(5), None, "the main source");
        assert_eq!(sides.step_of(SIDE_PARTITIONS), None, "step 0 is no join");
        assert_eq!(sides.step_of(-1), None);
    }
}
