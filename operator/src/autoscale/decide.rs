//! The scaling decision: one pure function of what was observed.
//!
//! # The formula
//! With a measured per-replica capacity `c` (records/s one replica processes
//! when it has a backlog) and the input rate `λ`, the replicas needed to
//! keep up and drain the backlog `L` within `catchUp` are
//!
//! ```text
//! needed = ceil((λ + L / catchUp) / (c × targetUtilization))
//! ```
//!
//! Until `c` is known (a cold start: no backlog seen yet), the fallback is
//! `ceil(L / targetLagPerReplica)`, never below the current count; above
//! `minReplicas` (a count chosen already, e.g. before an operator restart)
//! it only adds replicas when the lag grows, so a restart mid-drain does
//! not act on the backlog alone.
//! `needed` is clamped to `[minReplicas, maxReplicas]`, capped at the
//! partition count (a replica above it would sit idle), and snapped down to
//! the smallest count with the same partitions per replica (12 partitions:
//! 5 replicas carry 3, 3, 2, 2, 2 — no faster than 4). With partitions the
//! capacity of `r` replicas is `c × P / ceil(P / r)`, not `c × r`, and the
//! formula solves for that. The partition cap wins over `minReplicas`.
//!
//! # What holds a change
//! A rollout in progress or replicas not ready (the rate is not
//! representative, and a scale-up waits for the last one's replicas) —
//! also for moving into bounds the user changed, except lowering the count
//! to a lowered ceiling, which reads no rate and must not wait for replicas
//! that may never be ready. For scale-up, the `scaleUp` stabilization
//! window (the smallest recommendation over it is used) and `maxStep`; for
//! scale-down, a backlog still draining, and the `scaleDown` window (the
//! largest recommendation over it, and only once the window has been
//! observed in full — so an operator restart never scales down on a
//! partial history). A scale-down removes at most `maxStep` replicas'
//! worth of capacity: it goes to the smallest count whose busiest replica
//! carries no more partitions than with `current − maxStep` (12
//! partitions, 12 → 10 replicas leaves 2 partitions on the busiest, as 6
//! do, so it goes to 6).
//!
//! The `cooldown` after an action holds the next one, except a scale-up
//! that continues a scale-up: that one is paced by readiness and the
//! settle time of the rate instead (a rebalance costs seconds here, not a
//! job restart as in Flink, and a backlog growing while replicas could be
//! added is the complaint users of lag scalers have most — why the HPA
//! dropped its upscale delay). A scale-up after a scale-down, or after an
//! action of unknown direction (an operator restart), waits it out, so
//! nothing flaps within a cooldown.

use std::collections::VecDeque;

use tributary_crds::AutoscalingSpec;

/// One reading of the source, every `pollInterval`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When it was read (ms).
    pub at_ms: i64,
    /// Records behind (sum over partitions).
    pub lag: i64,
    /// Sum of the partitions' end offsets: grows with the input.
    pub end_offsets: i64,
    /// Sum of the group's committed offsets: grows with processing.
    pub committed: i64,
}

/// The knobs of `spec.autoscaling`, in the units the decision uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Lower bound.
    pub min: i32,
    /// Upper bound.
    pub max: i32,
    /// Fallback target while the capacity is unknown.
    pub target_lag_per_replica: i64,
    /// Drain a backlog within this many seconds.
    pub catch_up_s: f64,
    /// Fraction of the measured capacity to plan for.
    pub target_utilization: f64,
    /// Scale-up stabilization window (ms).
    pub up_window_ms: i64,
    /// Most replicas added per action.
    pub up_max_step: i32,
    /// Scale-down stabilization window (ms).
    pub down_window_ms: i64,
    /// Most replicas removed per action.
    pub down_max_step: i32,
    /// Least time between two actions (ms).
    pub cooldown_ms: i64,
}

