//! Session windows: per key `[first ts, last ts + gap)`.
//!
//! An event opens `[ts, ts + gap)` and merges with every session of its key
//! that overlaps it, so an out-of-order event can bridge two sessions into
//! one. Windows are half-open, so sessions that merely touch (`[0, 10)` and
//! `[10, 20)`) stay apart. That differs from Flink, whose
//! `TimeWindow.intersects` merges touching windows, and is deliberate: here
//! a watermark `wm` still admits events at `ts == wm`, and a window
//! `[s, wm)` has already fired at `wm`; merging touching windows would let
//! an on-time event reopen a fired session. Lateness is judged
//! on the merged window: if it is late, the event is dropped and nothing
//! changes.
//!
//! Firing is driven by per-key timers in a `BTreeMap`. A key has at most
//! one *live* timer (`KeySessions::timer`), never later than the time its
//! earliest session is due (to fire, or to be purged after firing); other
//! entries for the key are stale and skipped. Extending a session only
//! delays its due time, so it needs no new timer: the early one fires,
//! finds nothing due, and re-arms at the right time by moving the key.
//! Keys are cloned about once per session, not once per event.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::aggregate::Acc;
use super::{Common, EmitMode, Event, Inserted, Key, WindowResult, sort_results};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Session {
    start: i64,
    end: i64,
    acc: Acc,
    fired: bool,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct KeySessions {
    /// Disjoint, sorted by start (so also by end).
    sessions: Vec<Session>,
    /// Time of this key's live timer (`i64::MAX` if none).
    timer: i64,
    /// Changed since the last `Updates` trigger.
    dirty: bool,
}

/// All sessions of one window step.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Sessions {
    gap: i64,
    common: Common,
    wm: i64,
    keys: FxHashMap<Key, KeySessions>,
    timers: BTreeMap<i64, Vec<Key>>,
    dirty: Vec<Key>,
    live: usize,
}

impl Sessions {
    pub(super) fn new(gap: i64, common: Common) -> Sessions {
        Sessions {
            gap,
            common,
            wm: i64::MIN,
            keys: FxHashMap::default(),
            timers: BTreeMap::new(),
            dirty: Vec::new(),
            live: 0,
        }
    }

    pub(super) fn insert(
        &mut self,
        key: Key,
        ev: &Event<'_>,
        out: &mut Vec<WindowResult>,
    ) -> Inserted {
        let wm_now = self.wm.max(ev.watermark);
        let mut start = ev.ts;
        let mut end = ev.ts.saturating_add(self.gap);
        let lateness = self.common.lateness;
        let (wm, emit) = (self.wm, self.common.emit);

        let ks = if let Some(ks) = self.keys.get_mut(&key) {
            ks
        } else {
            if end.saturating_add(lateness) <= wm_now {
                return Inserted::Late;
            }
            self.keys.entry(key.clone()).or_insert(KeySessions {
                sessions: Vec::new(),
                timer: i64::MAX,
                dirty: false,
            })
        };
        // Sessions overlapping [ts, ts + gap) form a contiguous run.
        let first = ks.sessions.partition_point(|s| s.end <= ev.ts);
        let mut last = first;
        while last < ks.sessions.len() && ks.sessions[last].start < end {
            start = start.min(ks.sessions[last].start);
            end = end.max(ks.sessions[last].end);
            last += 1;
        }
        if end.saturating_add(lateness) <= wm_now {
            // Flink semantics: the merged window is late; change nothing.
            // (A key entry exists here only if it already had sessions.)
            return Inserted::Late;
        }
        let mut acc = Acc::new(&self.common.aggs);
        acc.update(ev.ts, ev.seq, ev.inputs);
        acc.min_offset = acc.min_offset.min(ev.offset);
        for s in ks.sessions.drain(first..last) {
            acc.merge(&s.acc);
        }
        self.live = (self.live + 1).saturating_sub(last - first);
        let mut session = Session {
            start,
            end,
            acc,
            fired: end <= wm,
        };
        if session.fired {
            // Late firing: the window already passed the watermark.
            out.push(WindowResult {
                start,
                end,
                key: key.clone(),
                values: session.acc.finalize(&self.common.aggs),
            });
        } else if emit == EmitMode::Updates && !ks.dirty {
            ks.dirty = true;
            self.dirty.push(key.clone());
        }
        let due = if session.fired {
            end.saturating_add(lateness)
        } else {
            end
        };
        ks.sessions.insert(first, session);
        if due < ks.timer {
            ks.timer = due;
            self.timers.entry(due).or_default().push(key);
        }
        Inserted::Accepted
    }

