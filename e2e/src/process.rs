//! Local `tributary run -f` processes: a fleet of replicas of one pipeline
//! that a test starts, kills with SIGKILL, restarts, scales and stops, as
//! Kubernetes would do to the processor pods.
//!
//! Each replica slot has a stable name, passed as `POD_NAME` (a restarted
//! container keeps its pod's name, and so its transactional id: the new
//! process fences the killed one's open transaction at once). Logs of every
//! start go to `<dir>/<slot>.<start>.log`; a fleet kills what is still
//! running when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::poll::Deadline;

/// Errors managing processor processes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `tributary` binary is not built.
    #[error(
        "the processor binary {0} is missing: build it with `cargo build -p \
         tributary-processor --bin tributary` (e2e/run.sh does) or set TRIBUTARY_BIN"
    )]
    NoBinary(PathBuf),
    /// Writing the pipeline or a log file, or spawning, failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A signal could not be sent.
    #[error("signalling {slot}: {source}")]
    Signal {
        /// The replica.
        slot: String,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// Replicas exited on their own (crashed, or refused the pipeline).
    #[error("replicas exited on their own: {crashes:?}\n{logs}")]
    Crashed {
        /// Slot names and exit statuses.
        crashes: Vec<(String, ExitStatus)>,
        /// The tails of the fleet's logs.
        logs: String,
    },
    /// A replica did not exit in time after SIGTERM (it was then killed).
    #[error("{source}\n{logs}")]
    Stuck {
        /// The deadline that passed.
        #[source]
        source: crate::poll::Timeout,
        /// The tails of the fleet's logs.
        logs: String,
    },
    /// Replicas exited with a failure after SIGTERM.
    #[error("replicas failed to stop cleanly: {failed:?}\n{logs}")]
    Unclean {
        /// Slot names and exit statuses.
        failed: Vec<(String, ExitStatus)>,
        /// The tails of the fleet's logs.
        logs: String,
    },
}

/// Result of fleet operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `tributary` binary: `TRIBUTARY_BIN`, else the workspace's debug build.
#[must_use]
pub fn tributary_bin() -> PathBuf {
    std::env::var_os("TRIBUTARY_BIN").map_or_else(
        || {
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
                PathBuf::from,
            );
            target.join("debug/tributary")
        },
        PathBuf::from,
    )
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// One replica slot.
#[derive(Debug)]
struct Slot {
    name: String,
    child: Option<Child>,
    starts: u32,
    /// Environment of this slot only, on top of the fleet's.
    env: Vec<(String, String)>,
}

/// Replicas of one pipeline file.
#[derive(Debug)]
pub struct Fleet {
    bin: PathBuf,
    dir: PathBuf,
    keep: bool,
    file: PathBuf,
    env: Vec<(String, String)>,
    slots: Vec<Slot>,
    /// SIGKILLs sent so far.
    pub kills: u32,
    /// Replicas that exited on their own (slot, status).
    pub crashes: Vec<(String, ExitStatus)>,
}

impl Fleet {
    /// Writes `yaml` as the pipeline file of a new, empty fleet run by
    /// `bin`, whose replicas get `env` on top of this process's environment.
    ///
    /// # Errors
    ///
    /// [`Error::NoBinary`] when `bin` does not exist; [`Error::Io`] when the
    /// pipeline cannot be written.
    pub fn new(bin: &Path, yaml: &str, env: &[(&str, &str)]) -> Result<Self> {
        if !bin.is_file() {
            return Err(Error::NoBinary(bin.to_owned()));
        }
        let dir = tempfile::Builder::new()
            .prefix("tributary-fleet-")
            .tempdir()
            .map_err(io("creating the fleet directory"))?
            .keep();
        let file = dir.join("pipeline.yaml");
        std::fs::write(&file, yaml).map_err(io(format!("writing {}", file.display())))?;
        Ok(Self {
            bin: bin.to_owned(),
            dir,
            // Set TRIBUTARY_E2E_KEEP_LOGS=1 to read every replica's log
            // after a run.
            keep: std::env::var_os("TRIBUTARY_E2E_KEEP_LOGS").is_some(),
            file,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            slots: Vec::new(),
            kills: 0,
            crashes: Vec::new(),
        })
    }

