//! The API server's audit log (JSON lines, `KUBE_AUDIT_LOG`) as the set of
//! permissions a user really exercised, and RBAC rules as the set they were
//! granted, so a test can check both ways: nothing used without a grant (and
//! nothing denied), nothing granted that is never used.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::{Error, Result};

/// One permission: `(apiGroup, resource[/subresource], verb)`; the core
/// group is `""`.
pub type Permission = (String, String, String);

/// One resource request from the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `get`, `list`, `watch`, `create`, `patch`, `update`, …
    pub verb: String,
    /// API group (`""` for core).
    pub api_group: String,
    /// Resource, with `/subresource` when there is one.
    pub resource: String,
    /// Namespace, when namespaced.
    pub namespace: Option<String>,
    /// Object name, when one object was addressed.
    pub name: Option<String>,
    /// HTTP status of the response.
    pub code: Option<u16>,
}

impl Request {
    /// The permissions this request needed: its verb, and `create` too for
    /// a patch that created the object (server-side apply of a missing
    /// object is authorized as both, and answers 201).
    #[must_use]
    pub fn permissions(&self) -> Vec<Permission> {
        let p = |verb: &str| {
            (
                self.api_group.clone(),
                self.resource.clone(),
                verb.to_owned(),
            )
        };
        let mut out = vec![p(&self.verb)];
        if self.verb == "patch" && self.code == Some(201) {
            out.push(p("create"));
        }
        out
    }
}

/// Parses one audit event line; `None` for other users, non-resource
/// requests and lines that are not audit events.
#[must_use]
pub fn parse_line(line: &str, username: &str) -> Option<Request> {
    // Cheap filter first: the log holds every service account's requests.
    if !line.contains(username) {
        return None;
    }
    let event: Value = serde_json::from_str(line).ok()?;
    if event["user"]["username"] != username {
        return None;
    }
    let object = event.get("objectRef")?;
    let mut resource = object["resource"].as_str()?.to_owned();
    if let Some(sub) = object["subresource"].as_str() {
        resource = format!("{resource}/{sub}");
    }
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Some(Request {
        verb: text(&event["verb"])?,
        api_group: text(&object["apiGroup"]).unwrap_or_default(),
        resource,
        namespace: text(&object["namespace"]),
        name: text(&object["name"]),
        code: event["responseStatus"]["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok()),
    })
}

/// Every resource request of `username` in the audit log at `path`.
///
/// # Errors
///
/// When the log cannot be read.
pub fn requests_of(path: &Path, username: &str) -> Result<Vec<Request>> {
    let text = std::fs::read_to_string(path).map_err(Error::io(format!(
        "reading the audit log {}",
        path.display()
    )))?;
    Ok(text
        .lines()
        .filter_map(|l| parse_line(l, username))
        .collect())
}

/// The permissions `requests` needed.
#[must_use]
pub fn used(requests: &[Request]) -> BTreeSet<Permission> {
    requests.iter().flat_map(Request::permissions).collect()
}

/// The permissions RBAC `rules` grant (the `rules` array of a Role or
/// ClusterRole, as JSON), expanded to one entry per group, resource and verb.
#[must_use]
pub fn granted(rules: &Value) -> BTreeSet<Permission> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in rules.as_array().into_iter().flatten() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const USER: &str = "system:serviceaccount:rel:rel-tributary-operator";

    fn line(verb: &str, object: &Value, code: u16) -> String {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "stage": "ResponseComplete", "verb": verb,
            "user": {"username": USER, "groups": ["system:serviceaccounts"]},
            "objectRef": object, "responseStatus": {"metadata": {}, "code": code}
        })
        .to_string()
    }

    #[test]
    fn a_patch_that_created_needs_create_too() {
        let l = line(
            "patch",
            &json!({"resource": "configmaps", "namespace": "ns", "name": "p-pipeline", "apiVersion": "v1"}),
            201,
        );
        let r = parse_line(&l, USER).unwrap();
        assert_eq!(r.api_group, "");
        assert_eq!(
            used(&[r]),
            BTreeSet::from([
                (String::new(), "configmaps".into(), "create".into()),
                (String::new(), "configmaps".into(), "patch".into()),
            ])
        );
    }

    #[test]
    fn subresources_and_groups_are_kept_and_other_users_ignored() {
        let l = line(
            "patch",
            &json!({"resource": "streampipelines", "subresource": "status", "apiGroup": "tributary.dev"}),
            200,
        );
        let r = parse_line(&l, USER).unwrap();
        assert_eq!(r.resource, "streampipelines/status");
        assert_eq!(r.api_group, "tributary.dev");
        assert_eq!(r.permissions().len(), 1);
        assert!(parse_line(&l, "system:serviceaccount:rel:other").is_none());
        let no_object = line("get", &Value::Null, 200).replace("\"objectRef\":null,", "");
        assert!(parse_line(&no_object, USER).is_none());
    }

    #[test]
    fn rules_expand_to_one_permission_each() {
        let rules = json!([
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
            {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": ["list"]}
        ]);
        let g = granted(&rules);
        assert_eq!(g.len(), 4);
        assert!(g.contains(&(String::new(), "services".into(), "list".into())));
    }
}
