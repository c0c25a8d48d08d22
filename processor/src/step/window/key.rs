//! Window keys: hashable, totally ordered wrappers around JSON key values.
//!
//! `serde_json::Value` is neither `Hash` nor `Ord`, and its `PartialEq`
//! tells `1` from `1.0`. A window key needs all three, consistently, so this
//! module defines a *canonical* view of a JSON value: integral numbers that
//! fit in 64 bits compare and hash as integers whatever their JSON spelling,
//! other numbers as floats (`-0.0` is `0`), object members by sorted name.
//! The hash is computed once in [`Key::from_values`], so a map lookup on the
//! hot path hashes one `u64`.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use rustc_hash::FxHasher;
use serde_json::{Number, Value};

/// The key of a window: the values of the `keyBy` expressions of one event.
///
/// # Guarantees
///
/// `Eq`, `Hash` and `Ord` agree: two keys are equal exactly when they compare
/// `Equal`, and equal keys hash alike. Numbers compare by value (`1 == 1.0`),
/// objects ignore member order. The order is total and deterministic, which
/// is what makes window output order reproducible.
#[derive(Clone, Debug)]
pub struct Key {
    hash: u64,
    values: Vec<Value>,
}

impl Key {
    /// Builds a key from the key values, computing its canonical hash once.
    #[must_use]
    pub fn from_values(values: Vec<Value>) -> Key {
        let mut h = FxHasher::default();
        h.write_usize(values.len());
        for v in &values {
            hash_value(v, &mut h);
        }
        Key {
            hash: h.finish(),
            values,
        }
    }

    /// The key values, as given to [`Key::from_values`], for the output record.
    #[must_use]
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Consumes the key and returns its values without cloning them.
    #[must_use]
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}

/// Only the values are stored (the changelog): the hash is recomputed on
/// the way back, so a snapshot never carries a stale one.
impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Value>::deserialize(d).map(Key::from_values)
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        // Runs on every map lookup: hash first, then a cheap equality with
        // a fast path for strings, the usual key type.
        self.hash == other.hash
            && self.values.len() == other.values.len()
            && self
                .values
                .iter()
                .zip(&other.values)
                .all(|(a, b)| match (a, b) {
                    (Value::String(x), Value::String(y)) => x == y,
                    _ => cmp_value(a, b) == Ordering::Equal,
                })
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_slices(&self.values, &other.values)
    }
}

/// A 64-bit hash of the canonical form of `v`, well mixed in every bit, for
/// sketches (`distinct`) that need uniform hashes rather than map buckets.
pub(super) fn canonical_hash(v: &Value) -> u64 {
    let mut h = FxHasher::default();
    hash_value(v, &mut h);
    fmix64(h.finish())
}

/// `MurmurHash3`'s 64-bit finalizer: a bijection that spreads every input bit
/// over every output bit (`FxHasher` alone is tuned for hash tables, not for
/// `HyperLogLog`'s leading-zero counts).
pub(super) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// A number reduced to one representation per value.
#[derive(Clone, Copy)]
enum CanonNum {
    /// Integral and within `[-2^63, 2^64)`: exact.
    Int(i128),
    /// Anything else (fractional, huge, or not representable).
    Float(f64),
}

const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

fn canon_num(n: &Number) -> CanonNum {
    if let Some(i) = n.as_i64() {
        return CanonNum::Int(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return CanonNum::Int(i128::from(u));
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f.is_finite() && f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_64).contains(&f) {
        // Exact: `f` is integral and within the range of i128.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "f is integral and in range"
        )]
        return CanonNum::Int(f as i128);
    }
    CanonNum::Float(f)
}

fn cmp_num(a: CanonNum, b: CanonNum) -> Ordering {
    match (a, b) {
        (CanonNum::Int(x), CanonNum::Int(y)) => x.cmp(&y),
        (CanonNum::Float(x), CanonNum::Float(y)) => x.total_cmp(&y),
        (CanonNum::Int(i), CanonNum::Float(f)) => cmp_int_float(i, f),
        (CanonNum::Float(f), CanonNum::Int(i)) => cmp_int_float(i, f).reverse(),
    }
}

