//! `filter` and `flatMap`.

use std::sync::Arc;

use serde_json::Value;

use super::{Emit, Step, StepError};
use crate::expr::{Expr, ExprError};
use crate::record::Record;
use crate::sink::DeadLetter;

/// Keeps records for which a condition holds; a record the condition cannot
/// be evaluated on goes to the dead-letter sink.
pub struct Filter {
    name: String,
    cond: Expr,
}

impl Filter {
    /// A filter on `expr`.
    ///
    /// # Errors
    /// When `expr` does not compile.
    pub fn new(name: String, expr: &str, env: &Arc<cel::Env>) -> Result<Self, ExprError> {
        Ok(Self {
            name,
            cond: Expr::compile(expr, env)?,
        })
    }
}

impl Step for Filter {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> super::Snapshot {
        super::Snapshot::Stateless
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        for rec in input {
            match self.cond.eval_bool(&rec.value) {
                Ok(true) => emit.out.push(rec),
                Ok(false) => emit.dropped += 1,
                Err(e) => emit
                    .dead
                    .push(DeadLetter::new(&self.name, e.to_string(), rec)),
            }
        }
        Ok(())
    }
}

/// One record per element of a list expression.
pub struct FlatMap {
    name: String,
    list: Expr,
}

impl FlatMap {
    /// A flatMap over `expr`.
    ///
    /// # Errors
    /// When `expr` does not compile.
    pub fn new(name: String, expr: &str, env: &Arc<cel::Env>) -> Result<Self, ExprError> {
        Ok(Self {
            name,
            list: Expr::compile(expr, env)?,
        })
    }
}

impl Step for FlatMap {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> super::Snapshot {
        super::Snapshot::Stateless
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        for rec in input {
            match self.list.eval(&rec.value) {
                Ok(Value::Array(items)) => {
                    if items.is_empty() {
                        emit.dropped += 1;
                    }
                    for item in items {
                        emit.out.push(Record {
                            value: item,
                            ..rec.clone()
                        });
                    }
                }
                Ok(Value::Null) => emit.dropped += 1,
                Ok(other) => {
                    let msg = format!(
                        "{} must yield a list, got {}",
                        self.list.source(),
                        kind_of(&other)
                    );
                    emit.dead.push(DeadLetter::new(&self.name, msg, rec));
                }
                Err(e) => emit
                    .dead
                    .push(DeadLetter::new(&self.name, e.to_string(), rec)),
            }
        }
        Ok(())
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn filter_keeps_matches_and_dead_letters_errors() {
        let mut f = Filter::new("f".into(), "event.n > 1", &crate::expr::env()).unwrap();
        let mut emit = Emit::default();
        let input = vec![json!({"n": 1}), json!({"n": 2}), json!({"m": 3})];
        f.process(
            input.into_iter().map(|v| Record::new(v, 0)).collect(),
            &mut emit,
        )
        .unwrap();
        assert_eq!(emit.out.len(), 1);
        assert_eq!(emit.out[0].value, json!({"n": 2}));
        assert_eq!(emit.dropped, 1);
        assert_eq!(emit.dead.len(), 1);
        assert_eq!(emit.dead[0].step, "f");
    }

    #[test]
    fn flat_map_emits_one_record_per_element() {
        let mut f = FlatMap::new("fm".into(), "event.items", &crate::expr::env()).unwrap();
        let mut emit = Emit::default();
        let recs = vec![
            Record::new(json!({"items": [1, 2, 3]}), 5),
            Record::new(json!({"items": "x"}), 6),
        ];
        f.process(recs, &mut emit).unwrap();
        let vals: Vec<_> = emit.out.iter().map(|r| r.value.clone()).collect();
        assert_eq!(vals, vec![json!(1), json!(2), json!(3)]);
        assert!(emit.out.iter().all(|r| r.event_time == 5));
        assert_eq!(emit.dead.len(), 1);
    }
}
