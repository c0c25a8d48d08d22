//! Lag-driven autoscaling: the decision (pure) and a simulator that replays
//! load shapes against it and against a KEDA-style policy.
//!
//! # Layout
//! - [`decide`]: one pure function of the samples, replica counts, bounds
//!   and policy → desired replicas and the reason.
//! - [`signal`]: reading Kafka consumer lag (offsets, no group membership).
//! - [`cloudwatch`]: reading a CloudWatch metric as the lag (Kinesis).
//! - [`run`]: the loop that samples, decides and patches `spec.replicas`.
//! - [`sim`]: a model of N replicas on P partitions, the load shapes and the
//!   KEDA/HPA-style baseline, used by the `autoscale-sim` program.

pub mod cloudwatch;
pub mod decide;
pub mod run;
pub mod signal;
pub mod sim;

pub use decide::{Decision, Memory, Observed, Policy, Reason, Sample, decide};
