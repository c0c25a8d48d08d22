//! Delivery, checkpoints and flow control: how a pipeline runs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Delivery guarantee.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Guarantee {
    /// Output, state and input positions commit atomically (Kafka transactions, Postgres).
    ExactlyOnce,
    /// Every record is processed at least once; replays may duplicate output.
    #[default]
    AtLeastOnce,
}

/// `spec.checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointSpec {
    /// How often offsets, state and output are committed.
    #[serde(default = "default_interval")]
    pub interval: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            interval: default_interval(),
        }
    }
}

/// What a full stage queue does with new records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Overflow {
    /// Wait (the source slows down; nothing is lost).
    #[default]
    Block,
    /// Drop the oldest queued records (counted).
    DropOldest,
    /// Drop the incoming records (counted).
    DropNewest,
    /// Keep a `sampleRate` fraction of the incoming records while full.
    Sample,
}

/// `spec.backpressure`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackpressureSpec {
    /// Records queued between stages before the policy applies.
    #[serde(default = "default_max_in_flight")]
    #[schemars(range(min = 1))]
    pub max_in_flight: u32,
    /// The policy.
    #[serde(default)]
    pub on_overflow: Overflow,
    /// Fraction kept by `sample`, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sample_rate: Option<f64>,
}

fn default_max_in_flight() -> u32 {
    10_000
}

impl Default for BackpressureSpec {
    fn default() -> Self {
        Self {
            max_in_flight: default_max_in_flight(),
            on_overflow: Overflow::Block,
            sample_rate: None,
        }
    }
}
