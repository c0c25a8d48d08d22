//! Time windows aligned to the epoch, stored as panes (Flink's "slices").
//!
//! Each key keeps one accumulator per pane of width `pane = gcd(size,
//! slide)`; an event touches exactly one pane, and a window's result is the
//! merge of its `size / pane` panes, computed when it fires. Tumbling
//! windows are the case `slide == size`, where a window *is* a pane and is
//! finalized without any merge.
//!
//! Besides the per-key panes, two ordered indexes drive time:
//! `index` (pane start -> keys with that pane) for firing and purging, and
//! `pending` (starts of windows with data that have not fired yet).

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use super::aggregate::Acc;
use super::{Common, EmitMode, Event, Inserted, Key, WindowResult};

/// `floor(ts / m) * m`, saturating at the ends of the `i64` range.
///
/// Plain `i64` arithmetic (no `i128` division) because it runs per event.
pub(super) fn floor_to(ts: i64, m: i64) -> i64 {
    let m = m.max(1);
    // `div_euclid` cannot overflow for m >= 1; the product is <= ts, so it
    // can only overflow downwards.
    ts.div_euclid(m).checked_mul(m).unwrap_or(i64::MIN)
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Starts of every window `[w, w + size)`, `w` a multiple of `slide`, that
/// contains `ts`, in increasing order (none when `ts` falls in a gap between
/// hopping windows, `slide > size`).
pub(super) fn window_starts(ts: i64, size: i64, slide: i64) -> impl Iterator<Item = i64> {
    let (size, slide) = (i128::from(size.max(1)), i128::from(slide.max(1)));
    let t = i128::from(ts);
    let last = t.div_euclid(slide) * slide;
    // The smallest multiple of `slide` greater than `t - size`.
    let first = (t - size).div_euclid(slide) * slide + slide;
    let n = if last >= first {
        (last - first) / slide + 1
    } else {
        0
    };
    (0..n).map(move |i| clamp_i64(first + i * slide))
}

/// One pane of one key.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Pane {
    start: i64,
    acc: Acc,
    /// Changed since the last `Updates` trigger.
    dirty: bool,
}

/// Tumbling or sliding windows over panes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Sliced {
    size: i64,
    slide: i64,
    pane: i64,
    common: Common,
    /// Last watermark passed to `advance`: windows with `end <= wm` fired.
    wm: i64,
    /// Per key, its panes sorted by start (usually one or a few).
    keys: FxHashMap<Key, Vec<Pane>>,
    /// Pane start -> keys having that pane (each key once).
    index: BTreeMap<i64, Vec<Key>>,
    /// Starts of unfired windows that contain at least one pane.
    pending: BTreeSet<i64>,
    /// Panes changed since the last trigger (`Updates` only).
    dirty: Vec<(i64, Key)>,
    live: usize,
}

impl Sliced {
    /// `size`, `slide` at least 1; `pane` must divide both.
    pub(super) fn new(size: i64, slide: i64, pane: i64, common: Common) -> Sliced {
        Sliced {
            size,
            slide,
            pane,
            common,
            wm: i64::MIN,
            keys: FxHashMap::default(),
            index: BTreeMap::new(),
            pending: BTreeSet::new(),
            dirty: Vec::new(),
            live: 0,
        }
    }

    fn end(&self, w: i64) -> i64 {
        w.saturating_add(self.size)
    }

    /// When a pane (or an event in it) stops being needed: the last window
    /// containing it is past its allowed lateness.
    fn expiry(&self, pane_start: i64) -> i64 {
        self.end(floor_to(pane_start, self.slide))
            .saturating_add(self.common.lateness)
    }

    pub(super) fn insert(
        &mut self,
        key: &Key,
        ev: &Event<'_>,
        out: &mut Vec<WindowResult>,
    ) -> Inserted {
        let ts = ev.ts;
        // The last window containing `ts` decides both "in a gap" and "late".
        let last_w = floor_to(ts, self.slide);
        let last_end = self.end(last_w);
        if last_end <= ts {
            // Between hopping windows: no window wants it, and it is not late.
            return Inserted::Accepted;
        }
        let wm_now = self.wm.max(ev.watermark);
        if last_end.saturating_add(self.common.lateness) <= wm_now {
            return Inserted::Late;
        }
        let ps = if self.pane == self.slide {
            last_w
        } else {
            floor_to(ts, self.pane)
        };
        let track_dirty = self.common.emit == EmitMode::Updates;

        // One hash lookup when the key exists; the key is cloned only when a
        // new pane or dirty entry has to remember it.
        let (new_pane, newly_dirty) = if let Some(panes) = self.keys.get_mut(key) {
            add_to_panes(panes, ps, ev, &self.common, track_dirty)
        } else {
            let mut panes = Vec::with_capacity(1);
            let r = add_to_panes(&mut panes, ps, ev, &self.common, track_dirty);
            self.keys.insert(key.clone(), panes);
            r
        };
        if newly_dirty {
            self.dirty.push((ps, key.clone()));
        }
        if new_pane {
            self.live += 1;
            let (size, slide, wm) = (self.size, self.slide, self.wm);
            let keys = self.index.entry(ps).or_insert_with(|| {
                // A pane start seen for the first time: its unfired windows
                // now have data.
                self.pending.extend(
                    window_starts(ps, size, slide).filter(|&w| w.saturating_add(size) > wm),
                );
                Vec::new()
            });
            keys.push(key.clone());
        }

        // Late firing: re-emit the windows of this event that already fired
        // but are still within allowed lateness. Every window containing
        // `ts` ends after it, so none has fired unless `ts < wm`.
        if ts < self.wm {
            for w in window_starts(ts, self.size, self.slide) {
                let end = self.end(w);
                if end <= self.wm
                    && end.saturating_add(self.common.lateness) > wm_now
                    && let Some(r) = self.result(w, key)
                {
                    out.push(r);
                }
            }
        }
        Inserted::Accepted
    }

