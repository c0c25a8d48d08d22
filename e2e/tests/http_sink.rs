//! The HTTP sink against a real HTTP server this test starts, stops and
//! restarts: every numbered record lands (at-least-once: duplicates are
//! allowed, so distinct ids are counted), and while the endpoint is down
//! the circuit breaker opens (seen in `/metrics` and the log) and the
//! pipeline stops pulling from its source instead of dropping records.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tributary_e2e::net::{free_addr, get};
use tributary_e2e::poll::Deadline;
use tributary_e2e::process::tributary_bin;

/// Every record body the endpoint accepted, across restarts.
type Received = Arc<Mutex<Vec<Value>>>;

/// A keep-alive HTTP/1.1 endpoint that accepts JSON arrays; stopping it
/// closes the listener and every open connection, as a crashed server would.
struct Endpoint {
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Endpoint {
    fn start(addr: SocketAddr, received: Received) -> Result<Self> {
        let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let acceptor = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (halt, received) = (halt.clone(), received.clone());
                        conns.push(std::thread::spawn(move || {
                            let _ = serve(conn, &halt, &received);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Ok(Self {
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// Closes the listener and every connection; returns when they are closed.
    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Answers requests on one connection until the peer closes it or the
/// endpoint stops.
fn serve(conn: TcpStream, halt: &AtomicBool, received: &Mutex<Vec<Value>>) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut head = Vec::new();
        // Wait for the next request line, checking for a stop.
        loop {
            if halt.load(Ordering::SeqCst) {
                return out.shutdown(std::net::Shutdown::Both);
            }
            match reader.read_until(b'\n', &mut head) {
                Ok(0) => return Ok(()),
                Ok(_) if head.ends_with(b"\r\n\r\n") || head == b"\r\n" => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let len: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(5)))?;
        reader.read_exact(&mut body)?;
        reader
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(50)))?;
        let status = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(items)) => {
                received
                    .lock()
                    .map_err(|_| std::io::Error::other("poisoned"))?
                    .extend(items);
                "200 OK"
            }
            _ => "400 Bad Request",
        };
        write!(out, "HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\n{{}}")?;
        out.flush()?;
    }
}

/// Distinct `eventId`s received.
fn distinct(received: &Received) -> HashSet<String> {
    received
        .lock()
        .map(|v| {
            v.iter()
                .filter_map(|r| r["eventId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `/metrics` of the run, as text.
fn scrape(addr: SocketAddr) -> Result<String> {
    Ok(get(addr, "/metrics")?)
}

/// The value of the metric line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

struct Run {
    child: Child,
    dir: tempfile::TempDir,
}

impl Run {
    fn start(yaml: &str, metrics: SocketAddr) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("pipeline.yaml"), yaml)?;
        let log = std::fs::File::create(dir.path().join("run.log"))?;
        let child = Command::new(tributary_bin())
            .args([
                "run",
                "-q",
                "-f",
                "pipeline.yaml",
                "--metrics-addr",
                &metrics.to_string(),
            ])
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", tributary_bin().display()))?;
        Ok(Self { child, dir })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run.log")).unwrap_or_default()
    }

    /// Fails when the run ended before it should have.
    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("tributary exited early ({status}):\n{}", self.log());
        }
        Ok(())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const N: u64 = 12_000;
const MAX_IN_FLIGHT: u64 = 1_000;
const BATCH: u64 = 50;

fn pipeline(url: &str) -> String {
    format!(
        r"apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: http-sink-outage}}
spec:
  source:
    generator: {{profile: clickstream, count: {N}, rate: 400, keys: 50, seed: 3}}
  sinks:
    - name: out
      http:
        url: {url}
        batchSize: {BATCH}
        timeout: 1s
        backoff: 50ms
        circuitBreaker: {{failures: 3, openFor: 2s}}
  backpressure: {{maxInFlight: {MAX_IN_FLIGHT}, onOverflow: block}}
  checkpoint: {{interval: 500ms}}
"
    )
}

#[test]
fn every_record_lands_through_a_20s_outage_and_the_breaker_holds_the_source() -> Result<()> {
    let addr = free_addr()?;
    let metrics_addr = free_addr()?;
    let received: Received = Arc::default();
    let endpoint = Endpoint::start(addr, received.clone())?;
    let mut run = Run::start(&pipeline(&format!("http://{addr}/ingest")), metrics_addr)?;

    let deadline = Deadline::new("the first records to land", Duration::from_secs(60));
    while distinct(&received).len() < 1_000 {
        run.alive()?;
        deadline.check(distinct(&received).len())?;
        std::thread::sleep(Duration::from_millis(50));
    }

    // The endpoint goes down for 20 s.
    endpoint.stop();
    let down_at = Instant::now();
    let landed_before = distinct(&received).len() as u64;
    let deadline = Deadline::new("the circuit breaker to open", Duration::from_secs(30));
    loop {
        run.alive()?;
        let text = scrape(metrics_addr).unwrap_or_default();
        if metric(&text, "tributary_http_circuit_state{name=\"out\"}") == Some(1.0) {
            break;
        }
        deadline.check(
            text.lines()
                .filter(|l| l.contains("circuit"))
                .collect::<Vec<_>>(),
        )?;
        std::thread::sleep(Duration::from_millis(100));
    }
    // Hold the outage for 20 s in all; the pipeline must stay up.
    while down_at.elapsed() < Duration::from_secs(20) {
        run.alive()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = scrape(metrics_addr)?;
    let read = metric(&text, "tributary_records_in_total").context("tributary_records_in_total")?;
    ensure!(
        metric(&text, "tributary_http_circuit_state{name=\"out\"}") != Some(0.0),
        "the breaker closed while the endpoint was down:\n{text}"
    );
    // Backpressure: the source stopped at the bounded queue, it did not
    // read on (the rate alone would have read ~8000 records in 20 s).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let read = read as u64;
    ensure!(
        read <= landed_before + MAX_IN_FLIGHT + 2 * BATCH + 100,
        "the source read {read} records while only {landed_before} had landed: it was not held back"
    );
    eprintln!(
        "outage: {landed_before} records had landed when the endpoint went down; the source had read {read} after 20 s down"
    );
    ensure!(
        distinct(&received).len() as u64 == landed_before,
        "records landed while the endpoint was down"
    );

    // Back up on the same address: everything drains and the run ends.
    let endpoint = Endpoint::start(addr, received.clone())?;
    let deadline = Deadline::new("the run to finish", Duration::from_secs(120));
    let status = loop {
        if let Some(status) = run.child.try_wait()? {
            break status;
        }
        deadline.check(distinct(&received).len())?;
        std::thread::sleep(Duration::from_millis(100));
    };
    endpoint.stop();
    let log = run.log();
    ensure!(status.success(), "tributary failed ({status}):\n{log}");
    let ids = distinct(&received);
    let missing: Vec<u64> = (0..N)
        .filter(|i| !ids.contains(&format!("e{i}")))
        .take(10)
        .collect();
    ensure!(
        missing.is_empty(),
        "{} of {N} records never landed, e.g. {missing:?}",
        N - ids.len() as u64
    );
    ensure!(
        ids.len() as u64 == N,
        "unexpected ids: {} distinct for {N}",
        ids.len()
    );
    let total = received.lock().map_or(0, |v| v.len());
    eprintln!(
        "landed: {} distinct of {N}, {total} with duplicates",
        ids.len()
    );
    ensure!(
        log.contains("circuit breaker open"),
        "no breaker opening in the log:\n{log}"
    );
    ensure!(
        log.contains("circuit breaker closed"),
        "no breaker closing in the log:\n{log}"
    );
    Ok(())
}

#[test]
fn a_healthy_endpoint_gets_every_record_once() -> Result<()> {
    let addr = free_addr()?;
    let received: Received = Arc::default();
    let endpoint = Endpoint::start(addr, received.clone())?;
    let yaml = format!(
        r"apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {{name: http-sink}}
spec:
  source:
    generator: {{profile: iot, count: 5000, keys: 20, seed: 1}}
  steps:
    - map: {{set: {{n: 'event.battery'}}}}
  sinks:
    - {{name: out, http: {{url: 'http://{addr}/in', batchSize: 200}}}}
"
    );
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("p.yaml"), yaml)?;
    let out = Command::new(tributary_bin())
        .args(["run", "-q", "-f", "p.yaml"])
        .current_dir(dir.path())
        .output()?;
    endpoint.stop();
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = received
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .len();
    ensure!(got == 5000, "{got} of 5000 records landed");
    Ok(())
}
