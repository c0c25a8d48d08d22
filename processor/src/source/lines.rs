//! Line-oriented sources: a file or standard input, one record per line.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{BATCH, Decoder};
use crate::flow::{Batch, Message, Queue};
use crate::record::Position;

/// Reads `input` to its end (or until `stop`), one record per non-empty
/// line; the line number is the record's offset.
pub fn run(input: impl Read, name: &Arc<str>, decoder: &Decoder, queue: &Queue, stop: &AtomicBool) {
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut line = Vec::with_capacity(256);
    let mut offset: i64 = 0;
    let mut batch = Batch {
        partition: 0,
        records: Vec::with_capacity(BATCH),
        dead: Vec::new(),
        created: Some(std::time::Instant::now()),
    };
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                queue.push(Message::Failed(format!("reading {name}: {e}")));
                return;
            }
        }
        offset += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let position = Position {
            source: name.clone(),
            partition: 0,
            offset,
        };
        match decoder.decode(text, position) {
            Ok(r) => batch.records.push(r),
            Err(dl) => batch.dead.push(*dl),
        }
        // Hand over a partial batch when the input has nothing buffered, so an
        // interactive stdin sees results without waiting for a full batch.
        if batch.records.len() + batch.dead.len() >= BATCH || reader.buffer().is_empty() {
            let full = std::mem::replace(
                &mut batch,
                Batch {
                    partition: 0,
                    records: Vec::with_capacity(BATCH),
                    dead: Vec::new(),
                    created: Some(std::time::Instant::now()),
                },
            );
            queue.push(Message::Batch(full));
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
    if !batch.records.is_empty() || !batch.dead.is_empty() {
        queue.push(Message::Batch(batch));
    }
    queue.push(Message::End { partition: 0 });
}
