//! `dedupe`: keep the first record per key within a span of event time.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use tributary_crds::DedupeStep;

use super::window::Key;
use super::{Emit, Step, StepError};
use crate::expr::{Expr, ExprError};
use crate::record::Record;
use crate::sink::DeadLetter;

/// Drops a record when a record with the same key was kept less than
/// `within` before or after it (event time). State for a key is released
/// once the watermark passes its kept time plus `within`, so memory is
/// bounded by the keys seen in one `within` span.
pub struct Dedupe {
    name: String,
    key: Expr,
    within: i64,
    /// Per key, the kept record's (event time, source offset).
    seen: FxHashMap<Key, (i64, i64)>,
    expiry: BTreeMap<i64, Vec<Key>>,
}

impl Dedupe {
    /// A dedupe step.
    ///
    /// # Errors
    /// When the key expression does not compile.
    pub fn new(name: String, spec: &DedupeStep, env: &Arc<cel::Env>) -> Result<Self, ExprError> {
        Ok(Self {
            name,
            key: Expr::compile(&spec.key, env)?,
            within: spec.within.as_millis_i64().max(1),
            seen: FxHashMap::default(),
            expiry: BTreeMap::new(),
        })
    }
}

/// The dedupe state in the changelog.
type State = (FxHashMap<Key, (i64, i64)>, BTreeMap<i64, Vec<Key>>);

impl Step for Dedupe {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> super::Snapshot {
        super::encode(&(&self.seen, &self.expiry))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let (seen, expiry): State = super::decode(state)?;
        self.seen = seen;
        self.expiry = expiry;
        Ok(())
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        for rec in input {
            let key = match self.key.eval(&rec.value) {
                Ok(v) => Key::from_values(vec![v]),
                Err(e) => {
                    emit.dead
                        .push(DeadLetter::new(&self.name, e.to_string(), rec));
                    continue;
                }
            };
            let ts = rec.event_time;
            match self.seen.get(&key) {
                Some(&(kept, _)) if ts.abs_diff(kept) < self.within.unsigned_abs() => {
                    emit.dropped += 1;
                }
                _ => {
                    self.expiry
                        .entry(ts.saturating_add(self.within))
                        .or_default()
                        .push(key.clone());
                    let offset = rec.position.offset;
                    self.seen
                        .insert(key, (ts, if offset >= 0 { offset } else { i64::MAX }));
                    emit.out.push(rec);
                }
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: i64, _: &mut Emit) {
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() > wm {
                break;
            }
            let at = *entry.key();
            for key in entry.remove() {
                // Only forget the key if this entry is its current one.
                if self
                    .seen
                    .get(&key)
                    .is_some_and(|&(kept, _)| kept.saturating_add(self.within) == at)
                {
                    self.seen.remove(&key);
                }
            }
        }
    }

    fn state_size(&self) -> usize {
        self.seen.len()
    }

    fn low_water(&self) -> Option<i64> {
        self.seen
            .values()
            .map(|&(_, o)| o)
            .min()
            .filter(|&o| o != i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dedupe(within: &str) -> Dedupe {
        let spec: DedupeStep =
            serde_yaml_ng::from_str(&format!("{{key: event.id, within: {within}}}")).unwrap();
        Dedupe::new("d".into(), &spec, &crate::expr::env()).unwrap()
    }

    fn run(d: &mut Dedupe, events: &[(&str, i64)]) -> Vec<(String, i64)> {
        let mut emit = Emit::default();
        let recs = events
            .iter()
            .map(|(id, ts)| Record::new(json!({"id": id}), *ts))
            .collect();
        d.process(recs, &mut emit).unwrap();
        emit.out
            .iter()
            .map(|r| (r.value["id"].as_str().unwrap().to_owned(), r.event_time))
            .collect()
    }

    #[test]
    fn keeps_the_first_per_key_within_the_span() {
        let mut d = dedupe("10s");
        let kept = run(
            &mut d,
            &[
                ("a", 0),
                ("b", 1),
                ("a", 9_999),
                ("a", 10_000),
                ("b", 5_000),
            ],
        );
        assert_eq!(
            kept,
            vec![("a".into(), 0), ("b".into(), 1), ("a".into(), 10_000)]
        );
    }

    #[test]
    fn a_restored_snapshot_remembers_what_was_kept_and_when_to_forget_it() {
        let mut d = dedupe("1s");
        run(&mut d, &[("a", 0), ("b", 500)]);
        let crate::step::Snapshot::State(bytes) = d.snapshot() else {
            panic!("dedupe writes its state");
        };
        let mut r = dedupe("1s");
        r.restore(&bytes).unwrap();
        assert_eq!(
            run(&mut r, &[("a", 900), ("c", 900)]),
            vec![("c".into(), 900)]
        );
        r.on_watermark(1000, &mut Emit::default());
        assert_eq!(
            run(&mut r, &[("a", 1_200)]),
            vec![("a".into(), 1_200)],
            "a expired"
        );
        assert!(r.restore(b"\x01garbage").is_err());
    }

    #[test]
    fn releases_state_after_the_watermark_passes() {
        let mut d = dedupe("1s");
        run(&mut d, &[("a", 0), ("b", 500)]);
        assert_eq!(d.state_size(), 2);
        d.on_watermark(1000, &mut Emit::default());
        assert_eq!(d.state_size(), 1);
        d.on_watermark(1500, &mut Emit::default());
        assert_eq!(d.state_size(), 0);
    }
}

#[cfg(test)]
mod low_water_tests {
    use serde_json::json;

    use super::*;
    use crate::record::Position;

    #[test]
    fn low_water_is_the_oldest_kept_offset_until_released() {
        let spec: DedupeStep = serde_yaml_ng::from_str("{key: event.id, within: 1s}").unwrap();
        let mut d = Dedupe::new("d".into(), &spec, &crate::expr::env()).unwrap();
        let rec = |id: &str, ts: i64, offset: i64| Record {
            position: Position {
                offset,
                ..Position::default()
            },
            ..Record::new(json!({"id": id}), ts)
        };
        let mut emit = Emit::default();
        d.process(
            vec![rec("a", 0, 4), rec("a", 10, 5), rec("b", 500, 6)],
            &mut emit,
        )
        .unwrap();
        assert_eq!(d.low_water(), Some(4), "the duplicate at 5 is not held");
        d.on_watermark(1000, &mut emit);
        assert_eq!(d.low_water(), Some(6));
        d.on_watermark(1500, &mut emit);
        assert_eq!(d.low_water(), None);
    }
}
