//! A pattern compiled for the matchers: conditions become bits, steps keep
//! only their counts and flags, so the kernel never sees CEL.

use tributary_crds::{AfterMatchSkip, Contiguity, Pattern, PatternStep};

/// The most steps a pattern may have: a step's `when` is bit `j`, its
/// `notFollowedBy` bit `32 + j` of one `u64` (validation enforces it).
pub const MAX_STEPS: usize = 32;

/// One step of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepDef {
    /// Name in the match's `events`.
    pub name: String,
    /// Least events (0 when optional).
    pub min: u32,
    /// Most events (`u32::MAX` = unbounded).
    pub max: u32,
    /// The repetition never stops while it could continue.
    pub greedy: bool,
    /// The step has a `notFollowedBy` condition.
    pub negated: bool,
}

/// Which of `sequence`, `anyOf`, `allOf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Shape {
    /// Steps in order.
    Sequence,
    /// Each step alone is an alternative.
    AnyOf,
    /// Every step, any order.
    AllOf,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PatternDef {
    /// The shape.
    pub shape: Shape,
    /// The steps, in declaration order.
    pub steps: Vec<StepDef>,
    /// Span of a match, ms: every event is before `start + within`.
    pub within: i64,
    /// Contiguity.
    pub contiguity: Contiguity,
    /// After-match skip strategy.
    pub skip: AfterMatchSkip,
}

impl PatternDef {
    /// Compiles the spec's pattern (conditions are evaluated by the caller).
    #[must_use]
    pub fn from_spec(p: &Pattern) -> Self {
        let (shape, steps) = match (&p.sequence, &p.any_of, &p.all_of) {
            (Some(s), _, _) => (Shape::Sequence, s.as_slice()),
            (None, Some(s), _) => (Shape::AnyOf, s.as_slice()),
            (None, None, Some(s)) => (Shape::AllOf, s.as_slice()),
            (None, None, None) => (Shape::Sequence, &[][..]),
        };
        let steps = steps
            .iter()
            .take(MAX_STEPS)
            .map(|s: &PatternStep| StepDef {
                name: s.name.clone(),
                min: s.min(),
                max: s.max().unwrap_or(u32::MAX).max(1),
                greedy: s.greedy(),
                negated: s.not_followed_by.is_some(),
            })
            .collect();
        Self {
            shape,
            steps,
            within: p.within.as_millis_i64().max(1),
            contiguity: p.contiguity,
            skip: p.skip,
        }
    }

    /// The bit of step `j`'s `when`.
    #[must_use]
    pub fn cond(j: usize) -> u64 {
        1 << j
    }

    /// The bit of step `j`'s `notFollowedBy` (0 when it has none).
    #[must_use]
    pub fn neg(&self, j: usize) -> u64 {
        if self.steps[j].negated {
            1 << (32 + j)
        } else {
            0
        }
    }

    /// The alternatives as lists of step indices: one for a sequence, one
    /// per step for `anyOf` (unused for `allOf`).
    #[must_use]
    pub fn alternatives(&self) -> Vec<Vec<u16>> {
        let all = 0..u16::try_from(self.steps.len()).unwrap_or(u16::MAX);
        match self.shape {
            Shape::Sequence => vec![all.collect()],
            Shape::AnyOf | Shape::AllOf => all.map(|j| vec![j]).collect(),
        }
    }
}
