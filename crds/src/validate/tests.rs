//! Each kind of bad spec is refused with its field named.

use crate::{load_pipeline, validate};

const BASE: &str = r"
source:
  generator: {profile: clickstream, count: 10}
  eventTime: {field: event.ts}
sinks: [{name: out, stdout: {}}]
";

/// Errors of `BASE` plus `extra` YAML, as `path: message` strings.
pub(super) fn errors(extra: &str) -> Vec<String> {
    let spec = load_pipeline(&format!("{BASE}{extra}"))
        .expect("parses")
        .spec;
    match validate(&spec) {
        Ok(()) => vec![],
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

pub(super) fn assert_refused(extra: &str, path: &str, needle: &str) {
    let errs = errors(extra);
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle)),
        "expected an error at {path} containing {needle:?}, got {errs:#?}"
    );
}

#[test]
fn a_good_spec_passes() {
    let errs = errors(
        "steps:\n  - filter: \"event.action == 'click'\"\n  - window: {type: tumbling, size: 10s, keyBy: [event.userId], aggregate: [{name: clicks, fn: count}, {name: p95, fn: percentile, of: event.latencyMs, q: 0.95}], having: clicks > 1}\n",
    );
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn window_fields_required_by_type() {
    assert_refused(
        "steps: [{filter: 'true'}, {window: {type: tumbling, aggregate: [{name: c, fn: count}]}}]",
        "spec.steps[1].window.size",
        "required for a tumbling window",
    );
    assert_refused(
        "steps: [{window: {type: sliding, size: 1m, aggregate: [{name: c, fn: count}]}}]",
        "spec.steps[0].window.slide",
        "required",
    );
    assert_refused(
        "steps: [{window: {type: sliding, size: 1m, slide: 2m, aggregate: [{name: c, fn: count}]}}]",
        "spec.steps[0].window.slide",
        "must not exceed size",
    );
    assert_refused(
        "steps: [{window: {type: session, aggregate: [{name: c, fn: count}]}}]",
        "spec.steps[0].window.gap",
        "required",
    );
    assert_refused(
        "steps: [{window: {type: count, count: 0, aggregate: [{name: c, fn: count}]}}]",
        "spec.steps[0].window.count",
        "at least 1",
    );
    assert_refused(
        "steps: [{window: {type: tumbling, size: 1m, emit: updates, aggregate: [{name: c, fn: count}]}}]",
        "spec.steps[0].window.trigger",
        "required",
    );
}

#[test]
fn aggregates_are_checked() {
    assert_refused(
        "steps: [{window: {type: tumbling, size: 1m, aggregate: [{name: s, fn: sum}]}}]",
        "spec.steps[0].window.aggregate[0].of",
        "required",
    );
    assert_refused(
        "steps: [{window: {type: tumbling, size: 1m, aggregate: [{name: p, fn: percentile, of: event.x}]}}]",
        "spec.steps[0].window.aggregate[0].q",
        "required",
    );
    assert_refused(
        "steps: [{window: {type: tumbling, size: 1m, aggregate: [{name: p, fn: percentile, of: event.x, q: 1.5}]}}]",
        "spec.steps[0].window.aggregate[0].q",
        "[0, 1]",
    );
    assert_refused(
        "steps: [{window: {type: tumbling, size: 1m, keyBy: [event.c], aggregate: [{name: c, fn: count}]}}]",
        "spec.steps[0].window.aggregate[0].name",
        "twice",
    );
    assert_refused(
        "steps: [{window: {type: tumbling, size: 1m, aggregate: [{name: c, fn: count}], having: cc > 1}}]",
        "spec.steps[0].window.having",
        "unknown name(s) cc",
    );
}

#[test]
fn expressions_must_compile_and_use_event() {
    assert_refused(
        "steps: [{filter: 'event.a =='}]",
        "spec.steps[0].filter",
        "not a valid CEL expression",
    );
    assert_refused(
        "steps: [{filter: 'record.a == 1'}]",
        "spec.steps[0].filter",
        "unknown name(s) record",
    );
    assert_refused(
        "steps: [{map: {set: {b: 'event.a +'}}}]",
        "spec.steps[0].map.set.b",
        "not a valid CEL",
    );
    assert_refused(
        "steps: [{dedupe: {key: event.id, within: 0s}}]",
        "spec.steps[0].dedupe.within",
        "positive",
    );
}

#[test]
fn one_kind_per_step_and_sink() {
    assert_refused(
        "steps: [{filter: 'true', flatMap: event.items}]",
        "spec.steps[0]",
        "exactly one step kind",
    );
    assert_refused("steps: [{name: nothing}]", "spec.steps[0]", "no step kind");
    let errs = errors("deadLetter: {stdout: {}, file: {path: x}}\n");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.deadLetter: exactly one sink kind")),
        "{errs:#?}"
    );
}

