//! Checks of the `enrich` step.

use super::Errors;
use super::expr::check_into;
use crate::{EnrichStep, OnMiss, StreamPipelineSpec};

pub(super) fn validate_enrich(
    e: &EnrichStep,
    path: &str,
    spec: &StreamPipelineSpec,
    errs: &mut Errors,
) {
    check_into(&e.key, &format!("{path}.key"), &["event"], errs);
    if e.as_field.trim().is_empty() || e.as_field.contains(char::is_whitespace) {
        errs.push(
            format!("{path}.as"),
            "required: the field that receives the row (no spaces)",
        );
    }
    if e.on_miss == OnMiss::DeadLetter && spec.dead_letter.is_none() {
        errs.push(
            format!("{path}.onMiss"),
            "deadLetter needs spec.deadLetter to name a sink; add one or choose pass or drop",
        );
    }
    let table = format!("{path}.table");
    match (&e.table.file, &e.table.kafka, &e.table.postgres) {
        (None, None, Some(pg)) => {
            if !pg.query.contains("$1") {
                errs.push(
                    format!("{table}.postgres.query"),
                    "must use $1, the lookup key (SELECT ... WHERE id = $1)",
                );
            }
            if pg.ttl.0.is_zero() {
                errs.push(format!("{table}.postgres.ttl"), "must be positive");
            }
            if pg.max_entries == Some(0) {
                errs.push(format!("{table}.postgres.maxEntries"), "must be at least 1");
            }
        }
        (Some(f), None, None) => {
            if f.path.trim().is_empty() {
                errs.push(format!("{table}.file.path"), "required");
            }
            if f.key_field.trim().is_empty() {
                errs.push(format!("{table}.file.keyField"), "must not be empty");
            }
        }
        (None, Some(k), None) => {
            if k.topic.trim().is_empty() {
                errs.push(format!("{table}.kafka.topic"), "required");
            }
            if k.brokers.is_none() && spec.source.kafka.is_none() {
                errs.push(
                    format!("{table}.kafka.brokers"),
                    "required when the source is not Kafka (they default to the source's)",
                );
            }
        }
        _ => errs.push(&table, "set exactly one of file, kafka or postgres"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, errors};

    #[test]
    fn bad_enrich_specs_are_refused() {
        let step = |s: &str| format!("steps:\n  - enrich: {s}\n");
        let p = "spec.steps[0].enrich";
        let good = errors(&step(
            "{table: {file: {path: u.jsonl}}, key: event.userId, as: user, onMiss: drop}",
        ));
        assert_eq!(good, Vec::<String>::new());
        assert_refused(
            &step("{table: {file: {path: u}}, key: 'event.', as: u}"),
            &format!("{p}.key"),
            "CEL",
        );
        assert_refused(
            &step("{table: {file: {path: u}}, key: event.userId, as: ''}"),
            &format!("{p}.as"),
            "required",
        );
        assert_refused(
            &step("{table: {}, key: event.userId, as: u}"),
            &format!("{p}.table"),
            "exactly one",
        );
        assert_refused(
            &step("{table: {kafka: {topic: users}}, key: event.userId, as: u}"),
            &format!("{p}.table.kafka.brokers"),
            "source is not Kafka",
        );
        let kafka = errors(&step(
            "{table: {kafka: {topic: users, brokers: 'k:9092'}}, key: event.userId, as: u}",
        ));
        assert_eq!(kafka, Vec::<String>::new());
        let pg = "{connection: {env: PG}, query: 'SELECT * FROM u WHERE id = $1'}";
        let postgres = errors(&step(&format!(
            "{{table: {{postgres: {pg}}}, key: event.userId, as: u}}"
        )));
        assert_eq!(postgres, Vec::<String>::new());
        assert_refused(
            &step(
                "{table: {postgres: {connection: {env: PG}, query: 'SELECT 1'}}, key: event.userId, as: u}",
            ),
            &format!("{p}.table.postgres.query"),
            "$1",
        );
        assert_refused(
            &step("{table: {file: {path: u}}, key: event.userId, as: u, onMiss: deadLetter}"),
            &format!("{p}.onMiss"),
            "spec.deadLetter",
        );
    }
}
