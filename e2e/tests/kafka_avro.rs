//! Avro input from Kafka, black box: datums decode to the JSON the
//! pipeline outputs, and every payload that is not a datum of its schema
//! goes to the dead-letter topic with its provenance while the rest flows.
//!
//! Two ways to name the writer schema: inline in the spec (plain binary
//! datums), and Confluent's wire format against the test bed's schema
//! registry (Apicurio Registry's Confluent-compatible API), where two
//! versions of one subject are in the topic at once and an unknown
//! schema id is a dead letter, not a stop.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rdkafka::producer::FutureProducer;
use serde_json::{Value, json};
use tributary_e2e::fixture::{testbed, unique};
use tributary_e2e::kafka::output::{OutRecord, read_to_end};
use tributary_e2e::kafka::workload::{Landed, send};
use tributary_e2e::kafka::{create_topic, producer};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::{Fleet, tributary_bin};

/// The first writer schema.
const V1: &str = r#"{"type": "record", "name": "Click", "namespace": "e2e", "fields": [
    {"name": "userId", "type": "string"},
    {"name": "ts", "type": "long"}
]}"#;

/// The second: a field added with a default (a backward-compatible change).
const V2: &str = r#"{"type": "record", "name": "Click", "namespace": "e2e", "fields": [
    {"name": "userId", "type": "string"},
    {"name": "ts", "type": "long"},
    {"name": "amount", "type": ["null", "double"], "default": null}
]}"#;

/// Good records per run.
const N: i64 = 2_000;

/// Click `i` as a datum of `V1`, or of `V2` with an amount.
fn datum(i: i64, v2: bool) -> Result<Vec<u8>> {
    let mut fields = vec![
        ("userId".to_owned(), Avro::String(format!("u{}", i % 10))),
        ("ts".to_owned(), Avro::Long(1_700_000_000_000 + i)),
    ];
    let schema = if v2 {
        fields.push((
            "amount".to_owned(),
            Avro::Union(1, Box::new(Avro::Double(i as f64 / 4.0))),
        ));
        Schema::parse_str(V2)?
    } else {
        Schema::parse_str(V1)?
    };
    Ok(apache_avro::to_avro_datum(&schema, Avro::Record(fields))?)
}

/// The JSON the pipeline must output for click `i`.
fn expected(i: i64, v2: bool) -> Value {
    let mut v = json!({"userId": format!("u{}", i % 10), "ts": 1_700_000_000_000 + i});
    if v2 {
        v["amount"] = json!(i as f64 / 4.0);
    }
    v
}

/// Confluent's wire format: magic byte 0, the schema id, the datum.
fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// A bad payload: what it is, a fragment the dead letter's error must
/// contain, and its bytes (which the dead letter must carry whole).
struct Bad {
    what: &'static str,
    fragment: String,
    payload: Vec<u8>,
}

/// A run's input: where each good record and each bad one landed.
#[derive(Default)]
struct Input {
    good: BTreeMap<i64, Value>,
    bad: BTreeMap<Landed, Bad>,
}

impl Input {
    /// Produces `bad` to `topic` and remembers where it landed.
    async fn send_bad(
        &mut self,
        producer: &FutureProducer,
        topic: &str,
        key: &str,
        bad: Bad,
    ) -> Result<()> {
        let at = send(producer, topic, None, key, &bad.payload).await?;
        self.bad.insert(at, bad);
        Ok(())
    }
}

