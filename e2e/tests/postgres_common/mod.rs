// Each test file includes this module and uses only part of it.
#![allow(dead_code)]

//! What the PostgreSQL tests share: a client on the test bed's server (or
//! on a private server the test may stop), unique table names.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use tokio_postgres::{Client, NoTls};

/// Connects to `url`; the connection task ends with the client.
pub async fn client(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A table name no other run uses (`prefix_<nanos>`).
pub fn table(prefix: &str) -> String {
    tributary_e2e::fixture::unique(prefix).replace('-', "_")
}

/// A PostgreSQL server of this test alone (the shared bed's must never be
/// stopped), on a free loopback port, removed when dropped.
pub struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port.
    pub port: u16,
}

impl OwnPostgres {
    /// initdb + start, as the test bed does (as user `postgres` when root).
    pub fn start() -> Result<Self> {
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new().prefix("tributary-pg-").tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        as_pg(
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path()),
            false,
        )?;
        let me = Self { bin, dir, port };
        me.run(
            Command::new(me.bin.join("initdb"))
                .arg("-D")
                .arg(me.data())
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]),
        )?;
        me.up()?;
        Ok(me)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    fn run(&self, cmd: &mut Command) -> Result<()> {
        as_pg(cmd, true)
    }

    /// Starts (again).
    pub fn up(&self) -> Result<()> {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.run(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .args(["-w", "-t", "60", "-o", &opts, "start"]),
        )
    }

    /// Stops at once (connections cut, like a crash of the server).
    pub fn down(&self) -> Result<()> {
        self.run(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"]),
        )
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.down();
    }
}

/// Runs `cmd`, as user `postgres` when this process is root (PostgreSQL
/// refuses to run as root).
fn as_pg(cmd: &mut Command, wrap: bool) -> Result<()> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let status = if root && wrap {
        let mut r = Command::new("runuser");
        r.args(["-u", "postgres", "--"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        r.status()
    } else if !root && !wrap {
        return Ok(()); // chown is only needed (and allowed) as root
    } else {
        cmd.status()
    }
    .context("running a postgres command")?;
    ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(())
}

/// initdb/pg_ctl: PATH first, then Debian's layout (as the test bed).
fn pg_bin() -> Result<PathBuf> {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v pg_ctl"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(d) = p.parent() {
            return Ok(d.to_owned());
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|d| d.join("pg_ctl").is_file())
        .collect();
    dirs.sort();
    match dirs.pop() {
        Some(d) => Ok(d),
        None => bail!("PostgreSQL binaries (initdb, pg_ctl) not found"),
    }
}
