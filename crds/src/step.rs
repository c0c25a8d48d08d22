//! Processing steps: `spec.steps[*]`.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{CepStep, Duration, HttpStep, JoinStep, WindowStep};

/// One processing step; exactly one kind per step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "(has(self.filter) ? 1 : 0) + (has(self.map) ? 1 : 0) + (has(self.flatMap) ? 1 : 0) + (has(self.dedupe) ? 1 : 0) + (has(self.validate) ? 1 : 0) + (has(self.enrich) ? 1 : 0) + (has(self.window) ? 1 : 0) + (has(self.cep) ? 1 : 0) + (has(self.anomaly) ? 1 : 0) + (has(self.join) ? 1 : 0) + (has(self.http) ? 1 : 0) == 1"
).message("each step must set exactly one of filter, map, flatMap, dedupe, validate, enrich, window, cep, anomaly, join, http"))]
pub struct StepSpec {
    /// Optional name for metrics and dead-letter provenance; default `<kind>-<index>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Keep records for which this CEL expression is true (`event` is the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Set and remove fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapStep>,
    /// A CEL expression yielding a list; one record per element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flat_map: Option<String>,
    /// Drop records whose key was seen within a time span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe: Option<DedupeStep>,
    /// Check records against rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<ValidateStep>,
    /// Stream-table join: look each record up in a table kept current (a
    /// compacted Kafka topic, a JSON-lines file or a PostgreSQL query; see
    /// `docs/enrich.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrich: Option<EnrichStep>,
    /// Windowed aggregation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowStep>,
    /// Complex event processing: match patterns per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cep: Option<CepStep>,
    /// Anomaly detection per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<AnomalyStep>,
    /// Stream-stream interval join with a second source (see `docs/joins.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinStep>,
    /// Call a user's service (a UDF, usually a sidecar) with batches of records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpStep>,
}

/// The step kinds, borrowed from a [`StepSpec`].
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)]
pub enum StepKind<'a> {
    Filter(&'a str),
    Map(&'a MapStep),
    FlatMap(&'a str),
    Dedupe(&'a DedupeStep),
    Validate(&'a ValidateStep),
    Enrich(&'a EnrichStep),
    Window(&'a WindowStep),
    Cep(&'a CepStep),
    Anomaly(&'a AnomalyStep),
    Join(&'a JoinStep),
    Http(&'a HttpStep),
}

impl StepKind<'_> {
    /// The YAML field name of this kind.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::Filter(_) => "filter",
            Self::Map(_) => "map",
            Self::FlatMap(_) => "flatMap",
            Self::Dedupe(_) => "dedupe",
            Self::Validate(_) => "validate",
            Self::Enrich(_) => "enrich",
            Self::Window(_) => "window",
            Self::Cep(_) => "cep",
            Self::Anomaly(_) => "anomaly",
            Self::Join(_) => "join",
            Self::Http(_) => "http",
        }
    }
}

impl StepSpec {
    /// Every kind set on this step (a valid step has exactly one).
    #[must_use]
    pub fn kinds(&self) -> Vec<StepKind<'_>> {
        let mut v = Vec::with_capacity(1);
        if let Some(s) = &self.filter {
            v.push(StepKind::Filter(s));
        }
        if let Some(s) = &self.map {
            v.push(StepKind::Map(s));
        }
        if let Some(s) = &self.flat_map {
            v.push(StepKind::FlatMap(s));
        }
        if let Some(s) = &self.dedupe {
            v.push(StepKind::Dedupe(s));
        }
        if let Some(s) = &self.validate {
            v.push(StepKind::Validate(s));
        }
        if let Some(s) = &self.enrich {
            v.push(StepKind::Enrich(s));
        }
        if let Some(s) = &self.window {
            v.push(StepKind::Window(s));
        }
        if let Some(s) = &self.cep {
            v.push(StepKind::Cep(s));
        }
        if let Some(s) = &self.anomaly {
            v.push(StepKind::Anomaly(s));
        }
        if let Some(s) = &self.join {
            v.push(StepKind::Join(s));
        }
        if let Some(s) = &self.http {
            v.push(StepKind::Http(s));
        }
        v
    }

    /// The one kind, if exactly one is set.
    #[must_use]
    pub fn kind(&self) -> Option<StepKind<'_>> {
        let kinds = self.kinds();
        if kinds.len() == 1 {
            kinds.first().copied()
        } else {
            None
        }
    }

    /// The step's display name: `name`, or `<kind>-<index>`.
    #[must_use]
    pub fn display_name(&self, index: usize) -> String {
        match (&self.name, self.kind()) {
            (Some(n), _) => n.clone(),
            (None, Some(k)) => format!("{}-{index}", k.field()),
            (None, None) => format!("step-{index}"),
        }
    }
}

/// `map`: computed fields and removed fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MapStep {
    /// Field path (dots for nesting) to CEL expression; evaluated against the input record.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Field paths to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `dedupe`: at most one record per key within a span of event time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DedupeStep {
    /// CEL expression for the identity of a record.
    pub key: String,
    /// How long a seen key is remembered.
    pub within: Duration,
}

/// What a failed validation does with the record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnFailure {
    /// Send it to the dead-letter sink with the rule that failed.
    #[default]
    DeadLetter,
    /// Drop it (counted).
    Drop,
    /// Log a warning and keep it.
    Warn,
    /// Stop the pipeline with an error.
    Fail,
}

/// `validate`: named checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidateStep {
    /// Rules; a record must pass all of them.
    #[schemars(length(min = 1))]
    pub rules: Vec<ValidationRule>,
    /// What happens to a record that fails a rule.
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// One validation rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidationRule {
    /// Name reported in errors and metrics.
    pub name: String,
    /// CEL expression that must be true.
    pub check: String,
}

/// A lookup table of `enrich`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableSource {
    /// A Kafka topic; brokers default to the source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<TableKafka>,
    /// A JSON-lines file, one row per line (`enrich` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<TableFile>,
    /// A PostgreSQL query per key, cached (`enrich` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<TablePostgres>,
}

/// A PostgreSQL query as a lookup table: run with the lookup key as `$1`
/// on a cache miss; its first row (as a JSON object of its columns) is the
/// row. Results are cached for `ttl`, so a changed row is seen within `ttl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TablePostgres {
    /// Connection string (`postgres://user@host:5432/db`), by reference.
    pub connection: crate::SecretValue,
    /// The query, with `$1` the lookup key (`SELECT name, tier FROM users WHERE id = $1`).
    /// `$1` takes the type Postgres infers (text, integer, float, boolean);
    /// cast it for others (`$1::text::uuid`).
    pub query: String,
    /// How long a looked-up row is reused before the query runs again; default 60s.
    /// A miss (no row) is cached for the shorter of `ttl` and 5s.
    #[serde(default = "default_table_ttl")]
    pub ttl: Duration,
    /// Most keys cached; default 100000. A full cache drops its expired
    /// entries, then everything if none expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u32>,
}

