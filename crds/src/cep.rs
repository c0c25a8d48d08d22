//! Complex event processing: `spec.steps[*].cep`, matched per key in event
//! time (see `docs/cep.md` for the exact semantics).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, KeyBy};

/// `cep`: match a pattern per key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CepStep {
    /// Keys that partition the matching; each becomes a field of the match's `key` object.
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
    /// Every step, in any order (each `times.min` events, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_of: Option<Vec<PatternStep>>,
    /// Any one step (each alternative matched on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<PatternStep>>,
    /// The whole match must fit in this span of event time (last event before first + within).
    pub within: Duration,
    /// `strict`, `relaxed` or `any`.
    #[serde(default)]
    pub contiguity: Contiguity,
    /// After-match skip strategy: `noSkip` (every match) or `skipPastLastEvent`.
    #[serde(default)]
    pub skip: AfterMatchSkip,
}

/// How events between the events of a match are treated (Flink CEP's contiguity).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Contiguity {
    /// No other event of the key in between (Flink `next`).
    Strict,
    /// Skip till next match: events the next step does not accept are skipped (Flink `followedBy`).
    #[default]
    Relaxed,
    /// Skip till any match: any event may be skipped, every combination matches (Flink `followedByAny`).
    Any,
}

/// What happens to other partial matches once a match is emitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AfterMatchSkip {
    /// Every match is emitted; matches may share events.
    #[default]
    NoSkip,
    /// Partial matches that started at or before the emitted match's last event are dropped.
    SkipPastLastEvent,
}

/// One step of a pattern.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatternStep {
    /// Name under which matched events are reported (unique in the pattern).
    pub name: String,
    /// CEL condition over `event`.
    pub when: String,
    /// Repetitions; absent = exactly once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<Times>,
    /// The step may match no event at all (sequence only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// CEL condition no event may meet between this step and the next matched one
    /// (at the end of a sequence: until `within` closes). Sequence only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_followed_by: Option<String>,
}

impl PatternStep {
    /// Least number of events (0 when optional).
    #[must_use]
    pub fn min(&self) -> u32 {
        if self.optional {
            0
        } else {
            self.times.as_ref().map_or(1, |t| t.min)
        }
    }

    /// Largest number of events; `None` = unbounded.
    #[must_use]
    pub fn max(&self) -> Option<u32> {
        match &self.times {
            None => Some(1),
            Some(t) => t.max,
        }
    }

    /// Whether the repetition is greedy.
    #[must_use]
    pub fn greedy(&self) -> bool {
        self.times.as_ref().is_some_and(|t| t.greedy)
    }
}

/// Repetition bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Times {
    /// At least.
    #[serde(default = "one")]
    pub min: u32,
    /// At most; absent = unbounded (bounded in practice by `within`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Greedy: the repetition never stops while the next event could extend it.
    /// Default reluctant: every count from `min` to `max` is a match of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub greedy: bool,
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
