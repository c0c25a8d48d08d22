//! The `anomaly` step: flags outliers per key, in arrival order, with a
//! rolling z-score, rolling IQR fences or an isolation forest trained on the
//! key's rolling window. See `docs/anomaly.md`.
//!
//! # Layout
//! - `zscore`, `iqr`, `forest`: the detectors (pure, per key).
//! - this file: CEL, keys, output records.

mod forest;
mod iqr;
mod zscore;

#[cfg(test)]
mod tests;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHasher};
use serde_json::{Map, Value};
use tributary_crds::{AnomalyEmit, AnomalyMethod, AnomalyStep};

use super::cep::{eval_key, key_error};
use super::window::Key;
use super::{Emit, Step, StepError};
use crate::expr::{Expr, ExprError};
use crate::record::Record;
use crate::sink::DeadLetter;

/// One key's detector.
#[derive(serde::Serialize, serde::Deserialize)]
enum Detector {
    Z(zscore::ZScore),
    Iqr(iqr::Iqr),
    Forest(forest::Rolling),
}

/// An `anomaly` step.
pub struct Anomaly {
    name: String,
    method: AnomalyMethod,
    method_name: Value,
    of: Expr,
    keys: Vec<Expr>,
    threshold: f64,
    window: usize,
    emit_all: bool,
    trees: usize,
    sample: usize,
    seed: u64,
    states: FxHashMap<Key, Detector>,
}

impl Anomaly {
    /// An anomaly step.
    ///
    /// # Errors
    /// When an expression does not compile.
    pub fn new(name: String, spec: &AnomalyStep, env: &Arc<cel::Env>) -> Result<Self, ExprError> {
        let window = usize::try_from(spec.window).unwrap_or(usize::MAX).max(2);
        let threshold = match spec.method {
            AnomalyMethod::Zscore => spec.threshold.unwrap_or(3.0),
            AnomalyMethod::Iqr => spec.k.or(spec.threshold).unwrap_or(1.5),
            AnomalyMethod::IsolationForest => spec.threshold.unwrap_or(0.6),
        };
        let method_name = match spec.method {
            AnomalyMethod::Zscore => "zscore",
            AnomalyMethod::Iqr => "iqr",
            AnomalyMethod::IsolationForest => "isolationForest",
        };
        Ok(Self {
            name,
            method: spec.method,
            method_name: Value::from(method_name),
            of: Expr::compile(&spec.of, env)?,
            keys: spec
                .key_by
                .iter()
                .map(|k| Expr::compile(k.expr(), env))
                .collect::<Result<_, _>>()?,
            threshold,
            window,
            emit_all: spec.emit == AnomalyEmit::All,
            trees: spec
                .trees
                .map_or(100, |t| usize::try_from(t).unwrap_or(100)),
            sample: spec
                .sample_size
                .map_or(256, |s| usize::try_from(s).unwrap_or(256))
                .min(window),
            seed: spec.seed.unwrap_or(42),
            states: FxHashMap::default(),
        })
    }

    fn detector(&self, key: &Key) -> Detector {
        match self.method {
            AnomalyMethod::Zscore => Detector::Z(zscore::ZScore::new(self.window)),
            AnomalyMethod::Iqr => Detector::Iqr(iqr::Iqr::new(self.window)),
            AnomalyMethod::IsolationForest => {
                let mut h = FxHasher::default();
                key.hash(&mut h);
                Detector::Forest(forest::Rolling::new(
                    self.window,
                    self.trees,
                    self.sample,
                    self.seed ^ h.finish(),
                ))
            }
        }
    }
}

/// The observed value: a number, or (isolation forest) an array of numbers.
fn observed(v: &Value) -> Option<Vec<f64>> {
    match v {
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()).map(|x| vec![x]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_f64().filter(|x| x.is_finite()))
            .collect(),
        _ => None,
    }
}

impl Step for Anomaly {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> super::Snapshot {
        super::encode(&self.states)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.states = super::decode(state)?;
        Ok(())
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        for mut rec in input {
            let Some(key) = eval_key(self.keys.iter(), &rec.value) else {
                emit.dead.push(key_error(self.keys.iter(), &self.name, rec));
                continue;
            };
            let x = match self.of.eval(&rec.value).map(|v| observed(&v)) {
                Ok(Some(x)) if x.len() == 1 || self.method == AnomalyMethod::IsolationForest => x,
                Ok(_) => {
                    let msg = "of: the value is not a finite number".to_owned();
                    emit.dead.push(DeadLetter::new(&self.name, msg, rec));
                    continue;
                }
                Err(e) => {
                    emit.dead
                        .push(DeadLetter::new(&self.name, format!("of: {e}"), rec));
                    continue;
                }
            };
            if !self.states.contains_key(&key) {
                let d = self.detector(&key);
                self.states.insert(key.clone(), d);
            }
            let Some(state) = self.states.get_mut(&key) else {
                continue;
            };
            let score = match state {
                Detector::Z(z) => z.score(x[0]),
                Detector::Iqr(q) => q.score(x[0]),
                Detector::Forest(f) => f.score(x),
            };
            let flagged = score.is_some_and(|s| s > self.threshold);
            if !flagged && !self.emit_all {
                emit.dropped += 1;
                continue;
            }
            let mut a = Map::new();
            a.insert("method".into(), self.method_name.clone());
            a.insert("score".into(), score.map_or(Value::Null, Value::from));
            a.insert("threshold".into(), Value::from(self.threshold));
            a.insert("isAnomaly".into(), Value::Bool(flagged));
            match &mut rec.value {
                Value::Object(m) => {
                    m.insert("anomaly".into(), Value::Object(a));
                }
                other => {
                    let mut m = Map::new();
                    m.insert("value".into(), other.take());
                    m.insert("anomaly".into(), Value::Object(a));
                    rec.value = Value::Object(m);
                }
            }
            emit.out.push(rec);
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.states
            .values()
            .map(|d| match d {
                Detector::Z(z) => z.len(),
                Detector::Iqr(q) => q.len(),
                Detector::Forest(f) => f.len(),
            })
            .sum()
    }
}
