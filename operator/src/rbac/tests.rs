//! The chart and the kustomize base grant exactly [`CLUSTER_RULES`] and
//! [`LEADER_ELECTION_RULES`].

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::*;

type Grants = BTreeSet<(String, String, String)>;

fn template(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/tributary/templates")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The template as plain YAML: directive lines (`{{- if … }}`, `{{- end }}`)
/// dropped and every other `{{ … }}` replaced by a placeholder. The RBAC
/// templates use templating only for names and labels, never in rules.
fn render_free(text: &str) -> Value {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("{{") && trimmed.ends_with("}}") && !trimmed.contains(':') {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .map_or(rest.len(), |e| start + e + 2);
            out.push_str("templated");
            rest = &rest[end..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    serde_yaml_ng::from_str(&out).unwrap_or_else(|e| panic!("not YAML after stripping: {e}\n{out}"))
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_sequence()
        .unwrap_or_else(|| panic!("rule without {key}: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn grants(doc: &Value) -> Grants {
    let mut out = Grants::new();
    for rule in doc["rules"].as_sequence().expect("rules") {
        for g in strings(rule, "apiGroups") {
            for r in strings(rule, "resources") {
                for v in strings(rule, "verbs") {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

#[test]
fn the_cluster_role_grants_exactly_what_the_operator_uses() {
    let doc = render_free(&template("clusterrole.yaml"));
    assert_eq!(doc["kind"].as_str(), Some("ClusterRole"));
    assert_eq!(grants(&doc), expand(CLUSTER_RULES));
}

#[test]
fn the_leader_election_role_grants_exactly_what_the_operator_uses() {
    let doc = render_free(&template("role-leader-election.yaml"));
    assert_eq!(doc["kind"].as_str(), Some("Role"));
    assert_eq!(grants(&doc), expand(LEADER_ELECTION_RULES));
}

#[test]
fn the_pipeline_itself_is_only_read_and_patched() {
    // The reconciler reads pipelines; only the autoscaler patches them (spec.replicas).
    // `get` is a read too: a status write that lost a race re-reads the pipeline.
    let all = expand(CLUSTER_RULES);
    assert!(all.iter().all(|(_, r, v)| r != "streampipelines"
        || ["get", "list", "watch", "patch"].contains(&v.as_str())));
}

#[test]
fn the_kustomize_base_grants_the_same_as_the_chart() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/operator.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    let role = |kind: &str| {
        let doc = docs
            .iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} in {}", path.display()));
        grants(doc)
    };
    assert_eq!(role("ClusterRole"), expand(CLUSTER_RULES));
    assert_eq!(role("Role"), expand(LEADER_ELECTION_RULES));
}
