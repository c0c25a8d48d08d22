//! librdkafka settings for the consumer and the producers, from the spec,
//! the pipeline's identity and `TRIBUTARY_KAFKA_*` environment overrides.

use std::time::Duration;

use rdkafka::ClientConfig;
use tributary_crds::{KafkaAuth, KafkaSource, SecretValue, StartFrom};

use super::KafkaError;

/// Session timeout: a killed replica's partitions move after about this long.
const SESSION_TIMEOUT_MS: &str = "10000";
/// Heartbeats well inside the session timeout.
const HEARTBEAT_MS: &str = "1000";
/// The floor of `transaction.timeout.ms`.
const MIN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Prefix of environment variables that set extra librdkafka properties:
/// `TRIBUTARY_KAFKA_FETCH_MAX_BYTES=…` sets `fetch.max.bytes`.
pub const ENV_PREFIX: &str = "TRIBUTARY_KAFKA_";

/// The consumer group: `spec.source.kafka.group`, else
/// `<metadata.namespace>.<metadata.name>` of a whole resource.
///
/// # Errors
/// [`KafkaError::Group`] for a bare spec without `group`.
pub fn group(
    src: &KafkaSource,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<String, KafkaError> {
    if let Some(g) = src.group.as_deref().filter(|g| !g.trim().is_empty()) {
        return Ok(g.to_owned());
    }
    match name {
        Some(name) => Ok(format!("{}.{name}", namespace.unwrap_or("default"))),
        None => Err(KafkaError::Group),
    }
}

pub use crate::connector::instance;

/// `max(2 × checkpoint interval, 10 s)`: long enough for one checkpoint to
/// commit, short enough that a killed replica's open transaction is aborted
/// quickly (it blocks `read_committed` readers of the output until then).
#[must_use]
pub fn transaction_timeout(interval: Duration) -> Duration {
    (interval * 2).max(MIN_TRANSACTION_TIMEOUT)
}

fn secret(v: &SecretValue, path: &str) -> Result<String, KafkaError> {
    crate::secret::resolve(v).map_err(|message| KafkaError::Secret {
        path: path.to_owned(),
        message,
    })
}

fn apply_auth(c: &mut ClientConfig, auth: Option<&KafkaAuth>) -> Result<(), KafkaError> {
    apply_auth_at(c, auth, "spec.source.kafka.auth")
}

/// SASL and TLS settings from `auth`, whose field path in the spec is
/// `base` (named when a secret cannot be read).
///
/// # Errors
/// When a secret cannot be read.
pub(super) fn apply_auth_at(
    c: &mut ClientConfig,
    auth: Option<&KafkaAuth>,
    base: &str,
) -> Result<(), KafkaError> {
    let Some(auth) = auth else {
        return Ok(());
    };
    if let Some(tls) = &auth.tls {
        for (v, prop, field) in [
            (&tls.ca, "ssl.ca.pem", "ca"),
            (&tls.cert, "ssl.certificate.pem", "cert"),
            (&tls.key, "ssl.key.pem", "key"),
        ] {
            if let Some(v) = v {
                c.set(prop, secret(v, &format!("{base}.tls.{field}"))?);
            }
        }
    }
    if let Some(sasl) = &auth.sasl {
        c.set("sasl.mechanisms", &sasl.mechanism);
        c.set(
            "sasl.username",
            secret(&sasl.username, &format!("{base}.sasl.username"))?,
        );
        c.set(
            "sasl.password",
            secret(&sasl.password, &format!("{base}.sasl.password"))?,
        );
    }
    let protocol = match (auth.sasl.is_some(), auth.tls.is_some()) {
        (true, true) => "sasl_ssl",
        (true, false) => "sasl_plaintext",
        (false, true) => "ssl",
        (false, false) => "plaintext",
    };
    c.set("security.protocol", protocol);
    Ok(())
}

/// Extra properties from `TRIBUTARY_KAFKA_<PROPERTY_WITH_UNDERSCORES>`.
fn apply_env(c: &mut ClientConfig) {
    for (k, v) in std::env::vars() {
        if let Some(prop) = k.strip_prefix(ENV_PREFIX) {
            c.set(prop.to_ascii_lowercase().replace('_', "."), v);
        }
    }
}

/// The consumer: cooperative-sticky assignment, no auto commit (offsets
/// commit with checkpoints), `read_committed`, a short session timeout.
///
/// # Errors
/// When a secret cannot be read.
pub fn consumer(
    src: &KafkaSource,
    group: &str,
    instance: &str,
) -> Result<ClientConfig, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &src.brokers)
        .set("group.id", group)
        .set("client.id", format!("tributary-{instance}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match src.start_from {
                StartFrom::Earliest => "earliest",
                StartFrom::Latest => "latest",
            },
        )
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", HEARTBEAT_MS)
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "2000");
    apply_auth(&mut c, src.auth.as_ref())?;
    apply_env(&mut c);
    Ok(c)
}