impl From<&AutoscalingSpec> for Policy {
    fn from(s: &AutoscalingSpec) -> Self {
        let ms = |d: &tributary_crds::Duration| i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX);
        Self {
            min: s.min_replicas.max(0),
            max: s.max_replicas.max(1),
            target_lag_per_replica: s.target_lag_per_replica.max(1),
            catch_up_s: s.catch_up.0.as_secs_f64().max(1.0),
            target_utilization: s.target_utilization.clamp(0.05, 1.0),
            up_window_ms: ms(&s.scale_up.stabilization_window),
            up_max_step: s.scale_up.max_step.max(1),
            down_window_ms: ms(&s.scale_down.stabilization_window),
            down_max_step: s.scale_down.max_step.max(1),
            cooldown_ms: ms(&s.cooldown),
        }
    }
}

/// What the decision sees besides the samples.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// Now (ms).
    pub now_ms: i64,
    /// Recent samples, oldest first.
    pub samples: &'a [Sample],
    /// `spec.replicas`.
    pub current: i32,
    /// Ready processor replicas.
    pub ready: i32,
    /// The Deployment is rolling out (new pods not yet all updated).
    pub rolling_out: bool,
    /// Partitions (or shards) of the source, when known.
    pub partitions: Option<i32>,
    /// The last scaling action (ms), from `status.lastScaleTime`.
    pub last_scale_ms: Option<i64>,
}

/// What the decision remembers between calls (in memory: an operator
/// restart starts it afresh, which only delays a scale-down).
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// When this memory started (ms); `None` before the first decision.
    pub since_ms: Option<i64>,
    /// Recent recommendations `(at, replicas)` for the stabilization windows.
    pub recommendations: VecDeque<(i64, i32)>,
    /// Records/s one replica processes when it has a backlog.
    pub capacity_per_replica: Option<f64>,
    /// This memory's last change `(at, upwards)`: the cooldown holds a
    /// reversal but lets a scale-up follow a scale-up.
    pub last_action: Option<(i64, bool)>,
    /// The ready count at the last decision, and when it was first seen
    /// different from the one before (the group rebalances then).
    pub ready: Option<(i32, Option<i64>)>,
}

/// Why the decision is what it is (the `Autoscaling` condition's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Fewer than two samples: no rate yet.
    NoSamples,
    /// More replicas are needed.
    ScaleUp,
    /// Fewer replicas are enough.
    ScaleDown,
    /// The current count is right.
    Steady,
    /// Within the cooldown after the last action.
    Cooldown,
    /// A rollout is in progress.
    RollingOut,
    /// Not every replica is ready.
    NotReady,
    /// Fewer would do, but a backlog is still draining.
    BacklogDraining,
    /// The stabilization window does not agree yet.
    Stabilizing,
    /// More would be needed, but not above the partition count.
    CappedAtPartitions,
    /// More would be needed, but not above `maxReplicas`.
    AtMax,
    /// The current count is outside `[minReplicas, maxReplicas]` or above
    /// the partition count; set to the recommendation at once.
    OutsideBounds,
}

impl Reason {
    /// CamelCase, as a condition reason.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSamples => "NoSamples",
            Self::ScaleUp => "ScaleUp",
            Self::ScaleDown => "ScaleDown",
            Self::Steady => "Steady",
            Self::Cooldown => "Cooldown",
            Self::RollingOut => "RollingOut",
            Self::NotReady => "NotReady",
            Self::BacklogDraining => "BacklogDraining",
            Self::Stabilizing => "Stabilizing",
            Self::CappedAtPartitions => "CappedAtPartitions",
            Self::AtMax => "AtMaxReplicas",
            Self::OutsideBounds => "OutsideBounds",
        }
    }
}

/// The outcome of one decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// Replicas to set (equal to `current` when held).
    pub desired: i32,
    /// Why.
    pub reason: Reason,
    /// What the formula asked for, after bounds, before holds and steps.
    pub recommended: i32,
    /// Lag used (latest sample).
    pub lag: i64,
    /// Input rate (records/s) over the samples.
    pub input_rate: Option<f64>,
    /// Capacity per replica used.
    pub capacity_per_replica: Option<f64>,
}