impl Default for TablePostgres {
    fn default() -> Self {
        Self {
            connection: crate::SecretValue::default(),
            query: String::new(),
            ttl: default_table_ttl(),
            max_entries: None,
        }
    }
}

fn default_table_ttl() -> Duration {
    Duration::from_secs(60)
}

/// A JSON-lines file as a lookup table: loaded before the step starts and
/// loaded again whenever its modification time changes, so a table that is
/// rewritten while the pipeline runs is seen by later records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableFile {
    /// Path of the file (one JSON object per line).
    pub path: String,
    /// Row field holding the lookup key; default `id`.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// Reload the file when it changes (checked a few times a second);
    /// default true. False loads it once.
    #[serde(default = "default_true")]
    pub reload: bool,
}

fn default_key_field() -> String {
    "id".into()
}

const fn default_true() -> bool {
    true
}

/// What `enrich` does with a record whose key has no row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnMiss {
    /// Pass the record on without the `as` field.
    #[default]
    Pass,
    /// Drop it (counted as dropped).
    Drop,
    /// Send it to the dead-letter sink with the error `no row for key …`.
    DeadLetter,
}

/// A Kafka topic as a table (latest value per record key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableKafka {
    /// Topic name.
    pub topic: String,
    /// Bootstrap servers; default the source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
}

/// `enrich`: look up a table by key and attach the row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichStep {
    /// The table: a compacted Kafka topic (latest value per key), a
    /// JSON-lines file, or a PostgreSQL query with a TTL cache; kept current
    /// while the pipeline runs.
    pub table: TableSource,
    /// CEL expression for the lookup key (compared with the row key as a string).
    pub key: String,
    /// Field that receives the row (a JSON object).
    #[serde(rename = "as")]
    pub as_field: String,
    /// What happens when no row has the key: `pass` (default), `drop` or `deadLetter`.
    #[serde(default)]
    pub on_miss: OnMiss,
}

/// `anomaly`: flag outliers per key (see `docs/anomaly.md`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnomalyStep {
    /// `zscore`, `iqr` or `isolationForest`.
    pub method: AnomalyMethod,
    /// CEL expression for the observed value: a number (an array of numbers for `isolationForest`).
    pub of: String,
    /// Score above which a record is an anomaly: |z| for `zscore` (e.g. 3), the
    /// anomaly score in (0, 1) for `isolationForest` (e.g. 0.6); for `iqr`, an
    /// alias of `k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Number of recent values per key the statistics (or the forest's training sample) cover.
    #[serde(default = "default_anomaly_window")]
    pub window: u32,
    /// Grouping keys.
    #[serde(default)]
    pub key_by: Vec<crate::KeyBy>,
    /// `iqr`: a value is an anomaly outside `[Q1 - k*IQR, Q3 + k*IQR]`; default 1.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<f64>,
    /// `anomalies` (only flagged records) or `all` (every record, flagged or not).
    #[serde(default)]
    pub emit: AnomalyEmit,
    /// `isolationForest`: values drawn from the window to grow each tree; default 256 (at most `window`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_size: Option<u32>,
    /// `isolationForest`: number of trees; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<u32>,
    /// `isolationForest`: random seed, so that runs are reproducible; default 42.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_anomaly_window() -> u32 {
    100
}

/// Anomaly detection methods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AnomalyMethod {
    /// Distance from the rolling mean in rolling (sample) standard deviations.
    #[default]
    Zscore,
    /// Outside the rolling quartiles' fences (Tukey).
    Iqr,
    /// Isolation forest trained on the rolling window.
    IsolationForest,
}

/// Which records an anomaly step emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AnomalyEmit {
    /// Only anomalies.
    #[default]
    Anomalies,
    /// Every record; `anomaly.isAnomaly` tells them apart.
    All,
}
