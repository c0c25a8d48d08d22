//! The window + aggregate kernel: pure, synchronous, single-threaded state
//! that turns keyed, timestamped events and watermarks into window results.
//!
//! The engine around it evaluates the `keyBy` and `of` expressions, tracks
//! watermarks and writes results; this module only decides which window an
//! event belongs to, accumulates it, and when a window fires.
//!
//! # Layout
//!
//! - [`key`]: [`Key`], a hashable, totally ordered key built from JSON values.
//! - `aggregate`: mergeable accumulators (Welford, `DDSketch`, `HyperLogLog++`).
//! - `sliced`: the per-key pane store shared by tumbling and sliding windows
//!   (`tumbling`: one pane per window; `sliding`: panes of `gcd(size, slide)`
//!   merged when a window fires, so an event costs O(1), not O(size/slide)).
//! - `session`: per-key sessions that merge when events bridge them.
//! - `count`: per-key windows of `count` events.
//!
//! # Guarantees
//!
//! - Nothing panics on any input: timestamps near `i64::MIN`/`i64::MAX`
//!   saturate, NaN and infinities are never aggregated, missing inputs are
//!   `null`, and configuration values out of range are clamped (sizes, gaps
//!   and counts to at least 1, lateness to at least 0).
//! - Output order is deterministic: by window end, then start, then key.
//! - Timestamps and durations are epoch milliseconds.

mod aggregate;
mod count;
pub mod key;
pub mod operator;
mod session;
mod sliced;
mod sliding;
mod tumbling;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;

use serde_json::Value;

pub use self::key::Key;

use self::count::CountWindows;
use self::session::Sessions;
use self::sliced::Sliced;

/// An aggregate function, as named in the pipeline spec (`fn:`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AggFn {
    /// Number of events in the window (an integer).
    Count,
    /// Sum of the numeric inputs (0 when there are none).
    Sum,
    /// Mean of the numeric inputs (null when there are none).
    Avg,
    /// Smallest numeric input (null when there are none).
    Min,
    /// Largest numeric input (null when there are none).
    Max,
    /// Input of the earliest event by event time; the earliest arrival wins ties.
    First,
    /// Input of the latest event by event time; the latest arrival wins ties.
    Last,
    /// Approximate quantile (`DDSketch`, ≤1% relative error); `q` in `[0, 1]`
    /// (clamped; NaN gives null).
    Percentile {
        /// The quantile, e.g. 0.95 for p95.
        q: f64,
    },
    /// Sample standard deviation (n−1; 0 for one value).
    Stddev,
    /// Sample variance (n−1; 0 for one value).
    Variance,
    /// Population standard deviation (n).
    StddevPop,
    /// Population variance (n).
    VariancePop,
    /// Approximate number of distinct non-null inputs (exact up to 128,
    /// then `HyperLogLog++` within 2%).
    Distinct,
}

/// One aggregate of a window step: its output field name and function.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AggSpec {
    /// Output field name (kept here so results can be labelled downstream).
    pub name: String,
    /// The function.
    pub func: AggFn,
}

/// The shape of the windows; all lengths in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `[k·size, (k+1)·size)`.
    Tumbling {
        /// Window length.
        size: i64,
    },
    /// `[k·slide, k·slide+size)`, every one containing the event.
    Sliding {
        /// Window length.
        size: i64,
        /// Distance between window starts.
        slide: i64,
    },
    /// Per key `[first ts, last ts + gap)`; events closer than `gap` merge.
    Session {
        /// Inactivity gap that closes a session.
        gap: i64,
    },
    /// Per key, every `count` events (ignores watermarks).
    Count {
        /// Events per window.
        count: u64,
    },
}

/// When results are emitted (the pipeline's `emit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EmitMode {
    /// Once per window when the watermark passes its end (append mode).
    Final,
    /// Also, on each [`WindowOperatorState::trigger`], the open windows that
    /// changed since the previous trigger (update mode).
    Updates,
    /// Also, on each trigger, every open window (complete mode).
    All,
}

/// Configuration of one window step.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    /// Window shape.
    pub kind: WindowKind,
    /// Aggregates, in output order.
    pub aggs: Vec<AggSpec>,
    /// How long after a window fired it still accepts (and re-emits for)
    /// late events, in milliseconds.
    pub allowed_lateness: i64,
    /// Emit mode.
    pub emit: EmitMode,
}

/// One window's result for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// Window start (inclusive), epoch ms.
    pub start: i64,
    /// Window end (exclusive), epoch ms.
    pub end: i64,
    /// The key.
    pub key: Key,
    /// Aggregate values, in `aggs` order.
    pub values: Vec<Value>,
}

impl WindowResult {
    /// The deterministic output order: by end, then start, then key.
    #[must_use]
    pub fn output_order(&self, other: &Self) -> Ordering {
        self.end
            .cmp(&other.end)
            .then(self.start.cmp(&other.start))
            .then_with(|| self.key.cmp(&other.key))
    }
}

/// What [`WindowOperatorState::insert`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Added to (at least one of) its windows.
    Accepted,
    /// Too late for all its windows; state unchanged. The caller applies
    /// `lateEvents` (drop, log, dead-letter, side output).
    Late,
}

/// The windows in flight for one window step (one source partition).
///
/// # Caveats
///
/// Watermarks only move forward: an [`advance_watermark`] below the
/// current one is ignored. After [`flush`] the watermark is +∞ and every
/// further (time-based) event is late.
///
/// [`advance_watermark`]: WindowOperatorState::advance_watermark
/// [`flush`]: WindowOperatorState::flush
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WindowOperatorState {
    inner: Inner,
    /// Arrival sequence: breaks event-time ties for first/last.
    seq: u64,
    /// Source offset of the next inserted event (see [`Self::set_offset`]).
    offset: i64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Inner {
    Sliced(Sliced),
    Session(Sessions),
    Count(CountWindows),
}

/// The parts of [`WindowConfig`] every window kind needs, sanitized.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Common {
    aggs: Vec<AggSpec>,
    lateness: i64,
    emit: EmitMode,
}

