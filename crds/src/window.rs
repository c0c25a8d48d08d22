//! Windowed aggregation: `spec.steps[*].window`.

use std::borrow::Cow;

use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Window types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WindowType {
    /// Fixed, non-overlapping `[k·size, (k+1)·size)`.
    #[default]
    Tumbling,
    /// Overlapping `[k·slide, k·slide+size)`.
    Sliding,
    /// Per key, closed after `gap` without events.
    Session,
    /// Per key, every `count` events.
    Count,
}

/// When results are emitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EmitMode {
    /// Once, when the watermark passes the window end (append).
    #[default]
    Final,
    /// Changed windows every `trigger.every`, and the final result (update).
    Updates,
    /// Every open window every `trigger.every` (complete).
    All,
}

/// `window`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.type != 'tumbling' || has(self.size)").message("size is required for a tumbling window"))]
#[x_kube(validation = Rule::new("self.type != 'sliding' || (has(self.size) && has(self.slide))").message("size and slide are required for a sliding window"))]
#[x_kube(validation = Rule::new("self.type != 'session' || has(self.gap)").message("gap is required for a session window"))]
#[x_kube(validation = Rule::new("self.type != 'count' || has(self.count)").message("count is required for a count window"))]
#[x_kube(validation = Rule::new("self.emit == 'final' || has(self.trigger)").message("trigger is required when emit is updates or all"))]
pub struct WindowStep {
    /// `tumbling`, `sliding`, `session` or `count`.
    #[serde(rename = "type")]
    pub kind: WindowType,
    /// Window length (tumbling, sliding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Duration>,
    /// Distance between window starts (sliding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<Duration>,
    /// Inactivity that closes a session (session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Duration>,
    /// Events per window (count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub count: Option<u64>,
    /// Grouping keys; a path such as `event.userId` names its output field by the last segment.
    #[serde(default)]
    pub key_by: Vec<KeyBy>,
    /// Aggregates, one output field each.
    #[schemars(length(min = 1))]
    pub aggregate: Vec<Aggregate>,
    /// CEL over the result fields (e.g. `clicks > 10`); results for which it is false are not emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub having: Option<String>,
    /// How long after the window end late events still update it.
    #[serde(default)]
    pub allowed_lateness: Duration,
    /// What happens to late events: `drop`, `log`, `deadLetter` or `sideOutput:<sink name>`.
    #[serde(default = "default_late_events")]
    #[schemars(regex(pattern = r"^(drop|log|deadLetter|sideOutput:.+)$"))]
    pub late_events: String,
    /// `final`, `updates` or `all`.
    #[serde(default)]
    pub emit: EmitMode,
    /// Periodic emission for `updates` / `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
}

fn default_late_events() -> String {
    "drop".to_owned()
}

/// Periodic trigger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    /// Processing-time period.
    pub every: Duration,
}

/// What a late event does, parsed from [`WindowStep::late_events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LateEvents {
    /// Count and drop.
    Drop,
    /// Count, log and drop.
    Log,
    /// Send to the dead-letter sink.
    DeadLetter,
    /// Send to the named sink.
    SideOutput(String),
}

impl WindowStep {
    /// The parsed `lateEvents`, or `None` when it is not one of the allowed forms.
    #[must_use]
    pub fn late_events(&self) -> Option<LateEvents> {
        match self.late_events.as_str() {
            "drop" => Some(LateEvents::Drop),
            "log" => Some(LateEvents::Log),
            "deadLetter" => Some(LateEvents::DeadLetter),
            other => other
                .strip_prefix("sideOutput:")
                .filter(|s| !s.is_empty())
                .map(|s| LateEvents::SideOutput(s.to_owned())),
        }
    }
}

/// A grouping key: a CEL path (`event.userId`) or `{name, expr}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyBy {
    /// A CEL expression; the output field is its last path segment.
    Expr(String),
    /// An explicit output name for an expression.
    Named {
        /// Output field.
        name: String,
        /// CEL expression.
        expr: String,
    },
}

impl KeyBy {
    /// The CEL expression.
    #[must_use]
    pub fn expr(&self) -> &str {
        match self {
            Self::Expr(e) | Self::Named { expr: e, .. } => e,
        }
    }

    /// The output field name: the explicit name, or the last segment of a path.
    #[must_use]
    pub fn output_name(&self) -> String {
        match self {
            Self::Named { name, .. } => name.clone(),
            Self::Expr(e) => {
                let e = e.trim();
                let last = e.rsplit('.').next().unwrap_or(e);
                let clean: String = last
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if clean.is_empty() {
                    "key".to_owned()
                } else {
                    clean
                }
            }
        }
    }
}

impl JsonSchema for KeyBy {
    fn schema_name() -> Cow<'static, str> {
        "KeyBy".into()
    }

    fn inline_schema() -> bool {
        true
    }

    /// A string or an object; Kubernetes structural schemas cannot say
    /// "one of two types", so the node keeps unknown fields and the
    /// operator's `validate` checks the shape.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-preserve-unknown-fields": true,
            "description": "A CEL path such as event.userId (output field: userId), or {name, expr}."
        })
    }
}

/// Aggregate functions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AggregateFn {
    /// Number of events (integer).
    #[default]
    Count,
    /// Sum of `of`.
    Sum,
    /// Mean of `of`.
    Avg,
    /// Smallest `of`.
    Min,
    /// Largest `of`.
    Max,
    /// `of` of the earliest event by event time.
    First,
    /// `of` of the latest event by event time.
    Last,
    /// Quantile `q` of `of` (within 1% relative error).
    Percentile,
    /// Sample standard deviation (n−1).
    Stddev,
    /// Sample variance (n−1).
    Variance,
    /// Population standard deviation.
    StddevPop,
    /// Population variance.
    VariancePop,
    /// Approximate number of distinct `of` values (within 2%, integer).
    Distinct,
}

impl AggregateFn {
    /// Whether the function reads an `of` expression.
    #[must_use]
    pub fn needs_of(self) -> bool {
        !matches!(self, Self::Count)
    }
}

/// One aggregate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.fn == 'count' || has(self.of)").message("of is required for every aggregate but count"))]
#[x_kube(validation = Rule::new("self.fn != 'percentile' || has(self.q)").message("q is required for percentile"))]
pub struct Aggregate {
    /// Output field.
    pub name: String,
    /// Function.
    #[serde(rename = "fn")]
    pub func: AggregateFn,
    /// CEL expression for the aggregated value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    /// Quantile for `percentile`, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub q: Option<f64>,
}
