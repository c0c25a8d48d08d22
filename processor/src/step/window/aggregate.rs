//! Mergeable accumulators for the window aggregates.
//!
//! Every accumulator can absorb an event ([`Acc::update`]) and another
//! accumulator ([`Acc::merge`]); merging is what lets sliding windows keep
//! one accumulator per pane and sessions fuse when an event bridges them.
//! Merging is commutative and associative (up to float rounding), so the
//! order in which panes or sessions are merged does not change results.

use std::hash::{BuildHasher, Hasher};

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use super::key::{canonical_hash, fmix64};
use super::{AggFn, AggSpec};

/// Stands in for the input of an aggregate the caller gave no value for.
static NULL: Value = Value::Null;

/// Up to this many distinct values `distinct` counts exactly (by 64-bit
/// hash); beyond, it switches to `HyperLogLog++`.
const EXACT_DISTINCT_LIMIT: usize = 128;

/// `HyperLogLog++` precision: 2^14 registers, a standard error of 0.81%, so the
/// 2% bound of the contract holds at about 2.5 sigma.
const HLL_PRECISION: u8 = 14;

/// The accumulated state of one window (or pane, or session) for one key.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Acc {
    /// Events added; `count` reads it, and 0 means "no data".
    pub(super) count: u64,
    /// Smallest source offset of the events absorbed (`i64::MAX` if none is
    /// tracked): what a restore must replay to rebuild this accumulator.
    pub(super) min_offset: i64,
    states: Box<[AggState]>,
}

/// An input value stamped with its event time and arrival sequence, so that
/// first/last are decided by (event time, arrival) whatever the merge order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stamped {
    ts: i64,
    seq: u64,
    value: Value,
}

#[derive(Debug, Serialize, Deserialize)]
enum AggState {
    /// `count` needs nothing beyond [`Acc::count`].
    Count,
    /// `sum` and `avg`: the sum of the numeric inputs and how many there were.
    Sum {
        sum: f64,
        n: u64,
    },
    Min(Option<f64>),
    Max(Option<f64>),
    First(Option<Stamped>),
    Last(Option<Stamped>),
    /// Welford's running mean and sum of squared deviations.
    Moments {
        n: u64,
        mean: f64,
        m2: f64,
    },
    Sketch(Box<Sketch>),
    Distinct(Distinct),
}

/// `DDSketch` is not `Debug`; this wrapper shows its size instead.
#[derive(Serialize, Deserialize)]
struct Sketch(DDSketch);

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DDSketch(count={})", self.0.count())
    }
}

/// `distinct`: exact while small, `HyperLogLog++` once large.
#[derive(Debug, Serialize, Deserialize)]
enum Distinct {
    /// Sorted, deduplicated canonical hashes.
    Exact(Vec<u64>),
    Sketch(Box<Hll>),
}

type Hll = HyperLogLogPlus<u64, PassThroughBuild>;

/// Builds [`PassThrough`] hashers. A named type rather than
/// `BuildHasherDefault` because the sketch stores its builder, and the
/// sketch must serialize (the Kafka changelog).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct PassThroughBuild;

impl BuildHasher for PassThroughBuild {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough::default()
    }
}

