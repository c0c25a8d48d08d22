//! One `tributary-operator` process, run with a release's ServiceAccount
//! kubeconfig; stopped (SIGTERM, then SIGKILL) when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::chart::Release;
use super::{Error, Result, workspace_root};

/// The operator binary: `TRIBUTARY_OPERATOR_BIN`, else the workspace's debug
/// build.
///
/// # Errors
///
/// When it does not exist, with the command that builds it.
pub fn operator_bin() -> Result<PathBuf> {
    let bin = std::env::var_os("TRIBUTARY_OPERATOR_BIN").map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| workspace_root().join("target"), PathBuf::from)
                .join("debug/tributary-operator")
        },
        PathBuf::from,
    );
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(Error::Unexpected(format!(
            "the operator binary {} is missing: build it with `cargo build -p tributary-operator \
             --bin tributary-operator` (e2e/run.sh does) or set TRIBUTARY_OPERATOR_BIN",
            bin.display()
        )))
    }
}

/// A free loopback address for the operator's metrics server.
///
/// # Errors
///
/// When no port can be bound.
pub fn free_addr() -> Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(Error::io("finding a free port"))
}

/// How to run one operator.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--namespace`: the namespace whose pipelines it reconciles.
    pub namespace: String,
    /// `--identity` in the Lease.
    pub identity: String,
    /// `--lease-duration`.
    pub lease_duration: Duration,
    /// Extra arguments.
    pub extra_args: Vec<String>,
}

impl Options {
    /// Watches `namespace` as `identity`, with a 15 s lease (the default).
    #[must_use]
    pub fn new(namespace: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            extra_args: Vec::new(),
        }
    }
}

/// The test bed's AWS settings (moto's endpoint, region, dummy
/// credentials), for the autoscaler's CloudWatch signal.
fn aws_env() -> Vec<(String, String)> {
    let Ok(bed) = crate::env::TestBed::load() else {
        return Vec::new();
    };
    [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    .into_iter()
    .filter_map(|k| Some((k.to_owned(), bed.var(k).ok()?.to_owned())))
    .collect()
}

/// A running operator.
#[derive(Debug)]
pub struct Operator {
    child: Mutex<Child>,
    /// Where its `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics: SocketAddr,
    /// Its identity in the Lease.
    pub identity: String,
    /// Its stderr (JSON logs).
    pub log: PathBuf,
}

impl Operator {
    /// Starts the operator for `release`: its ServiceAccount's kubeconfig,
    /// `--lease-namespace` the release namespace, `--lease-name` the
    /// chart's, a free metrics port.
    ///
    /// # Errors
    ///
    /// When the binary is missing or cannot be spawned.
    pub fn start(release: &Release, opts: &Options) -> Result<Self> {
        let bin = operator_bin()?;
        let metrics = free_addr()?;
        let log = release.dir.join(format!("operator-{}.log", opts.identity));
        let file = std::fs::File::create(&log)
            .map_err(Error::io(format!("creating {}", log.display())))?;
        let child = Command::new(&bin)
            .arg("--namespace")
            .arg(&opts.namespace)
            .arg("--lease-namespace")
            .arg(&release.namespace)
            .arg("--lease-name")
            .arg(&release.lease_name)
            .arg("--lease-duration")
            .arg(format!("{}ms", opts.lease_duration.as_millis()))
            .arg("--identity")
            .arg(&opts.identity)
            .arg("--metrics-addr")
            .arg(metrics.to_string())
            .args(&opts.extra_args)
            .env("KUBECONFIG", &release.kubeconfig)
            .envs(aws_env())
            .env(
                "RUST_LOG",
                std::env::var("OPERATOR_RUST_LOG")
                    .unwrap_or_else(|_| "info,tributary_operator=debug".to_owned()),
            )
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .env_remove("TRIBUTARY_WATCH_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(Error::io(format!("starting {}", bin.display())))?;
        Ok(Self {
            child: Mutex::new(child),
            metrics,
            identity: opts.identity.clone(),
            log,
        })
    }

    /// `GET path` on the metrics server: (status code, body).
    ///
    /// # Errors
    ///
    /// When the server cannot be reached (not up yet, or gone).
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.metrics, path)
    }

    /// The value of the sample `series` (a metric name with its labels as
    /// exposed, e.g. `tributary_operator_leader` or
    /// `tributary_operator_reconciles_total{result="ok"}`), if exposed.
    ///
    /// # Errors
    ///
    /// When `/metrics` cannot be fetched.
    pub fn metric(&self, series: &str) -> Result<Option<f64>> {
        Ok(sample(&scrape(self.metrics)?, series))
    }

    /// The sum of every sample of metric `name` (all label sets), 0 when absent.
    ///
    /// # Errors
    ///
    /// When `/metrics` cannot be fetched.
    pub fn metric_sum(&self, name: &str) -> Result<f64> {
        let (_, body) = self.get("/metrics")?;
        Ok(sample_sum(&body, name))
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Some(status)` once the process has exited.
    #[must_use]
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    /// Fails, with the log, once the process has exited: a dead operator
    /// must not look like a slow one.
    ///
    /// # Errors
    ///
    /// [`Error::Unexpected`] when it has exited.
    pub fn check_alive(&self) -> Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(Error::Unexpected(format!(
                "operator {} exited with {status}; its log:\n{}",
                self.identity,
                self.log_tail(40)
            ))),
        }
    }

    /// SIGKILL: the process dies without releasing its Lease.
    pub fn kill9(&self) {
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, then waits up to `grace` for a clean exit (SIGKILL after).
    /// Returns the exit status when it exited on its own.
    pub fn terminate(&self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        if let Ok(pid) = i32::try_from(self.child().id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        None
    }

    /// The last `n` lines of its log, for failure messages.
    #[must_use]
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(10));
    }
}

/// The value of the first sample line of `series` in Prometheus text.
#[must_use]
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(series)?;
        // `series` must be the whole name (and labels), not a prefix.
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The sum of every sample of metric `name` (all label sets) in
/// Prometheus text, 0 when absent.
#[must_use]
pub fn sample_sum(body: &str, name: &str) -> f64 {
    sample_lines(body, name)
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sample lines of metric `name` (any label set) in Prometheus text.
pub fn sample_lines<'a>(body: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    body.lines().filter(move |l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
    })
}

/// `/metrics` of the server on `addr`, as Prometheus text.
///
/// # Errors
///
/// When it cannot be fetched or does not answer 200.
pub fn scrape(addr: SocketAddr) -> Result<String> {
    let (code, body) = http_get(addr, "/metrics")?;
    if code != 200 {
        return Err(Error::Unexpected(format!("/metrics answered {code}")));
    }
    Ok(body)
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
///
/// # Errors
///
/// When the connection fails or the answer is not HTTP.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let what = format!("GET http://{addr}{path}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(Error::io(what.clone()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(Error::io(what.clone()))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .map_err(Error::io(what.clone()))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(Error::io(what.clone()))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::Unexpected(format!("{what}: not an HTTP answer: {head}")))?;
    Ok((code, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_match_whole_series_names_only() {
        let body = "# HELP x\ntributary_operator_leader 1\ntributary_operator_leader_changes 7\n\
                    tributary_operator_reconciles_total{result=\"ok\"} 3\n";
        assert_eq!(sample(body, "tributary_operator_leader"), Some(1.0));
        assert_eq!(
            sample(body, "tributary_operator_reconciles_total{result=\"ok\"}"),
            Some(3.0)
        );
        assert_eq!(sample(body, "tributary_operator_pipelines"), None);
    }
}
