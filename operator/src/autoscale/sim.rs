//! A model of processor replicas on a partitioned topic, load shapes, and a
//! KEDA/HPA-style baseline, so scaling policies can be compared on the same
//! load without a cluster (the `autoscale-sim` program prints the table).
//!
//! # The model
//! Every second `rate(t)` records arrive. `r` ready replicas share `P`
//! partitions evenly; each processes at most `R` records/s, so the busiest
//! replica (with `ceil(P / r)` partitions) bounds the throughput at
//! `R × P / ceil(P / r)`. A new replica is ready `startup` seconds after it
//! is asked for; every change of the ready set pauses all consumption for
//! `rebalance` seconds (a consumer-group rebalance). Lag, end offsets and
//! committed offsets are sampled every `poll` seconds, as the operator does.

use super::decide::{self, Memory, Observed, Policy, Sample};

/// The cluster the policies scale.
#[derive(Clone, Copy, Debug)]
pub struct Model {
    /// Partitions of the input topic.
    pub partitions: i32,
    /// Records/s one replica processes on its partitions.
    pub per_replica_rate: f64,
    /// Seconds from asking for a replica to its first record.
    pub startup_s: i64,
    /// Seconds of no progress after each change of the ready replicas.
    pub rebalance_s: i64,
    /// Seconds between samples (and decisions).
    pub poll_s: i64,
    /// Replicas at the start.
    pub initial: i32,
}

/// A load shape: records/s over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A quiet baseline, a 20-minute spike 12× higher, quiet again.
    StepSpike,
    /// A sine over a one-hour "day", between 10% and 90% of the peak.
    Diurnal,
    /// Two minutes on at 80% of the peak, three minutes at 6%, repeated.
    Bursty,
    /// From 3% to 90% of the peak over an hour, then flat.
    SlowRamp,
}

impl Shape {
    /// Every shape, in table order.
    pub const ALL: [Shape; 4] = [
        Shape::StepSpike,
        Shape::Diurnal,
        Shape::Bursty,
        Shape::SlowRamp,
    ];

    /// Its name in the table.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::StepSpike => "step spike",
            Self::Diurnal => "diurnal sine",
            Self::Bursty => "bursty on/off",
            Self::SlowRamp => "slow ramp",
        }
    }

    /// Seconds simulated.
    #[must_use]
    pub fn duration_s(self) -> i64 {
        match self {
            Self::StepSpike | Self::Bursty => 3600,
            Self::Diurnal => 7200,
            Self::SlowRamp => 4800,
        }
    }

    /// Records/s at second `t` for a cluster whose full capacity is `peak`.
    #[must_use]
    pub fn rate(self, t: i64, peak: f64) -> f64 {
        let t = t as f64;
        match self {
            Self::StepSpike => {
                if (600.0..1800.0).contains(&t) {
                    0.6 * peak
                } else {
                    0.05 * peak
                }
            }
            Self::Diurnal => {
                let phase = 2.0 * std::f64::consts::PI * t / 3600.0;
                peak * (0.5 - 0.4 * phase.cos())
            }
            Self::Bursty => {
                if t % 300.0 < 120.0 {
                    0.8 * peak
                } else {
                    0.06 * peak
                }
            }
            Self::SlowRamp => peak * (0.03 + 0.87 * (t / 3600.0).min(1.0)),
        }
    }
}

/// A scaling policy under test.
pub trait Scaler {
    /// Its name in the table.
    fn name(&self) -> &str;
    /// The replicas it wants after seeing `samples` (oldest first).
    fn desired(&mut self, now_ms: i64, samples: &[Sample], current: i32, ready: i32) -> i32;
}

/// Tributary's policy ([`decide::decide`]) with its memory.
pub struct Ours {
    policy: Policy,
    memory: Memory,
    partitions: i32,
    last_scale_ms: Option<i64>,
}

impl Ours {
    /// Our policy with `policy` on `partitions`.
    #[must_use]
    pub fn new(policy: Policy, partitions: i32) -> Self {
        Self {
            policy,
            memory: Memory::default(),
            partitions,
            last_scale_ms: None,
        }
    }
}

impl Scaler for Ours {
    fn name(&self) -> &str {
        "tributary"
    }

    fn desired(&mut self, now_ms: i64, samples: &[Sample], current: i32, ready: i32) -> i32 {
        let seen = Observed {
            now_ms,
            samples,
            current,
            ready,
            rolling_out: ready < current,
            partitions: Some(self.partitions),
            last_scale_ms: self.last_scale_ms,
        };
        let d = decide::decide(&self.policy, &seen, &mut self.memory);
        if d.desired != current {
            self.last_scale_ms = Some(now_ms);
        }
        d.desired
    }
}

/// KEDA's Kafka scaler under the HPA's default behaviour: desired =
/// ceil(total lag / lagThreshold) with a 10% tolerance, never above the
/// partition count; scale-up at once by max(100%, 4 pods) per 15 s;
/// scale-down to the highest recommendation of the last 300 s.
pub struct KedaHpa {
    threshold: f64,
    min: i32,
    max: i32,
    partitions: i32,
    history: Vec<(i64, i32)>,
}

impl KedaHpa {
    /// The baseline with `lagThreshold` and bounds.
    #[must_use]
    pub fn new(threshold: i64, min: i32, max: i32, partitions: i32) -> Self {
        Self {
            threshold: threshold as f64,
            min,
            max,
            partitions,
            history: Vec::new(),
        }
    }
}

