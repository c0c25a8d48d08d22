//! Watermark alignment between the inputs of a pipeline with `join`
//! steps, as Flink's `withWatermarkAlignment`: an input whose event time
//! runs more than a bound ahead of the slowest other input waits before it
//! hands over its next batch. Its forwarder stops popping, its bounded
//! queue fills and its source blocks — back-pressure, nothing is dropped.
//!
//! Without it, two unthrottled inputs drift apart (the thread that gets
//! more CPU runs ahead), the watermark follows the slower one, and the
//! join holds every record of the faster one in between: state grows with
//! the skew instead of staying bounded by `within`.
//!
//! # Guarantees
//! - An input ahead of the slowest *active* other input by more than
//!   `bound` ms waits; the skew between active inputs therefore stays below
//!   `bound` plus the event-time span of one batch (plus what queues hold).
//! - No deadlock: the input with the smallest clock never waits (waiting
//!   needs a clock above another's plus `bound >= 0`); an ended input, or
//!   one that handed over nothing for `idle` (and is not itself waiting),
//!   holds nobody back; every wait is woken by any change, by the run's
//!   stop flag, and re-checked at least every [`RECHECK`].
//!
//! # Caveats
//! Alignment only paces the inputs; the watermark, lateness and output are
//! the engine's as without it. Idleness here is about pacing only (a short
//! default of [`DEFAULT_IDLE`]), unrelated to `watermark.idleTimeout`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tributary_crds::StreamPipelineSpec;

use crate::source::now_ms;

/// How long a silent input still holds the others back when
/// `watermark.idleTimeout` is not shorter.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(1);
/// Longest a waiting input sleeps before it looks again (idleness is a
/// matter of time, not of a notification).
pub const RECHECK: Duration = Duration::from_millis(50);

/// What the gate knows of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Largest event time it handed over (`i64::MIN` before any).
    pub max: i64,
    /// When (ms) it last handed over a batch, or started.
    pub active_at: i64,
    /// Waiting at the gate: held back, not idle.
    pub waiting: bool,
    /// Every partition of it ended (or it failed, or the run stops).
    pub ended: bool,
}

impl Clock {
    /// An input that started at `now` and handed over nothing yet.
    #[must_use]
    pub fn started(now: i64) -> Self {
        Self {
            max: i64::MIN,
            active_at: now,
            waiting: false,
            ended: false,
        }
    }
}

/// Whether input `me` may hand over its next batch at `now`: yes unless
/// its clock is more than `bound` ms ahead of the smallest clock among the
/// other inputs that hold it back — not ended, and either waiting or
/// active within the last `idle` ms. An input that handed over nothing
/// yet never waits.
#[must_use]
pub fn may_pass(me: usize, clocks: &[Clock], bound: i64, idle: i64, now: i64) -> bool {
    let Some(mine) = clocks.get(me) else {
        return true;
    };
    if mine.max == i64::MIN {
        return true;
    }
    let slowest = clocks
        .iter()
        .enumerate()
        .filter(|&(i, c)| {
            i != me && !c.ended && (c.waiting || now.saturating_sub(c.active_at) < idle)
        })
        .map(|(_, c)| c.max)
        .min();
    slowest.is_none_or(|s| mine.max <= s.saturating_add(bound.max(0)))
}

/// The bound of `spec`'s alignment: the smallest
/// `maxOutOfOrderness + within` over its joins; `None` when it has no join
/// or runs in processing time (both inputs are stamped with the same wall
/// clock and cannot drift apart).
#[must_use]
pub fn bound_of(spec: &StreamPipelineSpec) -> Option<i64> {
    spec.source.event_time.as_ref()?;
    let ooo = spec.source.watermark.max_out_of_orderness.as_millis_i64();
    spec.steps
        .iter()
        .filter_map(|s| s.join.as_ref())
        .map(|j| ooo.saturating_add(j.within.as_millis_i64()))
        .min()
}

/// The shared gate of a run's inputs (see the module docs).
pub struct Gate {
    clocks: Mutex<Vec<Clock>>,
    changed: Condvar,
    bound: i64,
    idle: i64,
}

