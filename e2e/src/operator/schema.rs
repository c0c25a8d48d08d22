//! Strict, standalone JSON schemas in the layout kubeconform reads, made
//! offline: built-in kinds from the API server's OpenAPI v3 documents (the
//! test bed runs the Kubernetes version the chart targets), custom
//! resources from a CRD's `openAPIV3Schema`.
//!
//! kubeconform's `default` location downloads schemas from GitHub, which a
//! machine without internet access cannot reach; the test bed's API server
//! serves the same definitions.
//!
//! "Strict" is what kubeconform's `-strict` schemas are: every object with
//! declared properties refuses unknown ones.

use serde_json::{Map, Value, json};

/// The `-schema-location` template, relative to the schema directory.
pub const LOCATION: &str = "{{ .ResourceKind }}{{ .KindSuffix }}.json";

/// The file kubeconform looks for with [`LOCATION`] for a resource of
/// `api_version` (`apps/v1`, `v1`) and `kind`: `deployment-apps-v1.json`.
#[must_use]
pub fn file_name(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = kind.to_lowercase();
    if group.is_empty() {
        format!("{kind}-{}.json", version.to_lowercase())
    } else {
        let first = group.split('.').next().unwrap_or(group).to_lowercase();
        format!("{kind}-{first}-{}.json", version.to_lowercase())
    }
}

/// The OpenAPI v3 path that describes `api_version`: `api/v1`, `apis/apps/v1`.
#[must_use]
pub fn openapi_path(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("apis/{api_version}")
    } else {
        format!("api/{api_version}")
    }
}