#[test]
fn sink_names_unique_and_referenced() {
    let spec = load_pipeline(
        "source: {stdin: {}}\nsinks: [{name: a, stdout: {}}, {name: a, file: {path: x}}]\n",
    )
    .unwrap()
    .spec;
    let errs = validate(&spec).unwrap_err();
    assert_eq!(errs[0].path, "spec.sinks[1].name");
    assert_refused(
        "steps: [{window: {type: tumbling, size: 1m, aggregate: [{name: c, fn: count}], lateEvents: 'sideOutput:late'}}]",
        "spec.steps[0].window.lateEvents",
        "no sink named \"late\"",
    );
    assert_refused(
        "steps: [{validate: {rules: [{name: r, check: 'true'}]}}]",
        "spec.steps[0].validate.onFailure",
        "spec.deadLetter",
    );
}

#[test]
fn unsupported_sections_are_refused_not_ignored() {
    let spec = load_pipeline("source: {stdin: {}}\nsinks: [{name: o, kafka: {topic: t2}}]\nguarantee: exactlyOnce\nautoscaling: {enabled: true}\n").unwrap().spec;
    let errs: Vec<String> = validate(&spec)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    for path in ["spec.guarantee", "spec.autoscaling.enabled"] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(path) && e.contains("not supported yet")),
            "{path}: {errs:#?}"
        );
    }
}

#[test]
fn backpressure_sample_needs_rate() {
    assert_refused(
        "backpressure: {onOverflow: sample}",
        "spec.backpressure.sampleRate",
        "required",
    );
    assert_refused(
        "backpressure: {onOverflow: sample, sampleRate: 0}",
        "spec.backpressure.sampleRate",
        "(0, 1]",
    );
}

const KAFKA: &str = "source: {kafka: {brokers: 'k:9092', topics: [t]}}\n";

fn kafka_errors(rest: &str) -> Vec<String> {
    let spec = load_pipeline(&format!("{KAFKA}{rest}"))
        .expect("parses")
        .spec;
    validate(&spec).map_or_else(|e| e.iter().map(ToString::to_string).collect(), |()| vec![])
}

#[test]
fn exactly_once_kafka_to_kafka_passes() {
    let errs = kafka_errors(
        "sinks: [{name: o, kafka: {topic: out, key: event.userId}}]\ndeadLetter: {kafka: {topic: dlq}}\nguarantee: exactlyOnce\n",
    );
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn exactly_once_needs_every_sink_in_the_source_cluster() {
    let errs = kafka_errors(
        "sinks: [{name: o, stdout: {}}, {name: p, kafka: {topic: out, brokers: 'other:9092'}}]\nguarantee: exactlyOnce\n",
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.sinks[0].stdout") && e.contains("exactlyOnce")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.sinks[1].kafka.brokers")),
        "{errs:#?}"
    );
    let errs = kafka_errors("sinks: [{name: o, stdout: {}}]\n");
    assert!(errs.is_empty(), "atLeastOnce takes any sink: {errs:#?}");
}

