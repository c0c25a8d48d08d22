//! The bundled Python UDF (`deploy/examples/udf-python/`) behind the `http`
//! step: a virtualenv with its pinned requirements (cached outside the
//! checkout, per hash of requirements.txt), the service on a free port,
//! and `tributary run` of the bundled local pipeline over a file of
//! reviews. Every scored review carries the right sentiment and features;
//! with the service down, every review lands in the dead-letter file with
//! its provenance.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tributary_e2e::net::{free_addr, get};
use tributary_e2e::operator::workspace_root;
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::tributary_bin;

fn example_dir() -> PathBuf {
    workspace_root().join("deploy/examples/udf-python")
}

/// Only one test at a time builds the virtualenv.
static VENV: Mutex<()> = Mutex::new(());

/// `~/.cache/tributary-testbed/udf-python-<hash of requirements.txt>/`,
/// created with pip from PyPI on first use. A half-built one is never
/// kept: it is built beside and renamed into place.
fn venv() -> Result<PathBuf> {
    let _one = VENV.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let reqs = example_dir().join("requirements.txt");
    let text = std::fs::read(&reqs).with_context(|| reqs.display().to_string())?;
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let cache = Path::new(&home).join(".cache/tributary-testbed");
    let dir = cache.join(format!("udf-python-{:016x}", h.finish()));
    if dir.join("bin/python").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&cache)?;
    let building = cache.join(format!("udf-python-building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let run = |cmd: &mut Command| -> Result<()> {
        let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
        ensure!(
            out.status.success(),
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&building))?;
    run(Command::new(building.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&reqs))?;
    if std::fs::rename(&building, &dir).is_err() {
        // Another process got there first.
        let _ = std::fs::remove_dir_all(&building);
    }
    // The venv's scripts name their interpreter by path; the rename keeps
    // `bin/python` itself working, which is all the test runs.
    Ok(dir)
}

/// The UDF service as a child process; killed when dropped.
struct Service(Child);

