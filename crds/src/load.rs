//! Reading a pipeline file: a whole `StreamPipeline` or just its spec.

use serde::Deserialize;

use crate::{FieldError, StreamPipelineSpec};

/// A pipeline read from YAML, with the identity it had (if any).
#[derive(Clone, Debug)]
pub struct LoadedPipeline {
    /// `metadata.name`, when the file was a whole resource.
    pub name: Option<String>,
    /// `metadata.namespace`, when given.
    pub namespace: Option<String>,
    /// The spec.
    pub spec: StreamPipelineSpec,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    metadata: Metadata,
    spec: serde_yaml_ng::Value,
}

#[derive(Deserialize, Default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
}

/// Parses YAML (or JSON) holding a whole `StreamPipeline` or just its spec.
///
/// # Errors
/// A [`FieldError`] naming the field path (`spec.steps[1].window.size`) that
/// could not be read, or `spec` itself when the document is not YAML.
pub fn load_pipeline(text: &str) -> Result<LoadedPipeline, FieldError> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| FieldError::new("spec", format!("not valid YAML: {e}")))?;
    let is_resource = doc.get("kind").is_some() || doc.get("apiVersion").is_some();
    let (metadata, spec_value) = if is_resource {
        if let Some(kind) = doc.get("kind").and_then(|k| k.as_str())
            && kind != "StreamPipeline"
        {
            return Err(FieldError::new(
                "kind",
                format!("expected StreamPipeline, found {kind}"),
            ));
        }
        let env: Envelope =
            serde_yaml_ng::from_value(doc).map_err(|e| FieldError::new("spec", format!("{e}")))?;
        (env.metadata, env.spec)
    } else {
        (Metadata::default(), doc)
    };
    let spec: StreamPipelineSpec = serde_path_to_error::deserialize(spec_value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "spec".to_owned()
        } else {
            format!("spec.{path}")
        };
        FieldError::new(path, e.into_inner().to_string())
    })?;
    Ok(LoadedPipeline {
        name: metadata.name,
        namespace: metadata.namespace,
        spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_whole_resource_and_a_bare_spec() {
        let whole = "apiVersion: tributary.dev/v1alpha1\nkind: StreamPipeline\nmetadata: {name: p, namespace: ns}\nspec:\n  source: {stdin: {}}\n  sinks: [{name: out, stdout: {}}]\n";
        let p = load_pipeline(whole).unwrap();
        assert_eq!(p.name.as_deref(), Some("p"));
        assert_eq!(p.namespace.as_deref(), Some("ns"));
        assert!(p.spec.source.stdin.is_some());
        let bare = "source: {stdin: {}}\nsinks: [{name: out, stdout: {}}]\n";
        assert!(load_pipeline(bare).unwrap().name.is_none());
    }

    #[test]
    fn names_the_path_of_a_bad_field() {
        let bad = "source: {stdin: {}}\nsinks: [{name: out, stdout: {}}]\nsteps:\n  - filter: 'true'\n  - window: {type: tumbling, size: 10 seconds, aggregate: [{name: c, fn: count}]}\n";
        let err = load_pipeline(bad).unwrap_err();
        assert_eq!(err.path, "spec.steps[1].window.size", "{err}");
        let unknown = "source: {stdin: {}, colour: red}\nsinks: [{name: out, stdout: {}}]\n";
        let err = load_pipeline(unknown).unwrap_err();
        assert!(err.path.starts_with("spec.source"), "{err}");
        assert!(err.message.contains("colour"), "{err}");
    }
}