#[test]
fn a_named_repartition_step_must_name_a_legal_and_unique_topic() {
    let window =
        "window: {type: tumbling, size: 1s, keyBy: [event.u], aggregate: [{name: n, fn: count}]}";
    let ok = kafka_errors(&format!(
        "sinks: [{{name: o, stdout: {{}}}}]\nsteps: [{{name: per-user.v2, {window}}}]\n"
    ));
    assert!(ok.is_empty(), "{ok:#?}");
    let bad = kafka_errors(&format!(
        "sinks: [{{name: o, stdout: {{}}}}]\nsteps: [{{name: per user, {window}}}]\n"
    ));
    assert!(
        bad.iter()
            .any(|e| e.starts_with("spec.steps[0].name: ") && e.contains("only letters")),
        "{bad:#?}"
    );
    let twice = kafka_errors(&format!(
        "sinks: [{{name: o, stdout: {{}}}}]\nsteps: [{{name: step1, {window}}}, {{{}}}]\n",
        window.replace("event.u", "event.v")
    ));
    assert!(
        twice
            .iter()
            .any(|e| e.starts_with("spec.steps[1].name: ") && e.contains("already the topic")),
        "{twice:#?}"
    );
}

#[test]
fn kafka_fields_are_checked() {
    let errs = kafka_errors("sinks: [{name: o, kafka: {topic: '', key: 'user.id'}}]\n");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.sinks[0].kafka.topic")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.sinks[0].kafka.key")),
        "{errs:#?}"
    );
}

#[test]
fn a_kafka_sink_without_a_kafka_source_needs_brokers() {
    assert_refused(
        "deadLetter: {kafka: {topic: dlq}}\n",
        "spec.deadLetter.kafka.brokers",
        "required",
    );
    let errs = errors("deadLetter: {kafka: {topic: dlq, brokers: 'k:9092'}}\n");
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn avro_needs_a_schema_or_an_http_registry() {
    let with = |format: &str| {
        let yaml = format!(
            "source: {{kafka: {{brokers: 'k:9092', topics: [t]}}, format: {format}}}\nsinks: [{{name: o, stdout: {{}}}}]\n"
        );
        let spec = load_pipeline(&yaml).expect("parses").spec;
        validate(&spec).map_or_else(|e| e.iter().map(ToString::to_string).collect(), |()| vec![])
    };
    let errs = with("{type: avro}");
    assert!(
        errs.iter().any(|e| e.starts_with("spec.source.format:")),
        "{errs:#?}"
    );
    let errs = with("{type: avro, schemaRegistry: {url: 'https://r'}}");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.source.format.schemaRegistry.url")),
        "{errs:#?}"
    );
    let errs = with(r#"{type: avro, schema: '{"type": "long"}'}"#);
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn kafka_sasl_and_tls_are_accepted_and_half_a_client_certificate_is_not() {
    let errors_of = |auth: &str| -> Vec<String> {
        let spec = load_pipeline(&format!(
            "source: {{kafka: {{brokers: 'k:9092', topics: [t], group: g, auth: {auth}}}}}\nsinks: [{{name: o, stdout: {{}}}}]\n"
        ))
        .unwrap()
        .spec;
        validate(&spec)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    for ok in [
        "{sasl: {mechanism: PLAIN, username: {env: U}, password: {env: P}}}",
        "{sasl: {mechanism: SCRAM-SHA-512, username: {env: U}, password: {env: P}}, tls: {ca: {env: CA}}}",
        "{tls: {ca: {env: CA}, cert: {env: C}, key: {env: K}}}",
    ] {
        assert!(errors_of(ok).is_empty(), "{ok}: {:#?}", errors_of(ok));
    }
    let half = errors_of("{tls: {ca: {env: CA}, cert: {env: C}}}");
    assert!(
        half.iter()
            .any(|e| e.starts_with("spec.source.kafka.auth.tls") && e.contains("set both")),
        "{half:#?}"
    );
}

const KINESIS: &str = "source: {kinesis: {stream: clicks, region: us-east-1}}\nsinks: [{name: out, kinesis: {stream: out, region: us-east-1, partitionKey: event.user}}]\n";

fn kinesis_errors(source: &str) -> Vec<String> {
    let spec = load_pipeline(&format!(
        "source: {{kinesis: {source}}}\nsinks: [{{name: out, stdout: {{}}}}]\n"
    ))
    .expect("parses")
    .spec;
    validate(&spec)
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_kinesis_source_and_sink_pass() {
    let spec = load_pipeline(KINESIS).expect("parses").spec;
    assert_eq!(validate(&spec), Ok(()));
}

#[test]
fn kinesis_fields_are_checked() {
    let errs = kinesis_errors(
        "{stream: '', region: ' ', startFrom: AT_TIMESTAMP, leaseDuration: 500ms, leaseTable: ab}",
    );
    for (path, needle) in [
        ("spec.source.kinesis.stream", "must not be empty"),
        ("spec.source.kinesis.region", "must not be empty"),
        ("spec.source.kinesis.atTimestamp", "required"),
        ("spec.source.kinesis.leaseDuration", "at least 1s"),
        ("spec.source.kinesis.leaseTable", "3 characters"),
    ] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle)),
            "{path}: {errs:#?}"
        );
    }
    let errs =
        kinesis_errors("{stream: s, region: r, startFrom: AT_TIMESTAMP, atTimestamp: yesterday}");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.source.kinesis.atTimestamp") && e.contains("RFC 3339")),
        "{errs:#?}"
    );
    assert!(
        kinesis_errors(
            "{stream: s, region: r, startFrom: AT_TIMESTAMP, atTimestamp: '2026-11-23T08:00:00Z'}"
        )
        .is_empty()
    );
}

