//! Checks of `spec.metrics` (the CloudWatch export).

use super::Errors;
use crate::CloudWatchExport;

/// CloudWatch's limit on a namespace's length.
const MAX_NAMESPACE: usize = 255;

pub(super) fn cloud_watch(cw: &CloudWatchExport, errs: &mut Errors) {
    let path = "spec.metrics.cloudWatch";
    let ns = cw.namespace.as_str();
    if ns.trim().is_empty() {
        errs.push(format!("{path}.namespace"), "must not be empty");
    } else if ns.len() > MAX_NAMESPACE
        || ns.starts_with("AWS/")
        || ns.starts_with(':')
        || !ns.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#' | ':' | ' ')
        })
    {
        errs.push(
            format!("{path}.namespace"),
            format!(
                "{ns:?} is not a CloudWatch namespace: at most {MAX_NAMESPACE} of A-Z a-z 0-9 . - _ / # : and space, not starting with \"AWS/\" (reserved for AWS services) or ':'"
            ),
        );
    }
    if cw.interval.0 < std::time::Duration::from_secs(1) {
        errs.push(
            format!("{path}.interval"),
            "must be at least 1s (CloudWatch's finest resolution)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, errors};

    #[test]
    fn a_cloudwatch_export_passes() {
        assert!(
            errors("metrics: {cloudWatch: {namespace: Tributary/Prod, interval: 1s}}").is_empty()
        );
        assert!(errors("metrics: {cloudWatch: {namespace: 'My App:metrics #1'}}").is_empty());
    }

    #[test]
    fn a_cloudwatch_export_needs_a_usable_namespace() {
        let path = "spec.metrics.cloudWatch.namespace";
        assert_refused(
            "metrics: {cloudWatch: {namespace: ' '}}",
            path,
            "must not be empty",
        );
        assert_refused(
            "metrics: {cloudWatch: {namespace: AWS/Kinesis}}",
            path,
            "reserved",
        );
        assert_refused(
            "metrics: {cloudWatch: {namespace: 'a,b'}}",
            path,
            "not a CloudWatch namespace",
        );
        let long = "n".repeat(256);
        assert_refused(
            &format!("metrics: {{cloudWatch: {{namespace: {long}}}}}"),
            path,
            "at most 255",
        );
    }

    #[test]
    fn a_cloudwatch_export_interval_is_at_least_a_second() {
        assert_refused(
            "metrics: {cloudWatch: {namespace: T, interval: 500ms}}",
            "spec.metrics.cloudWatch.interval",
            "at least 1s",
        );
    }
}
