//! Where a Kafka pipeline re-keys its records: the steps that start a new
//! stage behind an internal repartition topic.
//!
//! Keyed state must see every record of a key, so a keyed step runs where
//! the records are partitioned by its key. The input is, when
//! `spec.source.kafka.partitionedBy` says so; after a repartition, the
//! stream is partitioned by that repartition's key. A step that may change
//! what the key evaluates to ends that guarantee: a `map` setting or
//! removing a field the key reads, a `flatMap`, `enrich` or `http`, a
//! window, cep, anomaly or join (they emit new records). This is Kafka Streams' rule for `selectKey` before a
//! `groupByKey`, stated over CEL expressions.

use crate::{StepKind, StepSpec, StreamPipelineSpec};

/// A repartition before step `at`, by `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repartition {
    /// The index of the first step of the new stage.
    pub at: usize,
    /// CEL expressions over the record (`event`); empty: one group.
    pub key: Vec<String>,
    /// The step's `name`, when the user gave one: it names the topic.
    pub name: Option<String>,
}

impl Repartition {
    /// The internal topic in front of the step, for consumer group `group`:
    /// `<group>-<name>-repartition` for a named step, as Kafka Streams names
    /// it after `Grouped.as`, else `<group>-step<at>-repartition`. A name
    /// keeps the topic (and the state restored from it) when steps are
    /// added or removed in front of the step; an index does not.
    #[must_use]
    pub fn topic(&self, group: &str) -> String {
        match &self.name {
            Some(name) => format!("{group}-{name}-repartition"),
            None => format!("{group}-step{}-repartition", self.at),
        }
    }
}

/// Whether `name` can be part of a Kafka topic name (`[a-zA-Z0-9._-]`).
#[must_use]
pub fn topic_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl StepSpec {
    /// The key a stateful step keeps its state by (CEL over `event`;
    /// empty: one group for the whole stream); `None` for stateless steps.
    #[must_use]
    pub fn state_key(&self) -> Option<Vec<String>> {
        let exprs = |k: &[crate::KeyBy]| k.iter().map(|k| k.expr().trim().to_owned()).collect();
        match self.kind()? {
            StepKind::Window(w) => Some(exprs(&w.key_by)),
            StepKind::Cep(c) => Some(exprs(&c.key_by)),
            StepKind::Anomaly(a) => Some(exprs(&a.key_by)),
            StepKind::Dedupe(d) => Some(vec![d.key.trim().to_owned()]),
            StepKind::Join(j) => Some(vec![j.on.left.trim().to_owned()]),
            StepKind::Filter(_)
            | StepKind::Validate(_)
            | StepKind::Map(_)
            | StepKind::FlatMap(_)
            | StepKind::Enrich(_)
            | StepKind::Http(_) => None,
        }
    }

    /// Whether a key computed by `key` before this step still holds after
    /// it: filters, validation and dedupe pass records on unchanged; a
    /// `map` keeps it when it sets and removes no field the key reads;
    /// any other step rewrites records (or emits new ones).
    #[must_use]
    pub fn keeps_key(&self, key: &[String]) -> bool {
        match self.kind() {
            Some(StepKind::Filter(_) | StepKind::Validate(_) | StepKind::Dedupe(_)) | None => true,
            Some(StepKind::Map(m)) => !m
                .set
                .keys()
                .chain(&m.remove)
                .any(|field| key.iter().any(|k| reads(k, field))),
            Some(_) => false,
        }
    }
}

/// Whether the CEL expression `expr` may read `field` (a dotted path) of
/// `event`: it names the field's top-level name, or reads `event` other
/// than by a plain `.name` (an index, a function of the whole record).
fn reads(expr: &str, field: &str) -> bool {
    let top = field.split('.').next().unwrap_or(field);
    let mut rest = expr;
    while let Some(i) = rest.find("event") {
        let after = &rest[i + "event".len()..];
        let standalone = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        if standalone {
            let Some(path) = after.strip_prefix('.') else {
                return true; // `event` itself, `event[...]`
            };
            let name: String = path
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name == top {
                return true;
            }
        }
        rest = after;
    }
    false
}

