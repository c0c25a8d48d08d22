//! The generated CRD matches the types and is one the apiserver accepts.

use kube::CustomResourceExt;
use tributary_crds::StreamPipeline;

/// Regression: `crds/generated/streampipeline.yaml` must be what `crdgen` prints,
/// or `kubectl apply` installs a schema that disagrees with the code.
#[test]
fn generated_crd_does_not_drift() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/generated/streampipeline.yaml");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    let fresh = tributary_crds::crd_yaml().expect("renders");
    // Compare as YAML values: key order follows serde_json's map type, which
    // cargo feature unification may change between builds.
    let parse = |s: &str| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(s).ok();
    assert!(
        parse(&on_disk).is_some() && parse(&on_disk) == parse(&fresh),
        "{path} is out of date; regenerate it with\n  cargo run -p tributary-crds --bin crdgen > crds/generated/streampipeline.yaml"
    );
}

/// Walks schema nodes (not property-name maps) and reports what the
/// apiserver's structural-schema check refuses.
fn walk(node: &serde_json::Value, path: &str, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else { return };
    let free = obj.contains_key("x-kubernetes-preserve-unknown-fields")
        || obj.contains_key("x-kubernetes-int-or-string");
    if !free && !obj.contains_key("type") {
        problems.push(format!("{path}: no type"));
    }
    for key in ["$ref", "oneOf", "anyOf"] {
        if obj.contains_key(key) && !free {
            problems.push(format!("{path}: {key}"));
        }
    }
    if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
        for (name, child) in props {
            walk(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = obj.get("items") {
        walk(items, &format!("{path}[]"), problems);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        walk(extra, &format!("{path}{{}}"), problems);
    }
}

/// Regression: a non-structural schema is refused by the apiserver.
#[test]
fn schema_is_structural() {
    let crd = serde_json::to_value(StreamPipeline::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut problems = vec![];
    walk(schema, "spec", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    let text = serde_json::to_string(&crd).unwrap();
    assert!(
        text.contains("exactly one source kind must be set"),
        "one-of rule for sources is missing"
    );
    assert!(text.contains("size is required for a tumbling window"));
    let scale = &crd["spec"]["versions"][0]["subresources"]["scale"];
    assert_eq!(scale["specReplicasPath"], ".spec.replicas");
    assert_eq!(scale["labelSelectorPath"], ".status.selector");
}

/// Regression: go-yaml (kubectl, the apiserver, Helm) reads `on` as `true`;
/// the join step's `on` property made the apiserver refuse the whole CRD.
/// Quoting must change nothing for a YAML 1.2 reader and leave no bare
/// YAML 1.1 boolean word in a key or item position.
#[test]
fn crd_yaml_is_the_same_document_for_yaml_1_1_readers() {
    let raw = serde_yaml_ng::to_string(&tributary_crds::crd_value().unwrap()).unwrap();
    let quoted = tributary_crds::crd_yaml().unwrap();
    let parse = |s: &str| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(s).unwrap();
    assert_eq!(parse(&raw), parse(&quoted));
    for line in quoted.lines() {
        let t = line.trim_start().trim_start_matches("- ");
        for word in ["on", "off", "yes", "no", "y", "n"] {
            assert!(
                t != word && !t.starts_with(&format!("{word}:")),
                "bare YAML 1.1 boolean in: {line}"
            );
        }
    }
}

/// Regression: the Helm chart and `kubectl apply -k deploy/` install copies
/// of the CRD; a copy that lags the generated file installs an old API.
#[test]
fn chart_and_kustomize_copies_match_the_generated_crd() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let read = |p: &str| std::fs::read_to_string(format!("{root}/{p}")).unwrap_or_default();
    let generated = read("crds/generated/streampipeline.yaml");
    assert!(
        !generated.is_empty(),
        "crds/generated/streampipeline.yaml is missing"
    );
    for copy in [
        "charts/tributary/crds/streampipeline.yaml",
        "deploy/base/crd.yaml",
    ] {
        assert!(
            read(copy) == generated,
            "{copy} differs from crds/generated/streampipeline.yaml; run `make crds`"
        );
    }
}
