use proptest::prelude::*;

use super::*;

fn policy() -> Policy {
    Policy::from(&AutoscalingSpec {
        max_replicas: 12,
        ..AutoscalingSpec::default()
    })
}

/// Samples every 15 s ending at `now`, with constant input and processing
/// rates and the lag path given.
fn samples(now: i64, lags: &[i64], input: i64, processed: i64) -> Vec<Sample> {
    let n = lags.len() as i64;
    lags.iter()
        .enumerate()
        .map(|(i, lag)| {
            let k = i as i64;
            Sample {
                at_ms: now - (n - 1 - k) * 15_000,
                lag: *lag,
                end_offsets: 1_000_000 + k * 15 * input,
                committed: 1_000_000 + k * 15 * processed,
            }
        })
        .collect()
}

fn seen(now: i64, s: &[Sample], current: i32, partitions: Option<i32>) -> Observed<'_> {
    Observed {
        now_ms: now,
        samples: s,
        current,
        ready: current,
        rolling_out: false,
        partitions,
        last_scale_ms: None,
    }
}

#[test]
fn cold_start_falls_back_to_lag_per_replica_with_a_bounded_step() {
    let s = samples(1_000_000, &[10_000], 0, 0);
    let d = decide(
        &policy(),
        &seen(1_000_000, &s, 1, None),
        &mut Memory::default(),
    );
    assert_eq!((d.desired, d.reason), (5, Reason::ScaleUp), "{d:?}");
    assert_eq!(d.recommended, 10);
}

#[test]
fn capacity_based_when_the_rate_is_known() {
    // 4 replicas busy (lag throughout) process 4000/s: capacity 1000/s each.
    // Input 3500/s, lag 15000 → (3500 + 15000/300) / (1000 × 0.7) = 5.07 → 6.
    let s = samples(1_000_000, &[15_000; 9], 3500, 4000);
    let mut m = Memory::default();
    let d = decide(&policy(), &seen(1_000_000, &s, 4, None), &mut m);
    assert_eq!(m.capacity_per_replica, Some(1000.0));
    assert_eq!(
        (d.recommended, d.desired, d.reason),
        (6, 6, Reason::ScaleUp)
    );
}

#[test]
fn never_above_the_partition_count_and_says_so() {
    let s = samples(1_000_000, &[1_000_000; 3], 0, 0);
    let p = Policy {
        max: 20,
        up_max_step: 20,
        ..policy()
    };
    let d = decide(&p, &seen(1_000_000, &s, 1, Some(6)), &mut Memory::default());
    assert_eq!((d.desired, d.reason), (6, Reason::CappedAtPartitions));
    let d = decide(&p, &seen(1_000_000, &s, 6, Some(6)), &mut Memory::default());
    assert_eq!((d.desired, d.reason), (6, Reason::CappedAtPartitions));
}

#[test]
fn counts_are_snapped_to_an_even_spread_of_partitions() {
    assert_eq!(snap(5, Some(12)), 4);
    assert_eq!(snap(7, Some(12)), 6);
    assert_eq!(snap(12, Some(12)), 12);
    assert_eq!(snap(5, None), 5);
    assert_eq!(next_up(4, Some(12)), 6);
    assert_eq!(next_up(6, Some(12)), 12);
    assert_eq!(next_up(3, None), 4);
}

#[test]
fn scale_down_waits_for_the_backlog_to_drain() {
    let p = policy();
    let mut m = Memory {
        since_ms: Some(0),
        capacity_per_replica: Some(1000.0),
        ..Memory::default()
    };
    // Input dropped to 500/s; lag still 5000 and falling.
    let s = samples(1_000_000, &[9000, 8000, 7000, 6000, 5000], 500, 600);
    let d = decide(&p, &seen(1_000_000, &s, 6, None), &mut m);
    assert_eq!((d.desired, d.reason), (6, Reason::BacklogDraining), "{d:?}");
}

#[test]
fn an_operator_restart_does_not_scale_down_on_a_partial_history() {
    let p = policy();
    let s = samples(1_000_000, &[0; 5], 100, 100);
    let mut fresh = Memory {
        capacity_per_replica: Some(1000.0),
        ..Memory::default()
    };
    let d = decide(&p, &seen(1_000_000, &s, 6, None), &mut fresh);
    assert_eq!((d.desired, d.reason), (6, Reason::Stabilizing));
    // Once the whole window was observed, it steps down by at most maxStep.
    let mut later = fresh.clone();
    let mut last = d;
    for k in 1..=21 {
        let now = 1_000_000 + k * 15_000;
        let s = samples(now, &[0; 5], 100, 100);
        last = decide(&p, &seen(now, &s, 6, None), &mut later);
    }
    assert_eq!(
        (last.desired, last.reason),
        (4, Reason::ScaleDown),
        "{last:?}"
    );
}