/// Runs `format` (YAML of `spec.source.format`) over `input` and checks the
/// output and the dead letters against what was produced; `what` names the
/// run in its figures.
async fn run_and_check(
    what: &str,
    bootstrap: &str,
    topics: &Topics,
    format: &str,
    input: &Input,
) -> Result<()> {
    let yaml = format!(
        "apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: '{name}', namespace: e2e}}
spec:
  source:
    kafka: {{brokers: '{bootstrap}', topics: ['{input}'], startFrom: earliest}}
    format: {format}
  sinks:
    - {{name: out, kafka: {{topic: '{output}'}}}}
  deadLetter: {{name: dlq, kafka: {{topic: '{dlq}'}}}}
  checkpoint: {{interval: 1s}}
",
        name = topics.input,
        input = topics.input,
        output = topics.output,
        dlq = topics.dlq,
    );
    let mut fleet = Fleet::new(&tributary_bin(), &yaml, &[("RUST_LOG", "info")])?;
    fleet.add()?;
    let deadline = Deadline::new("every Avro record out or dead", Duration::from_secs(120));
    let (out, dead) = loop {
        let out = read_to_end(bootstrap, &topics.output, false, Duration::from_secs(30)).await?;
        let dead = read_to_end(bootstrap, &topics.dlq, false, Duration::from_secs(30)).await?;
        if out.len() >= input.good.len() && dead.len() >= input.bad.len() {
            break (out, dead);
        }
        fleet.check_alive()?;
        deadline.check((out.len(), dead.len()))?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    fleet.stop_all(Duration::from_secs(30)).await?;

    let mut got = BTreeMap::new();
    for o in &out {
        let v: Value = serde_json::from_str(&o.value)?;
        let i = v["ts"].as_i64().context("an output without ts")? - 1_700_000_000_000;
        ensure!(
            got.insert(i, v).is_none(),
            "click {i} was output twice: {}",
            o.value
        );
    }
    for (i, want) in &input.good {
        let v = got
            .get(i)
            .with_context(|| format!("click {i} is missing from the output"))?;
        ensure!(v == want, "click {i}: output {v}, want {want}");
    }
    ensure!(
        got.len() == input.good.len(),
        "{} records out for {} good ones",
        got.len(),
        input.good.len()
    );
    let mut kinds = BTreeMap::new();
    for d in &dead {
        let bad = provenance(d, &topics.input, input)?;
        let error = d.header("tributary.error").unwrap_or_default();
        ensure!(
            error.contains(&bad.fragment),
            "dead letter for a {} payload without {:?} in its error: {error}",
            bad.what,
            bad.fragment
        );
        let letter: Value = serde_json::from_str(&d.value)?;
        let carried = letter["record"]["rawBase64"]
            .as_str()
            .map(|b| BASE64.decode(b))
            .transpose()?;
        ensure!(
            carried.as_deref() == Some(bad.payload.as_slice()),
            "the dead letter of a {} payload does not carry its bytes: {}",
            bad.what,
            d.value
        );
        kinds.entry(bad.what).or_insert((0, error.to_owned())).0 += 1;
    }
    eprintln!(
        "kafka avro, {what}: {} good out of {}, dead letters (count, an error) {kinds:#?} of {} bad",
        got.len(),
        input.good.len(),
        input.bad.len()
    );
    ensure!(
        dead.len() == input.bad.len(),
        "{} dead letters for {} bad payloads",
        dead.len(),
        input.bad.len()
    );
    Ok(())
}

/// The bad payload dead letter `d` stands for, checked against its
/// provenance headers.
fn provenance<'a>(d: &OutRecord, topic: &str, input: &'a Input) -> Result<&'a Bad> {
    let h = |name: &str| {
        d.header(name)
            .with_context(|| format!("dead letter without header {name}: {d:?}"))
    };
    ensure!(h("tributary.source.topic")? == topic, "{d:?}");
    ensure!(h("tributary.step")? == "decode", "{d:?}");
    let at = Landed {
        partition: h("tributary.source.partition")?.parse()?,
        offset: h("tributary.source.offset")?.parse()?,
    };
    input
        .bad
        .get(&at)
        .with_context(|| format!("a dead letter for a good record at {at:?}: {d:?}"))
}

struct Topics {
    input: String,
    output: String,
    dlq: String,
}

impl Topics {
    async fn new(bootstrap: &str, prefix: &str) -> Result<Self> {
        let t = Self {
            input: unique(prefix),
            output: unique(&format!("{prefix}-out")),
            dlq: unique(&format!("{prefix}-dlq")),
        };
        for topic in [&t.input, &t.output, &t.dlq] {
            create_topic(bootstrap, topic, 2).await?;
        }
        Ok(t)
    }
}

