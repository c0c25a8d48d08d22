//! Secrets stay references: every `secretKeyRef` in the spec becomes
//! `env: TRIBUTARY_SECRET_<N>` in the rendered config, and the Deployment
//! sets that variable from the Secret. The processor never reads the
//! Kubernetes API, and secret values never land in a ConfigMap.

use serde_json::{Map, Value};
use tributary_crds::{SecretKeyRef, StreamPipelineSpec};

/// The environment variable that carries secret reference `n`.
#[must_use]
pub fn env_name(n: usize) -> String {
    format!("TRIBUTARY_SECRET_{n}")
}

/// The spec as JSON with every `secretKeyRef` replaced by an `env`
/// reference, and the Secret keys in the order of their variable numbers.
///
/// # Guarantees
/// The order is deterministic (the walk follows the serialized field
/// order) and a `(name, key)` used twice shares one variable.
/// `spec.processor` is left alone: its sidecars are plain Kubernetes
/// containers whose `valueFrom.secretKeyRef` the kubelet resolves.
#[must_use]
pub fn rewrite(spec: &StreamPipelineSpec) -> (Value, Vec<SecretKeyRef>) {
    let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
    let mut refs = Vec::new();
    if let Value::Object(map) = &mut value {
        for (k, v) in map.iter_mut() {
            if k != "processor" {
                walk(v, &mut refs);
            }
        }
    }
    (value, refs)
}

fn walk(v: &mut Value, refs: &mut Vec<SecretKeyRef>) {
    match v {
        Value::Object(map) => {
            if let Some(r) = secret_key_ref(map) {
                let n = refs.iter().position(|x| *x == r).unwrap_or_else(|| {
                    refs.push(r);
                    refs.len() - 1
                });
                map.remove("secretKeyRef");
                map.insert("env".to_owned(), Value::String(env_name(n)));
            } else {
                map.values_mut().for_each(|v| walk(v, refs));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, refs)),
        _ => {}
    }
}

fn secret_key_ref(map: &Map<String, Value>) -> Option<SecretKeyRef> {
    serde_json::from_value(map.get("secretKeyRef")?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::fixture;

    #[test]
    fn every_secret_key_ref_becomes_a_numbered_env_reference() {
        let sp = fixture::with_secrets();
        let (value, refs) = rewrite(&sp.spec);
        let text = value.to_string();
        assert!(!text.contains("secretKeyRef"), "{text}");
        assert_eq!(refs.len(), 2, "username and password: {refs:?}");
        let sasl = &value["source"]["kafka"]["auth"]["sasl"];
        let names = [&sasl["username"]["env"], &sasl["password"]["env"]];
        let mut names: Vec<&str> = names.iter().filter_map(|v| v.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["TRIBUTARY_SECRET_0", "TRIBUTARY_SECRET_1"]);
    }

    #[test]
    fn the_same_key_shares_one_variable_and_the_order_is_stable() {
        let mut sp = fixture::with_secrets();
        let auth = sp
            .spec
            .source
            .kafka
            .as_mut()
            .unwrap()
            .auth
            .as_mut()
            .unwrap();
        let sasl = auth.sasl.as_mut().unwrap();
        sasl.password = sasl.username.clone();
        let (a, refs) = rewrite(&sp.spec);
        assert_eq!(refs.len(), 1);
        assert_eq!(rewrite(&sp.spec).0, a);
    }

    #[test]
    fn sidecar_secret_refs_are_left_to_the_kubelet() {
        let sp = fixture::with_sidecar();
        let (value, refs) = rewrite(&sp.spec);
        assert!(refs.is_empty());
        assert!(value["processor"].to_string().contains("secretKeyRef"));
    }
}
