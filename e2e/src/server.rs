//! A test's own broker server process (a `redis-server`, a `nats-server`)
//! on a free port with its own data folder, for outage tests: the test
//! kills it and starts it again on the same port and data, and never
//! touches the shared test bed's servers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Errors managing a server process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Spawning, or finding a free port, failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A free loopback port (bound and released at once).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
        what: "binding a free port".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| Error::Io {
            what: "reading the bound port".into(),
            source,
        })
}

/// A server process a test starts, kills and restarts.
#[derive(Debug)]
pub struct Server {
    program: String,
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    /// Starts `program` with `args`; `{dir}` in an argument is replaced by
    /// the server's data folder (kept across restarts).
    ///
    /// # Errors
    /// When the folder cannot be created or the process cannot be spawned.
    pub fn start(program: &str, args: &[&str]) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("tributary-server-")
            .tempdir()
            .map_err(|source| Error::Io {
                what: "creating the data folder".into(),
                source,
            })?;
        let args = args
            .iter()
            .map(|a| a.replace("{dir}", &dir.path().display().to_string()))
            .collect();
        let mut s = Self {
            program: program.to_owned(),
            args,
            dir,
            child: None,
            starts: 0,
        };
        s.restart()?;
        Ok(s)
    }

    /// The data folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log of the last start.
    #[must_use]
    pub fn log(&self) -> PathBuf {
        self.dir.path().join(format!("server.{}.log", self.starts))
    }

    /// Starts the server again (after [`kill9`](Self::kill9)).
    ///
    /// # Errors
    /// When the process cannot be spawned.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.starts += 1;
        let log = std::fs::File::create(self.log()).map_err(|source| Error::Io {
            what: "creating the server log".into(),
            source,
        })?;
        let err = log.try_clone().map_err(|source| Error::Io {
            what: "cloning the log handle".into(),
            source,
        })?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Io {
                what: format!("spawning {}", self.program),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server with SIGKILL (no shutdown work at all).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
