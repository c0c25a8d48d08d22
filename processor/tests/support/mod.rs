//! Helpers shared by the black-box tests: run the built `tributary`
//! binary with a deadline, and find the repository's files.

#![allow(dead_code, reason = "each test crate uses a different subset")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long any one `tributary` invocation may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// What a finished `tributary` run left behind.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Output {
    /// The non-empty stdout lines, each parsed as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        json_lines(&self.stdout)
    }
}

/// Parses every non-empty line of `text` as JSON, naming the line that is not.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The repository root (the workspace above `processor/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("processor/ has a parent")
        .to_owned()
}

/// Runs `tributary ARGS` in `cwd` and waits for it, killing it and
/// failing the test if it is still running after [`DEADLINE`].
///
/// stdout and stderr are drained on their own threads, so a child that
/// writes more than a pipe buffer never blocks on a test that is polling.
pub fn tributary(args: &[&str], cwd: &Path) -> Output {
    let mut child = command(args, cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tributary");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).expect("read child output");
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tributary") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tributary {args:?} still running after {DEADLINE:?}; killed");
        }
        // Polling interval of the deadline loop, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// The built `tributary ARGS` in `cwd`, logging only warnings; the caller
/// chooses its stdio.
pub fn command(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.args(args).current_dir(cwd).env("RUST_LOG", "warn");
    cmd
}

/// Copies `deploy/examples` (pipelines and their data, not `out/`) into
/// `dest`, so runs that write files leave the checkout untouched.
pub fn copy_examples(dest: &Path) {
    copy_dir(&repo_root().join("deploy/examples"), dest);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        let path = entry.path();
        if path.is_dir() {
            if name != "out" {
                copy_dir(&path, &to.join(&name));
            }
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy file");
        }
    }
}