#[test]
fn holds_during_cooldown_rollout_and_unready_replicas() {
    let s = samples(1_000_000, &[40_000, 50_000], 0, 0);
    let p = policy();
    // The cooldown lets a scale-up follow a scale-up ...
    let mut o = seen(1_000_000, &s, 2, None);
    o.last_scale_ms = Some(1_000_000 - 30_000);
    let mut after_up = Memory {
        last_action: Some((1_000_000 - 30_000, true)),
        ..Memory::default()
    };
    let up = decide(&p, &o, &mut after_up);
    assert_eq!((up.desired, up.reason), (6, Reason::AtMax), "{up:?}");
    // ... but holds a reversal, and a scale-up after an action it does not
    // know the direction of (an operator restart).
    let mut after_down = Memory {
        last_action: Some((1_000_000 - 30_000, false)),
        ..Memory::default()
    };
    assert_eq!(decide(&p, &o, &mut after_down).reason, Reason::Cooldown);
    assert_eq!(
        decide(&p, &o, &mut Memory::default()).reason,
        Reason::Cooldown
    );
    let quiet = samples(1_000_000, &[0; 5], 100, 100);
    let mut m = Memory {
        since_ms: Some(0),
        capacity_per_replica: Some(1000.0),
        ..Memory::default()
    };
    let mut o = seen(1_000_000, &quiet, 6, None);
    o.last_scale_ms = Some(1_000_000 - 30_000);
    assert_eq!(decide(&p, &o, &mut m).reason, Reason::Cooldown);
    let mut o = seen(1_000_000, &s, 2, None);
    o.rolling_out = true;
    assert_eq!(
        decide(&p, &o, &mut Memory::default()).reason,
        Reason::RollingOut
    );
    let mut o = seen(1_000_000, &s, 2, None);
    o.ready = 1;
    assert_eq!(
        decide(&p, &o, &mut Memory::default()).reason,
        Reason::NotReady
    );
}

#[test]
fn bounds_changed_by_the_user_wait_for_a_rollout_and_for_ready_replicas() {
    let s = samples(1_000_000, &[0; 5], 0, 0);
    let p = Policy {
        min: 3,
        max: 6,
        ..policy()
    };
    // Below a raised minReplicas: held while rolling out or not ready.
    let mut o = seen(1_000_000, &s, 1, Some(12));
    o.rolling_out = true;
    let d = decide(&p, &o, &mut Memory::default());
    assert_eq!((d.desired, d.reason), (1, Reason::RollingOut));
    let mut o = seen(1_000_000, &s, 2, Some(12));
    o.ready = 1;
    let d = decide(&p, &o, &mut Memory::default());
    assert_eq!((d.desired, d.reason), (2, Reason::NotReady));
    let d = decide(
        &p,
        &seen(1_000_000, &s, 2, Some(12)),
        &mut Memory::default(),
    );
    assert_eq!((d.desired, d.reason), (3, Reason::OutsideBounds));
    // Above a lowered maxReplicas: to the bound, not to the recommendation
    // (that would skip the scale-down's holds), even with replicas not
    // ready — they may never be; never during a rollout.
    let mut o = seen(1_000_000, &s, 10, Some(12));
    o.ready = 7;
    let d = decide(&p, &o, &mut Memory::default());
    assert_eq!((d.desired, d.reason), (6, Reason::OutsideBounds));
    o.rolling_out = true;
    let d = decide(&p, &o, &mut Memory::default());
    assert_eq!((d.desired, d.reason), (10, Reason::RollingOut));
}