impl WindowOperatorState {
    /// Creates empty state. Out-of-range sizes are clamped (see module docs),
    /// because validation belongs to the spec and this must never panic.
    #[must_use]
    pub fn new(cfg: WindowConfig) -> Self {
        let common = Common {
            aggs: cfg.aggs,
            lateness: cfg.allowed_lateness.max(0),
            emit: cfg.emit,
        };
        let inner = match cfg.kind {
            WindowKind::Tumbling { size } => Inner::Sliced(tumbling::new(size, common)),
            WindowKind::Sliding { size, slide } => Inner::Sliced(sliding::new(size, slide, common)),
            WindowKind::Session { gap } => Inner::Session(Sessions::new(gap.max(1), common)),
            WindowKind::Count { count } => Inner::Count(CountWindows::new(count.max(1), common)),
        };
        WindowOperatorState {
            inner,
            seq: 0,
            offset: i64::MAX,
        }
    }

    /// Adds an event to its window(s).
    ///
    /// `inputs[i]` is the value of aggregate `i`'s `of` expression for this
    /// event (null when the aggregate has no `of`, e.g. count, or the field
    /// is missing). `current_watermark` is the watermark as known now.
    ///
    /// Results can land in `out`: an event added to a window that already
    /// fired re-emits that window at once (a late firing, in every emit
    /// mode), and a count window fires here when full.
    ///
    /// # Caveats
    ///
    /// If `current_watermark` is ahead of the last
    /// [`advance_watermark`](Self::advance_watermark), the state first
    /// advances to it, firing the windows it makes due into `out`. Otherwise
    /// a window could be late for this event and yet not fired, and a
    /// sliding pane or a session shared with it would slip the event into
    /// it. Callers that advance before inserting never see this.
    pub fn insert(
        &mut self,
        key: Key,
        ts: i64,
        inputs: &[Value],
        current_watermark: i64,
        out: &mut Vec<WindowResult>,
    ) -> Inserted {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let ev = Event {
            ts,
            seq,
            offset: self.offset,
            inputs,
            watermark: current_watermark,
        };
        match &mut self.inner {
            Inner::Sliced(s) => {
                s.advance(current_watermark, out);
                s.insert(&key, &ev, out)
            }
            Inner::Session(s) => {
                s.advance(current_watermark, out);
                s.insert(key, &ev, out)
            }
            Inner::Count(c) => c.insert(key, &ev, out),
        }
    }

    /// Fires every window with `end <= wm` (in output order) and drops the
    /// state of windows with `end + allowed_lateness <= wm`.
    pub fn advance_watermark(&mut self, wm: i64, out: &mut Vec<WindowResult>) {
        match &mut self.inner {
            Inner::Sliced(s) => s.advance(wm, out),
            Inner::Session(s) => s.advance(wm, out),
            // Count windows fire on count alone.
            Inner::Count(_) => {}
        }
    }

    /// For [`EmitMode::Updates`]: the current results of the open windows
    /// that changed since the last trigger; for [`EmitMode::All`]: of every
    /// open window; for [`EmitMode::Final`]: nothing. "Open" means not yet
    /// fired; fired windows re-emit on their own when late events change them.
    pub fn trigger(&mut self, out: &mut Vec<WindowResult>) {
        match &mut self.inner {
            Inner::Sliced(s) => s.trigger(out),
            Inner::Session(s) => s.trigger(out),
            Inner::Count(c) => c.trigger(out),
        }
    }

    /// End of a bounded input: fires every open window (count windows
    /// included, partial ones too) and drops all state.
    pub fn flush(&mut self, out: &mut Vec<WindowResult>) {
        match &mut self.inner {
            Inner::Sliced(s) => s.advance(i64::MAX, out),
            Inner::Session(s) => s.advance(i64::MAX, out),
            Inner::Count(c) => c.flush(out),
        }
    }

    /// Sets the source offset the next [`insert`](Self::insert)s carry, so
    /// [`low_water`](Self::low_water) can tell how far back a restore must
    /// replay. Untracked (`i64::MAX`) by default.
    pub fn set_offset(&mut self, offset: i64) {
        self.offset = offset;
    }

    /// The smallest source offset of any event still held (in an open window
    /// or one kept for allowed lateness), or `None` when nothing tracked is
    /// held. Scans the state: call it at checkpoints, not per event.
    #[must_use]
    pub fn low_water(&self) -> Option<i64> {
        let min = match &self.inner {
            Inner::Sliced(s) => s.low_water(),
            Inner::Session(s) => s.low_water(),
            Inner::Count(c) => c.low_water(),
        };
        (min != i64::MAX).then_some(min)
    }

    /// Number of live accumulators (panes, sessions or count windows), for a
    /// state-size metric.
    #[must_use]
    pub fn state_size(&self) -> usize {
        match &self.inner {
            Inner::Sliced(s) => s.state_size(),
            Inner::Session(s) => s.state_size(),
            Inner::Count(c) => c.state_size(),
        }
    }
}

/// One event as the window kinds see it.
struct Event<'a> {
    ts: i64,
    seq: u64,
    /// Source offset of the event (`i64::MAX` when untracked).
    offset: i64,
    inputs: &'a [Value],
    watermark: i64,
}

/// Sorts results into output order (by end, start, key).
fn sort_results(results: &mut [WindowResult]) {
    results.sort_by(WindowResult::output_order);
}