#[test]
fn kinesis_credentials_secret_is_refused_until_the_operator_mounts_it() {
    let errs = kinesis_errors("{stream: s, region: r, credentials: {secretRef: {name: aws}}}");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.source.kinesis.credentials")
                && e.contains("not supported yet")),
        "{errs:#?}"
    );
}

#[test]
fn a_kinesis_sink_needs_a_stream_and_a_valid_partition_key() {
    assert_refused(
        "deadLetter: {kinesis: {stream: '', region: r, partitionKey: 'event.'}}",
        "spec.deadLetter.kinesis.stream",
        "must not be empty",
    );
    assert_refused(
        "deadLetter: {kinesis: {stream: d, region: r, partitionKey: 'record.x'}}",
        "spec.deadLetter.kinesis.partitionKey",
        "record",
    );
}

fn source_errors(source: &str, sinks: &str) -> Vec<String> {
    let spec = load_pipeline(&format!("source: {source}\nsinks: {sinks}\n"))
        .expect("parses")
        .spec;
    match validate(&spec) {
        Ok(()) => vec![],
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn redis_streams_and_nats_run_and_are_checked() {
    let ok = source_errors(
        "{redisStreams: {url: 'redis://r:6379', stream: s, group: g, claimIdle: 5s}}",
        "[{name: r, redisStreams: {url: 'redis://r', stream: out, maxLen: 1000}}, {name: n, nats: {url: 'nats://n:4222', subject: out.x}}]",
    );
    assert!(ok.is_empty(), "{ok:#?}");
    let ok = source_errors(
        "{nats: {url: 'nats://n:4222', stream: S, subject: 'S.>', durable: d, ackWait: 10s}}",
        "[{name: o, stdout: {}}]",
    );
    assert!(ok.is_empty(), "{ok:#?}");
    let bad = source_errors(
        "{redisStreams: {url: 'http://r', stream: '', claimIdle: 0s}}",
        "[{name: r, redisStreams: {url: 'redis://r', stream: out, maxLen: 0}}, {name: n, nats: {url: 'nats://n', subject: 'a.*'}}]",
    );
    for path in [
        "spec.source.redisStreams.url",
        "spec.source.redisStreams.stream",
        "spec.source.redisStreams.claimIdle",
        "spec.sinks[0].redisStreams.maxLen",
        "spec.sinks[1].nats.subject",
    ] {
        assert!(
            bad.iter().any(|e| e.starts_with(&format!("{path}: "))),
            "{path}: {bad:#?}"
        );
    }
    let bad = source_errors(
        "{nats: {url: 'nats://n', stream: 'a.b', durable: 'x y', ackWait: 100ms}}",
        "[{name: o, stdout: {}}]",
    );
    for path in [
        "spec.source.nats.stream",
        "spec.source.nats.durable",
        "spec.source.nats.ackWait",
    ] {
        assert!(
            bad.iter().any(|e| e.starts_with(&format!("{path}: "))),
            "{path}: {bad:#?}"
        );
    }
}

const PG: &str = "postgres: {connection: {env: PG_URL}, table: results, upsertKey: [id]}";

#[test]
fn exactly_once_into_postgres_passes_with_every_sink_on_one_connection() {
    let errs = kafka_errors(&format!(
        "sinks: [{{name: o, {PG}}}, {{name: p, postgres: {{connection: {{env: PG_URL}}, table: other}}}}]\ndeadLetter: {{{PG}}}\nguarantee: exactlyOnce\n"
    ));
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn exactly_once_into_postgres_refuses_kafka_sinks_and_other_connections() {
    let errs = kafka_errors(&format!(
        "sinks: [{{name: o, {PG}}}, {{name: k, kafka: {{topic: out}}}}, {{name: p, postgres: {{connection: {{env: OTHER}}, table: t}}}}]\nguarantee: exactlyOnce\n"
    ));
    assert!(
        errs.iter().any(|e| e.starts_with("spec.sinks[1].kafka")
            && e.contains("one database transaction")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.sinks[2].postgres.connection")),
        "{errs:#?}"
    );
}

#[test]
fn postgres_sink_fields_are_checked() {
    let errs = kafka_errors(
        "sinks: [{name: o, postgres: {connection: {env: X}, table: '', upsertKey: ['']}}]\n",
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.sinks[0].postgres.table")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.sinks[0].postgres.upsertKey[0]")),
        "{errs:#?}"
    );
}

fn kinesis_pg_errors(steps: &str, sinks: &str) -> Vec<String> {
    let yaml = format!(
        "source: {{kinesis: {{stream: clicks, region: us-east-1}}}}\nsteps: {steps}\nsinks: {sinks}\nguarantee: exactlyOnce\n"
    );
    let spec = load_pipeline(&yaml).expect("parses").spec;
    validate(&spec).map_or_else(|e| e.iter().map(ToString::to_string).collect(), |()| vec![])
}

#[test]
fn exactly_once_from_kinesis_into_postgres_passes_with_stateless_steps() {
    let errs = kinesis_pg_errors(
        "[{filter: \"event.n >= 0\"}, {map: {set: {m: \"event.n * 2\"}}}]",
        &format!("[{{name: o, {PG}}}]"),
    );
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn exactly_once_from_kinesis_refuses_state_and_sinks_outside_postgres() {
    let errs = kinesis_pg_errors(
        "[{filter: \"event.n >= 0\"}, {dedupe: {key: event.n, within: 1m}}]",
        &format!("[{{name: o, {PG}}}, {{name: s, stdout: {{}}}}]"),
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.steps[1].dedupe") && e.contains("without state")),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with("spec.sinks[1].stdout")),
        "{errs:#?}"
    );
    let errs = kinesis_pg_errors("[]", "[{name: s, stdout: {}}]");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.guarantee") && e.contains("only into postgres")),
        "{errs:#?}"
    );
}

#[test]
fn exactly_once_into_postgres_refuses_a_keyed_step_that_needs_a_repartition() {
    let steps = "steps: [{window: {type: tumbling, size: 1m, keyBy: [event.user], aggregate: [{name: n, fn: count}]}}]\n";
    let sinks = format!("sinks: [{{name: o, {PG}}}]\nguarantee: exactlyOnce\n");
    let errs = kafka_errors(&format!("{sinks}{steps}"));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.steps[0]: ") && e.contains("partitionedBy")),
        "{errs:#?}"
    );
    let declared = load_pipeline(&format!("{KAFKA}{sinks}{steps}"))
        .map(|mut p| {
            if let Some(k) = p.spec.source.kafka.as_mut() {
                k.partitioned_by = vec!["event.user".into()];
            }
            validate(&p.spec)
        })
        .expect("parses");
    assert!(declared.is_ok(), "{declared:#?}");
}
