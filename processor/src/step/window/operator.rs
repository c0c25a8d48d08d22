//! The window step: evaluates `keyBy` and `of` per record, feeds the
//! kernel, applies `lateEvents`, `having` and `trigger`, and turns kernel
//! results into flat output records.

use std::sync::Arc;

use serde_json::{Map, Value};
use tributary_crds::{AggregateFn, LateEvents, WindowStep, WindowType};

use super::{
    AggFn, AggSpec, EmitMode, Inserted, Key, WindowConfig, WindowKind, WindowOperatorState,
    WindowResult,
};
use crate::expr::{Expr, ExprError};
use crate::record::{Position, Record};
use crate::sink::DeadLetter;
use crate::step::{Emit, Step, StepError};

/// A window step over one input stream.
pub struct Windowed {
    name: String,
    keys: Vec<(String, Expr)>,
    inputs: Vec<Option<Expr>>,
    agg_names: Vec<String>,
    having: Option<Expr>,
    late: LateEvents,
    every: Option<i64>,
    last_trigger: i64,
    state: WindowOperatorState,
    wm: i64,
    results: Vec<WindowResult>,
    input_buf: Vec<Value>,
    source: Arc<str>,
}

fn agg_fn(f: AggregateFn, q: Option<f64>) -> AggFn {
    match f {
        AggregateFn::Count => AggFn::Count,
        AggregateFn::Sum => AggFn::Sum,
        AggregateFn::Avg => AggFn::Avg,
        AggregateFn::Min => AggFn::Min,
        AggregateFn::Max => AggFn::Max,
        AggregateFn::First => AggFn::First,
        AggregateFn::Last => AggFn::Last,
        AggregateFn::Percentile => AggFn::Percentile {
            q: q.unwrap_or(0.5),
        },
        AggregateFn::Stddev => AggFn::Stddev,
        AggregateFn::Variance => AggFn::Variance,
        AggregateFn::StddevPop => AggFn::StddevPop,
        AggregateFn::VariancePop => AggFn::VariancePop,
        AggregateFn::Distinct => AggFn::Distinct,
    }
}

impl Windowed {
    /// A window step.
    ///
    /// # Errors
    /// When an expression does not compile.
    pub fn new(name: String, spec: &WindowStep, env: &Arc<cel::Env>) -> Result<Self, ExprError> {
        let ms = |d: Option<tributary_crds::Duration>| d.map_or(1, |d| d.as_millis_i64().max(1));
        let kind = match spec.kind {
            WindowType::Tumbling => WindowKind::Tumbling {
                size: ms(spec.size),
            },
            WindowType::Sliding => WindowKind::Sliding {
                size: ms(spec.size),
                slide: ms(spec.slide),
            },
            WindowType::Session => WindowKind::Session { gap: ms(spec.gap) },
            WindowType::Count => WindowKind::Count {
                count: spec.count.unwrap_or(1).max(1),
            },
        };
        let emit = match spec.emit {
            tributary_crds::EmitMode::Final => EmitMode::Final,
            tributary_crds::EmitMode::Updates => EmitMode::Updates,
            tributary_crds::EmitMode::All => EmitMode::All,
        };
        let aggs = spec
            .aggregate
            .iter()
            .map(|a| AggSpec {
                name: a.name.clone(),
                func: agg_fn(a.func, a.q),
            })
            .collect();
        let keys = spec
            .key_by
            .iter()
            .map(|k| Ok((k.output_name(), Expr::compile(k.expr(), env)?)))
            .collect::<Result<Vec<_>, ExprError>>()?;
        let inputs = spec
            .aggregate
            .iter()
            .map(|a| a.of.as_deref().map(|e| Expr::compile(e, env)).transpose())
            .collect::<Result<Vec<_>, ExprError>>()?;
        let agg_names: Vec<String> = spec.aggregate.iter().map(|a| a.name.clone()).collect();
        let mut vars: Vec<String> = keys.iter().map(|(n, _)| n.clone()).collect();
        vars.extend(agg_names.iter().cloned());
        vars.extend(["windowStart".to_owned(), "windowEnd".to_owned()]);
        let having = spec
            .having
            .as_deref()
            .map(|h| Expr::compile_with_vars(h, env, &vars))
            .transpose()?;
        let state = WindowOperatorState::new(WindowConfig {
            kind,
            aggs,
            allowed_lateness: spec.allowed_lateness.as_millis_i64(),
            emit,
        });
        let n = inputs.len();
        Ok(Self {
            source: name.as_str().into(),
            name,
            keys,
            inputs,
            agg_names,
            having,
            late: spec.late_events().unwrap_or(LateEvents::Drop),
            every: (emit != EmitMode::Final).then(|| {
                spec.trigger
                    .as_ref()
                    .map_or(1000, |t| t.every.as_millis_i64().max(1))
            }),
            last_trigger: 0,
            state,
            wm: i64::MIN,
            results: Vec::new(),
            input_buf: Vec::with_capacity(n),
        })
    }

