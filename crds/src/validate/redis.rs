//! Checks of the Redis Streams source and sink.

use super::Errors;
use crate::{RedisStreamsSink, RedisStreamsSource};

fn url(url: &str, path: &str, errs: &mut Errors) {
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"))
    {
        errs.push(
            format!("{path}.url"),
            "must be a Redis URL: redis://[user:password@]host:port[/db]",
        );
    }
}

fn non_empty(value: &str, path: String, errs: &mut Errors) {
    if value.trim().is_empty() {
        errs.push(path, "must not be empty");
    }
}

/// A Redis Streams source at `path` (`spec.source.redisStreams`, a join's
/// `with.redisStreams`).
pub(super) fn source(r: &RedisStreamsSource, path: &str, errs: &mut Errors) {
    url(&r.url, path, errs);
    non_empty(&r.stream, format!("{path}.stream"), errs);
    non_empty(&r.payload_field, format!("{path}.payloadField"), errs);
    for (field, value) in [("group", &r.group), ("consumer", &r.consumer)] {
        if let Some(v) = value {
            non_empty(v, format!("{path}.{field}"), errs);
        }
    }
    if r.claim_idle.is_zero() {
        errs.push(
            format!("{path}.claimIdle"),
            "must be positive: entries of a dead replica are claimed after this idle time",
        );
    }
    if r.batch_size == 0 {
        errs.push(format!("{path}.batchSize"), "must be at least 1");
    }
}

pub(super) fn sink(r: &RedisStreamsSink, path: &str, errs: &mut Errors) {
    let path = format!("{path}.redisStreams");
    url(&r.url, &path, errs);
    non_empty(&r.stream, format!("{path}.stream"), errs);
    non_empty(&r.payload_field, format!("{path}.payloadField"), errs);
    if r.max_len == Some(0) {
        errs.push(
            format!("{path}.maxLen"),
            "must be at least 1 (leave it unset to keep every entry)",
        );
    }
}
