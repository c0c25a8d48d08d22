//! The `StreamPipeline` custom resource.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    AutoscalingSpec, BackpressureSpec, CheckpointSpec, Guarantee, MetricsSpec, ProcessorSpec,
    SinkSpec, SourceSpec, StepSpec, StreamPipelineStatus,
};

/// A streaming pipeline: a source, processing steps and sinks, run by
/// processor pods that the operator manages and scales.
#[allow(clippy::duplicated_attributes)] // kube-derive repeats `printcolumn`
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tributary.dev",
    version = "v1alpha1",
    kind = "StreamPipeline",
    plural = "streampipelines",
    shortname = "sp",
    namespaced,
    status = "StreamPipelineStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.lag.records"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamPipelineSpec {
    /// Where records come from.
    pub source: SourceSpec,
    /// Processing steps, applied in order (at most 64: the bound keeps the
    /// apiserver's CEL cost estimate for the per-step rules in budget).
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub steps: Vec<StepSpec>,
    /// Where results go; at least one.
    #[schemars(length(min = 1, max = 16))]
    pub sinks: Vec<SinkSpec>,
    /// Where records that cannot be processed go, with their provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<SinkSpec>,
    /// `exactlyOnce` or `atLeastOnce`.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Checkpoint period.
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// Flow control between stages.
    #[serde(default)]
    pub backpressure: BackpressureSpec,
    /// Processor replicas (the scale subresource's spec path).
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Lag-driven autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Metrics export besides `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
    /// Pod knobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<ProcessorSpec>,
}

fn one() -> i32 {
    1
}