    /// Turns kernel results into records, applying `having`.
    fn drain_results(&mut self, emit: &mut Emit) {
        for r in self.results.drain(..) {
            let mut m = Map::with_capacity(2 + self.keys.len() + self.agg_names.len());
            m.insert("windowStart".into(), Value::from(r.start));
            m.insert("windowEnd".into(), Value::from(r.end));
            for ((name, _), v) in self.keys.iter().zip(r.key.into_values()) {
                m.insert(name.clone(), v);
            }
            for (name, v) in self.agg_names.iter().zip(r.values) {
                m.insert(name.clone(), v);
            }
            let value = Value::Object(m);
            if let Some(h) = &self.having {
                match h.eval_bool(&value) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        let rec = Record::new(value, r.end.saturating_sub(1));
                        emit.dead
                            .push(DeadLetter::new(&self.name, format!("having: {e}"), rec));
                        continue;
                    }
                }
            }
            let position = Position {
                source: self.source.clone(),
                partition: 0,
                offset: Position::DERIVED,
            };
            // A result belongs to the last instant of its window, as in Flink.
            emit.out.push(Record {
                position,
                ..Record::new(value, r.end.saturating_sub(1))
            });
        }
    }

    fn late(&self, rec: Record, emit: &mut Emit) {
        emit.late += 1;
        match &self.late {
            LateEvents::Drop => emit.dropped += 1,
            LateEvents::Log => {
                tracing::info!(step = %self.name, event_time = rec.event_time, watermark = self.wm, "late event dropped");
                emit.dropped += 1;
            }
            LateEvents::DeadLetter => {
                let msg = format!(
                    "late event: time {} is behind the watermark {} beyond the allowed lateness",
                    rec.event_time, self.wm
                );
                emit.dead.push(DeadLetter::new(&self.name, msg, rec));
            }
            LateEvents::SideOutput(sink) => emit.side.push((sink.as_str().into(), rec)),
        }
    }
}

impl Step for Windowed {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> crate::step::Snapshot {
        crate::step::encode(&(self.wm, self.last_trigger, &self.state))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let (wm, last_trigger, state): (i64, i64, WindowOperatorState) =
            crate::step::decode(state)?;
        self.wm = wm;
        self.last_trigger = last_trigger;
        self.state = state;
        Ok(())
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        'records: for rec in input {
            let mut key_values = Vec::with_capacity(self.keys.len());
            for (_, k) in &self.keys {
                match k.eval(&rec.value) {
                    Ok(v) => key_values.push(v),
                    Err(e) => {
                        emit.dead
                            .push(DeadLetter::new(&self.name, format!("keyBy: {e}"), rec));
                        continue 'records;
                    }
                }
            }
            self.input_buf.clear();
            for input in &self.inputs {
                let v = match input {
                    None => Value::Null,
                    Some(e) => match e.eval(&rec.value) {
                        Ok(v) => v,
                        Err(e) => {
                            emit.dead.push(DeadLetter::new(
                                &self.name,
                                format!("aggregate: {e}"),
                                rec,
                            ));
                            continue 'records;
                        }
                    },
                };
                self.input_buf.push(v);
            }
            let key = Key::from_values(key_values);
            let offset = rec.position.offset;
            self.state
                .set_offset(if offset >= 0 { offset } else { i64::MAX });
            let before = self.results.len();
            match self.state.insert(
                key,
                rec.event_time,
                &self.input_buf,
                self.wm,
                &mut self.results,
            ) {
                // A replayed record rebuilds state; what it fires at once (a
                // late re-firing, a full count window) was output before the
                // checkpoint it is replayed from.
                Inserted::Accepted if rec.replay => self.results.truncate(before),
                Inserted::Accepted => {}
                // Its window closed before that checkpoint: handled then.
                Inserted::Late if rec.replay => {}
                Inserted::Late => self.late(rec, emit),
            }
        }
        self.drain_results(emit);
        Ok(())
    }

    fn on_watermark(&mut self, wm: i64, emit: &mut Emit) {
        if wm > self.wm {
            self.wm = wm;
            self.state.advance_watermark(wm, &mut self.results);
            self.drain_results(emit);
        }
    }

    fn on_tick(&mut self, now: i64, emit: &mut Emit) {
        if let Some(every) = self.every {
            if self.last_trigger == 0 {
                self.last_trigger = now;
            } else if now - self.last_trigger >= every {
                self.last_trigger = now;
                self.state.trigger(&mut self.results);
                self.drain_results(emit);
            }
        }
    }

    fn finish(&mut self, emit: &mut Emit) {
        self.state.flush(&mut self.results);
        self.drain_results(emit);
    }

    fn state_size(&self) -> usize {
        self.state.state_size()
    }

    fn low_water(&self) -> Option<i64> {
        self.state.low_water()
    }
}

