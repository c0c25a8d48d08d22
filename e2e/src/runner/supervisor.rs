//! Starting, restarting and stopping one local process per pod.
//!
//! Each process runs in its own process group with a clean environment (a
//! minimal base plus the pod's env), its working directory and logs under
//! `<work root>/<namespace>.<pod>/`. The runner writes
//! `<work root>/running.json` after every change so tests can see which
//! pods have a live process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::PodKey;
use super::plan::{Plan, Restart};

/// Errors managing processes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Preparing the work directory or spawning failed.
    #[error("cannot start {pod}: {source}")]
    Start {
        /// The pod.
        pod: PodKey,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the state file failed.
    #[error("cannot write {path}: {source}")]
    State {
        /// The state file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Result of supervisor operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One pod's process.
#[derive(Debug)]
struct Proc {
    child: Child,
    pid: u32,
    plan: Plan,
    workdir: PathBuf,
    restarts: u32,
    /// Set while the process has exited and waits for its restart backoff.
    exited: Option<(ExitStatus, Instant)>,
}

/// A live process as written to `running.json`.
#[derive(Debug, serde::Serialize)]
struct StateEntry<'a> {
    namespace: &'a str,
    pod: &'a str,
    uid: &'a str,
    pid: u32,
    restarts: u32,
    workdir: &'a Path,
}

/// Keeps one process per wanted pod.
#[derive(Debug)]
pub struct Supervisor {
    bin: PathBuf,
    work_root: PathBuf,
    extra_env: BTreeMap<String, String>,
    procs: BTreeMap<PodKey, Proc>,
}

/// Environment passed through from the runner to every process.
const PASS_THROUGH: &[&str] = &["PATH", "RUST_LOG", "RUST_BACKTRACE", "TZ", "LANG"];

/// Set on every process over the pod's own env (the runner's `--env` still
/// wins). Pods of a Deployment all listen on the same metrics port
/// (`0.0.0.0:9090`), which is fine on separate pod IPs but collides when
/// several run on this one host: each process takes a free loopback port.
pub const OVERRIDE_ENV: &[(&str, &str)] = &[("TRIBUTARY_METRICS_ADDR", "127.0.0.1:0")];

impl Supervisor {
    /// A supervisor running `bin`, with work directories under `work_root`
    /// and `extra_env` added to every process (after the pod's env).
    #[must_use]
    pub fn new(bin: PathBuf, work_root: PathBuf, extra_env: BTreeMap<String, String>) -> Self {
        Self {
            bin,
            work_root,
            extra_env,
            procs: BTreeMap::new(),
        }
    }

    /// The pods that currently have a process (running or awaiting restart).
    pub fn pods(&self) -> impl Iterator<Item = &PodKey> {
        self.procs.keys()
    }

    /// Whether `pod` has a process.
    #[must_use]
    pub fn has(&self, pod: &PodKey) -> bool {
        self.procs.contains_key(pod)
    }

    /// The work directory of `pod`.
    #[must_use]
    pub fn workdir(&self, pod: &PodKey) -> PathBuf {
        self.work_root.join(pod.dir_name())
    }

    /// Writes the plan's files and starts the process for `pod`.
    ///
    /// # Errors
    ///
    /// [`Error::Start`] when the files cannot be written or the binary
    /// cannot be spawned.
    pub fn start(&mut self, pod: &PodKey, plan: Plan) -> Result<()> {
        let workdir = self.workdir(pod);
        let start_err = |source| Error::Start {
            pod: pod.clone(),
            source,
        };
        prepare(&workdir, &plan).map_err(start_err)?;
        let child = self.spawn(&workdir, &plan).map_err(start_err)?;
        let pid = child.id().unwrap_or_default();
        tracing::info!(%pod, pid, args = ?plan.args, "started processor");
        self.procs.insert(
            pod.clone(),
            Proc {
                child,
                pid,
                plan,
                workdir,
                restarts: 0,
                exited: None,
            },
        );
        self.write_state()
    }

    fn spawn(&self, workdir: &Path, plan: &Plan) -> std::io::Result<Child> {
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(workdir.join(name))
        };
        let mut cmd = Command::new(&self.bin);
        cmd.args(&plan.args)
            .current_dir(workdir)
            .env_clear()
            .envs(
                PASS_THROUGH
                    .iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
            )
            .env("HOME", workdir)
            .envs(plan.env.get("POD_NAME").map(|n| ("HOSTNAME", n)))
            .envs(&plan.env)
            .envs(OVERRIDE_ENV.iter().copied())
            .envs(&self.extra_env)
            .stdin(Stdio::null())
            .stdout(log("stdout.log")?)
            .stderr(log("stderr.log")?)
            .process_group(0)
            .kill_on_drop(true);
        cmd.spawn()
    }

    /// Notices exited processes and restarts them as the pod's restart
    /// policy says, with an exponential backoff (1 s doubling to 30 s).
    ///
    /// # Errors
    ///
    /// When a restart cannot be spawned or the state cannot be written.
    pub fn reap(&mut self) -> Result<()> {
        let mut changed = false;
        let keys: Vec<PodKey> = self.procs.keys().cloned().collect();
        for key in keys {
            let Some(p) = self.procs.get_mut(&key) else {
                continue;
            };
            if p.exited.is_none()
                && let Ok(Some(status)) = p.child.try_wait()
            {
                tracing::warn!(pod = %key, pid = p.pid, %status, "processor exited");
                p.exited = Some((status, Instant::now()));
            }
            let Some((status, at)) = p.exited else {
                continue;
            };
            let again = match p.plan.restart {
                Restart::Always => true,
                Restart::OnFailure => !status.success(),
                Restart::Never => false,
            };
            let backoff = Duration::from_secs(1 << p.restarts.min(5)).min(Duration::from_secs(30));
            if again && at.elapsed() >= backoff {
                let child = self.spawn_existing(&key).map_err(|source| Error::Start {
                    pod: key.clone(),
                    source,
                })?;
                let p = self.procs.get_mut(&key).expect("present");
                p.pid = child.id().unwrap_or_default();
                p.child = child;
                p.restarts += 1;
                p.exited = None;
                tracing::info!(pod = %key, pid = p.pid, restarts = p.restarts, "restarted processor");
                changed = true;
            }
        }
        if changed {
            self.write_state()?;
        }
        Ok(())
    }

    fn spawn_existing(&self, key: &PodKey) -> std::io::Result<Child> {
        let p = &self.procs[key];
        self.spawn(&p.workdir, &p.plan)
    }

    /// Stops the processes of `pods`: SIGTERM to each process group, then
    /// SIGKILL to those still alive after their grace period.
    ///
    /// # Errors
    ///
    /// When the state file cannot be written.
    pub async fn stop(&mut self, pods: &[PodKey]) -> Result<()> {
        let mut stopping = Vec::new();
        for key in pods {
            if let Some(p) = self.procs.remove(key) {
                if p.exited.is_none() {
                    signal(p.pid, Signal::SIGTERM);
                }
                tracing::info!(pod = %key, pid = p.pid, "stopping processor");
                stopping.push((key.clone(), p));
            }
        }
        let waits = stopping.into_iter().map(|(key, mut p)| async move {
            let grace = p.plan.grace;
            match tokio::time::timeout(grace, p.child.wait()).await {
                Ok(status) => tracing::info!(pod = %key, ?status, "processor stopped"),
                Err(_) => {
                    tracing::warn!(pod = %key, "processor ignored SIGTERM; killing");
                    signal(p.pid, Signal::SIGKILL);
                    let _ = p.child.wait().await;
                }
            }
        });
        futures::future::join_all(waits).await;
        self.write_state()
    }

    /// Stops every process (on shutdown).
    ///
    /// # Errors
    ///
    /// When the state file cannot be written.
    pub async fn stop_all(&mut self) -> Result<()> {
        let all: Vec<PodKey> = self.procs.keys().cloned().collect();
        self.stop(&all).await
    }

    /// Rewrites `<work root>/running.json` (atomically, via a rename).
    fn write_state(&self) -> Result<()> {
        let entries: Vec<StateEntry<'_>> = self
            .procs
            .iter()
            .filter(|(_, p)| p.exited.is_none())
            .map(|(k, p)| StateEntry {
                namespace: &k.namespace,
                pod: &k.name,
                uid: &k.uid,
                pid: p.pid,
                restarts: p.restarts,
                workdir: &p.workdir,
            })
            .collect();
        let path = self.work_root.join("running.json");
        let tmp = self.work_root.join("running.json.tmp");
        let state_err = |source| Error::State {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.work_root).map_err(state_err)?;
        let json = serde_json::to_vec_pretty(&entries).map_err(|e| state_err(e.into()))?;
        std::fs::write(&tmp, json).map_err(state_err)?;
        std::fs::rename(&tmp, &path).map_err(state_err)
    }
}

