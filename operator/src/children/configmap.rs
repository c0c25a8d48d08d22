//! The ConfigMap `NAME-pipeline`: the resolved pipeline the processor reads
//! at `/etc/tributary/pipeline.yaml`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tributary_crds::StreamPipeline;

use super::{metadata, secrets};
use crate::Config;

/// The one key of the ConfigMap.
pub const KEY: &str = "pipeline.yaml";
/// Where the ConfigMap is mounted in the processor container.
pub const MOUNT_DIR: &str = "/etc/tributary";
/// The pod template annotation carrying [`config_hash`].
pub const HASH_ANNOTATION: &str = "tributary.dev/config-hash";

/// The ConfigMap's name for pipeline `name`.
#[must_use]
pub fn name(sp: &StreamPipeline) -> String {
    format!("{}-pipeline", sp.name_any())
}

/// The pipeline as the processor should read it: `apiVersion`, `kind`,
/// `metadata {name, namespace}` and the spec with secrets as env
/// references; status and the rest of the metadata dropped.
///
/// `spec.replicas` is dropped too: it does not change what a processor
/// does, and keeping it would change the config hash, so every
/// `kubectl scale` (or autoscaler step) would restart all pods.
#[must_use]
pub fn render(sp: &StreamPipeline) -> String {
    let (mut spec, _) = secrets::rewrite(&sp.spec);
    if let Value::Object(map) = &mut spec {
        map.remove("replicas");
    }
    let doc = json!({
        "apiVersion": "tributary.dev/v1alpha1",
        "kind": "StreamPipeline",
        "metadata": {"name": sp.name_any(), "namespace": sp.namespace()},
        "spec": spec,
    });
    // JSON is YAML too: the fallback keeps this infallible.
    serde_yaml_ng::to_string(&doc).unwrap_or_else(|_| doc.to_string())
}

/// Builds the ConfigMap of `sp`.
#[must_use]
pub fn configmap(sp: &StreamPipeline, _cfg: &Config) -> ConfigMap {
    ConfigMap {
        metadata: metadata(sp, name(sp)),
        data: Some(BTreeMap::from([(KEY.to_owned(), render(sp))])),
        ..ConfigMap::default()
    }
}

/// SHA-256 (hex) of the ConfigMap's data: each value in key order (with one
/// key, exactly the hash of `pipeline.yaml`). On the pod template, it rolls
/// the Deployment when the rendered config changes.
#[must_use]
pub fn config_hash(cm: &ConfigMap) -> String {
    let mut h = Sha256::new();
    for v in cm.data.iter().flat_map(BTreeMap::values) {
        h.update(v.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::fixture;

    fn data(cm: &ConfigMap) -> &str {
        cm.data.as_ref().unwrap().get(KEY).unwrap()
    }

    #[test]
    fn holds_the_whole_resource_that_the_processor_loads() {
        let sp = fixture::pipeline();
        let cm = configmap(&sp, &Config::default());
        assert_eq!(cm.metadata.name.as_deref(), Some("clicks-pipeline"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("analytics"));
        let loaded = tributary_crds::load_pipeline(data(&cm)).unwrap();
        assert_eq!(loaded.name.as_deref(), Some("clicks"));
        assert_eq!(loaded.namespace.as_deref(), Some("analytics"));
        assert_eq!(loaded.spec.steps, sp.spec.steps);
        assert_eq!(loaded.spec.source, sp.spec.source);
        assert!(!data(&cm).contains("status"));
        assert!(!data(&cm).contains("uid"));
    }

    #[test]
    fn secrets_stay_references() {
        let cm = configmap(&fixture::with_secrets(), &Config::default());
        assert!(!data(&cm).contains("secretKeyRef"), "{}", data(&cm));
        assert!(data(&cm).contains("TRIBUTARY_SECRET_0"));
        assert!(tributary_crds::load_pipeline(data(&cm)).is_ok());
    }

    #[test]
    fn the_hash_follows_the_spec_but_not_the_replicas() {
        let cfg = Config::default();
        let sp = fixture::pipeline();
        let h = config_hash(&configmap(&sp, &cfg));
        assert_eq!(h.len(), 64);
        let digest = Sha256::digest(data(&configmap(&sp, &cfg)).as_bytes());
        assert_eq!(h, format!("{digest:x}"));
        let mut scaled = sp.clone();
        scaled.spec.replicas = 7;
        assert_eq!(config_hash(&configmap(&scaled, &cfg)), h);
        let mut edited = sp;
        edited.spec.steps.clear();
        assert_ne!(config_hash(&configmap(&edited, &cfg)), h);
    }
}
