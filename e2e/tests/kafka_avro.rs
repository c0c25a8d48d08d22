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
use tributary_e2e::server::{Server, free_port};

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

/// Good records per run (per phase of the outage test).
const N: i64 = 1_000;
/// How long the outage test watches a pipeline whose registry is down.
const HOLD: Duration = Duration::from_secs(6);

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
    let mut fleet = topics.pipeline(bootstrap, format)?;
    let (out, dead) = topics
        .wait_for(bootstrap, &mut fleet, input.good.len(), input.bad.len())
        .await?;
    fleet.stop_all(Duration::from_secs(30)).await?;
    check(what, topics, input, &out, &dead)
}

/// Checks `out` and `dead` against `input`.
fn check(
    what: &str,
    topics: &Topics,
    input: &Input,
    out: &[OutRecord],
    dead: &[OutRecord],
) -> Result<()> {
    let mut got = BTreeMap::new();
    for o in out {
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
    for d in dead {
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
    /// One replica of a pipeline from the input topic, in `format`, to the
    /// output and dead-letter topics.
    fn pipeline(&self, bootstrap: &str, format: &str) -> Result<Fleet> {
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
            name = self.input,
            input = self.input,
            output = self.output,
            dlq = self.dlq,
        );
        let mut fleet = Fleet::new(&tributary_bin(), &yaml, &[("RUST_LOG", "info")])?;
        fleet.add()?;
        Ok(fleet)
    }

    /// The output and dead letters once there are at least `out` and `dead`.
    async fn wait_for(
        &self,
        bootstrap: &str,
        fleet: &mut Fleet,
        out: usize,
        dead: usize,
    ) -> Result<(Vec<OutRecord>, Vec<OutRecord>)> {
        let what = format!("{out} Avro records out and {dead} dead");
        let deadline = Deadline::new(&what, Duration::from_secs(120));
        loop {
            let (o, d) = self.read(bootstrap).await?;
            if o.len() >= out && d.len() >= dead {
                return Ok((o, d));
            }
            fleet.check_alive()?;
            deadline.check((o.len(), d.len()))?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The output and dead-letter topics as they are.
    async fn read(&self, bootstrap: &str) -> Result<(Vec<OutRecord>, Vec<OutRecord>)> {
        let wait = Duration::from_secs(30);
        Ok((
            read_to_end(bootstrap, &self.output, false, wait).await?,
            read_to_end(bootstrap, &self.dlq, false, wait).await?,
        ))
    }

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

/// A TCP relay to the registry that the test opens and closes: closed, it
/// accepts and drops every connection, as a registry that is down.
struct Gate {
    url: String,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Gate {
    /// An open gate to the registry at `url` (`http://127.0.0.1:<port>/…`).
    async fn to(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("http://").context("an http:// registry")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream = authority.to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/{path}", listener.local_addr()?);
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = open.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Self { url, open })
    }

    fn close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A registry of the test's own (the same Apicurio build as the test
/// bed's), which it can kill and restart.
struct OwnRegistry {
    server: Server,
    url: String,
}

impl OwnRegistry {
    async fn start(jar: &str) -> Result<Self> {
        let port = free_port()?;
        let port_arg = format!("-Dquarkus.http.port={port}");
        let server = Server::start(
            "java",
            &[
                "-XX:+UseSerialGC",
                "-Xmx256m",
                "-XX:TieredStopAtLevel=1",
                "-Dquarkus.http.host=127.0.0.1",
                &port_arg,
                "-jar",
                jar,
            ],
        )?;
        let r = Self {
            server,
            url: format!("http://127.0.0.1:{port}/apis/ccompat/v7"),
        };
        r.ready().await?;
        Ok(r)
    }

    async fn ready(&self) -> Result<()> {
        let deadline = Deadline::new("the test's registry to answer", Duration::from_secs(90));
        let client = reqwest::Client::new();
        loop {
            let answer = client.get(format!("{}/subjects", self.url)).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return Ok(());
            }
            deadline.check(self.server.log())?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The registry dies while the pipeline still needs a schema it has not
/// fetched: the records wait for it instead of becoming dead letters, and
/// flow once it is back (in-memory storage, so the test registers the two
/// versions again, which get the same ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_holds_records_back_and_dead_letters_none() -> Result<()> {
    let bed = testbed();
    let bootstrap = bed.var("KAFKA_BOOTSTRAP")?.to_owned();
    let mut registry = OwnRegistry::start(bed.var("SCHEMA_REGISTRY_JAR")?).await?;
    let topics = Topics::new(&bootstrap, "avro-outage").await?;
    let subject = format!("{}-value", topics.input);
    let v1 = register(&registry.url, &subject, V1).await?;
    let v2 = register(&registry.url, &subject, V2).await?;
    let p = producer(&bootstrap)?;
    let mut input = Input::default();
    let mut produce = async |range: std::ops::Range<i64>, newer: bool| -> Result<()> {
        for i in range {
            let id = if newer { v2 } else { v1 };
            let payload = framed(id, &datum(i, newer)?);
            send(&p, &topics.input, None, &format!("u{}", i % 10), &payload).await?;
            input.good.insert(i, expected(i, newer));
        }
        Ok(())
    };
    produce(0..N, false).await?;
    // The pipeline reaches the registry through a gate, so that after the
    // restart the test can register the schemas again before the pipeline
    // sees it (an in-memory registry that answered before that would
    // rightly get its unknown ids dead-lettered).
    let gate = Gate::to(&registry.url).await?;
    let format = format!("{{type: avro, schemaRegistry: {{url: '{}'}}}}", gate.url);
    let mut fleet = topics.pipeline(&bootstrap, &format)?;
    topics
        .wait_for(&bootstrap, &mut fleet, N as usize, 0)
        .await?;

    // Version 1 is cached; version 2 is not, and the registry is gone.
    gate.close();
    registry.server.kill9();
    produce(N..2 * N, true).await?;
    tokio::time::sleep(HOLD).await;
    let (out, dead) = topics.read(&bootstrap).await?;
    eprintln!(
        "kafka avro, registry down {HOLD:?}: {} out, {} dead letters",
        out.len(),
        dead.len()
    );
    fleet.check_alive()?;
    ensure!(
        out.len() == N as usize && dead.is_empty(),
        "while the registry was down: {} out (want {N}), {} dead letters (want 0)",
        out.len(),
        dead.len()
    );

    registry.server.restart()?;
    registry.ready().await?;
    let again = (
        register(&registry.url, &subject, V1).await?,
        register(&registry.url, &subject, V2).await?,
    );
    ensure!(
        again == (v1, v2),
        "ids after the restart {again:?}, before ({v1}, {v2})"
    );
    gate.open();
    let (out, dead) = topics
        .wait_for(&bootstrap, &mut fleet, 2 * N as usize, 0)
        .await?;
    fleet.stop_all(Duration::from_secs(30)).await?;
    check("registry restarted", &topics, &input, &out, &dead)
}