/// Sends `sig` to the process group led by `pid` (the process was started
/// as its own group leader); a group that is already gone is fine.
fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        let _ = killpg(Pid::from_raw(pid), sig);
    }
}

/// Creates the work directory with the plan's volume files.
fn prepare(workdir: &Path, plan: &Plan) -> std::io::Result<()> {
    std::fs::create_dir_all(workdir)?;
    for dir in &plan.dirs {
        std::fs::create_dir_all(workdir.join(dir))?;
    }
    for file in &plan.files {
        let path = workdir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, &file.content)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str], restart: Restart) -> Plan {
        Plan {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: BTreeMap::from([
                ("GREETING".to_owned(), "hi".to_owned()),
                (
                    "TRIBUTARY_METRICS_ADDR".to_owned(),
                    "0.0.0.0:9090".to_owned(),
                ),
            ]),
            files: vec![super::super::plan::File {
                path: PathBuf::from("volumes/config/pipeline.yaml"),
                content: b"spec: {}\n".to_vec(),
            }],
            dirs: vec![],
            restart,
            grace: Duration::from_secs(5),
        }
    }

    fn key(name: &str) -> PodKey {
        PodKey {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn running(root: &Path) -> Vec<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(root.join("running.json")).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn starts_with_files_and_env_then_stops_on_sigterm() {
        let root = tempfile::tempdir().unwrap();
        let mut sup = Supervisor::new(
            PathBuf::from("/bin/sh"),
            root.path().to_path_buf(),
            BTreeMap::new(),
        );
        let pod = key("a");
        // The "processor" copies its mounted file and env, then waits.
        sup.start(
            &pod,
            plan(
                &[
                    "-c",
                    "cat volumes/config/pipeline.yaml; echo $GREETING $TRIBUTARY_METRICS_ADDR; exec sleep 600",
                ],
                Restart::Always,
            ),
        )
        .unwrap();
        let state = running(root.path());
        assert_eq!(state.len(), 1);
        let pid = state[0]["pid"].as_u64().unwrap();
        let out = sup.workdir(&pod).join("stdout.log");
        crate::poll::until(
            "output",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                Ok::<_, std::io::Error>(std::fs::read_to_string(&out)?.contains("hi").then_some(()))
            },
        )
        .await
        .unwrap();
        // The pod's fixed metrics port is replaced by a free loopback one.
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "spec: {}\nhi 127.0.0.1:0\n"
        );

        sup.stop(std::slice::from_ref(&pod)).await.unwrap();
        assert!(running(root.path()).is_empty());
        assert!(!sup.has(&pod));
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "process {pid} survived stop");
    }

    #[tokio::test]
    async fn restarts_an_exited_process_when_the_policy_says_always() {
        let root = tempfile::tempdir().unwrap();
        let mut sup = Supervisor::new(
            PathBuf::from("/bin/sh"),
            root.path().to_path_buf(),
            BTreeMap::new(),
        );
        let pod = key("b");
        sup.start(&pod, plan(&["-c", "echo run >> runs.txt"], Restart::Always))
            .unwrap();
        let runs = sup.workdir(&pod).join("runs.txt");
        crate::poll::until(
            "a restart",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                let r = sup.reap();
                let text = std::fs::read_to_string(&runs).unwrap_or_default();
                async move {
                    r?;
                    Ok::<_, Error>((text.lines().count() >= 2).then_some(()))
                }
            },
        )
        .await
        .unwrap();
        sup.stop_all().await.unwrap();
    }
}