/// A hasher for values that already are well-mixed 64-bit hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else so it is still sound.
        for &b in bytes {
            self.0 = fmix64(self.0 ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

/// The numeric value of an input: JSON numbers and strings that parse as
/// numbers; `None` for anything else and for non-finite values, so a stray
/// `"NaN"` cannot poison a sum or a min.
pub(super) fn numeric(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }?;
    f.is_finite().then_some(f)
}

/// `n` as a float. Exact below 2^53, far above any per-window count.
#[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
fn count_f64(n: u64) -> f64 {
    n as f64
}

/// A float as JSON; `null` when it is not finite (JSON has no NaN or ∞).
fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

impl Acc {
    /// An empty accumulator for `aggs` (one allocation, none if `aggs` is empty).
    pub(super) fn new(aggs: &[AggSpec]) -> Acc {
        let states = aggs
            .iter()
            .map(|a| match a.func {
                AggFn::Count => AggState::Count,
                AggFn::Sum | AggFn::Avg => AggState::Sum { sum: 0.0, n: 0 },
                AggFn::Min => AggState::Min(None),
                AggFn::Max => AggState::Max(None),
                AggFn::First => AggState::First(None),
                AggFn::Last => AggState::Last(None),
                AggFn::Percentile { .. } => {
                    AggState::Sketch(Box::new(Sketch(DDSketch::new(SketchConfig::defaults()))))
                }
                AggFn::Stddev | AggFn::Variance | AggFn::StddevPop | AggFn::VariancePop => {
                    AggState::Moments {
                        n: 0,
                        mean: 0.0,
                        m2: 0.0,
                    }
                }
                AggFn::Distinct => AggState::Distinct(Distinct::Exact(Vec::new())),
            })
            .collect();
        Acc {
            count: 0,
            min_offset: i64::MAX,
            states,
        }
    }

    /// Adds one event: `inputs[i]` is aggregate `i`'s input (missing = null).
    pub(super) fn update(&mut self, ts: i64, seq: u64, inputs: &[Value]) {
        self.count += 1;
        for (i, st) in self.states.iter_mut().enumerate() {
            let v = inputs.get(i).unwrap_or(&NULL);
            match st {
                AggState::Count => {}
                AggState::Sum { sum, n } => {
                    if let Some(x) = numeric(v) {
                        *sum += x;
                        *n += 1;
                    }
                }
                AggState::Min(m) => {
                    if let Some(x) = numeric(v) {
                        *m = Some(m.map_or(x, |c| c.min(x)));
                    }
                }
                AggState::Max(m) => {
                    if let Some(x) = numeric(v) {
                        *m = Some(m.map_or(x, |c| c.max(x)));
                    }
                }
                AggState::First(slot) => match slot {
                    Some(c) if (c.ts, c.seq) <= (ts, seq) => {}
                    Some(c) => {
                        c.ts = ts;
                        c.seq = seq;
                        c.value.clone_from(v);
                    }
                    None => {
                        *slot = Some(Stamped {
                            ts,
                            seq,
                            value: v.clone(),
                        });
                    }
                },
                AggState::Last(slot) => match slot {
                    Some(c) if (c.ts, c.seq) > (ts, seq) => {}
                    Some(c) => {
                        c.ts = ts;
                        c.seq = seq;
                        // Reuses the old value's allocation where it can.
                        c.value.clone_from(v);
                    }
                    None => {
                        *slot = Some(Stamped {
                            ts,
                            seq,
                            value: v.clone(),
                        });
                    }
                },
                AggState::Moments { n, mean, m2 } => {
                    if let Some(x) = numeric(v) {
                        *n += 1;
                        let nf = count_f64(*n);
                        let delta = x - *mean;
                        *mean += delta / nf;
                        *m2 += delta * (x - *mean);
                    }
                }
                AggState::Sketch(s) => {
                    if let Some(x) = numeric(v) {
                        s.0.add(x);
                    }
                }
                AggState::Distinct(d) => {
                    if !v.is_null() {
                        d.insert(canonical_hash(v));
                    }
                }
            }
        }
    }

    /// Folds `other` into `self`, as if `other`'s events had been added here.
    pub(super) fn merge(&mut self, other: &Acc) {
        self.count += other.count;
        self.min_offset = self.min_offset.min(other.min_offset);
        for (st, o) in self.states.iter_mut().zip(other.states.iter()) {
            match (st, o) {
                (AggState::Sum { sum, n }, AggState::Sum { sum: s2, n: n2 }) => {
                    *sum += s2;
                    *n += n2;
                }
                (AggState::Min(m), AggState::Min(Some(x))) => {
                    *m = Some(m.map_or(*x, |c| c.min(*x)));
                }
                (AggState::Max(m), AggState::Max(Some(x))) => {
                    *m = Some(m.map_or(*x, |c| c.max(*x)));
                }
                (AggState::First(slot), AggState::First(Some(x)))
                    if slot.as_ref().is_none_or(|c| (x.ts, x.seq) < (c.ts, c.seq)) =>
                {
                    *slot = Some(x.clone());
                }
                (AggState::Last(slot), AggState::Last(Some(x)))
                    if slot.as_ref().is_none_or(|c| (x.ts, x.seq) > (c.ts, c.seq)) =>
                {
                    *slot = Some(x.clone());
                }
                (
                    AggState::Moments { n, mean, m2 },
                    AggState::Moments {
                        n: nb,
                        mean: mb,
                        m2: m2b,
                    },
                ) => merge_moments((n, mean, m2), (*nb, *mb, *m2b)),
                (AggState::Sketch(s), AggState::Sketch(x)) => {
                    // Fails only for different configs; all sketches share one.
                    let _ = s.0.merge(&x.0);
                }
                (AggState::Distinct(d), AggState::Distinct(x)) => d.merge(x),
                _ => {}
            }
        }
    }

    /// The aggregate values, in `aggs` order (as JSON: integers for
    /// count/distinct, numbers or null otherwise).
    ///
    /// Takes `&mut self` because `HyperLogLog++` folds its insert buffer when
    /// it estimates.
    pub(super) fn finalize(&mut self, aggs: &[AggSpec]) -> Vec<Value> {
        let count = self.count;
        self.states
            .iter_mut()
            .zip(aggs)
            .map(|(st, spec)| match st {
                AggState::Count => Value::from(count),
                AggState::Sum { sum, n } => match spec.func {
                    AggFn::Avg if *n == 0 => Value::Null,
                    AggFn::Avg => float(*sum / count_f64(*n)),
                    _ => float(*sum),
                },
                AggState::Min(m) | AggState::Max(m) => m.map_or(Value::Null, float),
                AggState::First(s) | AggState::Last(s) => {
                    s.as_ref().map_or(Value::Null, |s| s.value.clone())
                }
                AggState::Moments { n, m2, .. } => moments_result(&spec.func, *n, *m2),
                AggState::Sketch(s) => match spec.func {
                    AggFn::Percentile { q } if !q.is_nan() => {
                        s.0.quantile(q.clamp(0.0, 1.0))
                            .ok()
                            .flatten()
                            .map_or(Value::Null, float)
                    }
                    _ => Value::Null,
                },
                AggState::Distinct(d) => Value::from(d.count()),
            })
            .collect()
    }
}

/// Chan et al.'s parallel update of (n, mean, M2).
fn merge_moments(a: (&mut u64, &mut f64, &mut f64), b: (u64, f64, f64)) {
    let (n, mean, m2) = a;
    let (nb, mb, m2b) = b;
    if nb == 0 {
        return;
    }
    if *n == 0 {
        (*n, *mean, *m2) = (nb, mb, m2b);
        return;
    }
    let (count_a, count_b) = (count_f64(*n), count_f64(nb));
    let total = count_a + count_b;
    let delta = mb - *mean;
    *mean += delta * count_b / total;
    *m2 += m2b + delta * delta * count_a * count_b / total;
    *n += nb;
}

fn moments_result(func: &AggFn, n: u64, m2: f64) -> Value {
    if n == 0 {
        return Value::Null;
    }
    let nf = count_f64(n);
    // Rounding can leave M2 a hair below zero for constant inputs.
    let m2 = m2.max(0.0);
    let sample = if n == 1 { 0.0 } else { m2 / (nf - 1.0) };
    let pop = m2 / nf;
    match func {
        AggFn::Stddev => float(sample.sqrt()),
        AggFn::Variance => float(sample),
        AggFn::StddevPop => float(pop.sqrt()),
        _ => float(pop),
    }
}

impl Distinct {
    fn insert(&mut self, h: u64) {
        match self {
            Distinct::Exact(v) => {
                if let Err(pos) = v.binary_search(&h) {
                    v.insert(pos, h);
                    if v.len() > EXACT_DISTINCT_LIMIT {
                        self.promote();
                    }
                }
            }
            Distinct::Sketch(s) => s.insert(&h),
        }
    }

    /// Moves an exact set into a `HyperLogLog++` sketch.
    fn promote(&mut self) {
        if let Distinct::Exact(v) = self {
            // `new` fails only for a precision outside 4..=18; ours is fixed
            // and valid, and if it ever failed we simply stay exact.
            if let Ok(mut s) = Hll::new(HLL_PRECISION, PassThroughBuild) {
                for h in v.iter() {
                    s.insert(h);
                }
                *self = Distinct::Sketch(Box::new(s));
            }
        }
    }

    fn merge(&mut self, other: &Distinct) {
        match other {
            Distinct::Exact(hs) => {
                for &h in hs {
                    self.insert(h);
                }
            }
            Distinct::Sketch(o) => {
                self.promote();
                match self {
                    // Fails only for different precisions; all share one.
                    Distinct::Sketch(s) => {
                        let _ = s.merge(o);
                    }
                    Distinct::Exact(_) => {}
                }
            }
        }
    }

    fn count(&mut self) -> u64 {
        match self {
            Distinct::Exact(v) => v.len() as u64,
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a cardinality estimate is finite and non-negative"
            )]
            Distinct::Sketch(s) => s.count().round().max(0.0) as u64,
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::float_cmp,
    reason = "test arithmetic on small, exact values"
)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(func: AggFn) -> Vec<AggSpec> {
        vec![AggSpec {
            name: "x".into(),
            func,
        }]
    }

    /// Runs one aggregate over `(ts, value)` events given in arrival order.
    fn run(func: AggFn, events: &[(i64, Value)]) -> Value {
        let aggs = spec(func);
        let mut acc = Acc::new(&aggs);
        for (seq, (ts, v)) in events.iter().enumerate() {
            acc.update(*ts, seq as u64, std::slice::from_ref(v));
        }
        acc.finalize(&aggs).remove(0)
    }

    fn num(f: f64) -> Value {
        json!(f)
    }

    #[test]
    fn count_counts_every_event_as_an_integer() {
        let ev = [(1, json!(null)), (2, json!("x")), (3, json!(1))];
        assert_eq!(run(AggFn::Count, &ev), json!(3));
        assert_eq!(run(AggFn::Count, &[]), json!(0));
    }

    #[test]
    fn numeric_aggregates_parse_strings_and_skip_non_numbers() {
        let ev = [
            (1, json!(2)),
            (2, json!("3.5")),
            (3, json!(null)),
            (4, json!("abc")),
            (5, json!(true)),
            (6, json!("NaN")),
            (7, json!(-1)),
        ];
        assert_eq!(run(AggFn::Sum, &ev), num(4.5));
        assert_eq!(run(AggFn::Avg, &ev), num(1.5));
        assert_eq!(run(AggFn::Min, &ev), num(-1.0));
        assert_eq!(run(AggFn::Max, &ev), num(3.5));
    }

    #[test]
    fn numeric_aggregates_without_numbers_are_zero_or_null() {
        let ev = [(1, json!("a")), (2, json!(null))];
        assert_eq!(run(AggFn::Sum, &ev), num(0.0));
        assert_eq!(run(AggFn::Avg, &ev), json!(null));
        assert_eq!(run(AggFn::Min, &ev), json!(null));
        assert_eq!(run(AggFn::Max, &ev), json!(null));
        assert_eq!(run(AggFn::Stddev, &ev), json!(null));
        assert_eq!(run(AggFn::Percentile { q: 0.5 }, &ev), json!(null));
    }

    #[test]
    fn overflowing_sum_becomes_null_not_infinity() {
        let ev = [(1, json!(1e308)), (2, json!(1e308))];
        assert_eq!(run(AggFn::Sum, &ev), json!(null));
    }

    #[test]
    fn first_and_last_go_by_event_time_then_arrival() {
        // Out of order; ts 1 twice ("b" arrives before "c"), ts 9 twice.
        let ev = [
            (5, json!("a")),
            (1, json!("b")),
            (1, json!("c")),
            (9, json!("d")),
            (9, json!("e")),
            (3, json!("f")),
        ];
        assert_eq!(run(AggFn::First, &ev), json!("b"));
        assert_eq!(run(AggFn::Last, &ev), json!("e"));
    }

    #[test]
    fn first_and_last_ties_survive_merging_in_any_order() {
        let aggs = vec![
            AggSpec {
                name: "f".into(),
                func: AggFn::First,
            },
            AggSpec {
                name: "l".into(),
                func: AggFn::Last,
            },
        ];
        let mut a = Acc::new(&aggs);
        let mut b = Acc::new(&aggs);
        // Same ts; arrival 0 and 3 land in `a`, 1 and 2 in `b`.
        a.update(7, 0, &[json!("s0"), json!("s0")]);
        b.update(7, 1, &[json!("s1"), json!("s1")]);
        b.update(7, 2, &[json!("s2"), json!("s2")]);
        a.update(7, 3, &[json!("s3"), json!("s3")]);
        let mut ab = Acc::new(&aggs);
        ab.merge(&a);
        ab.merge(&b);
        let mut ba = Acc::new(&aggs);
        ba.merge(&b);
        ba.merge(&a);
        assert_eq!(ab.finalize(&aggs), vec![json!("s0"), json!("s3")]);
        assert_eq!(ba.finalize(&aggs), vec![json!("s0"), json!("s3")]);
    }

    #[test]
    fn sample_and_population_statistics() {
        let ev: Vec<_> = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
            .iter()
            .enumerate()
            .map(|(i, x)| (i as i64, json!(x)))
            .collect();
        // Population variance 4, sample variance 32/7.
        assert_eq!(run(AggFn::VariancePop, &ev), num(4.0));
        assert_eq!(run(AggFn::StddevPop, &ev), num(2.0));
        let v = run(AggFn::Variance, &ev).as_f64().unwrap();
        assert!((v - 32.0 / 7.0).abs() < 1e-12, "{v}");
        let s = run(AggFn::Stddev, &ev).as_f64().unwrap();
        assert!((s - (32.0f64 / 7.0).sqrt()).abs() < 1e-12, "{s}");
        // One event: sample statistics are 0, not NaN.
        assert_eq!(run(AggFn::Stddev, &ev[..1]), num(0.0));
        assert_eq!(run(AggFn::Variance, &ev[..1]), num(0.0));
    }

    #[test]
    fn welford_is_stable_for_large_offsets_and_merges_exactly() {
        let base = 1e9;
        let xs = [base + 4.0, base + 7.0, base + 13.0, base + 16.0];
        let aggs = spec(AggFn::Variance);
        let mut whole = Acc::new(&aggs);
        let mut left = Acc::new(&aggs);
        let mut right = Acc::new(&aggs);
        for (i, x) in xs.iter().enumerate() {
            whole.update(0, i as u64, &[json!(x)]);
            if i < 1 {
                left.update(0, i as u64, &[json!(x)]);
            } else {
                right.update(0, i as u64, &[json!(x)]);
            }
        }
        left.merge(&right);
        for acc in [&mut whole, &mut left] {
            let v = acc.finalize(&aggs)[0].as_f64().unwrap();
            assert!((v - 30.0).abs() < 1e-6, "{v}");
        }
    }

    #[test]
    fn percentile_is_within_one_percent_relative_error() {
        let xs: Vec<f64> = (1..=10_000).map(|i| f64::from(i) * 0.37 + 0.5).collect();
        let ev: Vec<_> = xs.iter().map(|x| (0, json!(x))).collect();
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
            let got = run(AggFn::Percentile { q }, &ev).as_f64().unwrap();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let want = xs[(q * (xs.len() - 1) as f64) as usize];
            assert!(
                (got - want).abs() <= 0.01 * want.abs(),
                "q={q}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn percentile_merged_from_parts_is_within_one_percent() {
        let aggs = spec(AggFn::Percentile { q: 0.95 });
        let mut parts: Vec<Acc> = (0..4).map(|_| Acc::new(&aggs)).collect();
        for i in 0..4000u32 {
            parts[(i % 4) as usize].update(0, u64::from(i), &[json!(f64::from(i) - 1000.0)]);
        }
        let mut all = Acc::new(&aggs);
        for p in &parts {
            all.merge(p);
        }
        let got = all.finalize(&aggs)[0].as_f64().unwrap();
        let want = f64::from((0.95 * 3999.0) as u32) - 1000.0;
        assert!((got - want).abs() <= 0.01 * want.abs(), "{got} vs {want}");
    }

    #[test]
    fn distinct_is_exact_when_small_and_ignores_null() {
        let ev = [
            (0, json!("a")),
            (0, json!("b")),
            (0, json!("a")),
            (0, json!(1)),
            (0, json!(1.0)),
            (0, json!(null)),
        ];
        assert_eq!(run(AggFn::Distinct, &ev), json!(3));
    }

    #[test]
    fn distinct_is_within_two_percent_when_large() {
        for n in [1_000u32, 20_000, 100_000] {
            let ev: Vec<_> = (0..n).map(|i| (0, json!(i))).collect();
            let got = run(AggFn::Distinct, &ev).as_u64().unwrap();
            let err = (got as f64 - f64::from(n)).abs() / f64::from(n);
            assert!(err <= 0.02, "n={n}: got {got} ({err})");
            let ev: Vec<_> = (0..n).map(|i| (0, json!(format!("user-{i}")))).collect();
            let got = run(AggFn::Distinct, &ev).as_u64().unwrap();
            let err = (got as f64 - f64::from(n)).abs() / f64::from(n);
            assert!(err <= 0.02, "n={n} strings: got {got} ({err})");
        }
    }

    #[test]
    fn distinct_merges_exact_and_sketched_parts() {
        let aggs = spec(AggFn::Distinct);
        let mut a = Acc::new(&aggs);
        let mut b = Acc::new(&aggs);
        for i in 0..5_000u32 {
            a.update(0, 0, &[json!(i)]);
        }
        for i in 4_990..5_010u32 {
            b.update(0, 0, &[json!(i)]);
        }
        // Exact into sketch and sketch into exact give the same estimate range.
        let mut ab = Acc::new(&aggs);
        ab.merge(&b);
        ab.merge(&a);
        let got = ab.finalize(&aggs)[0].as_u64().unwrap();
        assert!((got as f64 - 5010.0).abs() <= 0.02 * 5010.0, "{got}");
        let mut small = Acc::new(&aggs);
        small.merge(&b);
        small.merge(&b);
        assert_eq!(small.finalize(&aggs)[0], json!(20));
    }

    #[test]
    fn missing_inputs_are_treated_as_null() {
        let aggs = vec![
            AggSpec {
                name: "c".into(),
                func: AggFn::Count,
            },
            AggSpec {
                name: "s".into(),
                func: AggFn::Sum,
            },
        ];
        let mut acc = Acc::new(&aggs);
        acc.update(0, 0, &[]);
        assert_eq!(acc.finalize(&aggs), vec![json!(1), json!(0.0)]);
    }
}
