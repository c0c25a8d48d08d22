//! A JSON-lines file as a lookup table, reloaded when it changes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustc_hash::FxHashMap;
use serde_json::Value;

use super::key_string;

/// What identifies one version of the file: modification time and length.
/// Both are compared, so a rewrite within the file system's mtime
/// granularity that changes the size is still seen.
type Version = (Option<SystemTime>, u64);

/// The rows of a JSON-lines file by key, and the version they came from.
pub struct FileTable {
    path: PathBuf,
    key_field: String,
    loaded: Version,
    /// The last version that failed to parse (a half-written file): not
    /// retried or logged again until the file changes once more.
    failed: Option<Version>,
    rows: FxHashMap<String, Value>,
}

impl FileTable {
    /// Loads the table.
    ///
    /// # Errors
    /// When the file cannot be read or a line is not a JSON object with the key field.
    pub fn load(path: &Path, key_field: &str) -> Result<Self, String> {
        let loaded = version(path)?;
        let rows = read_rows(path, key_field)?;
        Ok(Self {
            path: path.to_owned(),
            key_field: key_field.to_owned(),
            loaded,
            failed: None,
            rows,
        })
    }

    /// The row with `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.rows.get(key)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Reads the file again if it changed since the last load. A file that
    /// does not parse (being written, or broken) keeps the previous table:
    /// a lookup never sees a half-loaded one. Returns whether it reloaded.
    pub fn refresh(&mut self) -> bool {
        let Ok(now) = version(&self.path) else {
            return false;
        };
        if now == self.loaded || Some(now) == self.failed {
            return false;
        }
        match read_rows(&self.path, &self.key_field) {
            Ok(rows) => {
                self.rows = rows;
                self.loaded = now;
                self.failed = None;
                tracing::info!(path = %self.path.display(), rows = self.rows.len(), "enrich table reloaded");
                true
            }
            Err(e) => {
                self.failed = Some(now);
                tracing::warn!(path = %self.path.display(), error = %e, "enrich table changed but does not load; keeping the previous rows");
                false
            }
        }
    }
}

fn version(path: &Path) -> Result<Version, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((meta.modified().ok(), meta.len()))
}

fn read_rows(path: &Path, key_field: &str) -> Result<FxHashMap<String, Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = FxHashMap::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let row: Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", at()))?;
        let key = row
            .get(key_field)
            .and_then(key_string)
            .map(std::borrow::Cow::into_owned)
            .ok_or_else(|| format!("{}: no string or number field {key_field:?}", at()))?;
        // The last row with a key wins, as in a compacted topic.
        rows.insert(key, row);
    }
    Ok(rows)
}