#[test]
fn a_restart_mid_drain_does_not_scale_on_the_backlog_alone() {
    let p = policy();
    // 4 replicas (chosen before the restart) draining 40 000 records: the
    // lag-per-replica rule alone would ask for 12.
    let s = samples(1_000_000, &[40_000], 0, 0);
    let d = decide(
        &p,
        &seen(1_000_000, &s, 4, Some(12)),
        &mut Memory::default(),
    );
    assert_eq!((d.desired, d.reason), (4, Reason::NoSamples), "{d:?}");
    // Falling lag and replicas not all measured yet: still held.
    let s = samples(1_000_000, &[40_000, 35_000], 0, 333);
    let mut o = seen(1_000_000, &s, 4, Some(12));
    o.ready = 4;
    o.last_scale_ms = Some(1_000_000 - 5_000);
    let d = decide(&p, &o, &mut Memory::default());
    assert_eq!((d.desired, d.reason), (4, Reason::BacklogDraining), "{d:?}");
    // A growing lag is a reason, rates or not.
    let s = samples(1_000_000, &[40_000, 45_000], 0, 0);
    let d = decide(
        &p,
        &seen(1_000_000, &s, 4, Some(12)),
        &mut Memory::default(),
    );
    assert_eq!((d.desired, d.reason), (6, Reason::AtMax), "{d:?}");
    // At minReplicas it is a true cold start: act on the first sample.
    let s = samples(1_000_000, &[40_000], 0, 0);
    let d = decide(
        &p,
        &seen(1_000_000, &s, 1, Some(12)),
        &mut Memory::default(),
    );
    assert_eq!((d.desired, d.reason), (4, Reason::AtMax), "{d:?}");
}

/// One poll of a random sequence: the input and processing rates (records/s)
/// over the last 15 s, whether a rollout runs, and how many replicas are
/// not ready.
#[derive(Clone, Debug)]
struct Poll {
    input: i64,
    processing: i64,
    rolling_out: bool,
    unready: i32,
}

fn poll() -> impl Strategy<Value = Poll> {
    (
        0i64..40_000,
        0i64..40_000,
        proptest::bool::weighted(0.15),
        prop_oneof![4 => Just(0), 1 => 1i32..4],
    )
        .prop_map(|(input, processing, rolling_out, unready)| Poll {
            input,
            processing,
            rolling_out,
            unready,
        })
}

/// Runs a sequence of polls through the decision with its state, as the
/// loop does, and checks every invariant at every step.
fn run_sequence(
    p: &Policy,
    partitions: Option<i32>,
    start: i32,
    polls: &[Poll],
) -> Result<(), TestCaseError> {
    let ceiling = partitions.map_or(p.max, |n| n.min(p.max));
    let floor = p.min.min(ceiling);
    let mut memory = Memory::default();
    let mut current = start;
    let (mut lag, mut end, mut committed) = (0i64, 0i64, 0i64);
    let mut history: Vec<Sample> = Vec::new();
    let mut last_scale: Option<i64> = None;
    let mut actions: Vec<(i64, i32, i32)> = Vec::new();
    let mut decided: Vec<(i64, Decision)> = Vec::new();
    let t0 = 1_000_000_000;
    for (k, step) in polls.iter().enumerate() {
        let now = t0 + k as i64 * 15_000;
        end += step.input * 15;
        lag += step.input * 15;
        let done = (step.processing * 15).min(lag);
        lag -= done;
        committed += done;
        history.push(Sample {
            at_ms: now,
            lag,
            end_offsets: end,
            committed,
        });
        let seen = Observed {
            now_ms: now,
            samples: &history,
            current,
            ready: (current - step.unready).max(0),
            rolling_out: step.rolling_out,
            partitions,
            last_scale_ms: last_scale,
        };
        let d = decide(p, &seen, &mut memory);
        decided.push((now, d));
        prop_assert!(
            (floor..=ceiling).contains(&d.desired),
            "out of bounds at {k}: {d:?}"
        );
        if d.desired == current {
            continue;
        }
        prop_assert!(!step.rolling_out, "acted during a rollout at {k}: {d:?}");
        prop_assert!(
            step.unready == 0,
            "acted with replicas not ready at {k}: {d:?}"
        );
        let cooling = last_scale.is_some_and(|t| now - t < p.cooldown_ms);
        if d.desired < current {
            prop_assert!(!cooling, "scaled down within the cooldown at {k}: {d:?}");
            prop_assert!(
                now - t0 >= p.down_window_ms,
                "scaled down before a full window at {k}"
            );
            // Nothing recommended over the window asked for more.
            for (at, earlier) in decided
                .iter()
                .filter(|(at, _)| now - at <= p.down_window_ms)
            {
                prop_assert!(
                    earlier.recommended <= d.desired,
                    "{at}: {earlier:?} then {d:?}"
                );
            }
            prop_assert!(
                lag <= p.target_lag_per_replica,
                "scaled down with a backlog: {d:?}"
            );
            let first = history
                .iter()
                .find(|s| now - s.at_ms <= 120_000)
                .map_or(lag, |s| s.lag);
            prop_assert!(
                lag == 0 || lag >= first,
                "scaled down while draining: {d:?}"
            );
        } else if let Some((_, from, to)) = actions.last() {
            // A scale-up right after a scale-down waits out the cooldown.
            prop_assert!(
                !(cooling && to < from),
                "reversed within the cooldown at {k}: {d:?}"
            );
        }
        actions.push((now, current, d.desired));
        last_scale = Some(now);
        current = d.desired;
    }
    // No up-down-up (nor down-up-down) within the cooldown.
    for w in actions.windows(3) {
        let turns =
            (w[0].2 > w[0].1) != (w[1].2 > w[1].1) && (w[1].2 > w[1].1) != (w[2].2 > w[2].1);
        prop_assert!(
            !(turns && w[2].0 - w[0].0 < p.cooldown_ms),
            "flapping: {actions:?}"
        );
    }
    Ok(())
}

