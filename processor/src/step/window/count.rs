//! Count windows: per key, every `count` events form a window
//! `[min ts, max ts + 1)`, fired from `insert` the moment it is full.
//! Watermarks and lateness do not apply; `flush` fires partial windows.

use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;

use super::aggregate::Acc;
use super::{Common, EmitMode, Event, Inserted, Key, WindowResult, sort_results};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CountWindow {
    acc: Acc,
    min_ts: i64,
    max_ts: i64,
    dirty: bool,
}

impl CountWindow {
    fn result(&mut self, key: Key, common: &Common) -> WindowResult {
        WindowResult {
            start: self.min_ts,
            end: self.max_ts.saturating_add(1),
            key,
            values: self.acc.finalize(&common.aggs),
        }
    }
}

/// The partial count window of every key.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct CountWindows {
    count: u64,
    common: Common,
    keys: FxHashMap<Key, CountWindow>,
    dirty: Vec<Key>,
}

impl CountWindows {
    pub(super) fn new(count: u64, common: Common) -> CountWindows {
        CountWindows {
            count,
            common,
            keys: FxHashMap::default(),
            dirty: Vec::new(),
        }
    }

    pub(super) fn insert(
        &mut self,
        key: Key,
        ev: &Event<'_>,
        out: &mut Vec<WindowResult>,
    ) -> Inserted {
        let mut entry = match self.keys.entry(key) {
            Entry::Occupied(e) => e,
            Entry::Vacant(e) => e.insert_entry(CountWindow {
                acc: Acc::new(&self.common.aggs),
                min_ts: ev.ts,
                max_ts: ev.ts,
                dirty: false,
            }),
        };
        let w = entry.get_mut();
        w.acc.update(ev.ts, ev.seq, ev.inputs);
        w.acc.min_offset = w.acc.min_offset.min(ev.offset);
        w.min_ts = w.min_ts.min(ev.ts);
        w.max_ts = w.max_ts.max(ev.ts);
        if w.acc.count >= self.count {
            let (key, mut w) = entry.remove_entry();
            out.push(w.result(key, &self.common));
        } else if self.common.emit == EmitMode::Updates && !w.dirty {
            w.dirty = true;
            self.dirty.push(entry.key().clone());
        }
        Inserted::Accepted
    }

    pub(super) fn trigger(&mut self, out: &mut Vec<WindowResult>) {
        let mut results = Vec::new();
        match self.common.emit {
            EmitMode::Final => return,
            EmitMode::Updates => {
                for key in std::mem::take(&mut self.dirty) {
                    // A window that filled up since was emitted already; a
                    // new one for the key may be dirty under its own flag.
                    if let Some(w) = self.keys.get_mut(&key).filter(|w| w.dirty) {
                        w.dirty = false;
                        results.push(w.result(key, &self.common));
                    }
                }
            }
            EmitMode::All => {
                for (key, w) in &mut self.keys {
                    results.push(w.result(key.clone(), &self.common));
                }
            }
        }
        sort_results(&mut results);
        out.append(&mut results);
    }

    pub(super) fn flush(&mut self, out: &mut Vec<WindowResult>) {
        let mut results: Vec<WindowResult> = self
            .keys
            .drain()
            .map(|(key, mut w)| w.result(key, &self.common))
            .collect();
        self.dirty.clear();
        sort_results(&mut results);
        out.append(&mut results);
    }

    pub(super) fn low_water(&self) -> i64 {
        self.keys
            .values()
            .map(|w| w.acc.min_offset)
            .min()
            .unwrap_or(i64::MAX)
    }

    pub(super) fn state_size(&self) -> usize {
        self.keys.len()
    }
}
