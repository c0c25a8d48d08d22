//! Avro payloads: binary datums with an inline writer schema, or
//! Confluent's wire format (magic byte 0, a big-endian 4-byte schema id,
//! the datum) with the schema fetched once per id from a schema registry.
//!
//! Values become JSON as `apache_avro` maps them: records and maps are
//! objects, unions their branch's value, enums their symbol, bytes and
//! fixed arrays of numbers, logical times their numbers.
//!
//! A registry that does not answer (or answers 5xx) is waited for, with
//! backoff, as a broker would be: a record is not dead-lettered because the
//! registry restarted. Only after [`PATIENCE`] without an answer does a
//! record that needs an unfetched schema become a dead letter; from then on
//! such records fail after one attempt each until the registry answers
//! again. A definitive answer (404 for an unknown id) is a dead letter at
//! once, and is remembered for [`REFUSAL_TTL`]: a stream of records with an
//! unknown id (a producer on another registry) costs one request per id
//! and TTL, not one per record — at a millisecond each, that would slow the
//! pipeline to a thousand records a second and load the registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use serde_json::Value;
use tributary_crds::FormatSpec;

/// How long a registry request may take.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an unreachable registry is waited for (below the consumer's
/// 5-minute `max.poll.interval.ms`, so a Kafka task keeps its partitions).
pub const PATIENCE: Duration = Duration::from_secs(120);
/// Overrides [`PATIENCE`] (milliseconds).
const PATIENCE_ENV: &str = "TRIBUTARY_REGISTRY_PATIENCE_MS";
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a refused schema id stays refused without asking again (a
/// schema registered meanwhile is found once it passes).
pub const REFUSAL_TTL: Duration = Duration::from_secs(30);
/// Overrides [`REFUSAL_TTL`] (milliseconds).
const REFUSAL_TTL_ENV: &str = "TRIBUTARY_REGISTRY_REFUSAL_TTL_MS";

/// Decodes Avro payloads.
pub struct AvroDecoder {
    inline: Option<Arc<Schema>>,
    registry: Option<String>,
    agent: ureq::Agent,
    by_id: Mutex<HashMap<u32, Arc<Schema>>>,
    /// Ids the registry refused: when, and why.
    refused: Mutex<HashMap<u32, (Instant, String)>>,
    refusal_ttl: Duration,
    patience: Duration,
    /// Since when the registry has not answered (`None`: it answers).
    outage: Mutex<Option<Instant>>,
}

/// Why a registry request brought no schema.
#[derive(Debug)]
enum Fetch {
    /// The registry answered, and not with the schema (4xx): final.
    Refused(String),
    /// No answer, or a server error: worth waiting for.
    Unreachable(String),
}

impl AvroDecoder {
    /// A decoder for `format` (`schema` and/or `schemaRegistry.url`).
    ///
    /// # Errors
    /// A message naming the field when the inline schema does not parse or
    /// neither is given.
    pub fn new(format: &FormatSpec) -> Result<Self, String> {
        let inline = format
            .schema
            .as_deref()
            .map(|s| Schema::parse_str(s).map(Arc::new))
            .transpose()
            .map_err(|e| format!("spec.source.format.schema: not an Avro schema: {e}"))?;
        let registry = format
            .schema_registry
            .as_ref()
            .map(|r| r.url.trim_end_matches('/').to_owned());
        if inline.is_none() && registry.is_none() {
            return Err(
                "spec.source.format: avro needs schema (inline) or schemaRegistry.url".into(),
            );
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REGISTRY_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let patience = crate::runtime::env_millis(PATIENCE_ENV, PATIENCE);
        Ok(Self {
            inline,
            registry,
            agent,
            by_id: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            refusal_ttl: crate::runtime::env_millis(REFUSAL_TTL_ENV, REFUSAL_TTL),
            patience,
            outage: Mutex::new(None),
        })
    }

    /// Decodes one payload into JSON.
    ///
    /// # Errors
    /// Why the payload is not a datum of the schema (the caller makes it a
    /// dead letter): a missing magic byte, an unknown schema id, bad bytes.
    pub fn decode(&self, payload: &[u8]) -> Result<Value, String> {
        let (schema, mut datum) = if self.registry.is_some() {
            let [0, a, b, c, d, rest @ ..] = payload else {
                return Err("not Confluent wire format (magic byte 0 and a schema id)".into());
            };
            (self.schema(u32::from_be_bytes([*a, *b, *c, *d]))?, rest)
        } else {
            let schema = self.inline.clone().ok_or("no Avro schema")?;
            (schema, payload)
        };
        let value = apache_avro::from_avro_datum(&schema, &mut datum, None)
            .map_err(|e| format!("invalid Avro: {e}"))?;
        if !datum.is_empty() {
            return Err(format!(
                "invalid Avro: {} bytes left after the datum",
                datum.len()
            ));
        }
        Value::try_from(value).map_err(|e| format!("Avro value has no JSON form: {e}"))
    }

    /// How long an unreachable registry is waited for (tests; a pipeline
    /// takes it from the environment).
    #[cfg(test)]
    #[must_use]
    fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// How long a refused id stays refused (tests).
    #[cfg(test)]
    #[must_use]
    fn with_refusal_ttl(mut self, ttl: Duration) -> Self {
        self.refusal_ttl = ttl;
        self
    }

    /// The writer schema of `id`, from the cache or the registry.
    fn schema(&self, id: u32) -> Result<Arc<Schema>, String> {
        if let Some(s) = self.by_id.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(s);
        }
        if let Some(why) = self.refusal(id) {
            return Err(why);
        }
        match self.fetch_schema(id) {
            Ok(schema) => {
                if let Ok(mut m) = self.by_id.lock() {
                    m.insert(id, schema.clone());
                }
                Ok(schema)
            }
            Err(Fetch::Refused(why)) => {
                if let Ok(mut m) = self.refused.lock() {
                    // Garbage payloads name random ids: keep only the
                    // refusals still in force, so the map is bounded by
                    // the requests one TTL has room for.
                    m.retain(|_, (at, _)| at.elapsed() < self.refusal_ttl);
                    m.insert(id, (Instant::now(), why.clone()));
                }
                Err(why)
            }
            Err(Fetch::Unreachable(why)) => Err(why),
        }
    }

    /// Why `id` was refused, while that is recent.
    fn refusal(&self, id: u32) -> Option<String> {
        let mut m = self.refused.lock().ok()?;
        match m.get(&id) {
            Some((at, why)) if at.elapsed() < self.refusal_ttl => Some(why.clone()),
            Some(_) => {
                m.remove(&id);
                None
            }
            None => None,
        }
    }

    /// Asks the registry for schema `id`. An answer that is not a schema
    /// (4xx, not JSON, no `schema`, not Avro) is a refusal.
    fn fetch_schema(&self, id: u32) -> Result<Arc<Schema>, Fetch> {
        let refused = |m: String| Fetch::Refused(format!("schema id {id}: {m}"));
        let url = self
            .registry
            .as_deref()
            .ok_or_else(|| refused("no schema registry".into()))?;
        let body = self
            .fetch(&format!("{url}/schemas/ids/{id}"))
            .map_err(|e| match e {
                Fetch::Refused(m) => refused(m),
                Fetch::Unreachable(m) => Fetch::Unreachable(format!("schema id {id}: {m}")),
            })?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| refused(format!("registry answered non-JSON: {e}")))?;
        let text = doc["schema"]
            .as_str()
            .ok_or_else(|| refused("registry answered without a schema".into()))?;
        Schema::parse_str(text)
            .map(Arc::new)
            .map_err(|e| refused(format!("does not parse: {e}")))
    }

    /// GETs `url`, waiting out an unreachable registry where this thread
    /// may block: a plain thread (the Kafka engine's) or a worker of a
    /// multi-threaded runtime, whose other tasks `block_in_place` hands
    /// to another worker. On a current-thread runtime (a Kinesis source's)
    /// waiting would stall every task, lease renewals included, so there
    /// the registry gets one attempt.
    fn fetch(&self, url: &str) -> Result<Vec<u8>, Fetch> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Err(_) => self.fetch_waiting(url),
            Ok(RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.fetch_waiting(url))
            }
            Ok(_) => http_get(&self.agent, url),
        }
    }

    /// GETs `url`, waiting out an unreachable registry for the patience
    /// left in the current outage.
    fn fetch_waiting(&self, url: &str) -> Result<Vec<u8>, Fetch> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let error = match http_get(&self.agent, url) {
                Ok(body) => {
                    self.set_outage(None);
                    return Ok(body);
                }
                Err(Fetch::Refused(e)) => {
                    self.set_outage(None);
                    return Err(Fetch::Refused(e));
                }
                Err(Fetch::Unreachable(e)) => e,
            };
            let waited = self.outage_since().elapsed();
            let left = self.patience.saturating_sub(waited);
            if left.is_zero() {
                return Err(Fetch::Unreachable(format!(
                    "the registry has not answered for {}: {error}",
                    humantime::format_duration(Duration::from_millis(
                        u64::try_from(waited.as_millis()).unwrap_or(u64::MAX)
                    ))
                )));
            }
            tracing::warn!(%error, retry_in = ?backoff.min(left), "schema registry unreachable; waiting for it");
            std::thread::sleep(backoff.min(left));
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// When the current outage began (now, if none was under way).
    fn outage_since(&self) -> Instant {
        match self.outage.lock() {
            Ok(mut o) => *o.get_or_insert_with(Instant::now),
            Err(_) => Instant::now(),
        }
    }

    fn set_outage(&self, to: Option<Instant>) {
        if let Ok(mut o) = self.outage.lock() {
            *o = to;
        }
    }
}

