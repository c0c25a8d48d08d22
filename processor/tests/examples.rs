//! Every bundled example in `deploy/examples/` is a valid `StreamPipeline`
//! and runs to completion on its bounded input.
//!
//! The examples are copied into a scratch directory before they run, so
//! the ones that write files (`out/…`, resolved against the pipeline
//! file's folder) never touch the checkout.

mod support;

use std::path::PathBuf;

use support::{copy_examples, repo_root, tributary};

/// The YAML files directly in `dir`, by file name, sorted.
fn yaml_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    names.sort();
    names
}

/// The example pipelines, by file name, sorted.
fn examples() -> Vec<String> {
    let dir = repo_root().join("deploy/examples");
    let names = yaml_files(&dir);
    assert!(
        names.len() >= 5,
        "expected the bundled examples in {}, found {names:?}",
        dir.display()
    );
    names
}

#[test]
fn every_example_is_a_whole_stream_pipeline_resource() {
    let dir = repo_root().join("deploy/examples");
    for name in examples() {
        let text = std::fs::read_to_string(dir.join(&name)).expect("read example");
        assert!(
            text.starts_with('#'),
            "{name}: should start with a comment header that explains it"
        );
        assert!(
            text.contains("run -f deploy/examples/"),
            "{name}: the header should show the command that runs it"
        );
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
        assert_eq!(
            doc["apiVersion"].as_str(),
            Some("tributary.dev/v1alpha1"),
            "{name}"
        );
        assert_eq!(doc["kind"].as_str(), Some("StreamPipeline"), "{name}");
        let stem = name.trim_end_matches(".yaml").trim_end_matches(".yml");
        assert_eq!(
            doc["metadata"]["name"].as_str(),
            Some(stem),
            "{name}: metadata.name should match the file name"
        );
    }
}

#[test]
fn every_example_passes_validate() {
    let dir = repo_root().join("deploy/examples");
    for name in examples() {
        let out = tributary(&["validate", "-f", &name], &dir);
        assert!(
            out.status.success(),
            "tributary validate -f {name} failed ({}):\n{}",
            out.status,
            out.stderr
        );
    }
}

/// Regression: connector and cluster examples (which need brokers, so
/// they cannot run here) were only validated one by one, by the e2e test
/// of their connector, and a new one could be committed unchecked.
#[test]
fn every_connector_and_cluster_example_passes_validate() {
    for sub in ["connectors", "cluster"] {
        let dir = repo_root().join("deploy/examples").join(sub);
        let names = yaml_files(&dir);
        assert!(!names.is_empty(), "no examples in {}", dir.display());
        for name in names {
            let out = tributary(&["validate", "-f", &name], &dir);
            assert!(
                out.status.success(),
                "tributary validate -f {sub}/{name} failed ({}):\n{}",
                out.status,
                out.stderr
            );
        }
    }
}

#[test]
fn every_example_runs_to_completion_and_produces_results() {
    let scratch = tempfile::tempdir().expect("tempdir");
    copy_examples(scratch.path());
    for name in examples() {
        let out = tributary(&["run", "-q", "-f", &name], scratch.path());
        assert!(
            out.status.success(),
            "tributary run -f {name} failed ({}):\n{}",
            out.status,
            out.stderr
        );
        // Results go to stdout or to the files the pipeline names.
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(scratch.path().join(&name)).unwrap())
                .unwrap();
        let files: Vec<PathBuf> = doc["spec"]["sinks"]
            .as_sequence()
            .expect("spec.sinks")
            .iter()
            .filter_map(|s| s["file"]["path"].as_str())
            .map(|p| scratch.path().join(p))
            .collect();
        let mut results = out.json_lines();
        for f in &files {
            let text = std::fs::read_to_string(f)
                .unwrap_or_else(|e| panic!("{name}: sink file {}: {e}", f.display()));
            results.extend(support::json_lines(&text));
        }
        assert!(!results.is_empty(), "{name}: no results");
        for r in &results {
            let (Some(start), Some(end)) = (r["windowStart"].as_i64(), r["windowEnd"].as_i64())
            else {
                continue;
            };
            assert!(start < end, "{name}: empty window in {r}");
        }
    }
}

#[test]
fn the_committed_examples_leave_no_output_in_the_checkout_ignored() {
    // `out/` is where the file-writing examples put results when run from
    // the checkout; it must be ignored so nobody commits them.
    let ignore = std::fs::read_to_string(repo_root().join("deploy/examples/.gitignore"))
        .expect("deploy/examples/.gitignore");
    assert!(
        ignore
            .lines()
            .any(|l| l.trim().trim_start_matches('/') == "out/"),
        "deploy/examples/.gitignore should ignore out/:\n{ignore}"
    );
}
