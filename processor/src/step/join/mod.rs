//! `join`: an event-time interval join of the records reaching the step
//! (left) with the records of its `with` source (right), as Flink's
//! interval join (see `docs/joins.md` for the exact semantics).
//!
//! # Layout
//! - `state`: the pure kernel (per-key buffers of both sides, expiry by
//!   watermark).
//! - `output`: the shape of pairs and unmatched records.
//!
//! The runtime starts the `with` source next to the main one and hands its
//! batches to [`Step::process_other`]; everything else is an ordinary step.

mod acks;
mod output;
#[cfg(test)]
mod proptests;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use tributary_crds::{JoinStep, JoinType};

use super::{Emit, Step, StepError};
use crate::expr::{Expr, ExprError};
use crate::record::Record;
use crate::sink::DeadLetter;
use crate::step::window::key::Key;
pub use acks::Downstream;
use state::{Kernel, Side};

/// A join step.
pub struct Join {
    name: String,
    left: Expr,
    right: Expr,
    kind: JoinType,
    kernel: Kernel,
    processing_time: bool,
}

impl Join {
    /// A join step of `spec`.
    ///
    /// # Errors
    /// The field (`on.left` or `on.right`) and error of a key that does not compile.
    pub fn new(
        name: String,
        spec: &JoinStep,
        env: &Arc<cel::Env>,
    ) -> Result<Self, (&'static str, ExprError)> {
        let left = Expr::compile(&spec.on.left, env).map_err(|e| ("on.left", e))?;
        let right = Expr::compile_as(&spec.on.right, env, "other").map_err(|e| ("on.right", e))?;
        Ok(Self {
            name,
            left,
            right,
            kind: spec.kind,
            kernel: Kernel::new(spec.within.as_millis_i64(), spec.kind),
            processing_time: false,
        })
    }

    /// Keeps what acknowledging sources need (see `acks`): the `with`
    /// source's kind says whether it acknowledges; `main`, whether the
    /// main source does.
    #[must_use]
    pub fn main_acknowledges(mut self, main: bool, spec: &JoinStep) -> Self {
        self.kernel = self.kernel.acknowledging(spec.with.acknowledges(), main);
        self
    }

    /// In processing time (no `eventTime`) a record stamped before the
    /// watermark only waited in a queue: it joins as arriving at the
    /// watermark instead of being dropped as late (as `cep` does).
    #[must_use]
    pub fn in_processing_time(mut self, yes: bool) -> Self {
        self.processing_time = yes;
        self
    }

    fn take(&mut self, side: Side, input: Vec<Record>, emit: &mut Emit) {
        let (expr, field, keep) = match side {
            Side::Left => (&self.left, "on.left", self.kind.keeps_left()),
            Side::Right => (&self.right, "on.right", self.kind.keeps_right()),
        };
        let wm = self.kernel.watermark();
        for mut rec in input {
            if self.processing_time && rec.event_time < wm {
                rec.event_time = wm;
            }
            let key = match expr.eval(&rec.value) {
                Ok(v) => v,
                Err(e) => {
                    emit.dead
                        .push(DeadLetter::new(&self.name, format!("{field}: {e}"), rec));
                    continue;
                }
            };
            if rec.event_time < wm && !rec.replay {
                // Behind the watermark: the records it could have joined
                // may be gone. (A replay is taken: see `Kernel::insert`.)
                emit.late += 1;
                emit.dropped += 1;
            } else if key.is_null() {
                // A null key equals nothing, as in SQL: final at once.
                if keep {
                    if side == Side::Right {
                        self.kernel.emitted_right(&rec);
                    }
                    emit.out.push(match side {
                        Side::Left => output::left_only(rec),
                        Side::Right => output::right_only(rec),
                    });
                } else {
                    emit.dropped += 1;
                }
            } else {
                let key = Key::from_values(vec![key]);
                if self.kernel.insert(side, key, rec, &mut emit.out).is_err() {
                    emit.late += 1;
                    emit.dropped += 1;
                }
            }
        }
    }
}

impl Step for Join {
    fn name(&self) -> &str {
        &self.name
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        self.take(Side::Left, input, emit);
        Ok(())
    }

    fn process_other(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        self.take(Side::Right, input, emit);
        Ok(())
    }

    fn on_watermark(&mut self, wm: i64, emit: &mut Emit) {
        self.kernel.advance(wm, &mut emit.out);
    }

    fn finish(&mut self, emit: &mut Emit) {
        self.kernel.drain(&mut emit.out);
    }

    fn state_size(&self) -> usize {
        self.kernel.held()
    }

    fn low_water(&self) -> Option<i64> {
        self.kernel.low_water()
    }

    fn main_low_water(&self) -> Option<i64> {
        self.kernel.low_water_of(Side::Left)
    }

    fn side_low_water(&mut self, downstream: Downstream) -> Option<i64> {
        self.kernel.right_low_water(downstream)
    }

    fn cross_marks(&self, main: i64, side: i64, confirmed: (i64, i64)) -> (i64, i64) {
        self.kernel.cross_marks(main, side, confirmed)
    }

    fn acked(&mut self, main: i64, side: i64) {
        self.kernel.acked(main, side);
    }
}
