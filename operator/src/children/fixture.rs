//! Test pipelines, compiled only in tests.

use tributary_crds::StreamPipeline;

fn parse(yaml: &str) -> StreamPipeline {
    let mut sp: StreamPipeline = serde_yaml_ng::from_str(yaml).unwrap();
    sp.metadata.uid = Some("0b7c5a4e-1111-2222-3333-444455556666".to_owned());
    sp.metadata.generation = Some(1);
    sp
}

/// A generator → window → stdout pipeline named `clicks` in `analytics`.
pub fn pipeline() -> StreamPipeline {
    parse(
        r"
apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {name: clicks, namespace: analytics}
spec:
  source: {generator: {profile: clickstream, count: 100}}
  steps:
    - window: {type: tumbling, size: 1m, keyBy: [event.userId], aggregate: [{name: clicks, fn: count}]}
  sinks: [{name: out, stdout: {}}]
  replicas: 2
",
    )
}

/// A Kafka pipeline whose SASL credentials come from a Secret.
pub fn with_secrets() -> StreamPipeline {
    parse(
        r"
apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {name: secure, namespace: analytics}
spec:
  source:
    kafka:
      brokers: kafka:9092
      topics: [clicks]
      auth:
        sasl:
          mechanism: SCRAM-SHA-512
          username: {secretKeyRef: {name: kafka-user, key: username}}
          password: {secretKeyRef: {name: kafka-user, key: password}}
  sinks: [{name: out, stdout: {}}]
",
    )
}

/// A pipeline with a UDF sidecar that reads a Secret itself and sets
/// its own resources.
pub fn with_sidecar() -> StreamPipeline {
    parse(
        r"
apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {name: udf, namespace: analytics}
spec:
  source: {stdin: {}}
  sinks: [{name: out, stdout: {}}]
  processor:
    image: example.com/processor:dev
    resources: {requests: {cpu: 500m, memory: 256Mi}}
    sidecars:
      - name: udf
        image: example.com/udf:1
        env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: udf, key: token}}}]
        securityContext: {runAsUser: 1000}
",
    )
}
