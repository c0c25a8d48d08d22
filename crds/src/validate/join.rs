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
    if let Some(main) = &spec.source.kafka {
        validate_kafka_main(j, path, main, errs);
    }
    check_into(&j.on.left, &format!("{path}.on.left"), &["event"], errs);
    check_into(&j.on.right, &format!("{path}.on.right"), &["other"], errs);
    let with = format!("{path}.with");
    let w = &j.with;
    let set = w.kinds();
    if set.len() != 1 {
        errs.push(
            &with,
            format!(
                "set exactly one source kind: kafka, kinesis, redisStreams, nats, pubsub, pulsar, file or generator (found {})",
                if set.is_empty() {
                    "none".to_owned()
                } else {
                    set.join(", ")
                }
            ),
        );
    }
    if let Some(r) = &w.redis_streams {
        super::redis::source(r, &format!("{with}.redisStreams"), errs);
    }
    if let Some(n) = &w.nats {
        super::nats::source(n, &format!("{with}.nats"), errs);
    }
    if let Some(p) = &w.pubsub {
        super::pubsub::check_source(p, &format!("{with}.pubsub"), errs);
    }
    if let Some(p) = &w.pulsar {
        super::pulsar_source(p, &format!("{with}.pulsar"), errs);
    }
    if let Some(k) = &w.kinesis {
        super::validate_kinesis_source(k, &format!("{with}.kinesis"), errs);
    }
    if let Some(k) = &w.kafka {
        if k.topic.trim().is_empty() {
            errs.push(format!("{with}.kafka.topic"), "must not be empty");
        }
        if spec.source.kafka.is_none() && k.brokers.as_deref().is_none_or(|b| b.trim().is_empty()) {
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

/// After a Kafka main source, both inputs are read by the pipeline's
/// consumer group and re-keyed into one repartition topic by the join key
/// (see `docs/joins.md`), so the `with` side must be a topic of the same
/// cluster, reached the same way.
fn validate_kafka_main(j: &JoinStep, path: &str, main: &crate::KafkaSource, errs: &mut Errors) {
    let with = format!("{path}.with");
    let Some(k) = &j.with.kafka else {
        let kind = j.with.kinds().join(", ");
        errs.push(
            &with,
            not_supported(&format!("a {kind} join side with a kafka main source"))
                + &format!("; after a kafka source the with side must be a kafka topic of the same cluster: both are read by the consumer group and re-keyed by the join key into one repartition topic, which a {kind} side cannot be"),
        );
        return;
    };
    if let Some(b) = &k.brokers
        && b.trim() != main.brokers.trim()
    {
        errs.push(
            format!("{with}.kafka.brokers"),
            format!(
                "must be the main source's brokers ({}) or unset: the with topic is read by the pipeline's consumer group",
                main.brokers
            ),
        );
    }
    if k.auth.is_some() && k.auth != main.auth {
        errs.push(
            format!("{with}.kafka.auth"),
            "must be spec.source.kafka.auth or unset: the with topic is read by the pipeline's consumer group, with the source's credentials",
        );
    }
    if main.topics.iter().any(|t| t == &k.topic) {
        errs.push(
            format!("{with}.kafka.topic"),
            format!(
                "{} is also a main source topic; a self-join is not supported: read it once and split it with filters",
                k.topic
            ),
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
    fn broker_with_sides_pass_and_are_checked_at_their_own_path() {
        let p = "spec.steps[0].join.with";
        let sides = [
            "{redisStreams: {url: 'redis://r:6379', stream: payments}}",
            "{nats: {url: 'nats://n:4222', stream: payments}}",
            "{pubsub: {project: p, subscription: payments}}",
            "{pulsar: {serviceUrl: 'pulsar://p:6650', topic: payments, subscription: s}}",
            "{kinesis: {stream: payments, region: eu-west-1}}",
        ];
        for side in sides {
            let s = GOOD.replace("{file: {path: payments.jsonl}}", side);
            assert_eq!(errors(&step(&s)), Vec::<String>::new(), "{side}");
        }
        let cases = [
            (
                "{redisStreams: {url: 'http://r', stream: payments}}",
                "redisStreams.url",
            ),
            (
                "{nats: {url: 'nats://n:4222', stream: 'a.b'}}",
                "nats.stream",
            ),
            (
                "{pubsub: {project: p, subscription: s, ackDeadline: 1s}}",
                "pubsub.ackDeadline",
            ),
            (
                "{pulsar: {serviceUrl: 'http://p', topic: t, subscription: s}}",
                "pulsar.serviceUrl",
            ),
            ("{kinesis: {stream: '', region: r}}", "kinesis.stream"),
        ];
        for (side, field) in cases {
            let s = GOOD.replace("{file: {path: payments.jsonl}}", side);
            let errs = errors(&step(&s));
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(&format!("{p}.{field}: "))),
                "{field}: {errs:#?}"
            );
        }
        let two = GOOD.replace(
            "{file: {path: payments.jsonl}}",
            "{nats: {url: 'nats://n', stream: s}, file: {path: x}}",
        );
        assert_refused(&step(&two), p, "found nats, file");
    }

    fn kafka_main(join: &str) -> Vec<String> {
        let yaml = format!(
            "source:\n  kafka: {{brokers: 'k:9092', topics: [orders]}}\nsinks: [{{name: out, stdout: {{}}}}]\n{}",
            step(join)
        );
        let spec = crate::load_pipeline(&yaml).expect("parses").spec;
        crate::validate(&spec).map_or_else(
            |e| e.iter().map(ToString::to_string).collect(),
            |()| Vec::new(),
        )
    }

    #[test]
    fn a_kafka_main_source_joins_a_topic_of_its_cluster() {
        let ok = kafka_main(
            "{with: {kafka: {topic: payments}}, type: full, on: {left: event.k, right: other.k}, within: 30s}",
        );
        assert!(ok.is_empty(), "{ok:#?}");
        let same = kafka_main(
            "{with: {kafka: {topic: payments, brokers: 'k:9092'}}, on: {left: event.k, right: other.k}, within: 30s}",
        );
        assert!(same.is_empty(), "{same:#?}");
    }

    #[test]
    fn a_kafka_main_source_refuses_other_sides_clusters_and_self_joins() {
        let p = "spec.steps[0].join.with";
        let file = kafka_main(GOOD);
        assert!(
            file.iter()
                .any(|e| e.starts_with(&format!("{p}: ")) && e.contains("same cluster")),
            "{file:#?}"
        );
        let nats = kafka_main(&GOOD.replace(
            "{file: {path: payments.jsonl}}",
            "{nats: {url: 'nats://n', stream: s}}",
        ));
        assert!(
            nats.iter()
                .any(|e| e.starts_with(&format!("{p}: ")) && e.contains("a nats join side")),
            "{nats:#?}"
        );
        let other = kafka_main(
            "{with: {kafka: {topic: orders, brokers: 'elsewhere:9092', auth: {tls: {}}}}, on: {left: event.k, right: other.k}, within: 30s}",
        );
        for field in ["kafka.brokers", "kafka.auth", "kafka.topic"] {
            assert!(
                other
                    .iter()
                    .any(|e| e.starts_with(&format!("{p}.{field}: "))),
                "{field}: {other:#?}"
            );
        }
    }
}