impl Decision {
    /// A human sentence for the condition message and the Event.
    #[must_use]
    pub fn message(&self, current: i32) -> String {
        let rate = |r: Option<f64>| r.map_or_else(|| "unknown".to_owned(), |r| format!("{r:.0}/s"));
        format!(
            "{}: {current} → {} replicas (recommended {}; lag {} records, input {}, capacity per replica {})",
            self.reason.as_str(),
            self.desired,
            self.recommended,
            self.lag,
            rate(self.input_rate),
            rate(self.capacity_per_replica),
        )
    }
}

/// Samples older than this do not count for rates.
const RATE_WINDOW_MS: i64 = 120_000;

/// After an action, samples this much later measure the new replica set
/// (a consumer-group rebalance takes a few seconds).
const SETTLE_MS: i64 = 10_000;

/// Decides the replica count from what was observed; updates `memory`.
#[must_use]
pub fn decide(policy: &Policy, seen: &Observed<'_>, memory: &mut Memory) -> Decision {
    let d = decide_once(policy, seen, memory);
    if d.desired != seen.current {
        memory.last_action = Some((seen.now_ms, d.desired > seen.current));
    }
    d
}

fn decide_once(policy: &Policy, seen: &Observed<'_>, memory: &mut Memory) -> Decision {
    let since = *memory.since_ms.get_or_insert(seen.now_ms);
    let current = seen.current;
    let Some(last) = seen.samples.last() else {
        return hold(current, Reason::NoSamples, 0, None, memory);
    };
    let lag = last.lag.max(0);
    let window: Vec<&Sample> = seen
        .samples
        .iter()
        .filter(|s| last.at_ms - s.at_ms <= RATE_WINDOW_MS)
        .collect();
    let first = window[0];
    let span_s = (last.at_ms - first.at_ms) as f64 / 1000.0;
    let input_rate =
        (span_s > 0.0).then(|| ((last.end_offsets - first.end_offsets).max(0) as f64) / span_s);
    // The group rebalances when a replica becomes ready (or goes), which
    // is often well after the patch that asked for it (scheduling, image
    // pull, start-up): note when the ready count was seen changing.
    let ready_changed_ms = match memory.ready {
        Some((r, at)) if r == seen.ready => at,
        Some(_) => Some(seen.now_ms),
        None => None,
    };
    memory.ready = Some((seen.ready, ready_changed_ms));
    // Processing rates only from samples after the last action and the
    // last change of the ready set settled: a rebalance pause would read
    // as a slow replica.
    let unsettled_since = seen.last_scale_ms.max(ready_changed_ms);
    let settled: Vec<&Sample> = window
        .iter()
        .copied()
        .filter(|s| unsettled_since.is_none_or(|t| s.at_ms - t >= SETTLE_MS))
        .collect();
    if !seen.rolling_out
        && seen.ready >= current
        && seen.ready > 0
        && let (Some(a), Some(b)) = (settled.first(), settled.last())
        && b.at_ms > a.at_ms
    {
        let rate =
            ((b.committed - a.committed).max(0) as f64) * 1000.0 / (b.at_ms - a.at_ms) as f64;
        learn_capacity(memory, rate / f64::from(seen.ready), &settled);
    }
    let capacity = memory.capacity_per_replica;
    let ceiling = seen
        .partitions
        .filter(|p| *p > 0)
        .map_or(policy.max, |p| p.min(policy.max));
    // Set when the cold-start rule keeps a count someone already chose.
    let mut waiting = None;
    let mut needed = match (input_rate, capacity) {
        (Some(input), Some(c)) if c > 0.0 => {
            let demand = input + lag as f64 / policy.catch_up_s;
            replicas_for(demand, c * policy.target_utilization, seen.partitions)
        }
        // Idle: nothing behind, nothing coming; the fewest will do.
        _ if lag == 0 && input_rate.is_some_and(|r| r == 0.0) => policy.min,
        // Cold start: lag per replica, and never below what runs (no rate
        // says fewer would do).
        _ => {
            let by_lag =
                ((lag + policy.target_lag_per_replica - 1) / policy.target_lag_per_replica) as i32;
            // Above minReplicas the count was chosen already (by this
            // autoscaler before a restart, or by the user): without a rate,
            // only a growing lag says it is too small. A restart mid-drain
            // must not read the backlog alone as a reason to scale.
            // (At the ceiling either answer is the same; the cap says why.)
            if by_lag > current && current > policy.min && current < ceiling && !growing(&window) {
                waiting = Some(if window.len() < 2 {
                    Reason::NoSamples
                } else {
                    Reason::BacklogDraining
                });
                current
            } else {
                if by_lag < current && draining(&window) {
                    waiting = Some(Reason::BacklogDraining);
                }
                by_lag.max(current)
            }
        }
    };
    let mut capped = None;
    if needed > policy.max {
        needed = policy.max;
        capped = Some(Reason::AtMax);
    }
    if let Some(p) = seen.partitions.filter(|p| *p > 0)
        && needed > p
    {
        needed = p;
        capped = Some(Reason::CappedAtPartitions);
    }
    needed = snap(needed.max(policy.min), seen.partitions);
    memory.recommendations.push_back((seen.now_ms, needed));
    let keep = policy.up_window_ms.max(policy.down_window_ms);
    while memory
        .recommendations
        .front()
        .is_some_and(|(t, _)| seen.now_ms - t > keep)
    {
        memory.recommendations.pop_front();
    }
    let decision = |desired: i32, reason: Reason| Decision {
        desired,
        reason,
        recommended: needed,
        lag,
        input_rate,
        capacity_per_replica: capacity,
    };
    if needed == current {
        return decision(current, capped.or(waiting).unwrap_or(Reason::Steady));
    }
    let floor = policy.min.min(ceiling);
    let outside = current > ceiling || current < floor;
    if seen.rolling_out {
        return decision(current, Reason::RollingOut);
    }
    // Not ready holds every action but one: removing replicas above a
    // lowered ceiling. It reads no rate, and a replica that never becomes
    // ready (no room to schedule it) is often why the user lowered the
    // bound — holding would wait for it forever.
    if seen.ready < current && current <= ceiling {
        return decision(current, Reason::NotReady);
    }
    // Bounds the user changed: the nearest count inside them, as the HPA
    // clamps; the policy moves on from there at the next poll.
    if outside {
        return decision(current.clamp(floor, ceiling), Reason::OutsideBounds);
    }
    let cooling = seen
        .last_scale_ms
        .is_some_and(|t| seen.now_ms - t < policy.cooldown_ms);
    let over = |window_ms: i64| {
        memory
            .recommendations
            .iter()
            .filter(move |(t, _)| seen.now_ms - t <= window_ms)
            .map(|(_, r)| *r)
    };
    if needed > current {
        // The cooldown holds a reversal (up right after a down) and any
        // scale-up whose predecessor is unknown (after a restart); a
        // scale-up continuing a scale-up is paced by readiness instead.
        let last_up = memory
            .last_action
            .filter(|(t, _)| seen.last_scale_ms.is_none_or(|s| *t >= s))
            .is_some_and(|(_, up)| up);
        if cooling && !last_up {
            return decision(current, Reason::Cooldown);
        }
        let stable = over(policy.up_window_ms).min().unwrap_or(needed);
        if stable <= current {
            return decision(current, Reason::Stabilizing);
        }
        // A bounded step, but at least to the next count that takes load
        // off the busiest replica (never past the stable recommendation).
        let stepped = snap(stable.min(current + policy.up_max_step), seen.partitions);
        let desired = stepped.max(next_up(current, seen.partitions)).min(stable);
        return decision(desired, capped.unwrap_or(Reason::ScaleUp));
    }
    if cooling {
        return decision(current, Reason::Cooldown);
    }
    if lag > policy.target_lag_per_replica || draining(&window) {
        return decision(current, Reason::BacklogDraining);
    }
    if seen.now_ms - since < policy.down_window_ms {
        return decision(current, Reason::Stabilizing);
    }
    let stable = over(policy.down_window_ms).max().unwrap_or(needed);
    if stable >= current {
        return decision(current, Reason::Stabilizing);
    }
    // At most maxStep replicas' worth of capacity: the smallest count whose
    // busiest replica carries no more partitions than with current − maxStep.
    let step_floor = snap((current - policy.down_max_step).max(1), seen.partitions);
    let desired = stable.max(step_floor).max(policy.min);
    decision(desired, Reason::ScaleDown)
}

