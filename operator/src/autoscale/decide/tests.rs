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
    let d = decide(&p, &seen(1_000_000, &s, 2, Some(6)), &mut Memory::default());
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
    let s = samples(1_000_000, &[50_000], 0, 0);
    let p = policy();
    // The cooldown holds a scale-down, never a scale-up.
    let mut o = seen(1_000_000, &s, 2, None);
    o.last_scale_ms = Some(1_000_000 - 30_000);
    let up = decide(&p, &o, &mut Memory::default());
    assert_eq!((up.desired, up.reason), (6, Reason::AtMax), "{up:?}");
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
}
