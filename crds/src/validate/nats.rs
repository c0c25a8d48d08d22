//! Checks of the NATS JetStream source and sink.

use super::Errors;
use crate::{NatsSink, NatsSource};

fn url(url: &str, path: &str, errs: &mut Errors) {
    if url.trim().is_empty() {
        errs.push(format!("{path}.url"), "must not be empty: nats://host:port");
    }
}

/// Characters NATS refuses in stream and consumer names.
fn name(value: &str, path: String, errs: &mut Errors) {
    if value.is_empty()
        || value
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace())
    {
        errs.push(
            path,
            format!("{value:?} is not a valid JetStream name: it must be non-empty, without '.', '*', '>', '/', '\\\\' or whitespace"),
        );
    }
}

/// A NATS source at `path` (`spec.source.nats`, a join's `with.nats`).
pub(super) fn source(n: &NatsSource, path: &str, errs: &mut Errors) {
    url(&n.url, path, errs);
    name(&n.stream, format!("{path}.stream"), errs);
    if let Some(d) = &n.durable {
        name(d, format!("{path}.durable"), errs);
    }
    if n.subject.as_ref().is_some_and(|s| s.trim().is_empty()) {
        errs.push(format!("{path}.subject"), "must not be empty when set");
    }
    if n.ack_wait.0 < std::time::Duration::from_secs(1) {
        errs.push(
            format!("{path}.ackWait"),
            "must be at least 1s: unacknowledged messages are redelivered after it",
        );
    }
    if n.batch_size == 0 {
        errs.push(format!("{path}.batchSize"), "must be at least 1");
    }
    if n.max_ack_pending < 1 {
        errs.push(format!("{path}.maxAckPending"), "must be at least 1");
    }
}

pub(super) fn sink(n: &NatsSink, path: &str, errs: &mut Errors) {
    let path = format!("{path}.nats");
    url(&n.url, &path, errs);
    if n.subject.trim().is_empty() || n.subject.contains(['*', '>']) {
        errs.push(
            format!("{path}.subject"),
            "must be a concrete subject (no wildcards) captured by a JetStream stream",
        );
    }
}