fn hold(current: i32, reason: Reason, lag: i64, rate: Option<f64>, memory: &Memory) -> Decision {
    Decision {
        desired: current,
        reason,
        recommended: current,
        lag,
        input_rate: rate,
        capacity_per_replica: memory.capacity_per_replica,
    }
}

/// The lag grew across the window (two samples or more).
fn growing(window: &[&Sample]) -> bool {
    match (window.first(), window.last()) {
        (Some(a), Some(b)) => window.len() >= 2 && b.lag > a.lag,
        _ => false,
    }
}

/// A backlog is draining when lag fell across the window but is not gone.
fn draining(window: &[&Sample]) -> bool {
    match (window.first(), window.last()) {
        (Some(a), Some(b)) => b.lag > 0 && b.lag < a.lag,
        _ => false,
    }
}

/// Updates the capacity estimate from a per-replica processing rate.
///
/// With a backlog through the whole window the replicas were busy, so the
/// rate is their capacity (smoothed). Without one it is only a lower bound.
fn learn_capacity(memory: &mut Memory, per_replica: f64, window: &[&Sample]) {
    if window.len() < 2 || per_replica <= 0.0 {
        return;
    }
    let busy = window.iter().all(|s| s.lag > 0)
        && window.last().is_some_and(|s| s.lag as f64 > per_replica);
    memory.capacity_per_replica = Some(match (memory.capacity_per_replica, busy) {
        (Some(c), true) => 0.5 * c + 0.5 * per_replica,
        (None, true) => per_replica,
        // A lower bound: plan with it until a busy window measures more.
        (Some(c), false) => c.max(per_replica),
        (None, false) => per_replica,
    });
}

