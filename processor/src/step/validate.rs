//! `validate`: named rules with an `onFailure` policy.

use std::sync::Arc;

use tributary_crds::{OnFailure, ValidateStep};

use super::{Emit, Step, StepError};
use crate::expr::{Expr, ExprError};
use crate::record::Record;
use crate::sink::DeadLetter;

/// Checks each record against every rule; a rule that cannot be evaluated
/// on a record counts as failed, with the evaluation error as the reason.
pub struct Validate {
    name: String,
    rules: Vec<(String, Expr)>,
    on_failure: OnFailure,
    warned: u64,
}

impl Validate {
    /// A validate step.
    ///
    /// # Errors
    /// When a rule does not compile.
    pub fn new(name: String, spec: &ValidateStep, env: &Arc<cel::Env>) -> Result<Self, ExprError> {
        let rules = spec
            .rules
            .iter()
            .map(|r| Ok((r.name.clone(), Expr::compile(&r.check, env)?)))
            .collect::<Result<_, ExprError>>()?;
        Ok(Self {
            name,
            rules,
            on_failure: spec.on_failure,
            warned: 0,
        })
    }

    fn failure(&self, rec: &Record) -> Option<String> {
        self.rules
            .iter()
            .find_map(|(name, expr)| match expr.eval_bool(&rec.value) {
                Ok(true) => None,
                Ok(false) => Some(format!("rule {name} failed: {}", expr.source())),
                Err(e) => Some(format!("rule {name} could not be evaluated: {e}")),
            })
    }
}

impl Step for Validate {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> super::Snapshot {
        super::Snapshot::Stateless
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        for rec in input {
            let Some(reason) = self.failure(&rec) else {
                emit.out.push(rec);
                continue;
            };
            match self.on_failure {
                OnFailure::DeadLetter => emit.dead.push(DeadLetter::new(&self.name, reason, rec)),
                OnFailure::Drop => emit.dropped += 1,
                OnFailure::Warn => {
                    // Log the first few and then every 1000th, so a flood of
                    // bad records does not drown the log.
                    self.warned += 1;
                    if self.warned <= 10 || self.warned.is_multiple_of(1000) {
                        tracing::warn!(step = %self.name, offset = rec.position.offset, count = self.warned, "{reason}");
                    }
                    emit.out.push(rec);
                }
                OnFailure::Fail => {
                    let pos = &rec.position;
                    return Err(StepError::Failed {
                        step: self.name.clone(),
                        message: format!(
                            "{reason} (record at {}:{}:{})",
                            pos.source, pos.partition, pos.offset
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn step(on_failure: &str) -> Validate {
        let spec: ValidateStep = serde_yaml_ng::from_str(&format!(
            "{{rules: [{{name: positive, check: 'event.amount >= 0.0'}}], onFailure: {on_failure}}}"
        ))
        .unwrap();
        Validate::new("v".into(), &spec, &crate::expr::env()).unwrap()
    }

    fn input() -> Vec<Record> {
        vec![
            Record::new(json!({"amount": 1.0}), 0),
            Record::new(json!({"amount": -1.0}), 0),
            Record::new(json!({}), 0),
        ]
    }

    #[test]
    fn each_policy_does_what_it_says() {
        let mut emit = Emit::default();
        step("deadLetter").process(input(), &mut emit).unwrap();
        assert_eq!((emit.out.len(), emit.dead.len()), (1, 2));
        assert!(emit.dead[0].error.contains("rule positive failed"));
        assert!(emit.dead[1].error.contains("could not be evaluated"));

        let mut emit = Emit::default();
        step("drop").process(input(), &mut emit).unwrap();
        assert_eq!((emit.out.len(), emit.dropped), (1, 2));

        let mut emit = Emit::default();
        step("warn").process(input(), &mut emit).unwrap();
        assert_eq!(emit.out.len(), 3);

        let err = step("fail")
            .process(input(), &mut Emit::default())
            .unwrap_err();
        assert!(err.to_string().contains("rule positive failed"), "{err}");
    }
}