/// Largest registry answer read (a schema document).
const MAX_ANSWER: u64 = 4 << 20;

/// GETs `url` from the registry; the body of a 200 answer.
fn http_get(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, Fetch> {
    let mut resp = agent
        .get(url)
        .header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        )
        .call()
        .map_err(|e| Fetch::Unreachable(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| Fetch::Unreachable(format!("{url}: reading the answer: {e}")))?;
    if status == 200 {
        return Ok(body);
    }
    let text = String::from_utf8_lossy(&body);
    let message = format!(
        "{url}: HTTP {status}: {}",
        text.chars().take(200).collect::<String>()
    );
    if status >= 500 {
        Err(Fetch::Unreachable(message))
    } else {
        Err(Fetch::Refused(message))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use apache_avro::types::Value as Avro;
    use serde_json::json;

    use super::*;

    const SCHEMA: &str = r#"{"type": "record", "name": "Click", "fields": [
        {"name": "userId", "type": "string"},
        {"name": "ts", "type": "long"},
        {"name": "amount", "type": ["null", "double"]},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["VIEW", "BUY"]}}
    ]}"#;

    fn datum() -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let v = Avro::Record(vec![
            ("userId".into(), Avro::String("u1".into())),
            ("ts".into(), Avro::Long(1_700_000_000_000)),
            ("amount".into(), Avro::Union(1, Box::new(Avro::Double(2.5)))),
            ("kind".into(), Avro::Enum(1, "BUY".into())),
        ]);
        apache_avro::to_avro_datum(&schema, v).unwrap()
    }

    fn inline() -> AvroDecoder {
        let f: FormatSpec =
            serde_json::from_value(json!({"type": "avro", "schema": SCHEMA})).unwrap();
        AvroDecoder::new(&f).unwrap()
    }

    #[test]
    fn an_inline_schema_decodes_datums_to_json() {
        assert_eq!(
            inline().decode(&datum()).unwrap(),
            json!({"userId": "u1", "ts": 1_700_000_000_000_i64, "amount": 2.5, "kind": "BUY"})
        );
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let d = inline();
        assert!(d.decode(b"").is_err());
        assert!(d.decode(b"\xff\xff\xff\xff\xff\xff").is_err());
        let mut extra = datum();
        extra.push(0);
        assert!(d.decode(&extra).unwrap_err().contains("left after"));
    }

    #[test]
    fn a_bad_schema_or_none_is_refused_naming_the_field() {
        let f: FormatSpec =
            serde_json::from_value(json!({"type": "avro", "schema": "{\"type\": \"nope\"}"}))
                .unwrap();
        let err = AvroDecoder::new(&f).err().unwrap();
        assert!(err.starts_with("spec.source.format.schema"), "{err}");
        let f: FormatSpec = serde_json::from_value(json!({"type": "avro"})).unwrap();
        assert!(AvroDecoder::new(&f).is_err());
    }

    /// A decoder whose registry (port 9, discard) never answers.
    fn unreachable_registry(patience: Duration) -> AvroDecoder {
        let f: FormatSpec = serde_json::from_value(
            json!({"type": "avro", "schemaRegistry": {"url": "http://127.0.0.1:9"}}),
        )
        .unwrap();
        AvroDecoder::new(&f).unwrap().with_patience(patience)
    }

    #[test]
    fn the_wire_format_needs_its_magic_byte() {
        let d = unreachable_registry(Duration::from_millis(300));
        assert!(d.decode(&datum()).unwrap_err().contains("magic byte"));
        // An unreachable registry is waited for, then an error for this
        // record only; the next record does not wait again.
        for _ in 0..2 {
            let e = d.decode(&[0, 0, 0, 0, 7, 2]).unwrap_err();
            assert!(
                e.contains("schema id 7") && e.contains("not answered"),
                "{e}"
            );
        }
        assert!(d.outage.lock().unwrap().is_some());
    }

    #[test]
    fn a_current_thread_runtime_is_not_stalled_by_waiting() {
        // An hour of patience would hang this test if it were spent here.
        let d = unreachable_registry(Duration::from_secs(3600));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let e = rt
            .block_on(async { d.decode(&[0, 0, 0, 0, 7, 2]) })
            .unwrap_err();
        assert!(
            e.contains("schema id 7") && !e.contains("not answered"),
            "{e}"
        );
    }

    /// A registry on a local port that knows no schema until `known` is
    /// set, then knows every id as [`SCHEMA`]; it counts the requests.
    fn registry(known: Arc<AtomicBool>, asked: Arc<AtomicUsize>) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut lines = BufReader::new(conn.try_clone().unwrap()).lines();
                while let Some(Ok(line)) = lines.next() {
                    if line.is_empty() {
                        break;
                    }
                }
                asked.fetch_add(1, Ordering::SeqCst);
                let (status, body) = if known.load(Ordering::SeqCst) {
                    ("200 OK", json!({"schema": SCHEMA}).to_string())
                } else {
                    (
                        "404 Not Found",
                        r#"{"error_code":40403,"message":"Schema not found"}"#.to_owned(),
                    )
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    #[test]
    fn a_refused_schema_id_is_asked_for_once_per_ttl() {
        let (known, asked) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let url = registry(known.clone(), asked.clone());
        let f: FormatSpec =
            serde_json::from_value(json!({"type": "avro", "schemaRegistry": {"url": url}}))
                .unwrap();
        let d = AvroDecoder::new(&f)
            .unwrap()
            .with_refusal_ttl(Duration::from_millis(300));
        let mut wire = vec![0, 0, 0, 0, 7];
        wire.extend(datum());
        for _ in 0..100 {
            let e = d.decode(&wire).unwrap_err();
            assert!(e.contains("schema id 7") && e.contains("404"), "{e}");
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "one request for 100 records"
        );
        // Registered meanwhile: still refused within the TTL, found after it.
        known.store(true, Ordering::SeqCst);
        assert!(d.decode(&wire).is_err());
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(d.decode(&wire).unwrap()["userId"], "u1");
        assert_eq!(d.decode(&wire).unwrap()["kind"], "BUY");
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        // Expired refusals of other ids are dropped when one is added.
        let mut other = vec![0, 0, 0, 0, 8];
        other.extend(datum());
        known.store(false, Ordering::SeqCst);
        assert!(d.decode(&other).is_err());
        std::thread::sleep(Duration::from_millis(350));
        let mut third = vec![0, 0, 0, 0, 9];
        third.extend(datum());
        assert!(d.decode(&third).is_err());
        let refused: Vec<u32> = d.refused.lock().unwrap().keys().copied().collect();
        assert_eq!(refused, [9]);
    }
}