    pub(super) fn advance(&mut self, wm: i64, out: &mut Vec<WindowResult>) {
        if wm <= self.wm {
            return;
        }
        self.wm = wm;
        let mut fired = Vec::new();
        while let Some((&t, _)) = self.timers.first_key_value() {
            if t > wm {
                break;
            }
            let Some((t, keys)) = self.timers.pop_first() else {
                break;
            };
            for key in keys {
                self.on_timer(t, key, &mut fired);
            }
        }
        sort_results(&mut fired);
        out.append(&mut fired);
    }

    /// Fires the key's sessions that are due, purges expired ones and
    /// re-arms its timer for the next due time.
    fn on_timer(&mut self, t: i64, key: Key, out: &mut Vec<WindowResult>) {
        let wm = self.wm;
        let lateness = self.common.lateness;
        let Some(ks) = self.keys.get_mut(&key) else {
            return;
        };
        if ks.timer != t {
            return; // stale: the key's live timer is elsewhere
        }
        for s in &mut ks.sessions {
            if !s.fired && s.end <= wm {
                s.fired = true;
                out.push(WindowResult {
                    start: s.start,
                    end: s.end,
                    key: key.clone(),
                    values: s.acc.finalize(&self.common.aggs),
                });
            }
        }
        let before = ks.sessions.len();
        ks.sessions
            .retain(|s| !(s.fired && s.end.saturating_add(lateness) <= wm));
        self.live = self.live.saturating_sub(before - ks.sessions.len());
        let next = ks
            .sessions
            .iter()
            .map(|s| {
                if s.fired {
                    s.end.saturating_add(lateness)
                } else {
                    s.end
                }
            })
            .min();
        match next {
            None => {
                self.keys.remove(&key);
            }
            Some(next) => {
                ks.timer = next;
                self.timers.entry(next).or_default().push(key);
            }
        }
    }

    pub(super) fn trigger(&mut self, out: &mut Vec<WindowResult>) {
        let mut results = Vec::new();
        match self.common.emit {
            EmitMode::Final => return,
            EmitMode::Updates => {
                for key in std::mem::take(&mut self.dirty) {
                    if let Some(ks) = self.keys.get_mut(&key) {
                        ks.dirty = false;
                        collect_open(&key, ks, &self.common, &mut results);
                    }
                }
            }
            EmitMode::All => {
                for (key, ks) in &mut self.keys {
                    collect_open(key, ks, &self.common, &mut results);
                }
            }
        }
        sort_results(&mut results);
        out.append(&mut results);
    }

    pub(super) fn low_water(&self) -> i64 {
        self.keys
            .values()
            .flat_map(|k| &k.sessions)
            .map(|s| s.acc.min_offset)
            .min()
            .unwrap_or(i64::MAX)
    }

    pub(super) fn state_size(&self) -> usize {
        self.live
    }
}

/// Current results of a key's unfired sessions.
fn collect_open(key: &Key, ks: &mut KeySessions, common: &Common, out: &mut Vec<WindowResult>) {
    for s in ks.sessions.iter_mut().filter(|s| !s.fired) {
        out.push(WindowResult {
            start: s.start,
            end: s.end,
            key: key.clone(),
            values: s.acc.finalize(&common.aggs),
        });
    }
}
