//! JSON <-> CEL values.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// Converts a JSON value into a CEL value. Integers stay integers, so
/// `event.n == 1` holds for `{"n": 1}`.
#[must_use]
pub fn json_to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                cel::Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                cel::Value::UInt(u)
            } else {
                cel::Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        Value::Object(o) => {
            let map: HashMap<String, cel::Value> =
                o.iter().map(|(k, v)| (k.clone(), json_to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

/// Converts a CEL result back to JSON.
///
/// # Errors
/// For values JSON cannot hold (functions, opaque values).
pub fn cel_to_json(v: &cel::Value) -> Result<Value, String> {
    v.json()
        .map_err(|e| format!("result cannot be written as JSON: {e:?}"))
}
