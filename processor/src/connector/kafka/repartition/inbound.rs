//! Reading a repartition topic back: re-keyed records, upstream
//! watermarks, and what a downstream task has seen from each upstream one.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};
use serde_json::Value;

use crate::record::{Position, Record};
use crate::sink::DeadLetter;

use super::{KEY_HEADER, SEQ_HEADER, SIDE_HEADER, WATERMARK_HEADER};

/// An upstream task's watermark as carried by a control record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mark {
    /// Event time has reached this (epoch ms).
    At(i64),
    /// No record for `idleTimeout`: leave it out of the minimum.
    Idle,
}

/// Where a re-keyed record came from: the upstream task, and its place in
/// that task's source partition (offset, then output index).
pub type Seq = (Arc<str>, (i64, u32));

/// What a message of a repartition topic holds.
pub enum Inbound {
    /// A re-keyed record, with its origin when it was read from a source,
    /// and whether it is a join's `with` side.
    Record(Record, Option<Seq>, bool),
    /// An upstream task's watermark, read at an offset.
    Mark(i64, Arc<str>, Mark),
    /// Bytes that are not ours (written by someone else): a dead letter.
    Foreign(Box<DeadLetter>),
}

/// Reads a message of a repartition topic read at `position`.
#[must_use]
pub fn decode(msg: &BorrowedMessage<'_>, position: Position) -> Inbound {
    let mut headers = Vec::new();
    let mut key = None;
    let mut seq = None;
    let mut other = false;
    if let Some(hs) = msg.headers() {
        for h in hs.iter() {
            let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
            match h.key {
                WATERMARK_HEADER => {
                    if let Some(mark) = parse_mark(&v) {
                        return Inbound::Mark(position.offset, mark.0.into(), mark.1);
                    }
                }
                KEY_HEADER => key = Some(Arc::from(v.as_ref())),
                SEQ_HEADER => seq = parse_seq(&v),
                SIDE_HEADER => other = true,
                _ => headers.push((h.key.to_owned(), v.into_owned())),
            }
        }
    }
    let ts = msg.timestamp().to_millis().unwrap_or(0);
    let payload = msg.payload().unwrap_or_default();
    match serde_json::from_slice::<Value>(payload) {
        Ok(value) => Inbound::Record(
            Record {
                key,
                value,
                headers,
                event_time: ts,
                position,
                replay: false,
            },
            seq,
            other,
        ),
        Err(e) => {
            let raw = String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned();
            let rec = Record {
                position,
                ..Record::new(serde_json::json!({ "raw": raw }), ts)
            };
            Inbound::Foreign(Box::new(DeadLetter::new(
                "repartition",
                format!("not a record of this pipeline's repartition topic: {e}"),
                rec,
            )))
        }
    }
}

/// Parses `<upstream>@<offset>.<k>`.
#[must_use]
pub fn parse_seq(s: &str) -> Option<Seq> {
    let (who, place) = s.rsplit_once('@')?;
    let (offset, k) = place.split_once('.')?;
    Some((who.into(), (offset.parse().ok()?, k.parse().ok()?)))
}

/// Parses `<upstream>=<ms>` or `<upstream>=idle`.
#[must_use]
pub fn parse_mark(s: &str) -> Option<(&str, Mark)> {
    let (who, what) = s.rsplit_once('=')?;
    let mark = if what == "idle" {
        Mark::Idle
    } else {
        Mark::At(what.parse().ok()?)
    };
    Some((who, mark))
}

/// What a downstream task heard from its upstream tasks.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Upstream {
    marks: HashMap<Arc<str>, Mark>,
    /// The furthest place seen per upstream task (see `SEQ_HEADER`).
    seen: HashMap<Arc<str>, (i64, u32)>,
}

impl Upstream {
    /// Feeds what was heard into `h` in a fixed order (the maps' own order
    /// differs from one map to the next), so an unchanged `Upstream`
    /// hashes alike and its task's snapshot is not written again.
    pub fn hash_into(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        let mut marks: Vec<_> = self.marks.iter().collect();
        marks.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (id, mark) in marks {
            id.hash(h);
            match mark {
                Mark::At(wm) => wm.hash(h),
                Mark::Idle => h.write_u8(0xff),
            }
        }
        let mut seen: Vec<_> = self.seen.iter().collect();
        seen.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (id, place) in seen {
            id.hash(h);
            place.hash(h);
        }
    }

    /// The upstream tasks `ids`, each taken to be at `wm` (the restored
    /// watermark: every upstream task had passed it at the checkpoint; or
    /// `i64::MIN`) until it speaks.
    #[must_use]
    pub fn new(ids: &[Arc<str>], wm: i64) -> Self {
        Self {
            marks: ids.iter().map(|id| (id.clone(), Mark::At(wm))).collect(),
            seen: HashMap::new(),
        }
    }

