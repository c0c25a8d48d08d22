//! What a checkpoint stores per input partition, and how a task restores
//! from it.
//!
//! The committed offset is the processed position `P` (so consumer lag
//! stays honest). Its metadata string holds `{"low": L, "wm": W, "snap":
//! S}`: `L` is the smallest offset of any input record still held in step
//! state (`P` when the state is empty), `W` the task's watermark and `S`
//! the id of the task's state snapshot in the changelog (see `changelog`).
//! A restore takes the snapshot and reads from `P`; without one (none
//! written, or not found) it reads from `L` with the watermark at `W`, and
//! records below `P` are replays that rebuild the state.

use serde::{Deserialize, Serialize};

/// The metadata committed with a partition's offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Low-water offset: where a restore starts reading.
    pub low: i64,
    /// The task's watermark (epoch ms; `i64::MIN` before the first record).
    pub wm: i64,
    /// The id of the task's state snapshot in the changelog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snap: Option<u64>,
}

impl Meta {
    /// The JSON committed as offset metadata.
    #[must_use]
    pub fn encode(&self) -> String {
        match self.snap {
            Some(s) => format!(r#"{{"low":{},"wm":{},"snap":{s}}}"#, self.low, self.wm),
            None => format!(r#"{{"low":{},"wm":{}}}"#, self.low, self.wm),
        }
    }

    /// Reads committed metadata; `None` when it is not ours (empty, or
    /// written by another client).
    #[must_use]
    pub fn decode(s: &str) -> Option<Meta> {
        serde_json::from_str(s).ok()
    }
}

/// How a task starts after an assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restore {
    /// The offset to read from (`None`: the group has no offset for the
    /// partition; `startFrom` applies and there is nothing to replay).
    pub seek: Option<i64>,
    /// Records below this offset are replays.
    pub replay_until: i64,
    /// The watermark to start from.
    pub wm: i64,
    /// The changelog snapshot to restore the state from, if any.
    pub snap: Option<u64>,
}

impl Restore {
    /// Nothing committed: start per `startFrom`, no replay.
    pub const FRESH: Restore = Restore {
        seek: None,
        replay_until: -1,
        wm: i64::MIN,
        snap: None,
    };

    /// The plan for a partition committed at `committed` with `metadata`.
    /// Metadata that is missing or inconsistent (`low` above the committed
    /// offset) means no state to rebuild: resume at the committed offset.
    #[must_use]
    pub fn plan(committed: Option<i64>, metadata: &str) -> Restore {
        let Some(p) = committed.filter(|&p| p >= 0) else {
            return Restore::FRESH;
        };
        match Meta::decode(metadata) {
            Some(m) if (0..=p).contains(&m.low) => Restore {
                seek: Some(m.low),
                replay_until: p,
                wm: m.wm,
                snap: m.snap,
            },
            _ => Restore {
                seek: Some(p),
                replay_until: p,
                wm: i64::MIN,
                snap: None,
            },
        }
    }

    /// This plan once its snapshot is restored: read from the committed
    /// offset, nothing to replay.
    #[must_use]
    pub fn from_snapshot(self) -> Restore {
        Restore {
            seek: Some(self.replay_until),
            ..self
        }
    }

    /// This plan without its snapshot (not found): replay.
    #[must_use]
    pub fn by_replay(self) -> Restore {
        Restore { snap: None, ..self }
    }
}

/// The low-water offset to commit: the smallest offset the steps hold,
/// never above the processed position `next`.
#[must_use]
pub fn low_water(next: i64, held: Option<i64>) -> i64 {
    held.map_or(next, |l| l.min(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_including_the_initial_watermark() {
        for m in [
            Meta {
                low: 5,
                wm: 1000,
                snap: None,
            },
            Meta {
                low: 0,
                wm: i64::MIN,
                snap: Some(u64::MAX),
            },
        ] {
            assert_eq!(Meta::decode(&m.encode()), Some(m));
        }
        assert_eq!(Meta::decode(""), None);
        assert_eq!(Meta::decode("someone else's"), None);
    }

    #[test]
    fn restore_replays_from_low_water_up_to_the_committed_offset() {
        let meta = Meta {
            low: 40,
            wm: 777,
            snap: None,
        }
        .encode();
        assert_eq!(
            Restore::plan(Some(100), &meta),
            Restore {
                seek: Some(40),
                replay_until: 100,
                wm: 777,
                snap: None,
            }
        );
    }

    #[test]
    fn a_snapshot_restore_reads_from_the_committed_offset_and_replays_nothing() {
        let meta = Meta {
            low: 40,
            wm: 777,
            snap: Some(9),
        }
        .encode();
        let plan = Restore::plan(Some(100), &meta);
        assert_eq!(plan.snap, Some(9));
        let restored = plan.from_snapshot();
        assert_eq!(restored.seek, Some(100));
        assert_eq!(restored.replay_until, 100);
        assert_eq!(restored.wm, 777);
        assert_eq!(plan.by_replay().seek, Some(40), "not found: replay from L");
        assert_eq!(plan.by_replay().snap, None);
    }

    #[test]
    fn foreign_or_inconsistent_metadata_resumes_at_the_committed_offset() {
        let resume = Restore {
            seek: Some(100),
            replay_until: 100,
            wm: i64::MIN,
            snap: None,
        };
        assert_eq!(Restore::plan(Some(100), ""), resume);
        let above = Meta {
            low: 101,
            wm: 5,
            snap: Some(3),
        }
        .encode();
        assert_eq!(Restore::plan(Some(100), &above), resume);
        assert_eq!(Restore::plan(None, "x"), Restore::FRESH);
        assert_eq!(Restore::plan(Some(-1001), ""), Restore::FRESH);
    }

    #[test]
    fn low_water_is_the_held_minimum_capped_at_the_position() {
        assert_eq!(low_water(50, None), 50);
        assert_eq!(low_water(50, Some(10)), 10);
        assert_eq!(low_water(50, Some(60)), 50);
    }
}
