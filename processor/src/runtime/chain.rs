//! Running records through a chain of steps into the sinks; shared by the
//! local engine loop and the Kafka task loop.
//!
//! Replayed records (`Record::replay`, see `connector::kafka`) go through
//! the steps like any other, so they rebuild state, but neither they nor
//! the dead letters they cause are written again.

use std::collections::HashMap;
use std::sync::Arc;

use super::Metrics;
use crate::record::Record;
use crate::sink::{DeadLetter, Sink, SinkError};
use crate::step::{Emit, Step};

use super::RunError;

/// The sinks of a pipeline: main sinks, named side-output sinks and the
/// dead-letter sink.
pub struct Outputs {
    /// Sinks every result goes to.
    pub main: Vec<Box<dyn Sink>>,
    /// Sinks only late side outputs go to, by name.
    pub named: HashMap<Arc<str>, Box<dyn Sink>>,
    /// The dead-letter sink.
    pub dead: Option<Box<dyn Sink>>,
    /// While set, results are kept here instead of reaching the main sinks
    /// (a stage of a repartitioned Kafka pipeline hands them to the next).
    pub divert: Option<Vec<Record>>,
    dead_missing_warned: bool,
}

impl Outputs {
    /// Outputs over opened sinks.
    #[must_use]
    pub fn new(
        main: Vec<Box<dyn Sink>>,
        named: HashMap<Arc<str>, Box<dyn Sink>>,
        dead: Option<Box<dyn Sink>>,
    ) -> Self {
        Self {
            main,
            named,
            dead,
            divert: None,
            dead_missing_warned: false,
        }
    }

    /// Sends one dead letter (skipped when its record is a replay).
    ///
    /// # Errors
    /// When the dead-letter sink fails.
    pub fn dead_letter(&mut self, d: DeadLetter, m: &Metrics) -> Result<(), SinkError> {
        if d.record.replay {
            return Ok(());
        }
        Metrics::add(&m.dead_letters, 1);
        match &mut self.dead {
            Some(sink) => sink.write_dead(std::slice::from_ref(&d)),
            None => {
                if !self.dead_missing_warned {
                    self.dead_missing_warned = true;
                    tracing::warn!(step = %d.step, error = %d.error, "a record failed and spec.deadLetter is not set; it is counted and dropped (further ones are not logged)");
                }
                Ok(())
            }
        }
    }

    fn write(&mut self, mut records: Vec<Record>, m: &Metrics) -> Result<(), SinkError> {
        records.retain(|r| !r.replay);
        if records.is_empty() {
            return Ok(());
        }
        if let Some(kept) = &mut self.divert {
            kept.append(&mut records);
            return Ok(());
        }
        let mut rejected = Vec::new();
        for s in &mut self.main {
            s.write(&records)?;
            rejected.extend(s.take_rejected());
        }
        Metrics::add(&m.records_out, records.len() as u64);
        for d in rejected {
            self.dead_letter(d, m)?;
        }
        Ok(())
    }

    /// Makes every sink's buffered writes durable or visible. Records a
    /// sink refused while flushing (an HTTP endpoint's 4xx) go to the
    /// dead-letter sink, which is flushed last.
    ///
    /// # Errors
    /// When a sink fails.
    pub fn flush(&mut self, m: &Metrics) -> Result<(), SinkError> {
        let mut rejected = Vec::new();
        for s in self.main.iter_mut().chain(self.named.values_mut()) {
            s.flush()?;
            rejected.extend(s.take_rejected());
        }
        for d in rejected {
            self.dead_letter(d, m)?;
        }
        if let Some(dead) = &mut self.dead {
            dead.flush()?;
        }
        Ok(())
    }

    /// Every sink, dead letters included.
    pub fn all(&mut self) -> impl Iterator<Item = &mut Box<dyn Sink>> {
        self.main
            .iter_mut()
            .chain(self.named.values_mut())
            .chain(self.dead.iter_mut())
    }

