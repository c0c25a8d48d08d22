//! Checks of the `http` step and the HTTP sink.

use super::{Errors, not_supported};
use crate::{CircuitBreaker, HttpSink, HttpStep, OnFailure, StreamPipelineSpec};

pub(super) fn validate_http_step(
    h: &HttpStep,
    path: &str,
    spec: &StreamPipelineSpec,
    errs: &mut Errors,
) {
    validate_url(&h.url, &format!("{path}.url"), errs);
    validate_headers(h.headers.keys(), path, errs);
    if h.batch_size == 0 {
        errs.push(format!("{path}.batchSize"), "must be at least 1");
    }
    if h.concurrency == 0 {
        errs.push(format!("{path}.concurrency"), "must be at least 1");
    }
    if h.timeout.as_millis_i64() <= 0 {
        errs.push(format!("{path}.timeout"), "must be at least 1ms");
    }
    if h.on_failure == OnFailure::DeadLetter && spec.dead_letter.is_none() {
        errs.push(
            format!("{path}.onFailure"),
            "deadLetter (the default) needs spec.deadLetter to name a sink; add one or choose drop, warn or fail",
        );
    }
}

pub(super) fn validate_http_sink(h: &HttpSink, path: &str, errs: &mut Errors) {
    validate_url(&h.url, &format!("{path}.url"), errs);
    validate_headers(h.headers.keys(), path, errs);
    if h.batch_size == 0 {
        errs.push(format!("{path}.batchSize"), "must be at least 1");
    }
    if h.timeout.as_millis_i64() <= 0 {
        errs.push(format!("{path}.timeout"), "must be at least 1ms");
    }
    validate_breaker(&h.circuit_breaker, &format!("{path}.circuitBreaker"), errs);
}

fn validate_breaker(b: &CircuitBreaker, path: &str, errs: &mut Errors) {
    if b.failures == 0 {
        errs.push(format!("{path}.failures"), "must be at least 1");
    }
    if b.open_for.as_millis_i64() <= 0 {
        errs.push(format!("{path}.openFor"), "must be at least 1ms");
    }
}

/// `http://host[:port][/path]`; `https://` has no TLS stack in this build.
fn validate_url(url: &str, path: &str, errs: &mut Errors) {
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or_default();
        if host.is_empty() || host.contains(char::is_whitespace) {
            errs.push(
                path,
                format!("{url:?} has no host; write it like http://localhost:8080/path"),
            );
        }
    } else if url.starts_with("https://") {
        errs.push(
            path,
            not_supported("https:// (this build has no TLS client)")
                + "; use http://, e.g. to a sidecar on localhost or a TLS-terminating proxy",
        );
    } else {
        errs.push(
            path,
            format!("{url:?} is not an http:// URL; write it like http://localhost:8080/path"),
        );
    }
}

fn validate_headers<'a>(names: impl Iterator<Item = &'a String>, path: &str, errs: &mut Errors) {
    for name in names {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            errs.push(
                format!("{path}.headers"),
                format!("{name:?} is not a valid header name (letters, digits and -)"),
            );
        } else if name.eq_ignore_ascii_case("content-type")
            || name.eq_ignore_ascii_case("content-length")
        {
            errs.push(
                format!("{path}.headers"),
                format!("{name} is set by Tributary (the body is a JSON array); remove it"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::tests::{assert_refused, errors};
    use crate::{load_pipeline, validate};

    const DL: &str = "deadLetter: {file: {path: dead.jsonl}}\n";

    #[test]
    fn a_good_http_step_passes_with_its_defaults() {
        let errs = errors(&format!(
            "steps:\n  - http: {{url: \"http://localhost:8080/score\"}}\n{DL}"
        ));
        assert!(errs.is_empty(), "{errs:#?}");
        let spec = load_pipeline(&format!(
            "source: {{stdin: {{}}}}\nsinks: [{{name: o, stdout: {{}}}}]\nsteps: [{{http: {{url: \"http://x:1\"}}}}]\n{DL}"
        ))
        .unwrap()
        .spec;
        let h = spec.steps[0].http.as_ref().unwrap();
        assert_eq!((h.batch_size, h.retries, h.concurrency), (100, 3, 4));
        assert_eq!(h.timeout.0, std::time::Duration::from_secs(5));
        assert_eq!(h.backoff.0, std::time::Duration::from_millis(100));
    }

    #[test]
    fn the_http_step_fields_are_checked() {
        let extra = format!(
            "steps:\n  - http: {{url: \"https://svc/x\", batchSize: 0, concurrency: 0, timeout: 0s, headers: {{\"bad name\": x, Content-Type: y}}}}\n{DL}"
        );
        assert_refused(&extra, "spec.steps[0].http.url", "not supported yet");
        assert_refused(&extra, "spec.steps[0].http.batchSize", "at least 1");
        assert_refused(&extra, "spec.steps[0].http.concurrency", "at least 1");
        assert_refused(&extra, "spec.steps[0].http.timeout", "at least 1ms");
        assert_refused(
            &extra,
            "spec.steps[0].http.headers",
            "not a valid header name",
        );
        assert_refused(&extra, "spec.steps[0].http.headers", "set by Tributary");
        assert_refused(
            "steps:\n  - http: {url: \"localhost:8080\"}\n",
            "spec.steps[0].http.url",
            "not an http:// URL",
        );
        assert_refused(
            "steps:\n  - http: {url: \"http://localhost:8080\"}\n",
            "spec.steps[0].http.onFailure",
            "needs spec.deadLetter",
        );
        assert!(
            errors("steps:\n  - http: {url: \"http://localhost:8080\", onFailure: drop}\n")
                .is_empty()
        );
    }

    #[test]
    fn the_http_sink_is_supported_and_checked() {
        let sink = |s: &str| {
            let spec = load_pipeline(&format!(
                "source: {{stdin: {{}}}}\nsinks: [{{name: o, http: {s}}}]\n"
            ))
            .unwrap()
            .spec;
            match validate(&spec) {
                Ok(()) => vec![],
                Err(errs) => errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }
        };
        assert!(sink("{url: \"http://127.0.0.1:9000/ingest\"}").is_empty());
        let errs =
            sink("{url: \"http://\", batchSize: 0, circuitBreaker: {failures: 0, openFor: 0s}}");
        for (path, needle) in [
            ("spec.sinks[0].http.url", "has no host"),
            ("spec.sinks[0].http.batchSize", "at least 1"),
            ("spec.sinks[0].http.circuitBreaker.failures", "at least 1"),
            ("spec.sinks[0].http.circuitBreaker.openFor", "at least 1ms"),
        ] {
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(path) && e.contains(needle)),
                "{path} {needle}: {errs:#?}"
            );
        }
    }
}
