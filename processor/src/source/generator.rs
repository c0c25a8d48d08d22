//! The built-in generator: synthetic clickstream or IoT events, the same
//! sequence for the same seed, as fast as possible or at a fixed rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tributary_crds::{GeneratorProfile, GeneratorSource};

use super::decode::now_ms;
use super::{BATCH, Decoder};
use crate::flow::{Batch, Message, Queue};
use crate::record::{Position, Record};
use crate::rng::SplitMix64;

const ACTIONS: [&str; 8] = [
    "view",
    "view",
    "view",
    "click",
    "click",
    "scroll",
    "add_to_cart",
    "purchase",
];
const PAGES: [&str; 6] = ["/", "/search", "/product", "/cart", "/checkout", "/account"];

/// A configured generator.
#[derive(Clone, Debug)]
pub struct Generator {
    spec: GeneratorSource,
    source: Arc<str>,
}

impl Generator {
    /// A generator for `spec`.
    #[must_use]
    pub fn new(spec: GeneratorSource) -> Self {
        Self {
            spec,
            source: "generator".into(),
        }
    }

    /// The event with index `i`, given the generator clock `clock_ms`.
    fn event(&self, rng: &mut SplitMix64, i: u64, clock_ms: i64) -> Value {
        let s = &self.spec;
        let disorder = u64::try_from(s.disorder.as_millis_i64()).unwrap_or(0);
        let ts = clock_ms - i64::try_from(rng.below(disorder + 1)).unwrap_or(0);
        let key = rng.below(s.keys);
        let mut m = Map::new();
        match s.profile {
            GeneratorProfile::Clickstream => {
                let action = ACTIONS[usize::try_from(rng.below(ACTIONS.len() as u64)).unwrap_or(0)];
                let page = PAGES[usize::try_from(rng.below(PAGES.len() as u64)).unwrap_or(0)];
                let amount = if action == "purchase" {
                    (rng.unit() * 20_000.0).round() / 100.0
                } else {
                    0.0
                };
                let latency = 5.0 + (-rng.unit().max(1e-12).ln() * 40.0).round();
                m.insert("eventId".into(), Value::from(format!("e{i}")));
                m.insert("userId".into(), Value::from(format!("u{key}")));
                m.insert(
                    "sessionId".into(),
                    Value::from(format!("s{key}-{}", i / 5000)),
                );
                m.insert("action".into(), Value::from(action));
                m.insert("page".into(), Value::from(page));
                m.insert("amount".into(), Value::from(amount));
                m.insert("latencyMs".into(), Value::from(latency));
            }
            GeneratorProfile::Iot => {
                let spike = rng.below(1000) == 0;
                let base = 20.0 + f64::from(u32::try_from(key % 10).unwrap_or(0));
                let temp = base + (rng.unit() - 0.5) * 2.0 + if spike { 25.0 } else { 0.0 };
                m.insert("sensorId".into(), Value::from(format!("s{key}")));
                m.insert(
                    "temperature".into(),
                    Value::from((temp * 100.0).round() / 100.0),
                );
                m.insert(
                    "humidity".into(),
                    Value::from((40.0 + rng.unit() * 30.0).round()),
                );
                m.insert(
                    "battery".into(),
                    Value::from(100 - i64::try_from(i / 10_000 % 100).unwrap_or(0)),
                );
            }
        }
        m.insert("ts".into(), Value::from(ts));
        Value::Object(m)
    }

    /// Produces events into `queue` until `count` is reached or `stop` is set.
    pub fn run(&self, decoder: &Decoder, queue: &Queue, stop: &AtomicBool) {
        let s = &self.spec;
        let mut rng = SplitMix64::new(s.seed);
        let start_clock = s.start_time.unwrap_or_else(now_ms);
        let step = s.time_step.as_millis_i64().max(0);
        let started = Instant::now();
        let rated = s.rate > 0.0;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let batch_len = if rated {
            ((s.rate / 50.0) as usize).clamp(1, BATCH)
        } else {
            BATCH
        };
        let mut i: u64 = 0;
        let end = s.count.unwrap_or(u64::MAX);
        while i < end && !stop.load(Ordering::Relaxed) {
            let n = usize::try_from((end - i).min(batch_len as u64)).unwrap_or(batch_len);
            let mut batch = Batch {
                partition: 0,
                records: Vec::with_capacity(n),
                dead: Vec::new(),
                created: Some(std::time::Instant::now()),
            };
            for _ in 0..n {
                let clock = if rated {
                    now_ms()
                } else {
                    start_clock
                        .saturating_add(i64::try_from(i).unwrap_or(i64::MAX).saturating_mul(step))
                };
                let value = self.event(&mut rng, i, clock);
                let position = Position {
                    source: self.source.clone(),
                    partition: 0,
                    offset: i64::try_from(i).unwrap_or(i64::MAX),
                };
                let rec = Record {
                    position,
                    ..Record::new(value, clock)
                };
                match decoder.stamp(rec) {
                    Ok(r) => batch.records.push(r),
                    Err(dl) => batch.dead.push(*dl),
                }
                i += 1;
            }
            queue.push(Message::Batch(batch));
            if rated {
                #[allow(clippy::cast_precision_loss)]
                let due = Duration::from_secs_f64(i as f64 / s.rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        if s.count.is_some() {
            queue.push(Message::End { partition: 0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(seed: u64, n: u64) -> Vec<Value> {
        let g = Generator::new(GeneratorSource {
            seed,
            start_time: Some(0),
            ..GeneratorSource::default()
        });
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|i| g.event(&mut rng, i, i64::try_from(i).unwrap()))
            .collect()
    }

    #[test]
    fn same_seed_same_events() {
        assert_eq!(events(7, 100), events(7, 100));
        assert_ne!(events(7, 100), events(8, 100));
    }

    #[test]
    fn clickstream_has_the_documented_fields() {
        let e = &events(1, 1)[0];
        for f in ["userId", "action", "amount", "latencyMs", "ts"] {
            assert!(e.get(f).is_some(), "missing {f} in {e}");
        }
    }
}