impl Gate {
    /// A gate for `inputs` inputs (index 0 is the main source, `i + 1` the
    /// `with` source of the `i`-th join), with `bound` and `idle` in ms.
    #[must_use]
    pub fn new(inputs: usize, bound: i64, idle: i64) -> Self {
        let now = now_ms();
        Self {
            clocks: Mutex::new(vec![Clock::started(now); inputs]),
            changed: Condvar::new(),
            bound,
            idle,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Clock>> {
        // Plain data, consistent after any panic elsewhere.
        self.clocks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Blocks until input `me` may hand over a batch whose largest event
    /// time is `max` (or until `stop` is set), then records it.
    pub fn pass(&self, me: usize, max: Option<i64>, stop: &AtomicBool) {
        let mut clocks = self.lock();
        loop {
            let now = now_ms();
            if stop.load(Ordering::Relaxed) || may_pass(me, &clocks, self.bound, self.idle, now) {
                break;
            }
            if let Some(c) = clocks.get_mut(me) {
                c.waiting = true;
            }
            clocks = self
                .changed
                .wait_timeout(clocks, RECHECK)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        if let Some(c) = clocks.get_mut(me) {
            c.waiting = false;
            c.active_at = now_ms();
            if let Some(m) = max {
                c.max = c.max.max(m);
            }
        }
        drop(clocks);
        self.changed.notify_all();
    }

    /// Input `me` ended: it holds nobody back any more.
    pub fn end(&self, me: usize) {
        if let Some(c) = self.lock().get_mut(me) {
            c.ended = true;
            c.waiting = false;
        }
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    fn at(max: i64, active_at: i64) -> Clock {
        Clock {
            max,
            active_at,
            waiting: false,
            ended: false,
        }
    }

    const IDLE: i64 = 1000;

    #[test]
    fn an_input_more_than_the_bound_ahead_waits() {
        let clocks = [at(10_000, 0), at(4_000, 0)];
        assert!(!may_pass(0, &clocks, 5_000, IDLE, 10));
        assert!(may_pass(1, &clocks, 5_000, IDLE, 10));
        let clocks = [at(9_000, 0), at(4_000, 0)];
        assert!(
            may_pass(0, &clocks, 5_000, IDLE, 10),
            "exactly the bound ahead passes"
        );
    }

    #[test]
    fn the_slowest_input_never_waits_so_two_inputs_cannot_deadlock() {
        for (a, b) in [(0, 0), (5, 7), (1_000_000, 3), (i64::MIN, 9), (-50, 50)] {
            for bound in [0, 1, 100] {
                let clocks = [at(a, 0), at(b, 0)];
                assert!(
                    may_pass(0, &clocks, bound, IDLE, 1) || may_pass(1, &clocks, bound, IDLE, 1),
                    "both wait at {a}, {b}, bound {bound}"
                );
                let slowest = usize::from(b < a);
                assert!(may_pass(slowest, &clocks, bound, IDLE, 1));
            }
        }
    }

    #[test]
    fn an_ended_input_holds_nobody_back() {
        let mut clocks = [at(1_000_000, 0), at(0, 0)];
        assert!(!may_pass(0, &clocks, 10, IDLE, 1));
        clocks[1].ended = true;
        assert!(may_pass(0, &clocks, 10, IDLE, 1));
    }

    #[test]
    fn an_idle_input_holds_nobody_back_until_it_hands_over_again() {
        let mut clocks = [at(1_000_000, 0), at(0, 0)];
        assert!(!may_pass(0, &clocks, 10, IDLE, IDLE - 1));
        assert!(may_pass(0, &clocks, 10, IDLE, IDLE), "silent for `idle` ms");
        clocks[1].active_at = 5_000;
        assert!(!may_pass(0, &clocks, 10, IDLE, 5_001), "active again");
    }

    #[test]
    fn a_waiting_input_is_never_idle() {
        let mut clocks = [at(0, 0), at(1_000, 0), at(5_000, 0)];
        clocks[1].waiting = true;
        // Input 2 is ahead of the waiting input 1, however long 1 waited.
        assert!(!may_pass(2, &clocks, 10, IDLE, 10 * IDLE));
    }

    #[test]
    fn an_input_that_handed_over_nothing_yet_holds_the_others_until_idle() {
        let clocks = [at(1_000, 0), Clock::started(0)];
        assert!(!may_pass(0, &clocks, 10, IDLE, 1));
        assert!(may_pass(1, &clocks, 10, IDLE, 1));
        assert!(may_pass(0, &clocks, 10, IDLE, IDLE));
    }

    #[test]
    fn only_joins_in_event_time_are_aligned_by_ooo_plus_the_smallest_within() {
        let spec = |s: &str| -> StreamPipelineSpec {
            serde_yaml_ng::from_str(&format!("{s}sinks: [{{name: out, stdout: {{}}}}]\n")).unwrap()
        };
        let joins = "steps:\n  - join: {with: {file: {path: x}}, on: {left: event.k, right: other.k}, within: 3s}\n  - join: {with: {file: {path: y}}, on: {left: event.k, right: other.k}, within: 1s}\n";
        let timed = format!(
            "source: {{file: {{path: a}}, eventTime: {{field: event.ts}}, watermark: {{maxOutOfOrderness: 2s}}}}\n{joins}"
        );
        assert_eq!(bound_of(&spec(&timed)), Some(3_000));
        let untimed = format!("source: {{file: {{path: a}}}}\n{joins}");
        assert_eq!(bound_of(&spec(&untimed)), None);
        let no_join = "source: {file: {path: a}, eventTime: {field: event.ts}}\nsteps: []\n";
        assert_eq!(bound_of(&spec(no_join)), None);
    }

    /// Runs `gate.pass(me, max)` on a thread; receives once it returned.
    fn pass_on_thread(gate: &Arc<Gate>, me: usize, max: i64) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        let g = gate.clone();
        std::thread::spawn(move || {
            g.pass(me, Some(max), &AtomicBool::new(false));
            let _ = tx.send(());
        });
        rx
    }

    /// Whether `gate.pass(me, max)` returned within `deadline`.
    fn passes_within(gate: &Arc<Gate>, me: usize, max: i64, deadline: Duration) -> bool {
        pass_on_thread(gate, me, max).recv_timeout(deadline).is_ok()
    }

    #[test]
    fn a_gate_releases_the_input_ahead_when_the_other_ends_early() {
        let gate = Arc::new(Gate::new(2, 10, 60_000));
        let stop = AtomicBool::new(false);
        gate.pass(1, Some(0), &stop);
        gate.pass(0, Some(1_000), &stop);
        let rx = pass_on_thread(&gate, 0, 2_000);
        assert!(rx.try_recv().is_err());
        gate.end(1);
        assert!(
            rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "still waiting on an ended input"
        );
    }

    #[test]
    fn a_gate_releases_the_input_ahead_when_the_other_goes_idle() {
        let gate = Arc::new(Gate::new(2, 10, 200));
        let stop = AtomicBool::new(false);
        // Before input 1's last batch: it goes idle 200 ms after this.
        let started = Instant::now();
        gate.pass(1, Some(0), &stop);
        gate.pass(0, Some(1_000), &stop);
        assert!(
            passes_within(&gate, 0, 2_000, Duration::from_secs(30)),
            "still waiting on an idle input"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "did not wait"
        );
    }

    #[test]
    fn a_gate_lets_the_input_behind_catch_up_then_releases_the_other() {
        let gate = Arc::new(Gate::new(2, 10, 60_000));
        let stop = AtomicBool::new(false);
        gate.pass(0, Some(1_000), &stop);
        gate.pass(1, Some(0), &stop);
        let rx = pass_on_thread(&gate, 0, 2_000);
        for t in [100, 500, 995] {
            assert!(passes_within(&gate, 1, t, Duration::from_secs(30)));
        }
        assert!(rx.recv_timeout(Duration::from_secs(30)).is_ok());
    }
}
