//! The test bed's environment: endpoints and credentials written by
//! `e2e/testbed up` into its env file.
//!
//! # Where the values come from
//!
//! When `TRIBUTARY_TESTBED_BIN` is set in the process environment (only the
//! env file sets it: it was sourced, as `e2e/run.sh` does), every value is
//! read from the process environment. Otherwise the env file is parsed:
//! `TRIBUTARY_TESTBED_ENV`, else `$TRIBUTARY_TESTBED_DIR/env`, else
//! `/tmp/tributary-testbed/env`, so a plain `cargo test -p tributary-e2e`
//! works after `e2e/testbed up`. A stray `KUBECONFIG` of the developer's own
//! cluster is never used on its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where `e2e/testbed` writes its env file unless told otherwise.
pub const DEFAULT_ENV_FILE: &str = "/tmp/tributary-testbed/env";

/// Errors reading the test bed's environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither the process environment nor the env file describe a test bed.
    #[error(
        "the test bed is not up: {reason}. Run `e2e/testbed up` (and optionally \
         `. /tmp/tributary-testbed/env`) before the e2e tests"
    )]
    NotUp {
        /// What was missing.
        reason: String,
    },
    /// A variable the tests need is absent.
    #[error(
        "{name} is not set by the test bed's env file; re-run `e2e/testbed up` \
         (the env file may be from an older test bed)"
    )]
    Missing {
        /// The variable's name.
        name: String,
    },
}

/// Result of reading the environment.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The test bed's variables, by name (`KAFKA_BOOTSTRAP`, `KUBECONFIG`, …).
#[derive(Debug, Clone)]
pub struct TestBed {
    vars: HashMap<String, String>,
}

impl TestBed {
    /// Reads the test bed's variables (see the module docs for the source).
    ///
    /// # Errors
    ///
    /// [`Error::NotUp`] when no test bed is described anywhere.
    pub fn load() -> Result<Self> {
        if std::env::var_os("TRIBUTARY_TESTBED_BIN").is_some() {
            return Ok(Self {
                vars: std::env::vars().collect(),
            });
        }
        let file = std::env::var("TRIBUTARY_TESTBED_ENV")
            .or_else(|_| std::env::var("TRIBUTARY_TESTBED_DIR").map(|d| format!("{d}/env")))
            .unwrap_or_else(|_| DEFAULT_ENV_FILE.to_owned());
        let text = std::fs::read_to_string(&file).map_err(|e| Error::NotUp {
            reason: format!("the env file was not sourced and {file} cannot be read ({e})"),
        })?;
        Ok(Self {
            vars: parse_env_file(&text),
        })
    }

    /// The value of `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] when the test bed did not set it.
    pub fn var(&self, name: &str) -> Result<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::Missing {
                name: name.to_owned(),
            })
    }

    /// The admin kubeconfig.
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] when `KUBECONFIG` is absent.
    pub fn kubeconfig(&self) -> Result<PathBuf> {
        self.var("KUBECONFIG").map(PathBuf::from)
    }

    /// The kubeconfig of the non-admin identity `tributary-restricted`.
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] when `KUBECONFIG_RESTRICTED` is absent.
    pub fn kubeconfig_restricted(&self) -> Result<PathBuf> {
        self.var("KUBECONFIG_RESTRICTED").map(PathBuf::from)
    }

    /// Path of a CLI the test bed built (`kubectl`, `helm`, `kubeconform`).
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] when `TRIBUTARY_TESTBED_BIN` is absent.
    pub fn bin(&self, tool: &str) -> Result<PathBuf> {
        self.var("TRIBUTARY_TESTBED_BIN")
            .map(|dir| Path::new(dir).join(tool))
    }

    /// The test bed's state directory (logs, data, pod runner work dirs).
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] when `TRIBUTARY_TESTBED_DIR` is absent.
    pub fn dir(&self) -> Result<PathBuf> {
        self.var("TRIBUTARY_TESTBED_DIR").map(PathBuf::from)
    }

    /// Every variable, for handing to a child process.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Parses the `export NAME='value'` lines `e2e/testbed` writes; comments and
/// other lines are ignored.
#[must_use]
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.starts_with('#') {
                return None;
            }
            let (name, value) = line.split_once('=')?;
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(value);
            Some((name.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_become_variables() {
        let vars = parse_env_file(
            "# comment\nexport KAFKA_BOOTSTRAP='127.0.0.1:29092'\nexport A=\"b c\"\nPLAIN=1\n\n",
        );
        assert_eq!(vars["KAFKA_BOOTSTRAP"], "127.0.0.1:29092");
        assert_eq!(vars["A"], "b c");
        assert_eq!(vars["PLAIN"], "1");
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn missing_variable_names_itself_and_the_fix() {
        let bed = TestBed {
            vars: HashMap::new(),
        };
        let msg = bed.var("NATS_URL").unwrap_err().to_string();
        assert!(
            msg.contains("NATS_URL") && msg.contains("e2e/testbed up"),
            "{msg}"
        );
    }
}