    /// The folder holding the pipeline file and the logs.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps the folder after the fleet is dropped (to read the logs of a
    /// failed test) and returns its path.
    pub fn keep_logs(&mut self) -> &Path {
        self.keep = true;
        &self.dir
    }

    /// Number of slots (running or not).
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the fleet has no slot.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a slot and starts its replica; returns its index.
    ///
    /// # Errors
    ///
    /// When the process cannot be spawned.
    pub fn add(&mut self) -> Result<usize> {
        self.add_with_env(&[])
    }

    /// Adds a slot whose replica also gets `env` (its own metrics address,
    /// say), on every start; returns its index.
    ///
    /// # Errors
    ///
    /// When the process cannot be spawned.
    pub fn add_with_env(&mut self, env: &[(&str, &str)]) -> Result<usize> {
        let i = self.slots.len();
        self.slots.push(Slot {
            name: format!("replica-{i}"),
            child: None,
            starts: 0,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        });
        self.start(i)?;
        Ok(i)
    }

    /// (Re)starts the replica of slot `i` (which must not be running).
    ///
    /// # Errors
    ///
    /// When the process cannot be spawned.
    pub fn start(&mut self, i: usize) -> Result<()> {
        let slot = &mut self.slots[i];
        slot.starts += 1;
        let log = self.dir.join(format!("{}.{}.log", slot.name, slot.starts));
        let out = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out.try_clone().map_err(io("cloning the log handle"))?;
        let child = Command::new(&self.bin)
            .args(["run", "-f"])
            .arg(&self.file)
            .env("POD_NAME", &slot.name)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(slot.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("spawning {}", self.bin.display())))?;
        slot.child = Some(child);
        Ok(())
    }

    /// The process id of slot `i`'s replica, while it runs.
    #[must_use]
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.slots.get(i)?.child.as_ref().map(Child::id)
    }

    /// Indices of the slots whose replica is running (noting crashes).
    pub fn running(&mut self) -> Vec<usize> {
        self.reap();
        (0..self.slots.len())
            .filter(|i| self.slots[*i].child.is_some())
            .collect()
    }

    /// Fails when any replica has exited on its own so far.
    ///
    /// # Errors
    ///
    /// [`Error::Crashed`] with the log tails.
    pub fn check_alive(&mut self) -> Result<()> {
        self.reap();
        if self.crashes.is_empty() {
            Ok(())
        } else {
            Err(Error::Crashed {
                crashes: self.crashes.clone(),
                logs: self.log_tails(20),
            })
        }
    }

    /// Records replicas that exited on their own.
    fn reap(&mut self) {
        for slot in &mut self.slots {
            if let Some(child) = &mut slot.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.crashes.push((slot.name.clone(), status));
                slot.child = None;
            }
        }
    }

    /// SIGKILLs the replica of slot `i` (`kill -9`: no cleanup at all).
    ///
    /// # Errors
    ///
    /// When the signal cannot be sent.
    pub fn kill9(&mut self, i: usize) -> Result<()> {
        self.reap();
        let slot = &mut self.slots[i];
        if let Some(mut child) = slot.child.take() {
            signal(&slot.name, &child, Signal::SIGKILL)?;
            let _ = child.wait();
            self.kills += 1;
        }
        Ok(())
    }

    /// Freezes the replica of slot `i` with SIGSTOP: it keeps its
    /// connections and open transaction but stops heartbeating, as a
    /// replica behind a long GC pause or a partitioned node does (a zombie
    /// once the group has moved on).
    ///
    /// # Errors
    ///
    /// When the signal cannot be sent.
    pub fn pause(&mut self, i: usize) -> Result<()> {
        self.signal_slot(i, Signal::SIGSTOP)
    }

    /// Lets a [`pause`](Self::pause)d replica go on (SIGCONT).
    ///
    /// # Errors
    ///
    /// When the signal cannot be sent.
    pub fn resume(&mut self, i: usize) -> Result<()> {
        self.signal_slot(i, Signal::SIGCONT)
    }

    /// Sends `sig` to slot `i`'s replica, if it runs.
    fn signal_slot(&self, i: usize, sig: Signal) -> Result<()> {
        let slot = &self.slots[i];
        match &slot.child {
            Some(child) => signal(&slot.name, child, sig),
            None => Ok(()),
        }
    }

    /// SIGTERMs the replica of slot `i` and waits up to `timeout` for it to
    /// exit; returns its exit status (`None` when it was not running).
    ///
    /// # Errors
    ///
    /// When the signal cannot be sent or the replica does not exit in time
    /// (it is then killed).
    pub async fn stop(&mut self, i: usize, timeout: Duration) -> Result<Option<ExitStatus>> {
        self.terminate(i)?;
        self.wait_exit(i, timeout).await
    }

    /// Sends SIGTERM to slot `i`'s replica, if it runs.
    fn terminate(&mut self, i: usize) -> Result<()> {
        self.reap();
        self.signal_slot(i, Signal::SIGTERM)
    }

    /// Waits up to `timeout` for slot `i`'s replica to exit; kills it then.
    async fn wait_exit(&mut self, i: usize, timeout: Duration) -> Result<Option<ExitStatus>> {
        let name = self.slots[i].name.clone();
        let deadline = Deadline::new(&format!("{name} to exit after SIGTERM"), timeout);
        loop {
            let Some(child) = self.slots[i].child.as_mut() else {
                return Ok(None);
            };
            if let Ok(Some(status)) = child.try_wait() {
                self.slots[i].child = None;
                return Ok(Some(status));
            }
            if let Err(source) = deadline.check("still running") {
                let _ = child.kill();
                let _ = child.wait();
                self.slots[i].child = None;
                return Err(Error::Stuck {
                    source,
                    logs: self.log_tails(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every running replica (SIGTERM to all at once, as a scale to
    /// zero does) and returns the slots whose exit status was not success.
    ///
    /// # Errors
    ///
    /// When a replica does not exit within `timeout`.
    pub async fn stop_all(&mut self, timeout: Duration) -> Result<Vec<(String, ExitStatus)>> {
        let running = self.running();
        self.stop_many(&running, timeout).await
    }

    /// Ends a run: no replica may have exited on its own, and every one
    /// must exit cleanly on SIGTERM within `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Crashed`], [`Error::Stuck`] or [`Error::Unclean`].
    pub async fn finish(&mut self, timeout: Duration) -> Result<()> {
        self.check_alive()?;
        let failed = self.stop_all(timeout).await?;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Unclean {
                failed,
                logs: self.log_tails(20),
            })
        }
    }

    /// Stops the replicas of `slots` together (SIGTERM to each, then waits
    /// for all) and returns those whose exit status was not success.
    ///
    /// # Errors
    ///
    /// When a replica does not exit within `timeout`.
    pub async fn stop_many(
        &mut self,
        slots: &[usize],
        timeout: Duration,
    ) -> Result<Vec<(String, ExitStatus)>> {
        let running: Vec<usize> = slots.to_vec();
        for i in &running {
            self.terminate(*i)?;
        }
        let mut failed = Vec::new();
        for i in running {
            if let Some(status) = self.wait_exit(i, timeout).await?
                && !status.success()
            {
                failed.push((self.slots[i].name.clone(), status));
            }
        }
        Ok(failed)
    }

    /// The last `lines` lines of every log, for a failure message.
    #[must_use]
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let mut logs: Vec<_> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        for p in logs {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", p.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn kill_all(&mut self) {
        for slot in &mut self.slots {
            if let Some(mut child) = slot.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.kill_all();
        if self.keep {
            eprintln!("replica logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn signal(slot: &str, child: &Child, sig: Signal) -> Result<()> {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    kill(pid, sig).map_err(|source| Error::Signal {
        slot: slot.to_owned(),
        source,
    })
}

/// Kills a random running replica with SIGKILL every `every` and restarts
/// it at once (as the kubelet restarts a crashed container), until
/// dropped. Never returns.
pub async fn chaos(fleet: &mut Fleet, every: Duration) -> Result<()> {
    let mut rng = Rng::seeded();
    eprintln!("chaos: seed {}", rng.0);
    let mut next = Instant::now() + every;
    loop {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let running = fleet.running();
        if running.is_empty() {
            continue;
        }
        let victim = running[rng.below(running.len())];
        fleet.kill9(victim)?;
        fleet.start(victim)?;
        eprintln!("chaos: kill -9 replica-{victim} (kill #{})", fleet.kills);
    }
}

/// A small xorshift generator (which replica to kill), seeded by the clock.
pub struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(7);
        Self(u64::from(nanos) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap_or_default()
    }
}
