//! Replays load shapes against Tributary's scaling policy and a
//! KEDA/HPA-style one on the same model, and prints what each cost.
//!
//! `cargo run --release -p tributary-operator --bin autoscale-sim`

use clap::Parser;
use tributary_crds::AutoscalingSpec;
use tributary_operator::autoscale::Policy;
use tributary_operator::autoscale::sim::{self, KedaHpa, Model, Ours, Scaler, Shape};

/// Compare scaling policies on simulated load.
#[derive(Parser)]
struct Args {
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Records/s one replica processes.
    #[arg(long, default_value_t = 5000.0)]
    per_replica_rate: f64,
    /// Seconds before a new replica processes.
    #[arg(long, default_value_t = 20)]
    startup: i64,
    /// Seconds of no progress after each rebalance.
    #[arg(long, default_value_t = 5)]
    rebalance: i64,
    /// Lag (records) above which time is counted as "above target".
    #[arg(long, default_value_t = 50_000.0)]
    lag_target: f64,
    /// KEDA lagThreshold and our targetLagPerReplica.
    #[arg(long, default_value_t = 10_000)]
    threshold: i64,
    /// maxReplicas for both.
    #[arg(long, default_value_t = 12)]
    max: i32,
}

fn main() {
    let a = Args::parse();
    let model = Model {
        partitions: a.partitions,
        per_replica_rate: a.per_replica_rate,
        startup_s: a.startup,
        rebalance_s: a.rebalance,
        poll_s: 15,
        initial: 1,
    };
    let spec = AutoscalingSpec {
        max_replicas: a.max,
        target_lag_per_replica: a.threshold,
        ..AutoscalingSpec::default()
    };
    println!(
        "model: {} partitions, {} rec/s per replica, startup {} s, rebalance pause {} s, poll 15 s; lag target {}",
        a.partitions, a.per_replica_rate, a.startup, a.rebalance, a.lag_target
    );
    println!("| shape | policy | max lag | s above target | replica-min | actions | lag at end |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for shape in Shape::ALL {
        let mut ours = Ours::new(Policy::from(&spec), a.partitions);
        let mut keda = KedaHpa::new(a.threshold, 1, a.max, a.partitions);
        for scaler in [&mut ours as &mut dyn Scaler, &mut keda] {
            let r = sim::run(shape, &model, scaler, a.lag_target);
            println!(
                "| {} | {} | {:.0} | {} | {:.0} | {} | {:.0} |",
                shape.name(),
                scaler.name(),
                r.max_lag,
                r.seconds_above_target,
                r.replica_minutes,
                r.actions,
                r.final_lag
            );
        }
    }
}