/// Plain binary datums of an inline schema; three kinds of broken datum
/// (bytes that are no datum, a datum cut short, a datum with bytes after
/// it) are dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_schema_datums_decode_and_broken_ones_are_dead_letters() -> Result<()> {
    let bed = testbed();
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let topics = Topics::new(&bootstrap, "avro-inline").await?;
    let p = producer(&bootstrap)?;
    let mut input = Input::default();
    for i in 0..N {
        let key = format!("u{}", i % 10);
        let good = datum(i, false)?;
        send(&p, &topics.input, None, &key, &good).await?;
        input.good.insert(i, expected(i, false));
        let bad = match i % 100 {
            13 => Some((
                "garbage",
                b"\xff\xfe\x01not avro at all".to_vec(),
                "invalid Avro",
            )),
            47 => Some(("truncated", good[..good.len() - 3].to_vec(), "invalid Avro")),
            71 => Some((
                "trailing",
                [good.as_slice(), b"\x02\x04"].concat(),
                "left after",
            )),
            _ => None,
        };
        if let Some((what, payload, fragment)) = bad {
            let bad = Bad {
                what,
                fragment: fragment.to_owned(),
                payload,
            };
            input.send_bad(&p, &topics.input, &key, bad).await?;
        }
    }
    let format = format!("{{type: avro, schema: '{}'}}", V1.replace('\n', " "));
    run_and_check("inline schema", &bootstrap, &topics, &format, &input).await
}

/// Registers `schema` under `subject`; returns its id.
async fn register(registry: &str, subject: &str, schema: &str) -> Result<u32> {
    let answer = reqwest::Client::new()
        .post(format!("{registry}/subjects/{subject}/versions"))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&json!({"schema": schema}))
        .send()
        .await?;
    let status = answer.status();
    let body: Value = answer.json().await?;
    ensure!(
        status.is_success(),
        "registering {subject}: {status} {body}"
    );
    let id = body["id"]
        .as_u64()
        .with_context(|| format!("no id in {body}"))?;
    Ok(u32::try_from(id)?)
}

/// Confluent's wire format against a live registry: two schema versions of
/// one subject interleaved in the topic, each decoded with its own writer
/// schema; an id the registry does not know, a payload without the magic
/// byte and a broken datum behind a good id are dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_datums_of_two_versions_decode_and_unknown_ids_are_dead_letters() -> Result<()> {
    let bed = testbed();
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let registry = bed.var("SCHEMA_REGISTRY_URL")?.to_owned();
    let topics = Topics::new(&bootstrap, "avro-registry").await?;
    let subject = format!("{}-value", topics.input);
    let v1 = register(&registry, &subject, V1).await?;
    let v2 = register(&registry, &subject, V2).await?;
    ensure!(v1 != v2, "two versions, one id {v1}");
    // An id far above any this registry handed out.
    let unknown = v1.max(v2) + 1_000_000;
    let p = producer(&bootstrap)?;
    let mut input = Input::default();
    for i in 0..N {
        let key = format!("u{}", i % 10);
        let newer = i % 2 == 1;
        let good = datum(i, newer)?;
        let id = if newer { v2 } else { v1 };
        send(&p, &topics.input, None, &key, &framed(id, &good)).await?;
        input.good.insert(i, expected(i, newer));
        let bad: Option<(&str, Vec<u8>, String)> = match i % 100 {
            13 => Some((
                "unknown id",
                framed(unknown, &good),
                format!("schema id {unknown}"),
            )),
            47 => Some(("no magic byte", good.clone(), "magic byte".to_owned())),
            71 => Some((
                "broken datum",
                framed(v1, b"\xff\xfe\x01"),
                "invalid Avro".to_owned(),
            )),
            _ => None,
        };
        if let Some((what, payload, fragment)) = bad {
            let bad = Bad {
                what,
                fragment,
                payload,
            };
            input.send_bad(&p, &topics.input, &key, bad).await?;
        }
    }
    let format = format!("{{type: avro, schemaRegistry: {{url: '{registry}'}}}}");
    run_and_check("registry", &bootstrap, &topics, &format, &input).await
}
