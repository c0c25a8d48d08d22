//! Checks of the Pub/Sub source and sink: resource names the service would
//! refuse at run time, the lease extension range, CEL of the sink.

use std::time::Duration;

use super::{Errors, expr};
use crate::{PubSubSink, PubSubSource};

/// What Pub/Sub accepts as an ack deadline (and as a lease extension).
const ACK_DEADLINE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(600));

/// At most this many attributes per message (a Pub/Sub quota).
const MAX_ATTRIBUTES: usize = 100;

/// Pub/Sub's rule for topic and subscription names: 3 to 255 characters,
/// a letter first, then letters, digits and `-._~%+`, not starting with
/// `goog`.
fn check_name(name: &str, path: &str, errs: &mut Errors) {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-._~%+".contains(c);
    let problem = if name.contains('/') {
        Some("give the short name; the project goes in `project`")
    } else if !(3..=255).contains(&name.len()) {
        Some("must be 3 to 255 characters long")
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("must start with a letter")
    } else if !name.chars().all(ok_char) {
        Some("may contain only letters, digits and - . _ ~ % +")
    } else if name.to_ascii_lowercase().starts_with("goog") {
        Some("must not start with \"goog\" (reserved by Google)")
    } else {
        None
    };
    if let Some(p) = problem {
        errs.push(path, format!("{name:?} is not a Pub/Sub name: {p}"));
    }
}

fn check_common(project: &str, endpoint: Option<&String>, path: &str, errs: &mut Errors) {
    if project.trim().is_empty() || project.contains('/') {
        errs.push(
            format!("{path}.project"),
            "required: the Google Cloud project ID (no slashes)",
        );
    }
    if endpoint.is_some_and(|e| e.trim().is_empty()) {
        errs.push(
            format!("{path}.endpoint"),
            "must not be empty when set (host:port for an emulator, https://... otherwise)",
        );
    }
}

/// A Pub/Sub source at `path` (`spec.source.pubsub`, a join's `with.pubsub`).
pub(super) fn check_source(s: &PubSubSource, path: &str, errs: &mut Errors) {
    check_common(&s.project, s.endpoint.as_ref(), path, errs);
    check_name(&s.subscription, &format!("{path}.subscription"), errs);
    let (lo, hi) = ACK_DEADLINE;
    if !(lo..=hi).contains(&s.ack_deadline.0) {
        errs.push(
            format!("{path}.ackDeadline"),
            "must be between 10s and 600s (what Pub/Sub accepts)",
        );
    }
}

/// A `pubsub` sink at `path` (`spec.sinks[i].pubsub`, `spec.deadLetter.pubsub`).
pub(super) fn check_sink(s: &PubSubSink, path: &str, errs: &mut Errors) {
    check_common(&s.project, s.endpoint.as_ref(), path, errs);
    check_name(&s.topic, &format!("{path}.topic"), errs);
    if let Some(key) = &s.ordering_key {
        expr::check_into(key, &format!("{path}.orderingKey"), &["event"], errs);
    }
    if s.attributes.len() > MAX_ATTRIBUTES {
        errs.push(
            format!("{path}.attributes"),
            format!("at most {MAX_ATTRIBUTES} attributes per message"),
        );
    }
    for (name, cel) in &s.attributes {
        let at = format!("{path}.attributes.{name}");
        if name.is_empty() || name.len() > 256 {
            errs.push(&at, "attribute names must be 1 to 256 bytes long");
        } else if name.to_ascii_lowercase().starts_with("goog") {
            errs.push(
                &at,
                "attribute names must not start with \"goog\" (reserved by Google)",
            );
        }
        expr::check_into(cel, &at, &["event"], errs);
    }
}

#[cfg(test)]
mod tests {
    /// Every error of a whole pipeline, as `path: message`.
    fn errors(yaml: &str) -> Vec<String> {
        let spec = crate::load_pipeline(yaml).expect("parses").spec;
        crate::validate(&spec)
            .err()
            .map_or_else(Vec::new, |e| e.iter().map(ToString::to_string).collect())
    }

    fn assert_refused(yaml: &str, path: &str, needle: &str) {
        let errs = errors(yaml);
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle)),
            "expected an error at {path} containing {needle:?}, got {errs:#?}"
        );
    }

    const SOURCE: &str = "source: {pubsub: {project: p1, subscription: orders-sub}}\n";

    #[test]
    fn a_pubsub_source_and_sink_pass() {
        let errs = errors(&format!(
            "{SOURCE}sinks: [{{name: out, pubsub: {{project: p1, topic: out-topic, orderingKey: event.user, attributes: {{kind: event.kind}}}}}}]\ndeadLetter: {{pubsub: {{project: p1, topic: dlq-topic}}}}\n"
        ));
        assert!(errs.is_empty(), "{errs:#?}");
    }

    #[test]
    fn bad_names_and_deadlines_are_refused_with_their_field() {
        let yaml = "source: {pubsub: {project: '', subscription: 'projects/p/subscriptions/s', ackDeadline: 5s}}\nsinks: [{name: o, pubsub: {project: p, topic: ab}}]\n";
        for (path, needle) in [
            ("spec.source.pubsub.project", "required"),
            ("spec.source.pubsub.subscription", "short name"),
            ("spec.source.pubsub.ackDeadline", "between 10s and 600s"),
            ("spec.sinks[0].pubsub.topic", "3 to 255"),
        ] {
            assert_refused(yaml, path, needle);
        }
    }

    #[test]
    fn sink_expressions_and_attribute_names_are_checked() {
        let yaml = format!(
            "{SOURCE}sinks: [{{name: out, pubsub: {{project: p, topic: t-1, orderingKey: 'user.id', attributes: {{googx: event.a}}}}}}]\n"
        );
        assert_refused(&yaml, "spec.sinks[0].pubsub.orderingKey", "unknown name");
        assert_refused(&yaml, "spec.sinks[0].pubsub.attributes.googx", "reserved");
    }

    #[test]
    fn pubsub_is_at_least_once_only() {
        assert_refused(
            &format!("{SOURCE}sinks: [{{name: o, stdout: {{}}}}]\nguarantee: exactlyOnce\n"),
            "spec.guarantee",
            "not supported yet",
        );
    }
}