impl Scaler for KedaHpa {
    fn name(&self) -> &str {
        "KEDA-style"
    }

    fn desired(&mut self, now_ms: i64, samples: &[Sample], current: i32, _ready: i32) -> i32 {
        let lag = samples.last().map_or(0, |s| s.lag) as f64;
        let current_f = f64::from(current.max(1));
        let ratio = lag / current_f / self.threshold;
        let mut rec = if (ratio - 1.0).abs() <= 0.1 {
            current
        } else {
            (lag / self.threshold).ceil() as i32
        };
        rec = rec.clamp(self.min, self.max.min(self.partitions));
        self.history.push((now_ms, rec));
        self.history.retain(|(t, _)| now_ms - t <= 300_000);
        if rec > current {
            rec.min((current * 2).max(current + 4))
        } else {
            let stable = self.history.iter().map(|(_, r)| *r).max().unwrap_or(rec);
            stable.min(current)
        }
    }
}

/// What one run measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Report {
    /// Highest lag (records).
    pub max_lag: f64,
    /// Seconds with lag above the target.
    pub seconds_above_target: i64,
    /// Replica-minutes paid (starting replicas count).
    pub replica_minutes: f64,
    /// Scaling actions.
    pub actions: u32,
    /// Records not yet processed at the end.
    pub final_lag: f64,
}

/// Runs `shape` on `model` under `scaler`; lag above `lag_target` counts
/// as time above target.
pub fn run(shape: Shape, model: &Model, scaler: &mut dyn Scaler, lag_target: f64) -> Report {
    let p = model.partitions;
    let peak = model.per_replica_rate * f64::from(p);
    let mut pods: Vec<i64> = vec![0; model.initial.max(0) as usize];
    let mut spec = model.initial;
    let mut lag = 0.0_f64;
    let (mut end, mut committed) = (0.0_f64, 0.0_f64);
    let mut paused_until = 0_i64;
    let mut last_ready = model.initial;
    let mut samples: Vec<Sample> = Vec::new();
    let mut report = Report::default();
    for t in 0..shape.duration_s() {
        let ready = pods.iter().filter(|at| **at <= t).count() as i32;
        if ready != last_ready {
            paused_until = t + model.rebalance_s;
            last_ready = ready;
        }
        let arriving = shape.rate(t, peak);
        end += arriving;
        lag += arriving;
        if t >= paused_until && ready > 0 {
            let per = (p + ready - 1) / ready;
            let capacity = model.per_replica_rate * f64::from(p) / f64::from(per);
            let done = lag.min(capacity);
            lag -= done;
            committed += done;
        }
        report.max_lag = report.max_lag.max(lag);
        if lag > lag_target {
            report.seconds_above_target += 1;
        }
        report.replica_minutes += pods.len() as f64 / 60.0;
        if t % model.poll_s == 0 {
            samples.push(Sample {
                at_ms: t * 1000,
                lag: lag as i64,
                end_offsets: end as i64,
                committed: committed as i64,
            });
            if samples.len() > 40 {
                samples.remove(0);
            }
            let want = scaler.desired(t * 1000, &samples, spec, ready);
            if want != spec {
                report.actions += 1;
                if want > spec {
                    pods.extend(std::iter::repeat_n(
                        t + model.startup_s,
                        (want - spec) as usize,
                    ));
                } else {
                    // Pending pods go first, then the newest ready ones.
                    pods.sort_unstable();
                    pods.truncate(want.max(0) as usize);
                }
                spec = want;
            }
        }
    }
    report.final_lag = lag;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            partitions: 12,
            per_replica_rate: 5000.0,
            startup_s: 20,
            rebalance_s: 5,
            poll_s: 15,
            initial: 1,
        }
    }

    /// A fixed replica count far below the spike's need must fall behind:
    /// the model is not rigged to make every policy look good.
    #[test]
    fn a_fixed_single_replica_falls_behind_on_a_spike() {
        struct Fixed;
        impl Scaler for Fixed {
            fn name(&self) -> &str {
                "fixed"
            }
            fn desired(&mut self, _: i64, _: &[Sample], current: i32, _: i32) -> i32 {
                current
            }
        }
        let r = run(Shape::StepSpike, &model(), &mut Fixed, 50_000.0);
        assert_eq!(r.actions, 0);
        assert!(r.final_lag > 1e6, "{r:?}");
    }

    /// Regression guard on the policy's quality: on every shape ours
    /// drains the backlog and spends no more time above the lag target than
    /// the KEDA-style baseline (the simulation is deterministic).
    #[test]
    fn ours_drains_every_shape_and_beats_the_baseline_on_time_above_target() {
        let m = model();
        let spec = tributary_crds::AutoscalingSpec {
            max_replicas: 12,
            target_lag_per_replica: 10_000,
            ..Default::default()
        };
        for shape in Shape::ALL {
            let ours = run(
                shape,
                &m,
                &mut Ours::new(Policy::from(&spec), m.partitions),
                50_000.0,
            );
            let keda = run(
                shape,
                &m,
                &mut KedaHpa::new(10_000, 1, 12, m.partitions),
                50_000.0,
            );
            assert!(ours.final_lag < 100_000.0, "{}: {ours:?}", shape.name());
            assert!(
                ours.seconds_above_target <= keda.seconds_above_target,
                "{}: ours {ours:?} vs KEDA-style {keda:?}",
                shape.name()
            );
        }
    }
}
