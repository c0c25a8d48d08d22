//! The second inputs of `join` steps: each `with` source runs like the
//! main one, on its own thread, and its batches reach the engine through
//! the main queue under partition ids of their own, so the engine's
//! watermark is the minimum over both inputs and a batch can be routed to
//! its join step instead of the first step.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tributary_crds::{JoinSource, SourceSpec, StreamPipelineSpec};

use crate::flow::{Message, Queue};
use crate::source::{self, BATCH, SourceError};

/// Partition ids of the `with` source of step `i` start at
/// `SIDE_PARTITIONS * (i + 1)`, far above any broker's partition count, so
/// they never collide with the main source's.
const SIDE_PARTITIONS: i32 = 1 << 20;

/// The `with` sources of a pipeline's joins, once started.
#[derive(Default)]
pub struct Sides {
    /// Engine partition id to the index of the join step it feeds.
    routes: HashMap<i32, usize>,
    handles: Vec<JoinHandle<()>>,
}

impl Sides {
    /// Starts the `with` source of every `join` step of `spec`, forwarding
    /// into `queue`.
    ///
    /// # Errors
    /// [`SourceError`] when one cannot start.
    pub fn start(
        spec: &StreamPipelineSpec,
        base: &Path,
        queue: &Arc<Queue>,
        stop: &Arc<AtomicBool>,
    ) -> Result<Self, SourceError> {
        let mut sides = Self::default();
        for (i, step) in spec.steps.iter().enumerate() {
            let Some(join) = &step.join else { continue };
            let offset = i32::try_from(i + 1)
                .ok()
                .and_then(|n| n.checked_mul(SIDE_PARTITIONS))
                .ok_or(SourceError::Unsupported(
                    "more join steps than partition ids",
                ))?;
            let inner = Arc::new(Queue::new(4 * BATCH, tributary_crds::Overflow::Block, 1.0));
            let running = source::start(
                &side_spec(&spec.source, &join.with),
                base,
                // `with` runs only files and generators: no group to name.
                &source::Owner::default(),
                inner.clone(),
                stop.clone(),
            )?;
            for p in &running.partitions {
                sides.routes.insert(p + offset, i);
            }
            let outer = queue.clone();
            let stop = stop.clone();
            let open = running.partitions.len();
            let handle = std::thread::Builder::new()
                .name(format!("join-input-{i}"))
                .spawn(move || forward(&inner, &outer, offset, open, &stop, running.handle))
                .map_err(|source| SourceError::Open {
                    path: format!("spec.steps[{i}].join.with thread"),
                    source,
                })?;
            sides.handles.push(handle);
        }
        Ok(sides)
    }

    /// The join step a batch of engine partition `p` goes to, if it is a
    /// `with` source's.
    #[must_use]
    pub fn step_of(&self, p: i32) -> Option<usize> {
        self.routes.get(&p).copied()
    }

    /// The engine partition ids of every `with` source.
    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.routes.keys().copied()
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
        format: with.format.clone().unwrap_or_else(|| main.format.clone()),
        event_time: with.event_time.clone().or_else(|| main.event_time.clone()),
        watermark: main.watermark.clone(),
        ..SourceSpec::default()
    }
}

/// Moves messages from a `with` source's own queue into the engine's,
/// shifting partition ids by `offset`, until its `open` partitions ended,
/// it failed, or the run stops.
fn forward(
    inner: &Queue,
    outer: &Queue,
    offset: i32,
    mut open: usize,
    stop: &AtomicBool,
    source: JoinHandle<()>,
) {
    const WAIT: Duration = Duration::from_millis(100);
    while open > 0 && !stop.load(Ordering::Relaxed) {
        match inner.pop(WAIT) {
            Some(Message::Batch(mut b)) => {
                b.partition += offset;
                outer.push(Message::Batch(b));
            }
            Some(Message::End { partition }) => {
                open -= 1;
                outer.push(Message::End {
                    partition: partition + offset,
                });
            }
            Some(Message::Failed(e)) => {
                outer.push(Message::Failed(format!("join input: {e}")));
                break;
            }
            None => {}
        }
    }
    // A stopped source may still be blocked on a full queue: drain it so
    // its thread can see the stop flag and end.
    while !source.is_finished() {
        let _ = inner.pop(WAIT);
    }
    let _ = source.join();
}