/// The fewest replicas that carry `demand` records/s when one replica
/// plans for `per_replica` on an even share of the partitions. With `P`
/// partitions the busiest of `r` replicas has `ceil(P / r)` of them, so the
/// throughput is `per_replica × P / ceil(P / r)`, not `per_replica × r`.
fn replicas_for(demand: f64, per_replica: f64, partitions: Option<i32>) -> i32 {
    let linear = (demand / per_replica).ceil().max(0.0);
    match partitions {
        Some(p) if p > 0 => {
            // Most partitions one replica may carry and keep up.
            let k = (per_replica * f64::from(p) / demand.max(f64::MIN_POSITIVE)).floor();
            if k < 1.0 {
                p + 1 // more than the partitions: the caller caps and says so
            } else {
                let k = (k as i32).min(p);
                (p + k - 1) / k
            }
        }
        _ => linear.min(f64::from(i32::MAX)) as i32,
    }
}

/// The smallest replica count with the same most-loaded replica as `r`:
/// `ceil(P / ceil(P / r))`.
#[must_use]
pub fn snap(r: i32, partitions: Option<i32>) -> i32 {
    match partitions {
        Some(p) if p > 0 && r > 0 => {
            let per = (p + r - 1) / r;
            (p + per - 1) / per
        }
        _ => r,
    }
}

/// The smallest count above `current` that lowers the partitions of the
/// busiest replica.
fn next_up(current: i32, partitions: Option<i32>) -> i32 {
    match partitions {
        Some(p) if p > 0 && current > 0 && current < p => {
            let per = (p + current - 1) / current - 1;
            (p + per - 1) / per
        }
        _ => current + 1,
    }
}

#[cfg(test)]
mod tests;