/// A consumer outside the group that reads assigned partitions to their
/// committed end (the changelog on restore).
///
/// # Errors
/// When a secret of the spec cannot be read.
pub fn reader(src: &KafkaSource, instance: &str) -> Result<ClientConfig, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &src.brokers)
        .set("group.id", format!("tributary-restore-{instance}"))
        .set("client.id", format!("tributary-{instance}-restore"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    apply_auth(&mut c, src.auth.as_ref())?;
    apply_env(&mut c);
    Ok(c)
}

/// A producer to `brokers`: idempotent; transactional (`transactional.id`
/// set) for exactly-once.
///
/// # Errors
/// When a secret cannot be read.
pub fn producer(
    brokers: &str,
    auth: Option<&KafkaAuth>,
    transactional_id: Option<&str>,
    interval: Duration,
) -> Result<ClientConfig, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    if let Some(id) = transactional_id {
        c.set("transactional.id", id).set(
            "transaction.timeout.ms",
            transaction_timeout(interval).as_millis().to_string(),
        );
    }
    apply_auth(&mut c, auth)?;
    apply_env(&mut c);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_defaults_to_namespace_dot_name_and_a_bare_spec_needs_one() {
        let mut src = KafkaSource::default();
        assert_eq!(group(&src, Some("p"), Some("ns")).unwrap(), "ns.p");
        assert_eq!(group(&src, Some("p"), None).unwrap(), "default.p");
        let err = group(&src, None, None).unwrap_err().to_string();
        assert!(err.contains("spec.source.kafka.group"), "{err}");
        src.group = Some("g".into());
        assert_eq!(group(&src, Some("p"), Some("ns")).unwrap(), "g");
    }

    #[test]
    fn auth_reads_secrets_from_env_references_and_sets_the_protocol() {
        let home = std::env::var("HOME").expect("HOME is set");
        let env = |v: &str| SecretValue {
            env: Some(v.into()),
            secret_key_ref: None,
        };
        let auth = KafkaAuth {
            sasl: Some(tributary_crds::SaslAuth {
                mechanism: "SCRAM-SHA-512".into(),
                username: env("HOME"),
                password: env("HOME"),
            }),
            tls: Some(tributary_crds::TlsAuth {
                ca: Some(env("HOME")),
                ..Default::default()
            }),
        };
        let mut c = ClientConfig::new();
        apply_auth(&mut c, Some(&auth)).unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), Some(home.as_str()));
        assert_eq!(c.get("ssl.ca.pem"), Some(home.as_str()));

        let missing = KafkaAuth {
            sasl: Some(tributary_crds::SaslAuth {
                mechanism: "PLAIN".into(),
                username: env("TRIBUTARY_TEST_SURELY_UNSET_VARIABLE"),
                password: SecretValue::default(),
            }),
            tls: None,
        };
        let err = apply_auth(&mut ClientConfig::new(), Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("spec.source.kafka.auth.sasl.username"),
            "{err}"
        );
    }

    #[test]
    fn the_transaction_timeout_is_twice_the_interval_at_least_ten_seconds() {
        assert_eq!(
            transaction_timeout(Duration::from_secs(1)),
            Duration::from_secs(10)
        );
        assert_eq!(
            transaction_timeout(Duration::from_secs(30)),
            Duration::from_secs(60)
        );
    }
}
