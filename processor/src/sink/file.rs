//! JSON lines to any writer: standard output or a file.

use std::io::{BufWriter, Write};

use super::{Sink, SinkError, write_line};
use crate::record::Record;

/// One JSON value per line, buffered.
pub struct LineSink {
    name: String,
    out: BufWriter<Box<dyn Write + Send>>,
}

impl LineSink {
    /// Writes to `out`.
    #[must_use]
    pub fn new(name: String, out: Box<dyn Write + Send>) -> Self {
        Self {
            name,
            out: BufWriter::with_capacity(256 * 1024, out),
        }
    }

    fn err(&self, source: std::io::Error) -> SinkError {
        SinkError::Write {
            name: self.name.clone(),
            source,
        }
    }
}

impl Sink for LineSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for r in records {
            write_line(&mut self.out, &r.value).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn write_values(&mut self, values: &[serde_json::Value]) -> Result<(), SinkError> {
        for v in values {
            write_line(&mut self.out, v).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.err(e))
    }
}
