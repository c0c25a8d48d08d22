//! Autoscaling, metrics export and pod knobs: what the operator acts on.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// `spec.autoscaling`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct AutoscalingSpec {
    /// Whether the operator sets `spec.replicas` from lag.
    #[serde(default)]
    pub enabled: bool,
    /// Lower bound.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    /// Upper bound (never above the source's partition or shard count).
    #[serde(default = "ten")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// The lag signal.
    #[serde(default)]
    pub metric: ScalingMetric,
    /// Records of lag one replica may carry; used while rates are unknown.
    #[serde(default = "default_target_lag")]
    #[schemars(range(min = 1))]
    pub target_lag_per_replica: i64,
    /// A backlog should drain within this time.
    #[serde(default = "default_catch_up")]
    pub catch_up: Duration,
    /// Fraction of a replica's measured processing rate to plan for.
    #[serde(default = "default_utilization")]
    #[schemars(range(min = 0.05, max = 1.0))]
    pub target_utilization: f64,
    /// How often lag is read.
    #[serde(default = "default_poll")]
    pub poll_interval: Duration,
    /// Scale-up behaviour.
    #[serde(default = "default_up")]
    pub scale_up: ScalingPolicy,
    /// Scale-down behaviour.
    #[serde(default = "default_down")]
    pub scale_down: ScalingPolicy,
    /// Least time between two scaling actions.
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,
}

fn one() -> i32 {
    1
}
fn ten() -> i32 {
    10
}
fn default_target_lag() -> i64 {
    1000
}
fn default_catch_up() -> Duration {
    Duration::from_secs(300)
}
fn default_utilization() -> f64 {
    0.7
}
fn default_poll() -> Duration {
    Duration::from_secs(15)
}
fn default_up() -> ScalingPolicy {
    ScalingPolicy {
        stabilization_window: Duration::default(),
        max_step: 4,
    }
}
fn default_down() -> ScalingPolicy {
    ScalingPolicy {
        stabilization_window: Duration::from_secs(300),
        max_step: 2,
    }
}
fn default_cooldown() -> Duration {
    Duration::from_secs(60)
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: one(),
            max_replicas: ten(),
            metric: ScalingMetric::default(),
            target_lag_per_replica: default_target_lag(),
            catch_up: default_catch_up(),
            target_utilization: default_utilization(),
            poll_interval: default_poll(),
            scale_up: default_up(),
            scale_down: default_down(),
            cooldown: default_cooldown(),
        }
    }
}

/// Scaling in one direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingPolicy {
    /// The most conservative recommendation over this window is used.
    #[serde(default)]
    pub stabilization_window: Duration,
    /// Most replicas added or removed in one action.
    #[serde(default = "four")]
    #[schemars(range(min = 1))]
    pub max_step: i32,
}

fn four() -> i32 {
    4
}

/// The lag signal; exactly one kind (default Kafka lag).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!(has(self.kafkaLag) && has(self.cloudWatch))").message("set at most one of kafkaLag or cloudWatch"))]
pub struct ScalingMetric {
    /// Committed group offsets vs. high watermarks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_lag: Option<KafkaLagMetric>,
    /// A CloudWatch metric (e.g. Kinesis `GetRecords.IteratorAgeMilliseconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch: Option<CloudWatchMetric>,
}

/// Kafka consumer lag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaLagMetric {}

/// A CloudWatch metric.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudWatchMetric {
    /// Namespace, e.g. `AWS/Kinesis`.
    pub namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// Dimensions.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// `Average`, `Maximum`, `Sum`, …
    #[serde(default = "default_statistic")]
    pub statistic: String,
    /// Aggregation period of the datapoints read (Kinesis stream metrics
    /// are per minute; high-resolution custom metrics may use `1s`).
    #[serde(default = "sixty")]
    pub period: Duration,
}

fn default_statistic() -> String {
    "Maximum".to_owned()
}

/// `spec.metrics`: exports besides the Prometheus `/metrics` endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsSpec {
    /// Also publish the key processor metrics to Amazon CloudWatch
    /// (`PutMetricData`), best effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch: Option<CloudWatchExport>,
}

/// `spec.metrics.cloudWatch`: every replica publishes records in/out, dead
/// letters, input rate, processing latency p50/p99 and source lag with the
/// dimensions `Pipeline` and `Replica`. Region, credentials and endpoint
/// come from the AWS default chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudWatchExport {
    /// The CloudWatch namespace of the metrics (not starting with `AWS/`).
    pub namespace: String,
    /// How often each replica publishes (at least `1s`; below `60s` the
    /// metrics are high-resolution). Counts are per interval.
    #[serde(default = "sixty")]
    pub interval: Duration,
}

fn sixty() -> Duration {
    Duration::from_secs(60)
}

/// `spec.processor`: pod knobs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessorSpec {
    /// Processor image; default the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Resources of the processor container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra containers (UDF sidecars) next to the processor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<Container>,
}
