//! Bounded-out-of-orderness watermarks per source partition; the pipeline's
//! watermark is the minimum over partitions that are not idle.
//!
//! A watermark `w` means "no more events with a time below `w` are
//! expected": a partition's watermark is the largest event time it has
//! shown minus `maxOutOfOrderness`. A partition that has shown nothing
//! for `idleTimeout` (processing time) stops holding the others back, as
//! in Flink's `withIdleness`; it rejoins with its next record.

use std::collections::BTreeMap;

/// Tracks partitions and computes the combined watermark.
#[derive(Debug, Clone)]
pub struct Watermarks {
    bound: i64,
    idle_timeout: Option<i64>,
    parts: BTreeMap<i32, Part>,
    current: i64,
}

#[derive(Debug, Clone, Copy)]
struct Part {
    max_ts: i64,
    last_seen: i64,
    ended: bool,
}

impl Watermarks {
    /// Watermarks trailing by `bound` ms, with an optional idle timeout (ms).
    #[must_use]
    pub fn new(bound: i64, idle_timeout: Option<i64>) -> Self {
        Self {
            bound: bound.max(0),
            idle_timeout,
            parts: BTreeMap::new(),
            current: i64::MIN,
        }
    }

    /// Registers a partition before it shows records, so the watermark
    /// waits for it.
    pub fn register(&mut self, partition: i32, now: i64) {
        self.parts.entry(partition).or_insert(Part {
            max_ts: i64::MIN,
            last_seen: now,
            ended: false,
        });
    }

    /// Notes an event of `partition` at time `ts`, seen at processing time `now`.
    pub fn observe(&mut self, partition: i32, ts: i64, now: i64) {
        let p = self.parts.entry(partition).or_insert(Part {
            max_ts: i64::MIN,
            last_seen: now,
            ended: false,
        });
        p.max_ts = p.max_ts.max(ts);
        p.last_seen = now;
    }

    /// Processing time: every partition seen so far is at `now`.
    pub fn observe_all(&mut self, now: i64) {
        for p in self.parts.values_mut() {
            p.max_ts = p.max_ts.max(now);
            p.last_seen = now;
        }
    }

    /// A bounded partition ended: it no longer holds the watermark back.
    pub fn end(&mut self, partition: i32) {
        if let Some(p) = self.parts.get_mut(&partition) {
            p.ended = true;
        }
    }

    /// Whether every registered partition ended.
    #[must_use]
    pub fn all_ended(&self) -> bool {
        !self.parts.is_empty() && self.parts.values().all(|p| p.ended)
    }

    /// The watermark at processing time `now`; it never goes back.
    pub fn current(&mut self, now: i64) -> i64 {
        let mut min: Option<i64> = None;
        let mut any_active = false;
        for p in self.parts.values() {
            if p.ended {
                continue;
            }
            if self
                .idle_timeout
                .is_some_and(|t| now.saturating_sub(p.last_seen) >= t)
            {
                continue;
            }
            any_active = true;
            let wm = if p.max_ts == i64::MIN {
                i64::MIN
            } else {
                p.max_ts.saturating_sub(self.bound)
            };
            min = Some(min.map_or(wm, |m: i64| m.min(wm)));
        }
        let candidate = if self.all_ended() {
            i64::MAX
        } else if any_active {
            min.unwrap_or(i64::MIN)
        } else {
            // Every live partition is idle: hold where we are.
            self.current
        };
        self.current = self.current.max(candidate);
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_the_largest_time_by_the_bound() {
        let mut w = Watermarks::new(5, None);
        w.observe(0, 100, 0);
        assert_eq!(w.current(0), 95);
        w.observe(0, 90, 0);
        assert_eq!(w.current(0), 95, "an older event does not move it back");
        w.observe(0, 120, 0);
        assert_eq!(w.current(0), 115);
    }

    #[test]
    fn is_the_minimum_across_partitions() {
        let mut w = Watermarks::new(0, None);
        w.register(0, 0);
        w.register(1, 0);
        w.observe(0, 100, 0);
        assert_eq!(w.current(0), i64::MIN, "partition 1 has shown nothing yet");
        w.observe(1, 50, 0);
        assert_eq!(w.current(0), 50);
        w.observe(1, 200, 0);
        assert_eq!(w.current(0), 100);
    }

    #[test]
    fn idle_partitions_are_excluded_and_rejoin() {
        let mut w = Watermarks::new(0, Some(1000));
        w.observe(0, 100, 0);
        w.observe(1, 10, 0);
        assert_eq!(w.current(500), 10);
        w.observe(0, 300, 1500);
        assert_eq!(w.current(1500), 300, "partition 1 idle since 0");
        w.observe(1, 20, 1600);
        assert_eq!(w.current(1600), 300, "never goes back when it rejoins");
        w.observe(1, 400, 1700);
        assert_eq!(w.current(1700), 300);
    }

    #[test]
    fn ended_partitions_release_and_all_ended_is_infinity() {
        let mut w = Watermarks::new(0, None);
        w.observe(0, 100, 0);
        w.observe(1, 10, 0);
        w.end(1);
        assert_eq!(w.current(0), 100);
        w.end(0);
        assert_eq!(w.current(0), i64::MAX);
    }
}