/// Makes `schema` strict and plain JSON Schema (draft 4, as kubeconform
/// compiles it), recursively:
/// - objects with `properties` get `additionalProperties: false` unless they
///   preserve unknown fields or already say;
/// - int-or-string values (`x-kubernetes-int-or-string`, format
///   `int-or-string`) accept an integer or a string;
/// - `nullable: true` (OpenAPI) adds `null` to the type;
/// - `#/components/schemas/X` references become `#/definitions/X`.
#[must_use]
pub fn strict(schema: &Value) -> Value {
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || obj.get("format").and_then(Value::as_str) == Some("int-or-string");
    let mut out = Map::new();
    for (k, v) in obj {
        let v = match k.as_str() {
            "properties" | "definitions" => Value::Object(
                v.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, s)| (name.clone(), strict(s)))
                    .collect(),
            ),
            "items" | "additionalProperties" | "not" => strict(v),
            "allOf" | "anyOf" | "oneOf" => {
                Value::Array(v.as_array().into_iter().flatten().map(strict).collect())
            }
            "$ref" => Value::String(
                v.as_str()
                    .unwrap_or_default()
                    .replace("#/components/schemas/", "#/definitions/"),
            ),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if int_or_string {
        out.remove("type");
        out.remove("format");
        out.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if out.get("nullable") == Some(&Value::Bool(true))
        && let Some(t) = out.get("type").and_then(Value::as_str).map(str::to_owned)
    {
        out.insert("type".into(), json!([t, "null"]));
    }
    let preserves = out.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if out.contains_key("properties") && !out.contains_key("additionalProperties") && !preserves {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

/// The standalone schema of `kind` in `api_version` from an OpenAPI v3
/// document: every definition of the document (made [`strict`]) and a
/// reference to the kind's. `None` when the document has no such kind.
#[must_use]
pub fn from_openapi(doc: &Value, api_version: &str, kind: &str) -> Option<Value> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let schemas = doc.pointer("/components/schemas")?.as_object()?;
    let name = schemas.iter().find_map(|(name, s)| {
        let gvks = s.get("x-kubernetes-group-version-kind")?.as_array()?;
        gvks.iter()
            .any(|g| g["group"] == group && g["version"] == version && g["kind"] == kind)
            .then(|| name.clone())
    })?;
    let definitions: Map<String, Value> = schemas
        .iter()
        .map(|(n, s)| {
            let s = if n == "io.k8s.apimachinery.pkg.api.resource.Quantity" {
                json!({"anyOf": [{"type": "string"}, {"type": "number"}]})
            } else {
                strict(s)
            };
            (n.clone(), s)
        })
        .collect();
    Some(json!({
        "definitions": definitions,
        "allOf": [{"$ref": format!("#/definitions/{name}")}],
    }))
}

/// The schemas of a CRD (as parsed from its YAML), one per served version:
/// `(api_version, kind, schema)`. The schema is the version's
/// `openAPIV3Schema` made [`strict`], with `apiVersion`, `kind` and
/// `metadata` declared (the API server adds them to every CRD).
#[must_use]
pub fn from_crd(crd: &Value) -> Vec<(String, String, Value)> {
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
    crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let version = v["name"].as_str()?;
            let mut schema = v.pointer("/schema/openAPIV3Schema")?.clone();
            let props = schema
                .as_object_mut()?
                .entry("properties")
                .or_insert(json!({}));
            let props = props.as_object_mut()?;
            props
                .entry("apiVersion")
                .or_insert(json!({"type": "string"}));
            props.entry("kind").or_insert(json!({"type": "string"}));
            props.entry("metadata").or_insert(json!({"type": "object"}));
            Some((
                format!("{group}/{version}"),
                kind.to_owned(),
                strict(&schema),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_kubeconforms_kind_suffix() {
        assert_eq!(
            file_name("apps/v1", "Deployment"),
            "deployment-apps-v1.json"
        );
        assert_eq!(file_name("v1", "ConfigMap"), "configmap-v1.json");
        assert_eq!(
            file_name("rbac.authorization.k8s.io/v1", "ClusterRole"),
            "clusterrole-rbac-v1.json"
        );
        assert_eq!(
            file_name("tributary.dev/v1alpha1", "StreamPipeline"),
            "streampipeline-tributary-v1alpha1.json"
        );
        assert_eq!(openapi_path("v1"), "api/v1");
        assert_eq!(openapi_path("apps/v1"), "apis/apps/v1");
    }

    #[test]
    fn strict_closes_objects_but_not_open_ones_and_widens_special_types() {
        let s = strict(&json!({
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": true, "type": "string"},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                         "properties": {"a": {"type": "string"}}},
                "maybe": {"type": "string", "nullable": true},
                "meta": {"allOf": [{"$ref": "#/components/schemas/Meta"}]}
            }
        }));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["port"]["anyOf"][0]["type"], "integer");
        assert!(s["properties"]["port"].get("type").is_none());
        assert!(
            s["properties"]["free"]
                .get("additionalProperties")
                .is_none()
        );
        assert_eq!(s["properties"]["maybe"]["type"], json!(["string", "null"]));
        assert_eq!(
            s["properties"]["meta"]["allOf"][0]["$ref"],
            "#/definitions/Meta"
        );
    }

    #[test]
    fn a_kind_is_found_by_its_group_version_kind() {
        let doc = json!({"components": {"schemas": {
            "io.k8s.api.apps.v1.Deployment": {
                "type": "object",
                "properties": {"spec": {"type": "object"}},
                "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Deployment"}]
            }
        }}});
        let s = from_openapi(&doc, "apps/v1", "Deployment").unwrap();
        assert_eq!(
            s["allOf"][0]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
        assert!(from_openapi(&doc, "apps/v1", "StatefulSet").is_none());
    }

    #[test]
    fn crd_schemas_declare_the_envelope() {
        let crd = json!({"spec": {"group": "tributary.dev", "names": {"kind": "StreamPipeline"},
            "versions": [{"name": "v1alpha1", "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}}]}});
        let all = from_crd(&crd);
        assert_eq!(all.len(), 1);
        let (api_version, kind, s) = &all[0];
        assert_eq!(
            (api_version.as_str(), kind.as_str()),
            ("tributary.dev/v1alpha1", "StreamPipeline")
        );
        assert_eq!(s["properties"]["metadata"]["type"], "object");
        assert_eq!(s["properties"]["spec"]["additionalProperties"], false);
    }
}
