//! The Pulsar source and sink: accepted when complete, refused field by field.

use crate::{load_pipeline, validate};

fn errors(yaml: &str) -> Vec<String> {
    let spec = load_pipeline(yaml).expect("parses").spec;
    match validate(&spec) {
        Ok(()) => vec![],
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_pulsar_source_and_sink_pass() {
    let errs = errors(
        "source: {pulsar: {serviceUrl: 'pulsar://p:6650', topic: in, subscription: s, subscriptionType: KeyShared, initialPosition: latest}}\nsinks: [{name: o, pulsar: {serviceUrl: 'pulsar://p:6650', topic: out, key: event.id}}]\n",
    );
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn pulsar_fields_are_checked() {
    let errs = errors(
        "source: {pulsar: {serviceUrl: 'http://p:8080', topic: ' ', subscription: ''}}\nsinks: [{name: o, pulsar: {serviceUrl: 'pulsar+ssl://p:6651', topic: out, key: 'nope('}}]\n",
    );
    for (path, needle) in [
        ("spec.source.pulsar.serviceUrl", "pulsar:// URL"),
        ("spec.source.pulsar.topic", "must not be empty"),
        ("spec.source.pulsar.subscription", "must not be empty"),
        ("spec.sinks[0].pulsar.serviceUrl", "not supported yet"),
        ("spec.sinks[0].pulsar.key", ""),
    ] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(path) && e.contains(needle)),
            "expected an error at {path} containing {needle:?}, got {errs:#?}"
        );
    }
}

#[test]
fn exactly_once_from_pulsar_is_refused() {
    let errs = errors(
        "source: {pulsar: {serviceUrl: 'pulsar://p:6650', topic: in, subscription: s}}\nsinks: [{name: o, stdout: {}}]\nguarantee: exactlyOnce\n",
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.guarantee") && e.contains("not supported yet")),
        "{errs:#?}"
    );
}
