//! Checks of the `join` step.

use super::expr::check_into;
use super::{Errors, not_supported};
use crate::{JoinStep, StreamPipelineSpec};

pub(super) fn validate_join(
    j: &JoinStep,
    path: &str,
    spec: &StreamPipelineSpec,
    errs: &mut Errors,
) {
    if spec.source.kafka.is_some() {
        // The Kafka engine runs one task per partition; a second input
        // would have to be co-partitioned with the first (see docs/joins.md).
        errs.push(path, not_supported("join with a kafka source") + "; join is not supported yet with a kafka source: its per-partition tasks would need both inputs co-partitioned by the join key (a repartition topic), which is not built; use a file, generator or stdin main source (the `with` side may be kafka)");
    }
    check_into(&j.on.left, &format!("{path}.on.left"), &["event"], errs);
    check_into(&j.on.right, &format!("{path}.on.right"), &["other"], errs);
    let with = format!("{path}.with");
    let w = &j.with;
    let kinds = [
        ("kafka", w.kafka.is_some()),
        ("file", w.file.is_some()),
        ("generator", w.generator.is_some()),
    ];
    let set: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
    if set.len() != 1 {
        errs.push(
            &with,
            format!(
                "set exactly one source kind: kafka, file or generator (found {})",
                if set.is_empty() {
                    "none".to_owned()
                } else {
                    set.join(", ")
                }
            ),
        );
    }
    if let Some(k) = &w.kafka {
        if k.topic.trim().is_empty() {
            errs.push(format!("{with}.kafka.topic"), "must not be empty");
        }
        if k.brokers.as_deref().is_none_or(|b| b.trim().is_empty()) {
            errs.push(
                format!("{with}.kafka.brokers"),
                "required: the main source is not kafka, so there are no brokers to default to",
            );
        }
        super::kafka_auth(k.auth.as_ref(), &format!("{with}.kafka.auth"), errs);
    }
    if let Some(f) = &w.file
        && f.path.trim().is_empty()
    {
        errs.push(format!("{with}.file.path"), "must not be empty");
    }
    if let Some(g) = &w.generator {
        if !(g.rate.is_finite() && g.rate >= 0.0) {
            errs.push(
                format!("{with}.generator.rate"),
                "must be a number >= 0 (0 = as fast as possible)",
            );
        }
        if g.keys == 0 {
            errs.push(format!("{with}.generator.keys"), "must be at least 1");
        }
    }
    if let Some(et) = &w.event_time {
        check_into(
            &et.field,
            &format!("{with}.eventTime.field"),
            &["event"],
            errs,
        );
        if spec.source.event_time.is_none() {
            errs.push(
                format!("{with}.eventTime"),
                "both inputs must use the same notion of time: set spec.source.eventTime too, or remove this one to join in processing time",
            );
        }
    }
    if let Some(fmt) = &w.format
        && fmt.kind == crate::FormatType::Avro
    {
        errs.push(
            format!("{with}.format.type"),
            not_supported("avro for a join input") + "; use json or text",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, errors};

    const GOOD: &str = "{with: {file: {path: payments.jsonl}}, type: full, on: {left: event.orderId, right: other.orderId}, within: 30s}";

    fn step(s: &str) -> String {
        format!("steps:\n  - join: {s}\n")
    }

    #[test]
    fn a_file_or_generator_join_passes_for_every_type() {
        for t in ["inner", "left", "right", "full"] {
            let s = GOOD.replace("type: full", &format!("type: {t}"));
            assert_eq!(errors(&step(&s)), Vec::<String>::new(), "{t}");
        }
        let generator = "{with: {generator: {profile: iot, count: 5}, eventTime: {field: event.ts}}, on: {left: event.userId, right: \"other.sensorId + ''\"}, within: 0s}";
        assert_eq!(errors(&step(generator)), Vec::<String>::new());
    }

    #[test]
    fn bad_join_specs_name_the_field() {
        let p = "spec.steps[0].join";
        assert_refused(
            &step(&GOOD.replace("other.orderId", "event.orderId")),
            &format!("{p}.on.right"),
            "unknown name(s) event",
        );
        assert_refused(
            &step(&GOOD.replace("left: event.orderId", "left: other.orderId")),
            &format!("{p}.on.left"),
            "unknown name(s) other",
        );
        assert_refused(
            &step(&GOOD.replace("{file: {path: payments.jsonl}}", "{}")),
            &format!("{p}.with"),
            "exactly one source kind",
        );
        assert_refused(
            &step(&GOOD.replace("payments.jsonl", "' '")),
            &format!("{p}.with.file.path"),
            "must not be empty",
        );
        assert_refused(
            &step(&GOOD.replace("{file: {path: payments.jsonl}}", "{generator: {keys: 0}}")),
            &format!("{p}.with.generator.keys"),
            "at least 1",
        );
        assert_refused(
            &step(&GOOD.replace(
                "{path: payments.jsonl}}",
                "{path: p}, eventTime: {field: 'event.'}}",
            )),
            &format!("{p}.with.eventTime.field"),
            "CEL",
        );
    }

    #[test]
    fn a_kafka_with_side_passes_with_brokers_and_names_them_when_missing() {
        let p = "spec.steps[0].join";
        let kafka = GOOD.replace(
            "{file: {path: payments.jsonl}}",
            "{kafka: {topic: payments, brokers: 'k:9092', startFrom: latest}}",
        );
        assert_eq!(errors(&step(&kafka)), Vec::<String>::new());
        // The contract's example parses unchanged; without a kafka main
        // source it has no brokers to default to.
        let design = "{with: {kafka: {topic: payments}}, type: inner, on: {left: \"event.orderId\", right: \"other.orderId\"}, within: 30s}";
        assert_refused(
            &step(design),
            &format!("{p}.with.kafka.brokers"),
            "required",
        );
        assert_refused(
            &step(&kafka.replace("topic: payments", "topic: ''")),
            &format!("{p}.with.kafka.topic"),
            "must not be empty",
        );
        let sasl = kafka.replace(
            "startFrom: latest}",
            "startFrom: latest, auth: {sasl: {mechanism: SCRAM-SHA-512, username: {env: U}, password: {env: P}}, tls: {ca: {env: CA}}}}",
        );
        assert_eq!(errors(&step(&sasl)), Vec::<String>::new());
        assert_refused(
            &step(&sasl.replace("{ca: {env: CA}}", "{cert: {env: CERT}}")),
            &format!("{p}.with.kafka.auth.tls"),
            "cert and key go together",
        );
    }

    #[test]
    fn a_kafka_main_source_is_refused_as_not_supported() {
        let p = "spec.steps[0].join";
        let kafka_source = format!(
            "source:\n  kafka: {{brokers: 'k:9092', topics: [orders]}}\nsinks: [{{name: out, stdout: {{}}}}]\n{}",
            step(GOOD)
        );
        let spec = crate::load_pipeline(&kafka_source).expect("parses").spec;
        let errs: Vec<String> = crate::validate(&spec)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            errs.iter().any(|e| e.starts_with(&format!("{p}: "))
                && e.contains("not supported yet with a kafka source")
                && e.contains("co-partitioned")),
            "{errs:#?}"
        );
    }
}