    /// Whether a record from `seq` is new: past the furthest place seen
    /// from its upstream task (a re-sent one is not).
    pub fn fresh(&mut self, seq: Seq) -> bool {
        let (from, place) = seq;
        match self.seen.get_mut(&from) {
            Some(furthest) if place <= *furthest => false,
            Some(furthest) => {
                *furthest = place;
                true
            }
            None => {
                self.seen.insert(from, place);
                true
            }
        }
    }

    /// Notes a control record.
    pub fn note(&mut self, from: Arc<str>, mark: Mark) {
        self.marks.insert(from, mark);
    }

    /// The watermark every upstream task has passed: the minimum over
    /// those not idle; `None` while every one is idle.
    #[must_use]
    pub fn watermark(&self) -> Option<i64> {
        self.marks
            .values()
            .filter_map(|m| match m {
                Mark::At(ms) => Some(*ms),
                Mark::Idle => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_re_sent_by_an_upstream_task_are_not_fresh() {
        let mut u = Upstream::new(&[], i64::MIN);
        let seq = |s: &str| parse_seq(s).expect("a seq");
        assert!(u.fresh(seq("in:0@10.0")));
        assert!(u.fresh(seq("in:0@10.1")), "a second output of one input");
        assert!(u.fresh(seq("in:0@12.0")));
        assert!(u.fresh(seq("in:1@3.0")), "another upstream task");
        assert!(!u.fresh(seq("in:0@10.1")), "re-sent after a crash");
        assert!(!u.fresh(seq("in:0@12.0")));
        assert!(u.fresh(seq("in:0@13.0")));
        assert_eq!(parse_seq("a:b@c@5.2").map(|s| s.1), Some((5, 2)));
        assert!(parse_seq("in:0@x.1").is_none());
    }

    #[test]
    fn marks_parse_and_garbage_does_not() {
        assert_eq!(parse_mark("in:3=1700"), Some(("in:3", Mark::At(1700))));
        assert_eq!(parse_mark("a=b=idle"), Some(("a=b", Mark::Idle)));
        assert_eq!(parse_mark("in:3=soon"), None);
        assert_eq!(parse_mark("nothing"), None);
    }

    #[test]
    fn the_watermark_is_the_minimum_once_every_upstream_spoke_and_idle_ones_are_left_out() {
        let ids: Vec<Arc<str>> = ["a", "b", "c"].into_iter().map(Arc::from).collect();
        let mut u = Upstream::new(&ids, i64::MIN);
        u.note("a".into(), Mark::At(100));
        u.note("b".into(), Mark::At(50));
        assert_eq!(u.watermark(), Some(i64::MIN), "c has not spoken");
        u.note("c".into(), Mark::Idle);
        assert_eq!(u.watermark(), Some(50));
        u.note("b".into(), Mark::At(300));
        assert_eq!(u.watermark(), Some(100));
        u.note("a".into(), Mark::Idle);
        u.note("b".into(), Mark::Idle);
        assert_eq!(u.watermark(), None, "all idle: hold");
        u.note("c".into(), Mark::At(20));
        assert_eq!(u.watermark(), Some(20), "a returning task counts again");
    }

    #[test]
    fn equal_upstreams_hash_alike_whatever_their_maps_order() {
        let hash = |u: &Upstream| {
            let mut h = rustc_hash::FxHasher::default();
            u.hash_into(&mut h);
            std::hash::Hasher::finish(&h)
        };
        let ids: Vec<Arc<str>> = (0..20).map(|i| Arc::from(format!("in:{i}"))).collect();
        let mut a = Upstream::new(&ids, 5);
        let mut b = Upstream::new(&ids.iter().rev().cloned().collect::<Vec<_>>(), 5);
        for id in &ids {
            assert!(a.fresh((id.clone(), (3, 1))));
        }
        for id in ids.iter().rev() {
            assert!(b.fresh((id.clone(), (3, 1))));
        }
        assert_eq!(hash(&a), hash(&b));
        a.note(ids[0].clone(), Mark::Idle);
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn a_restored_task_holds_its_watermark_until_every_upstream_passes_it() {
        let ids: Vec<Arc<str>> = ["a", "b"].into_iter().map(Arc::from).collect();
        let mut u = Upstream::new(&ids, 1_000);
        assert_eq!(u.watermark(), Some(1_000));
        u.note("a".into(), Mark::At(5_000));
        assert_eq!(u.watermark(), Some(1_000), "b has not spoken since");
        u.note("b".into(), Mark::At(3_000));
        assert_eq!(u.watermark(), Some(3_000));
    }
}