/// Exact comparison of an integer with a float that is never equal to it
/// (the float is fractional, out of the integer range, or NaN).
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    if f.is_nan() || f >= TWO_POW_64 {
        return Ordering::Less;
    }
    if f < -TWO_POW_63 {
        return Ordering::Greater;
    }
    #[allow(
        clippy::cast_possible_truncation,
        reason = "floor(f) is integral and in range"
    )]
    let fl = f.floor() as i128;
    if i <= fl {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn cmp_slices(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = cmp_value(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Total order on canonical JSON values: by type (null, bool, number,
/// string, array, object), then by content.
pub(super) fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => cmp_num(canon_num(x), canon_num(y)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => cmp_slices(x, y),
        (Value::Object(x), Value::Object(y)) => {
            // Sorted explicitly: with serde_json's `preserve_order` feature
            // (which another crate may enable) maps iterate in insert order.
            let mut left: Vec<_> = x.iter().collect();
            let mut right: Vec<_> = y.iter().collect();
            left.sort_unstable_by(|p, q| p.0.cmp(q.0));
            right.sort_unstable_by(|p, q| p.0.cmp(q.0));
            for ((kl, vl), (kr, vr)) in left.iter().zip(&right) {
                let ord = kl.cmp(kr).then_with(|| cmp_value(vl, vr));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            left.len().cmp(&right.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn hash_value<H: Hasher>(v: &Value, h: &mut H) {
    h.write_u8(rank(v));
    match v {
        Value::Null => {}
        Value::Bool(b) => h.write_u8(u8::from(*b)),
        Value::Number(n) => match canon_num(n) {
            CanonNum::Int(i) => {
                h.write_u8(0);
                h.write_i128(i);
            }
            CanonNum::Float(f) => {
                h.write_u8(1);
                h.write_u64(f.to_bits());
            }
        },
        Value::String(s) => {
            h.write_usize(s.len());
            h.write(s.as_bytes());
        }
        Value::Array(xs) => {
            h.write_usize(xs.len());
            for x in xs {
                hash_value(x, h);
            }
        }
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_unstable_by(|p, q| p.0.cmp(q.0));
            h.write_usize(entries.len());
            for (k, x) in entries {
                h.write_usize(k.len());
                h.write(k.as_bytes());
                hash_value(x, h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    fn k(v: Value) -> Key {
        Key::from_values(vec![v])
    }

    #[test]
    fn numbers_equal_by_value_whatever_their_spelling() {
        assert_eq!(k(json!(1)), k(json!(1.0)));
        assert_eq!(k(json!(0)), k(json!(-0.0)));
        assert_ne!(k(json!(1)), k(json!(1.5)));
        assert_ne!(k(json!(1)), k(json!("1")));
        let set: HashSet<Key> = [k(json!(1)), k(json!(1.0)), k(json!(2))]
            .into_iter()
            .collect();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn object_member_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":[true,null]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":[true,null],"a":1.0}"#).unwrap();
        assert_eq!(k(a.clone()), k(b));
        assert_eq!(
            canonical_hash(&a),
            canonical_hash(&json!({"b": [true, null], "a": 1}))
        );
    }

    #[test]
    fn order_is_total_and_by_type_then_value() {
        let mut keys = vec![
            k(json!("b")),
            k(json!(2.5)),
            k(json!(null)),
            k(json!(-3)),
            k(json!(true)),
            k(json!(u64::MAX)),
            k(json!(1e300)),
            k(json!("a")),
            k(json!([1])),
            k(json!(false)),
            k(json!(2)),
        ];
        keys.sort();
        let vals: Vec<Value> = keys.into_iter().flat_map(Key::into_values).collect();
        assert_eq!(
            vals,
            vec![
                json!(null),
                json!(false),
                json!(true),
                json!(-3),
                json!(2),
                json!(2.5),
                json!(u64::MAX),
                json!(1e300),
                json!("a"),
                json!("b"),
                json!([1])
            ]
        );
    }

    #[test]
    fn int_float_comparison_is_exact_near_the_edges() {
        assert_eq!(cmp_value(&json!(2), &json!(2.5)), Ordering::Less);
        assert_eq!(cmp_value(&json!(3), &json!(2.5)), Ordering::Greater);
        assert_eq!(cmp_value(&json!(-3), &json!(-2.5)), Ordering::Less);
        assert_eq!(cmp_value(&json!(-2), &json!(-2.5)), Ordering::Greater);
        assert_eq!(
            cmp_value(&json!(i64::MIN), &json!(-1e300)),
            Ordering::Greater
        );
    }

    #[test]
    fn multi_value_keys_compare_lexicographically() {
        let a = Key::from_values(vec![json!("u1"), json!(2)]);
        let b = Key::from_values(vec![json!("u1"), json!(10)]);
        let c = Key::from_values(vec![json!("u1")]);
        assert!(a < b);
        assert!(c < a);
        assert_eq!(a.values(), &[json!("u1"), json!(2)]);
    }
}
