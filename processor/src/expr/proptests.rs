//! The native evaluator against the CEL interpreter: on random expressions
//! over random records, wherever the native one answers, the interpreter
//! gives the same value.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::{Expr, env};

fn leaf() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "event.i",
        "event.j",
        "event.d",
        "event.e",
        "event.s",
        "event.t",
        "event.b",
        "event.z",
        "event.o.i",
        "event.missing",
        "event.u",
        "having",
        "0",
        "1",
        "-3",
        "7",
        "9223372036854775807",
        "2u",
        "1.5",
        "0.0",
        "-2.25",
        "1e308",
        "'x'",
        "'y'",
        "''",
        "true",
        "false",
        "null",
    ])
    .prop_map(str::to_owned)
}

fn expression() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 3, |inner| {
        let ops = prop::sample::select(vec![
            "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "&&", "||",
        ]);
        prop_oneof![
            (inner.clone(), ops, inner.clone()).prop_map(|(l, op, r)| format!("({l} {op} {r})")),
            inner.clone().prop_map(|x| format!("!({x})")),
            inner.clone().prop_map(|x| format!("-({x})")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(c, x, y)| format!("({c} ? {x} : {y})")),
        ]
    })
}

/// Expressions over operands of one type, which the native evaluator
/// mostly answers: arithmetic over ints, over doubles, concatenation,
/// and conditions comparing them.
fn typed(
    leaves: Vec<&'static str>,
    ops: Vec<&'static str>,
    negate: bool,
) -> impl Strategy<Value = String> + Clone {
    prop::sample::select(leaves)
        .prop_map(str::to_owned)
        .prop_recursive(2, 6, 2, move |inner| {
            let ops = prop::sample::select(ops.clone());
            (inner.clone(), ops, inner, any::<bool>()).prop_map(move |(l, op, r, neg)| {
                if negate && neg {
                    format!("-({l})")
                } else {
                    format!("({l} {op} {r})")
                }
            })
        })
}

fn condition() -> impl Strategy<Value = String> {
    let ints = typed(
        vec![
            "event.i",
            "event.j",
            "event.o.i",
            "0",
            "1",
            "-3",
            "9223372036854775807",
        ],
        vec!["+", "-", "*"],
        true,
    );
    let doubles = typed(
        vec!["event.d", "event.e", "1.5", "-2.25", "1e308"],
        vec!["+", "-", "*"],
        true,
    );
    let strings = typed(vec!["event.s", "'x'", "''"], vec!["+"], false);
    let cmp = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]);
    let atom = prop_oneof![
        (ints.clone(), cmp.clone(), ints),
        (doubles.clone(), cmp.clone(), doubles),
        (strings.clone(), cmp, strings),
    ]
    .prop_map(|(l, op, r)| format!("({l} {op} {r})"));
    atom.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| format!("({l} && {r})")),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| format!("({l} || {r})")),
            inner.clone().prop_map(|x| format!("!{x}")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(c, x, y)| format!("({c} ? {x} : {y})")),
        ]
    })
}

fn record() -> impl Strategy<Value = Value> {
    let int = prop_oneof![-3i64..=7, Just(i64::MAX), Just(i64::MIN)];
    let double = prop_oneof![Just(1.5), Just(0.0), Just(-2.25), Just(1e308), -4.0f64..4.0];
    let string = prop::sample::select(vec!["x", "y", ""]);
    (
        prop::option::of(int.clone()),
        prop::option::of(int.clone()),
        prop::option::of(double.clone()),
        prop::option::of(double),
        prop::option::of(string),
        prop::option::of(any::<bool>()),
        any::<bool>(),
        prop::option::of(int),
        any::<bool>(),
        prop::option::of(0u64..3),
    )
        .prop_map(|(i, j, d, e, s, t, z, oi, big, having)| {
            let mut m = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            };
            put("i", i.map(Value::from));
            put("j", j.map(Value::from));
            put("d", d.map(Value::from));
            put("e", e.map(Value::from));
            put("s", s.map(Value::from));
            put("t", t.map(Value::from));
            put("b", t.map(|t| json!(!t)));
            put("z", z.then_some(Value::Null));
            put("o", oi.map(|i| json!({"i": i})));
            // Beyond i64: an unsigned integer.
            put("u", big.then(|| json!(u64::MAX - 1)));
            put("having", having.map(Value::from));
            Value::Object(m)
        })
}

/// Checks `src` on `event`: wherever the native evaluator answers, the
/// interpreter gives the same value.
fn agree(src: &str, event: &Value) -> Result<(), TestCaseError> {
    let env = env();
    let Ok(expr) = Expr::compile_with_vars(src, &env, &["having".to_owned()]) else {
        return Ok(());
    };
    let Some(fast) = expr.native() else {
        return Ok(());
    };
    let interpreted = expr.interpret(event);
    if let Some(native) = fast.eval(event) {
        prop_assert_eq!(
            interpreted.as_ref().ok(),
            Some(&native),
            "{} on {}: interpreter {:?}",
            src,
            event,
            interpreted
        );
    }
    if let Some(b) = fast.eval_bool(event) {
        prop_assert_eq!(
            interpreted.ok(),
            Some(Value::Bool(b)),
            "{} on {}",
            src,
            event
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn native_answers_are_the_interpreters(src in expression(), event in record()) {
        agree(&src, &event)?;
    }

    #[test]
    fn native_conditions_are_the_interpreters(src in condition(), event in record()) {
        agree(&src, &event)?;
    }
}
