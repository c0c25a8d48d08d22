//! `tributary validate`, `run` and `schema` on good and bad specs: a bad
//! spec exits non-zero and names the field path on stderr, and `run`
//! refuses it before producing any output.

mod support;

use std::path::Path;

use support::{Output, tributary};

/// Writes `yaml` to `pipeline.yaml` in a fresh tempdir and runs
/// `tributary <cmd> -f pipeline.yaml` there.
fn on_spec(cmd: &str, yaml: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pipeline.yaml"), yaml).expect("write pipeline");
    tributary(&[cmd, "-f", "pipeline.yaml"], dir.path())
}

/// A whole resource around `spec` (indented by two spaces).
fn resource(spec: &str) -> String {
    format!(
        "apiVersion: tributary.dev/v1alpha1\nkind: StreamPipeline\nmetadata: {{name: under-test}}\nspec:\n{spec}"
    )
}

const GENERATOR: &str = "  source: {generator: {count: 10, startTime: 0}}\n";
const STDOUT: &str = "  sinks: [{name: out, stdout: {}}]\n";

/// A resource with a generator source, a stdout sink and `steps`, one
/// YAML flow mapping per step.
fn with_steps(steps: &[&str]) -> String {
    let steps: String = steps.iter().map(|s| format!("    - {s}\n")).collect();
    resource(&format!("{GENERATOR}  steps:\n{steps}{STDOUT}"))
}

/// Asserts that validating `yaml` fails and that stderr has a line
/// starting with `path` and containing every one of `words`.
fn assert_rejected(yaml: &str, path: &str, words: &[&str]) -> Output {
    let out = on_spec("validate", yaml);
    assert!(
        !out.status.success(),
        "validate accepted a bad spec:\n{yaml}\nstdout: {}",
        out.stdout
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("{path}:")))
        .unwrap_or_else(|| panic!("no line naming {path} on stderr:\n{}", out.stderr));
    for w in words {
        assert!(line.contains(w), "{path}: expected {w:?} in {line:?}");
    }
    out
}

const COUNT: &str = "aggregate: [{name: n, fn: count}]";

#[test]
fn a_valid_spec_passes() {
    let out = on_spec(
        "validate",
        &with_steps(&[&format!("window: {{type: tumbling, size: 10s, {COUNT}}}")]),
    );
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn a_missing_window_size_is_named() {
    let spec = with_steps(&[
        "filter: \"event.action == 'click'\"",
        &format!("window: {{type: tumbling, {COUNT}}}"),
    ]);
    let out = assert_rejected(&spec, "spec.steps[1].window.size", &[]);
    assert!(
        out.stderr
            .contains("spec.steps[1].window.size: required for a tumbling window"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unknown_field_is_named() {
    let spec = resource(&format!(
        "  source: {{generator: {{count: 10}}, colour: red}}\n{STDOUT}"
    ));
    assert_rejected(&spec, "spec.source.colour", &["unknown field"]);
}

#[test]
fn a_bad_duration_is_named() {
    let spec = with_steps(&[&format!(
        "window: {{type: tumbling, size: 10 seconds, {COUNT}}}"
    )]);
    assert_rejected(&spec, "spec.steps[0].window.size", &["10 seconds"]);
}

#[test]
fn a_bad_cel_expression_is_named() {
    let spec = with_steps(&["filter: \"event.action ==\""]);
    assert_rejected(&spec, "spec.steps[0].filter", &["CEL"]);
}

#[test]
fn an_unknown_variable_in_an_expression_is_named() {
    let spec = with_steps(&[&format!(
        "window: {{type: tumbling, size: 1s, keyBy: [record.userId], {COUNT}}}"
    )]);
    assert_rejected(&spec, "spec.steps[0].window.keyBy[0]", &["record"]);
}

#[test]
fn an_unsupported_source_option_is_named() {
    let spec = resource(&format!(
        "  source: {{pulsar: {{serviceUrl: 'pulsar+ssl://p:6651', topic: t, subscription: s}}}}\n{STDOUT}"
    ));
    assert_rejected(
        &spec,
        "spec.source.pulsar.serviceUrl",
        &["not supported yet"],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let spec = with_steps(&[
        &format!("window: {{type: sliding, size: 10s, {COUNT}}}"),
        "window: {type: session, aggregate: [{name: s, fn: sum}]}",
    ]);
    let out = assert_rejected(&spec, "spec.steps[0].window.slide", &[]);
    for path in [
        "spec.steps[1].window.gap",
        "spec.steps[1].window.aggregate[0].of",
    ] {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.starts_with(&format!("{path}:"))),
            "{path} not named:\n{}",
            out.stderr
        );
    }
}

#[test]
fn run_refuses_an_invalid_spec_without_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Valid YAML, invalid spec: a dead-letter policy with no dead-letter sink.
    let spec = with_steps(&[
        "validate: {rules: [{name: r, check: 'event.amount >= 0.0'}], onFailure: deadLetter}",
    ]);
    std::fs::write(dir.path().join("pipeline.yaml"), &spec).expect("write");
    let out = tributary(&["run", "-f", "pipeline.yaml"], dir.path());
    assert!(!out.status.success(), "run accepted an invalid spec");
    assert_eq!(out.stdout, "", "no results on stdout for an invalid spec");
    assert!(
        out.stderr.contains("spec.steps[0].validate.onFailure"),
        "{}",
        out.stderr
    );

    // A spec that does not even parse: also non-zero, also no stdout.
    let out = on_spec(
        "run",
        &with_steps(&[&format!(
            "window: {{type: tumbling, size: 10 seconds, {COUNT}}}"
        )]),
    );
    assert!(!out.status.success());
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("spec.steps[0].window.size"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_and_validate_report_a_missing_file() {
    for cmd in ["run", "validate"] {
        let out = tributary(
            &[cmd, "-f", "no-such-pipeline.yaml"],
            Path::new(env!("CARGO_MANIFEST_DIR")),
        );
        assert!(!out.status.success(), "{cmd} of a missing file succeeded");
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.contains("no-such-pipeline.yaml"),
            "{cmd}: {}",
            out.stderr
        );
    }
}

#[test]
fn schema_prints_the_json_schema_of_a_stream_pipeline() {
    let out = tributary(&["schema"], Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("StreamPipeline"));
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("schema is JSON");
    assert_eq!(schema["title"].as_str(), Some("StreamPipeline"), "{schema}");
}