proptest! {
    /// Whatever was observed: a change stays within bounds and the
    /// partition count, moves at most one step (or to the next even
    /// spread), and never scales down with lag above the target.
    #[test]
    fn decisions_respect_bounds_steps_and_backlogs(
        lags in proptest::collection::vec(0i64..200_000, 1..10),
        input in 0i64..50_000,
        processed in 0i64..50_000,
        current in 1i32..16,
        partitions in proptest::option::of(1i32..24),
        min in 0i32..3,
        max in 3i32..16,
        cap in proptest::option::of(100.0f64..10_000.0),
    ) {
        let p = Policy { min, max, ..policy() };
        let now = 10_000_000;
        let s = samples(now, &lags, input, processed);
        let mut m = Memory { since_ms: Some(0), capacity_per_replica: cap, ..Memory::default() };
        let d = decide(&p, &seen(now, &s, current, partitions), &mut m);
        if d.desired != current {
            // The partition count wins over minReplicas: a replica above it idles.
            let floor = min.min(partitions.unwrap_or(i32::MAX));
            prop_assert!(d.desired >= floor && d.desired <= max, "{d:?}");
            if let Some(part) = partitions { prop_assert!(d.desired <= part, "{d:?}"); }
        }
        let inside = current <= max
            && current >= min.min(partitions.unwrap_or(i32::MAX))
            && partitions.is_none_or(|part| current <= part);
        if d.desired > current && inside {
            let limit = next_up(current, partitions).max(current + p.up_max_step);
            prop_assert!(d.desired <= limit, "{d:?}");
        }
        if d.desired < current && inside {
            prop_assert!(d.lag <= p.target_lag_per_replica, "{d:?}");
            let floor = (current - p.down_max_step).max(1);
            prop_assert!(snap(d.desired, partitions) >= snap(floor, partitions), "{d:?}");
        }
    }

    /// Sequences of polls through the decision and its memory: the count
    /// stays within the bounds and the partitions, nothing moves during a
    /// rollout or with replicas not ready, nothing scales down within the
    /// cooldown, before the window agrees or while a backlog drains, and
    /// nothing flaps within the cooldown.
    #[test]
    fn sequences_of_decisions_keep_every_invariant(
        polls in proptest::collection::vec(poll(), 1..80),
        partitions in proptest::option::of(1i32..24),
        min in 0i32..3,
        max in 3i32..16,
        up_max_step in 1i32..6,
        down_max_step in 1i32..6,
        up_window_s in prop_oneof![Just(0i64), 0i64..60],
        down_window_s in 0i64..600,
        cooldown_s in 0i64..180,
        start in 1i32..16,
    ) {
        let p = Policy {
            min,
            max,
            up_max_step,
            down_max_step,
            up_window_ms: up_window_s * 1000,
            down_window_ms: down_window_s * 1000,
            cooldown_ms: cooldown_s * 1000,
            ..policy()
        };
        let ceiling = partitions.map_or(max, |n| n.min(max));
        let start = start.clamp(min.min(ceiling).max(1), ceiling);
        run_sequence(&p, partitions, start, &polls)?;
    }
}