impl StreamPipelineSpec {
    /// The repartitions a Kafka source needs, in step order (none for other
    /// sources: they run as one task).
    #[must_use]
    pub fn repartitions(&self) -> Vec<Repartition> {
        let Some(kafka) = &self.source.kafka else {
            return Vec::new();
        };
        let declared: Vec<String> = kafka
            .partitioned_by
            .iter()
            .map(|e| e.trim().to_owned())
            .collect();
        // The key the stream is partitioned by here, while it still holds.
        let mut current = (!declared.is_empty()).then_some(declared);
        let mut out = Vec::new();
        for (at, step) in self.steps.iter().enumerate() {
            // A join always re-keys: its `with` topic is co-partitioned
            // with the main side only by going through the same topic.
            let join = step.join.is_some();
            if let Some(key) = step.state_key()
                && (join || current.as_ref() != Some(&key))
            {
                out.push(Repartition {
                    at,
                    key: key.clone(),
                    name: step.name.clone(),
                });
                current = Some(key);
            }
            if current.as_ref().is_some_and(|k| !step.keeps_key(k)) {
                current = None;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> StreamPipelineSpec {
        serde_yaml_ng::from_str(yaml).expect("spec")
    }

    const SOURCE: &str = "source: {kafka: {brokers: k, topics: [in]PB}}\nsinks: [{stdout: {}}]\n";

    fn with(partitioned_by: &str, steps: &str) -> StreamPipelineSpec {
        let src = SOURCE.replace("PB", partitioned_by);
        spec(&format!("{src}steps:\n{steps}"))
    }

    const WINDOW_BY_USER: &str = "  - window: {type: tumbling, size: 1m, keyBy: [event.user], aggregate: [{name: n, fn: count}]}\n";

    #[test]
    fn an_undeclared_partitioning_repartitions_the_first_keyed_step() {
        let s = with("", &format!("  - filter: 'event.ok'\n{WINDOW_BY_USER}"));
        assert_eq!(
            s.repartitions(),
            vec![Repartition {
                at: 1,
                key: vec!["event.user".into()],
                name: None
            }]
        );
    }

    #[test]
    fn a_declared_partitioning_equal_to_the_key_needs_none() {
        let s = with(
            ", partitionedBy: [' event.user']",
            &format!(
                "  - filter: 'event.ok'\n  - dedupe: {{key: event.user, within: 1m}}\n{WINDOW_BY_USER}"
            ),
        );
        assert_eq!(s.repartitions(), Vec::new());
    }

    #[test]
    fn a_map_before_the_keyed_step_voids_the_declared_partitioning() {
        let s = with(
            ", partitionedBy: [event.user]",
            &format!("  - map: {{set: {{user: 'event.name'}}}}\n{WINDOW_BY_USER}"),
        );
        assert_eq!(s.repartitions().len(), 1);
        assert_eq!(s.repartitions()[0].at, 1);
    }

    #[test]
    fn each_change_of_key_is_a_repartition_and_a_global_window_is_one_group() {
        let s = with(
            ", partitionedBy: [event.user]",
            &format!(
                "  - dedupe: {{key: event.id, within: 1m}}\n{WINDOW_BY_USER}  - window: {{type: tumbling, size: 1h, aggregate: [{{name: n, fn: count}}]}}\n"
            ),
        );
        let r = s.repartitions();
        assert_eq!(
            r,
            vec![
                Repartition {
                    at: 0,
                    key: vec!["event.id".into()],
                    name: None
                },
                Repartition {
                    at: 1,
                    key: vec!["event.user".into()],
                    name: None
                },
                Repartition {
                    at: 2,
                    key: Vec::new(),
                    name: None
                },
            ]
        );
    }

    #[test]
    fn a_map_that_leaves_the_key_alone_keeps_the_partitioning() {
        let s = with(
            ", partitionedBy: [event.user]",
            &format!(
                "  - map: {{set: {{cents: 'event.amount * 100', username: 'event.name'}}, remove: [page]}}\n{WINDOW_BY_USER}"
            ),
        );
        assert_eq!(s.repartitions(), Vec::new());
    }

    #[test]
    fn a_key_reads_a_field_by_its_top_level_name_or_the_whole_event() {
        assert!(reads("event.user", "user"));
        assert!(reads("event.user.id", "user.name"));
        assert!(reads("string(event)", "x"));
        assert!(reads("event['user']", "x"));
        assert!(!reads("event.username", "user"));
        assert!(!reads("event.user", "username"));
        assert!(!reads("prevent.user", "user"), "another variable");
        assert!(reads("size(event.tags) + event.user", "user"));
    }

    #[test]
    fn a_join_always_re_keys_even_on_the_declared_partitioning() {
        let s = with(
            ", partitionedBy: [event.k]",
            "  - join: {with: {kafka: {topic: pay}}, on: {left: event.k, right: other.k}, within: 1s}\n",
        );
        assert_eq!(
            s.repartitions(),
            vec![Repartition {
                at: 0,
                key: vec!["event.k".into()],
                name: None
            }]
        );
    }

    #[test]
    fn sources_other_than_kafka_run_as_one_task() {
        let s = spec(&format!(
            "source: {{generator: {{}}}}\nsinks: [{{stdout: {{}}}}]\nsteps:\n{WINDOW_BY_USER}"
        ));
        assert_eq!(s.repartitions(), Vec::new());
    }

    #[test]
    fn a_named_step_names_its_topic_and_an_unnamed_one_its_index() {
        let s = with(
            "",
            &format!(
                "  - filter: 'event.ok'\n  - name: per-user\n{}",
                WINDOW_BY_USER.replacen("  - window", "    window", 1)
            ),
        );
        let r = s.repartitions();
        assert_eq!(r[0].name.as_deref(), Some("per-user"));
        assert_eq!(r[0].topic("ns.p"), "ns.p-per-user-repartition");
        let unnamed = with("", &format!("  - filter: 'event.ok'\n{WINDOW_BY_USER}"));
        assert_eq!(
            unnamed.repartitions()[0].topic("ns.p"),
            "ns.p-step1-repartition"
        );
    }

    #[test]
    fn only_letters_digits_dots_underscores_and_dashes_fit_a_topic() {
        assert!(topic_safe("per-user_1.v2"));
        assert!(!topic_safe("per user"));
        assert!(!topic_safe("per/user"));
        assert!(!topic_safe(""));
    }
}
