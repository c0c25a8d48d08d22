//! `map`: set computed fields and remove fields.

use std::sync::Arc;

use serde_json::{Map as JsonMap, Value};
use tributary_crds::MapStep;

use super::{Emit, Step, StepError};
use crate::expr::{Expr, ExprError};
use crate::record::Record;
use crate::sink::DeadLetter;

/// Sets fields from expressions (all evaluated against the input record)
/// and removes fields. Dotted paths create nested objects.
pub struct Map {
    name: String,
    set: Vec<(Vec<String>, Expr)>,
    remove: Vec<Vec<String>>,
}

fn split(path: &str) -> Vec<String> {
    path.split('.').map(str::to_owned).collect()
}

impl Map {
    /// A map step.
    ///
    /// # Errors
    /// When an expression does not compile.
    pub fn new(name: String, spec: &MapStep, env: &Arc<cel::Env>) -> Result<Self, ExprError> {
        let set = spec
            .set
            .iter()
            .map(|(f, e)| Ok((split(f), Expr::compile(e, env)?)))
            .collect::<Result<_, ExprError>>()?;
        Ok(Self {
            name,
            set,
            remove: spec.remove.iter().map(|p| split(p)).collect(),
        })
    }
}

fn set_path(target: &mut Value, path: &[String], v: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = target;
    for seg in parents {
        if !cur.is_object() {
            *cur = Value::Object(JsonMap::new());
        }
        let Value::Object(obj) = cur else { return };
        cur = obj
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(JsonMap::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(JsonMap::new());
    }
    if let Value::Object(obj) = cur {
        obj.insert(last.clone(), v);
    }
}

fn remove_path(target: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = target;
    for seg in parents {
        match cur.get_mut(seg.as_str()) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::Object(obj) = cur {
        obj.remove(last.as_str());
    }
}

impl Step for Map {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> super::Snapshot {
        super::Snapshot::Stateless
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        'records: for mut rec in input {
            let mut computed = Vec::with_capacity(self.set.len());
            for (path, expr) in &self.set {
                match expr.eval(&rec.value) {
                    Ok(v) => computed.push((path, v)),
                    Err(e) => {
                        emit.dead
                            .push(DeadLetter::new(&self.name, e.to_string(), rec));
                        continue 'records;
                    }
                }
            }
            for (path, v) in computed {
                set_path(&mut rec.value, path, v);
            }
            for path in &self.remove {
                remove_path(&mut rec.value, path);
            }
            emit.out.push(rec);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sets_nested_fields_from_the_input_and_removes() {
        let spec: MapStep = serde_yaml_ng::from_str("{set: {amount: 'double(event.amount)', 'meta.big': 'event.amount > 10'}, remove: [debug]}").unwrap();
        let mut m = Map::new("m".into(), &spec, &crate::expr::env()).unwrap();
        let mut emit = Emit::default();
        m.process(
            vec![Record::new(json!({"amount": 12, "debug": true}), 0)],
            &mut emit,
        )
        .unwrap();
        assert_eq!(
            emit.out[0].value,
            json!({"amount": 12.0, "meta": {"big": true}})
        );
    }
}