    fn settle(&mut self, emit: Emit, m: &Metrics) -> Result<Vec<Record>, SinkError> {
        Metrics::add(&m.dropped, emit.dropped);
        Metrics::add(&m.late_records, emit.late);
        for d in emit.dead {
            self.dead_letter(d, m)?;
        }
        for (name, rec) in emit.side {
            if rec.replay {
                continue;
            }
            Metrics::add(&m.side_outputs, 1);
            if let Some(s) = self.named.get_mut(&name) {
                s.write(std::slice::from_ref(&rec))?;
            }
        }
        Ok(emit.out)
    }
}

/// Runs `records` through `steps[from..]` and into the sinks.
///
/// # Errors
/// When a step stops the pipeline or a sink fails.
pub fn push(
    steps: &mut [Box<dyn Step>],
    from: usize,
    mut records: Vec<Record>,
    out: &mut Outputs,
    m: &Metrics,
) -> Result<(), RunError> {
    for (i, step) in steps.iter_mut().enumerate().skip(from) {
        if records.is_empty() {
            return Ok(());
        }
        let n_in = records.len() as u64;
        let mut emit = Emit {
            out: Vec::with_capacity(records.len()),
            ..Emit::default()
        };
        step.process(records, &mut emit)?;
        m.count_step(i, n_in, emit.out.len() as u64, emit.dropped);
        records = out.settle(emit, m)?;
    }
    out.write(records, m)?;
    Ok(())
}

/// Runs `records` of the second input of step `at` (a join's `with`
/// source) through that step, then what it emits through the steps after
/// it and into the sinks.
///
/// # Errors
/// When a step stops the pipeline or a sink fails.
pub fn push_other(
    steps: &mut [Box<dyn Step>],
    at: usize,
    records: Vec<Record>,
    out: &mut Outputs,
    m: &Metrics,
) -> Result<(), RunError> {
    let Some(step) = steps.get_mut(at) else {
        return Ok(());
    };
    let n_in = records.len() as u64;
    let mut emit = Emit::default();
    step.process_other(records, &mut emit)?;
    m.count_step(at, n_in, emit.out.len() as u64, emit.dropped);
    let records = out.settle(emit, m)?;
    push(steps, at + 1, records, out, m)
}

/// Calls `hook` on each step in order, pushing what it emits downstream.
fn each(
    steps: &mut [Box<dyn Step>],
    out: &mut Outputs,
    m: &Metrics,
    mut hook: impl FnMut(&mut dyn Step, &mut Emit),
) -> Result<(), RunError> {
    for i in 0..steps.len() {
        let mut emit = Emit::default();
        hook(steps[i].as_mut(), &mut emit);
        m.count_step(i, 0, emit.out.len() as u64, emit.dropped);
        let records = out.settle(emit, m)?;
        push(steps, i + 1, records, out, m)?;
    }
    Ok(())
}

/// The watermark reached `wm`: windows fire.
///
/// # Errors
/// When a step stops the pipeline or a sink fails.
pub fn advance(
    steps: &mut [Box<dyn Step>],
    wm: i64,
    out: &mut Outputs,
    m: &Metrics,
) -> Result<(), RunError> {
    each(steps, out, m, |s, e| s.on_watermark(wm, e))
}

/// Processing time is `now`: triggers fire.
///
/// # Errors
/// When a step stops the pipeline or a sink fails.
pub fn tick(
    steps: &mut [Box<dyn Step>],
    now: i64,
    out: &mut Outputs,
    m: &Metrics,
) -> Result<(), RunError> {
    each(steps, out, m, |s, e| s.on_tick(now, e))
}

/// Bounded input ended: every step flushes.
///
/// # Errors
/// When a step stops the pipeline or a sink fails.
pub fn finish(steps: &mut [Box<dyn Step>], out: &mut Outputs, m: &Metrics) -> Result<(), RunError> {
    each(steps, out, m, |s, e| s.finish(e))
}

/// The smallest source offset any step still holds (see
/// [`Step::low_water`]).
#[must_use]
pub fn low_water(steps: &[Box<dyn Step>]) -> Option<i64> {
    steps.iter().filter_map(|s| s.low_water()).min()
}