#[cfg(test)]
mod replay_tests {
    //! The replay rules a restore relies on (see `connector::kafka`).

    use serde_json::json;

    use super::*;

    fn windowed(extra: &str) -> Windowed {
        let spec: WindowStep = serde_yaml_ng::from_str(&format!(
            "{{type: tumbling, size: 10s, keyBy: [event.k], aggregate: [{{name: n, fn: count}}]{extra}}}"
        ))
        .unwrap();
        Windowed::new("w".into(), &spec, &crate::expr::env()).unwrap()
    }

    fn rec(ts: i64, offset: i64, replay: bool) -> Record {
        Record {
            position: Position {
                source: "in".into(),
                partition: 0,
                offset,
            },
            replay,
            ..Record::new(json!({"k": "a"}), ts)
        }
    }

    fn counts(emit: &Emit) -> Vec<(i64, i64)> {
        emit.out
            .iter()
            .map(|r| {
                (
                    r.value["windowStart"].as_i64().unwrap(),
                    r.value["n"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_replayed_record_of_a_closed_window_is_skipped_silently() {
        let mut w = windowed(", lateEvents: deadLetter");
        w.on_watermark(20_000, &mut Emit::default());
        let mut emit = Emit::default();
        w.process(vec![rec(5_000, 1, true)], &mut emit).unwrap();
        assert!(emit.dead.is_empty() && emit.late == 0, "{emit:?}");
        w.process(vec![rec(5_000, 2, false)], &mut emit).unwrap();
        assert_eq!(
            (emit.dead.len(), emit.late),
            (1, 1),
            "a live late record is still late"
        );
    }

    #[test]
    fn replayed_records_rebuild_open_windows_whose_results_are_new() {
        let mut w = windowed("");
        w.on_watermark(9_000, &mut Emit::default());
        let mut emit = Emit::default();
        w.process(vec![rec(9_500, 3, true), rec(9_600, 4, false)], &mut emit)
            .unwrap();
        assert!(emit.out.is_empty());
        w.on_watermark(10_000, &mut emit);
        assert_eq!(counts(&emit), vec![(0, 2)]);
        assert!(
            !emit.out[0].replay,
            "a window result is output even if replays built it"
        );
        assert_eq!(emit.out[0].position.offset, Position::DERIVED);
    }

    #[test]
    fn a_replayed_record_does_not_refire_a_window_within_lateness() {
        let mut w = windowed(", allowedLateness: 1m");
        let mut emit = Emit::default();
        w.process(vec![rec(1_000, 1, false)], &mut emit).unwrap();
        w.on_watermark(10_000, &mut emit);
        assert_eq!(counts(&emit), vec![(0, 1)]);
        let mut emit = Emit::default();
        w.process(vec![rec(2_000, 2, true)], &mut emit).unwrap();
        assert!(emit.out.is_empty(), "{:?}", counts(&emit));
        w.process(vec![rec(3_000, 3, false)], &mut emit).unwrap();
        assert_eq!(
            counts(&emit),
            vec![(0, 3)],
            "the live one refires with the rebuilt state"
        );
    }

    #[test]
    fn low_water_is_the_oldest_offset_still_held() {
        let mut w = windowed(", allowedLateness: 5s");
        assert_eq!(w.low_water(), None);
        let mut emit = Emit::default();
        w.process(
            vec![
                rec(15_000, 8, false),
                rec(1_000, 7, false),
                rec(12_000, 9, false),
            ],
            &mut emit,
        )
        .unwrap();
        assert_eq!(w.low_water(), Some(7));
        w.on_watermark(10_000, &mut emit);
        assert_eq!(w.low_water(), Some(7), "kept for allowed lateness");
        w.on_watermark(15_000, &mut emit);
        assert_eq!(w.low_water(), Some(8), "window [0, 10s) purged");
    }
}

#[cfg(test)]
mod snapshot_tests {
    //! The changelog contract: a window step restored from its snapshot
    //! goes on exactly as the one that wrote it.

    use serde_json::json;

    use super::*;
    use crate::step::Snapshot;

    const AGGS: &str = "[{name: n, fn: count}, {name: s, fn: sum, of: event.v}, \
        {name: a, fn: avg, of: event.v}, {name: lo, fn: min, of: event.v}, \
        {name: hi, fn: max, of: event.v}, {name: f, fn: first, of: event.v}, \
        {name: l, fn: last, of: event.v}, {name: p, fn: percentile, q: 0.9, of: event.v}, \
        {name: sd, fn: stddev, of: event.v}, {name: d, fn: distinct, of: event.u}]";

    fn windowed(kind: &str) -> Windowed {
        let spec: WindowStep = serde_yaml_ng::from_str(&format!(
            "{{{kind}, keyBy: [event.k], aggregate: {AGGS}, allowedLateness: 2s}}"
        ))
        .unwrap();
        Windowed::new("w".into(), &spec, &crate::expr::env()).unwrap()
    }

    /// A deterministic stream: 3 keys, values and up to 300 distinct users
    /// (so `distinct` passes from exact to HyperLogLog), some disorder.
    fn records(from: i64, n: i64) -> Vec<Record> {
        (from..from + n)
            .map(|i| {
                // Pauses of 3 s every 200 records close sessions.
                let ts = i * 37 + (i / 200) * 3_000 - (i % 7) * 50;
                let value =
                    json!({"k": format!("k{}", i % 3), "v": (i * 7919) % 1000, "u": i % 300});
                Record {
                    position: Position {
                        source: "in".into(),
                        partition: 0,
                        offset: i,
                    },
                    ..Record::new(value, ts)
                }
            })
            .collect()
    }

    /// Feeds `recs` in batches of 50, advancing the watermark after each.
    fn feed(w: &mut Windowed, recs: Vec<Record>) -> Vec<Value> {
        let mut emit = Emit::default();
        let mut recs = recs.into_iter().peekable();
        while recs.peek().is_some() {
            let batch: Vec<Record> = recs.by_ref().take(50).collect();
            let wm = batch.iter().map(|r| r.event_time).max().unwrap_or(0) - 500;
            w.process(batch, &mut emit).unwrap();
            w.on_watermark(wm, &mut emit);
        }
        emit.out.into_iter().map(|r| r.value).collect()
    }

    #[test]
    fn every_window_kind_restored_from_its_snapshot_goes_on_as_the_original() {
        for kind in [
            "type: tumbling, size: 5s",
            "type: sliding, size: 6s, slide: 2s",
            "type: session, gap: 1s",
            "type: count, count: 40",
        ] {
            let mut original = windowed(kind);
            let mut uninterrupted = windowed(kind);
            let first = records(0, 1_000);
            assert_eq!(
                feed(&mut original, first.clone()),
                feed(&mut uninterrupted, first)
            );
            let Snapshot::State(bytes) = original.snapshot() else {
                panic!("{kind}: a window step writes its state");
            };
            let mut restored = windowed(kind);
            restored.restore(&bytes).unwrap();
            assert_eq!(restored.state_size(), original.state_size(), "{kind}");
            assert_eq!(restored.low_water(), original.low_water(), "{kind}");
            let rest = records(1_000, 1_000);
            let want = feed(&mut uninterrupted, rest.clone());
            assert!(!want.is_empty(), "{kind}: the test fires windows");
            assert_eq!(feed(&mut restored, rest), want, "{kind}");
            let mut end = Emit::default();
            restored.finish(&mut end);
            let mut want_end = Emit::default();
            uninterrupted.finish(&mut want_end);
            let values = |e: Emit| e.out.into_iter().map(|r| r.value).collect::<Vec<_>>();
            assert_eq!(values(end), values(want_end), "{kind}: flushed at the end");
        }
    }

    #[test]
    fn garbage_is_refused_not_half_taken() {
        let mut w = windowed("type: tumbling, size: 5s");
        assert!(w.restore(b"not a snapshot").is_err());
        assert_eq!(w.state_size(), 0);
    }
}