impl Service {
    fn start(addr: SocketAddr) -> Result<Self> {
        let python = venv()?.join("bin/python");
        let child = Command::new(&python)
            .arg(example_dir().join("app.py"))
            .env("PORT", addr.port().to_string())
            .env("HOST", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawn {}", python.display()))?;
        let mut svc = Self(child);
        let deadline = Deadline::new("the UDF to answer /healthz", Duration::from_secs(30));
        loop {
            if let Some(status) = svc.0.try_wait()? {
                bail!("the UDF exited at start: {status}");
            }
            match healthz(addr) {
                Ok(true) => return Ok(svc),
                other => deadline.check(format!("{other:?}"))?,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn healthz(addr: SocketAddr) -> Result<bool> {
    let text = get(addr, "/healthz")?;
    Ok(text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"))
}

/// Reviews with the sentiment they must get; every 10th has no text.
fn reviews(n: usize) -> Vec<Value> {
    let positive = [
        "I love this kettle, it is wonderful and works great!",
        "Excellent quality, fast delivery. Very happy!!",
        "Absolutely fantastic headphones, the best I have owned.",
    ];
    let negative = [
        "Terrible product, it broke after one day. Awful!",
        "Worst purchase ever. I hate it and support was useless?",
        "Horrible smell, bad fit, very disappointed.",
    ];
    let neutral = ["The box contains one lamp.", "It arrived on Tuesday."];
    (0..n)
        .map(|i| {
            let (text, expect) = match i % 10 {
                9 => (None, "drop"),
                k if k % 3 == 0 => (Some(positive[i % 3]), "positive"),
                k if k % 3 == 1 => (Some(negative[i % 3]), "negative"),
                _ => (Some(neutral[i % 2]), "neutral"),
            };
            let mut r = json!({"id": i, "expect": expect});
            if let Some(t) = text {
                r["text"] = json!(t);
            }
            r
        })
        .collect()
}

/// The bundled local pipeline, pointed at `url`, reading `input` and
/// writing `out.jsonl` (dead letters to `dead.jsonl`).
fn pipeline(dir: &Path, url: &str, records: &[Value]) -> Result<()> {
    let text = std::fs::read_to_string(example_dir().join("reviews-local.yaml"))?;
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    let spec = &mut doc["spec"];
    spec["source"]["file"]["path"] = "reviews.jsonl".into();
    spec["steps"][0]["http"]["url"] = url.into();
    spec["sinks"] = serde_yaml_ng::from_str("[{name: out, file: {path: out.jsonl}}]")?;
    spec["deadLetter"] = serde_yaml_ng::from_str("{file: {path: dead.jsonl}}")?;
    std::fs::write(dir.join("pipeline.yaml"), serde_yaml_ng::to_string(&doc)?)?;
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("reviews.jsonl"), lines.join("\n") + "\n")?;
    Ok(())
}

fn run(dir: &Path) -> Result<(Vec<Value>, Vec<Value>)> {
    let out = Command::new(tributary_bin())
        .args(["run", "-q", "-f", "pipeline.yaml"])
        .current_dir(dir)
        .output()
        .with_context(|| format!("spawn {}", tributary_bin().display()))?;
    ensure!(
        out.status.success(),
        "tributary run failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("{name}: {l}")))
            .collect()
    };
    Ok((read("out.jsonl")?, read("dead.jsonl")?))
}

#[test]
fn the_python_udf_scores_every_review_in_order() -> Result<()> {
    let addr = free_addr()?;
    let _svc = Service::start(addr)?;
    let dir = tempfile::tempdir()?;
    let input = reviews(500);
    pipeline(dir.path(), &format!("http://{addr}/score"), &input)?;
    let (out, dead) = run(dir.path())?;
    ensure!(dead.is_empty(), "dead letters: {dead:#?}");
    let kept: Vec<&Value> = input.iter().filter(|r| r["expect"] != "drop").collect();
    ensure!(
        out.len() == kept.len(),
        "{} scored for {} reviews with text",
        out.len(),
        kept.len()
    );
    for (got, sent) in out.iter().zip(&kept) {
        ensure!(
            got["id"] == sent["id"],
            "order changed: {} where {} was sent",
            got["id"],
            sent["id"]
        );
        let text = sent["text"].as_str().context("text")?;
        let compound = got["sentiment"]["compound"]
            .as_f64()
            .with_context(|| format!("no compound in {got}"))?;
        let ok = match sent["expect"].as_str() {
            Some("positive") => compound >= 0.05,
            Some("negative") => compound <= -0.05,
            _ => compound.abs() < 0.05,
        };
        ensure!(
            ok,
            "{text:?} scored {compound}, expected {}",
            sent["expect"]
        );
        ensure!(
            got["sentiment"]["label"] == sent["expect"],
            "label of {got}"
        );
        ensure!(
            got["label"] == sent["expect"],
            "the map after the http step saw {got}"
        );
        let f = &got["features"];
        ensure!(
            f["length"] == json!(text.chars().count()),
            "length in {got}"
        );
        ensure!(
            f["words"] == json!(text.split_whitespace().count()),
            "words in {got}"
        );
        ensure!(
            f["exclamations"] == json!(text.matches('!').count()),
            "exclamations in {got}"
        );
        ensure!(
            f["questions"] == json!(text.matches('?').count()),
            "questions in {got}"
        );
    }
    Ok(())
}

#[test]
fn with_the_service_down_every_review_is_a_dead_letter_with_provenance() -> Result<()> {
    // Started and stopped: nothing listens on its port any more.
    let addr = free_addr()?;
    drop(Service::start(addr)?);
    let dir = tempfile::tempdir()?;
    let input = reviews(120);
    pipeline(dir.path(), &format!("http://{addr}/score"), &input)?;
    let (out, dead) = run(dir.path())?;
    ensure!(out.is_empty(), "scored without a service: {out:?}");
    ensure!(
        dead.len() == input.len(),
        "{} dead letters for {} reviews",
        dead.len(),
        input.len()
    );
    let mut offsets = Vec::new();
    for (d, sent) in dead.iter().zip(&input) {
        ensure!(d["record"] == *sent, "dead letter {d} for {sent}");
        ensure!(d["step"] == "sentiment", "step of {d}");
        let err = d["error"].as_str().unwrap_or_default();
        ensure!(
            err.contains("POST http://") && err.contains("after 4 attempt(s)"),
            "error of {d}"
        );
        ensure!(
            d["source"]["name"]
                .as_str()
                .is_some_and(|s| s.ends_with("reviews.jsonl")),
            "source of {d}"
        );
        offsets.push(d["source"]["offset"].as_i64().context("offset")?);
    }
    ensure!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "offsets are not the lines in order: {offsets:?}"
    );
    Ok(())
}
