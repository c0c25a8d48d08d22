//! Complex event processing: `spec.steps[*].cep`. Not supported by the runtime yet.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, KeyBy};

/// `cep`: match a pattern per key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CepStep {
    /// Keys that partition the matching.
    #[serde(default)]
    pub key_by: Vec<KeyBy>,
    /// The pattern.
    pub pattern: Pattern,
    /// What a match is called.
    pub emit: CepEmit,
}

/// A pattern: exactly one of `sequence`, `allOf`, `anyOf`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pattern {
    /// Steps in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<Vec<PatternStep>>,
    /// Every step, in any order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_of: Option<Vec<PatternStep>>,
    /// Any one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<PatternStep>>,
    /// The whole match must fit in this span of event time.
    pub within: Duration,
    /// `strict`, `relaxed` or `any`.
    #[serde(default)]
    pub contiguity: Contiguity,
}

/// How events between pattern steps are treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Contiguity {
    /// No non-matching event in between.
    Strict,
    /// Non-matching events are skipped.
    #[default]
    Relaxed,
    /// Non-deterministic relaxed: every combination matches.
    Any,
}

/// One step of a pattern.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatternStep {
    /// Name under which matched events are reported.
    pub name: String,
    /// CEL condition.
    pub when: String,
    /// Repetitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<Times>,
    /// CEL condition that must not occur after this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_followed_by: Option<String>,
}

/// Repetition bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Times {
    /// At least.
    #[serde(default = "one")]
    pub min: u32,
    /// At most; absent = unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

fn one() -> u32 {
    1
}

/// A match's name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CepEmit {
    /// Written as `pattern` in match records.
    pub name: String,
}
