//! The `StreamPipeline` the Kafka tests run: Kafka → filter → tumbling
//! count per user → Kafka, with a Kafka dead-letter topic.

use std::fmt::Write as _;

/// What varies between the tests' pipelines.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// `metadata.name` (the namespace is [`NAMESPACE`]).
    pub name: String,
    /// Bootstrap servers the processor uses (direct or through toxiproxy).
    pub brokers: String,
    /// Input topic.
    pub input: String,
    /// Output topic.
    pub output: String,
    /// Dead-letter topic.
    pub dead_letter: String,
    /// Consumer group; `None` leaves the default (`<namespace>.<name>`).
    pub group: Option<String>,
    /// `exactlyOnce` or `atLeastOnce`.
    pub guarantee: &'static str,
    /// `checkpoint.interval` (`1s`).
    pub checkpoint: &'static str,
    /// Tumbling window size (`1s`).
    pub window: &'static str,
    /// Leave `partitionedBy` undeclared, so the window's records are
    /// re-keyed through a repartition topic; else declare the input
    /// partitioned by `event.user`, as [`Workload`](super::workload::Workload)
    /// keys it by default.
    pub repartition: bool,
}

/// The window step's `name` when its records are re-keyed.
const WINDOW_NAME: &str = "clicks-per-user";

/// `metadata.namespace` of the tests' pipelines.
pub const NAMESPACE: &str = "e2e";

impl PipelineSpec {
    /// The consumer group the processors join.
    #[must_use]
    pub fn group(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("{NAMESPACE}.{}", self.name))
    }

    /// The internal topic the window reads from when [`Self::repartition`]
    /// is set: the window step is named, so the topic is named after it.
    #[must_use]
    pub fn repartition_topic(&self) -> Option<String> {
        self.repartition
            .then(|| format!("{}-{WINDOW_NAME}-repartition", self.group()))
    }

    /// The whole resource as YAML, as the operator renders it.
    #[must_use]
    pub fn yaml(&self) -> String {
        let mut kafka = format!(
            "{{brokers: '{}', topics: ['{}'], startFrom: earliest",
            self.brokers, self.input
        );
        if let Some(g) = &self.group {
            let _ = write!(kafka, ", group: '{g}'");
        }
        if !self.repartition {
            kafka.push_str(", partitionedBy: [event.user]");
        }
        kafka.push('}');
        // Named only when re-keyed, so the other tests keep `window-1` in
        // their metrics and dead-letter provenance.
        let window_name = if self.repartition {
            format!("name: {WINDOW_NAME}\n      ")
        } else {
            String::new()
        };
        format!(
            "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: '{name}', namespace: {NAMESPACE}}}
spec:
  source:
    kafka: {kafka}
    format: {{type: json}}
    eventTime: {{field: event.ts, format: epochMillis}}
    watermark: {{maxOutOfOrderness: 1s}}
  steps:
    - filter: \"event.kind == 'click'\"
    - {window_name}window:
        type: tumbling
        size: {window}
        keyBy: [event.user]
        aggregate: [{{name: clicks, fn: count}}]
  sinks:
    - {{name: out, kafka: {{topic: '{output}', key: event.user}}}}
  deadLetter: {{kafka: {{topic: '{dlq}'}}}}
  guarantee: {guarantee}
  checkpoint: {{interval: {checkpoint}}}
",
            name = self.name,
            window = self.window,
            output = self.output,
            dlq = self.dead_letter,
            guarantee = self.guarantee,
            checkpoint = self.checkpoint,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_a_whole_resource_with_the_default_group_when_none_is_set() {
        let spec = PipelineSpec {
            name: "p1".into(),
            brokers: "127.0.0.1:1".into(),
            input: "in".into(),
            output: "out".into(),
            dead_letter: "dlq".into(),
            group: None,
            guarantee: "exactlyOnce",
            checkpoint: "1s",
            window: "1s",
            repartition: false,
        };
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&spec.yaml()).unwrap();
        assert_eq!(v["metadata"]["namespace"], "e2e");
        assert!(v["spec"]["source"]["kafka"].get("group").is_none());
        assert_eq!(v["spec"]["sinks"][0]["kafka"]["key"], "event.user");
        assert_eq!(v["spec"]["guarantee"], "exactlyOnce");
        assert_eq!(spec.group(), "e2e.p1");
        assert_eq!(
            v["spec"]["source"]["kafka"]["partitionedBy"][0],
            "event.user"
        );
    }

    #[test]
    fn a_re_keyed_window_is_named_and_so_is_its_topic() {
        let spec = PipelineSpec {
            name: "p2".into(),
            brokers: "127.0.0.1:1".into(),
            input: "in".into(),
            output: "out".into(),
            dead_letter: "dlq".into(),
            group: None,
            guarantee: "atLeastOnce",
            checkpoint: "1s",
            window: "1s",
            repartition: true,
        };
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&spec.yaml()).unwrap();
        assert_eq!(v["spec"]["steps"][1]["name"], WINDOW_NAME);
        assert_eq!(v["spec"]["steps"][1]["window"]["size"], "1s");
        assert!(v["spec"]["source"]["kafka"].get("partitionedBy").is_none());
        assert_eq!(
            spec.repartition_topic().as_deref(),
            Some("e2e.p2-clicks-per-user-repartition")
        );
    }
}
