//! A `pod-runner` process as tests use it: started for one namespace,
//! watched through its `running.json`, stopped (SIGTERM, then SIGKILL) when
//! dropped, and its log attached to failures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Errors of the runner handle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runner could not be started, or its state not read.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `running.json` is not what the runner writes.
    #[error("{path}: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The runner exited.
    #[error("pod-runner exited with {status}; its log:\n{log}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log.
        log: String,
    },
}

/// One live processor process, as `running.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The pod's name.
    pub pod: String,
    /// The process id.
    pub pid: u32,
    /// The pod's work directory.
    pub workdir: PathBuf,
}

/// A running `pod-runner`.
#[derive(Debug)]
pub struct PodRunner {
    child: Mutex<Child>,
    work_dir: PathBuf,
    log: PathBuf,
}

impl PodRunner {
    /// Starts `runner` (the `pod-runner` binary) for `namespace` with the
    /// processor binary `bin`, work directories under `work_dir` and the
    /// cluster of `kubeconfig`; its log goes to `work_dir/runner.log`.
    ///
    /// # Errors
    ///
    /// When the log cannot be created or the runner not spawned.
    pub fn start(
        runner: &Path,
        kubeconfig: &Path,
        namespace: &str,
        bin: &Path,
        work_dir: &Path,
    ) -> Result<Self, Error> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Io { what, source }
        };
        std::fs::create_dir_all(work_dir).map_err(io("creating the work dir"))?;
        let log = work_dir.join("runner.log");
        let file = std::fs::File::create(&log).map_err(io("creating runner.log"))?;
        let child = Command::new(runner)
            .args(["--namespace", namespace, "--bin"])
            .arg(bin)
            .arg("--work-dir")
            .arg(work_dir)
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(io("starting pod-runner"))?;
        Ok(Self {
            child: Mutex::new(child),
            work_dir: work_dir.to_path_buf(),
            log,
        })
    }

    /// Fails with the runner's log once it has exited: a dead runner must
    /// not look like a slow one.
    ///
    /// # Errors
    ///
    /// [`Error::Exited`].
    pub fn check(&self) -> Result<(), Error> {
        let exited = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_wait()
            .ok()
            .flatten();
        match exited {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                status,
                log: self.log_text(),
            }),
        }
    }

    /// The runner's log so far.
    #[must_use]
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The live processes (none before the first is started).
    ///
    /// # Errors
    ///
    /// When `running.json` cannot be read or parsed.
    pub fn running(&self) -> Result<Vec<Running>, Error> {
        let path = self.work_dir.join("running.json");
        if !path.exists() {
            return Ok(Vec::new());
        }
        let bad = |reason: String| Error::State {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read(&path).map_err(|source| Error::Io {
            what: format!("reading {}", path.display()),
            source,
        })?;
        let entries: Vec<serde_json::Value> =
            serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        entries
            .iter()
            .map(|e| {
                let field = |k: &str| e[k].as_str().map(str::to_owned);
                Ok(Running {
                    pod: field("pod").ok_or_else(|| bad(format!("no pod in {e}")))?,
                    pid: e["pid"]
                        .as_u64()
                        .and_then(|p| u32::try_from(p).ok())
                        .ok_or_else(|| bad(format!("no pid in {e}")))?,
                    workdir: field("workdir")
                        .map(PathBuf::from)
                        .ok_or_else(|| bad(format!("no workdir in {e}")))?,
                })
            })
            .collect()
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        // SIGTERM lets it stop its processors; the deadline below bounds it.
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether `pid` is a live (not zombie) process.
#[must_use]
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}
