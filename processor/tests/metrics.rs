//! A running pipeline serves /metrics, /healthz and /readyz, and stops
//! cleanly on SIGTERM (what Kubernetes sends).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

fn counter(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn serves_metrics_while_running_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "source: {generator: {profile: iot, rate: 2000, keys: 5, seed: 3}}\nsinks: [{name: out, blackhole: {}}]\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["run", "-q", "--metrics-addr", "127.0.0.1:0", "-f"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The bound address is logged (JSON lines on a non-terminal stderr).
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            v["fields"]["bound"].as_str().map(str::to_owned)
        })
        .expect("the processor logs the metrics address");
    std::thread::spawn(move || lines.for_each(drop));

    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let seen = get(&addr, "/metrics")
            .and_then(|(_, body)| counter(&body, "tributary_records_in_total"));
        match seen {
            Some(n) if n > 0 => break n,
            _ if Instant::now() > deadline => panic!("no records counted at {addr}/metrics"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(records > 0);
    assert_eq!(get(&addr, "/healthz").unwrap().0, "HTTP/1.1 200 OK");
    assert_eq!(get(&addr, "/readyz").unwrap().0, "HTTP/1.1 200 OK");
    assert!(get(&addr, "/nope").unwrap().0.contains("404"));

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the processor did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