    /// The current result of window `w` for `key`, merging its panes.
    fn result(&mut self, w: i64, key: &Key) -> Option<WindowResult> {
        let end = self.end(w);
        let panes = self.keys.get_mut(key)?;
        let values = if self.pane == self.size {
            let p = panes.iter_mut().find(|p| p.start == w)?;
            p.acc.finalize(&self.common.aggs)
        } else {
            let mut acc = Acc::new(&self.common.aggs);
            for p in panes.iter().filter(|p| p.start >= w && p.start < end) {
                acc.merge(&p.acc);
            }
            if acc.count == 0 {
                return None;
            }
            acc.finalize(&self.common.aggs)
        };
        Some(WindowResult {
            start: w,
            end,
            key: key.clone(),
            values,
        })
    }

    /// Results of window `w` for every key that has data in it, by key.
    fn emit_window(&mut self, w: i64, out: &mut Vec<WindowResult>) {
        let end = self.end(w);
        if self.pane == self.size {
            // One pane per window: its keys are already distinct. Borrow the
            // list out of the index instead of cloning every key.
            let Some(mut keys) = self.index.remove(&w) else {
                return;
            };
            keys.sort_unstable();
            for key in &keys {
                if let Some(r) = self.result(w, key) {
                    out.push(r);
                }
            }
            self.index.insert(w, keys);
        } else {
            let mut ks: Vec<&Key> = self.index.range(w..end).flat_map(|(_, ks)| ks).collect();
            ks.sort_unstable();
            ks.dedup();
            let keys: Vec<Key> = ks.into_iter().cloned().collect();
            for key in &keys {
                if let Some(r) = self.result(w, key) {
                    out.push(r);
                }
            }
        }
    }

    pub(super) fn advance(&mut self, wm: i64, out: &mut Vec<WindowResult>) {
        if wm <= self.wm {
            return;
        }
        self.wm = wm;
        // Windows all have the same size, so start order is end order.
        while let Some(&w) = self.pending.first() {
            if self.end(w) > wm {
                break;
            }
            self.pending.pop_first();
            self.emit_window(w, out);
        }
        // Pane expiry is monotone in the pane start, so purge from the front.
        while let Some((&ps, _)) = self.index.first_key_value() {
            if self.expiry(ps) > wm {
                break;
            }
            let Some((ps, keys)) = self.index.pop_first() else {
                break;
            };
            for key in keys {
                if let Some(panes) = self.keys.get_mut(&key) {
                    let before = panes.len();
                    panes.retain(|p| p.start != ps);
                    self.live = self.live.saturating_sub(before - panes.len());
                    if panes.is_empty() {
                        self.keys.remove(&key);
                    }
                }
            }
        }
    }

    pub(super) fn trigger(&mut self, out: &mut Vec<WindowResult>) {
        match self.common.emit {
            EmitMode::Final => {}
            EmitMode::Updates => {
                let mut windows: Vec<(i64, Key)> = Vec::new();
                for (ps, key) in std::mem::take(&mut self.dirty) {
                    let Some(panes) = self.keys.get_mut(&key) else {
                        continue;
                    };
                    if let Some(p) = panes.iter_mut().find(|p| p.start == ps) {
                        p.dirty = false;
                    }
                    for w in window_starts(ps, self.size, self.slide) {
                        if self.end(w) > self.wm {
                            windows.push((w, key.clone()));
                        }
                    }
                }
                windows.sort_unstable();
                windows.dedup();
                for (w, key) in windows {
                    if let Some(r) = self.result(w, &key) {
                        out.push(r);
                    }
                }
            }
            EmitMode::All => {
                let starts: Vec<i64> = self.pending.iter().copied().collect();
                for w in starts {
                    self.emit_window(w, out);
                }
            }
        }
    }

    pub(super) fn low_water(&self) -> i64 {
        self.keys
            .values()
            .flatten()
            .map(|p| p.acc.min_offset)
            .min()
            .unwrap_or(i64::MAX)
    }

    pub(super) fn state_size(&self) -> usize {
        self.live
    }
}

/// Adds the event to pane `ps` of one key, creating the pane if needed.
/// Returns (pane created, pane newly dirty).
fn add_to_panes(
    panes: &mut Vec<Pane>,
    ps: i64,
    ev: &Event<'_>,
    common: &Common,
    track_dirty: bool,
) -> (bool, bool) {
    // Panes are sorted and events mostly hit the newest, so search backwards.
    let pos = panes.iter().rposition(|p| p.start <= ps);
    let (idx, created) = match pos {
        Some(i) if panes[i].start == ps => (i, false),
        _ => {
            let at = pos.map_or(0, |i| i + 1);
            panes.insert(
                at,
                Pane {
                    start: ps,
                    acc: Acc::new(&common.aggs),
                    dirty: false,
                },
            );
            (at, true)
        }
    };
    let pane = &mut panes[idx];
    pane.acc.update(ev.ts, ev.seq, ev.inputs);
    pane.acc.min_offset = pane.acc.min_offset.min(ev.offset);
    let newly_dirty = track_dirty && !pane.dirty;
    if newly_dirty {
        pane.dirty = true;
    }
    (created, newly_dirty)
}
