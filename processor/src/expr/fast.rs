//! A native evaluator for the CEL most filters and maps are made of —
//! comparisons, `&&`, `||`, `!`, `? :` and `+ - *` over fields and
//! literals — so they skip building an interpreter context and converting
//! the record for every evaluation (a third of the engine's time in the
//! Kafka benchmark).
//!
//! It is an accelerator, not a second CEL: it answers only where its
//! result is certainly CEL's (operands of one type, no overflow, a finite
//! result) and says "don't know" (`None`) for everything else — a missing
//! field, mixed numeric types, an error CEL would raise or absorb — and the
//! caller runs the interpreter, which then decides. `proptests` checks the
//! two against each other on random expressions and records.

use std::borrow::Cow;

use cel::common::ast::{Expr as Ast, IdedExpr, LiteralValue, operators};
use serde_json::Value;

/// A compiled expression tree.
#[derive(Debug, Clone)]
pub enum Node {
    /// `root.a.b`: a field path of the record.
    Field(Box<[Box<str>]>),
    /// A variable bound to the record's field of the same name (window
    /// results in `having`); absent is `null`.
    Var(Box<str>),
    /// A literal.
    Lit(Lit),
    /// `!x`.
    Not(Box<Node>),
    /// `-x`.
    Neg(Box<Node>),
    /// `x && y`.
    And(Box<Node>, Box<Node>),
    /// `x || y`.
    Or(Box<Node>, Box<Node>),
    /// `c ? x : y`.
    Cond(Box<Node>, Box<Node>, Box<Node>),
    /// A binary operator.
    Bin(Op, Box<Node>, Box<Node>),
}

/// A literal's value.
#[derive(Debug, Clone)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Box<str>),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
}

/// A value during evaluation; strings borrow from the record.
#[derive(Debug, Clone, PartialEq)]
enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Cow<'a, str>),
}

/// Compiles `ast` with the record bound to `root` and `vars` bound to its
/// fields; `None` when any part is outside the native subset.
#[must_use]
pub fn compile(ast: &IdedExpr, root: &str, vars: &[String]) -> Option<Node> {
    match &ast.expr {
        Ast::Literal(l) => Some(Node::Lit(match l {
            LiteralValue::Null => Lit::Null,
            LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
            LiteralValue::Int(i) => Lit::Int(*i.inner()),
            LiteralValue::UInt(u) => Lit::UInt(*u.inner()),
            LiteralValue::Double(d) => Lit::Double(*d.inner()),
            LiteralValue::String(s) => Lit::Str(s.inner().into()),
            LiteralValue::Bytes(_) => return None,
        })),
        Ast::Ident(name) if vars.iter().any(|v| v == name) && name != root => {
            Some(Node::Var(name.as_str().into()))
        }
        Ast::Select(_) => path(ast, root).map(|p| Node::Field(p.into())),
        Ast::Call(call) if call.target.is_none() => {
            let arg = |i: usize| -> Option<Box<Node>> {
                call.args
                    .get(i)
                    .and_then(|a| compile(a, root, vars))
                    .map(Box::new)
            };
            let binary = |op| Some(Node::Bin(op, arg(0)?, arg(1)?));
            match (call.func_name.as_str(), call.args.len()) {
                (operators::LOGICAL_NOT, 1) => Some(Node::Not(arg(0)?)),
                (operators::NEGATE, 1) => Some(Node::Neg(arg(0)?)),
                (operators::LOGICAL_AND, 2) => Some(Node::And(arg(0)?, arg(1)?)),
                (operators::LOGICAL_OR, 2) => Some(Node::Or(arg(0)?, arg(1)?)),
                (operators::CONDITIONAL, 3) => Some(Node::Cond(arg(0)?, arg(1)?, arg(2)?)),
                (operators::EQUALS, 2) => binary(Op::Eq),
                (operators::NOT_EQUALS, 2) => binary(Op::Ne),
                (operators::LESS, 2) => binary(Op::Lt),
                (operators::LESS_EQUALS, 2) => binary(Op::Le),
                (operators::GREATER, 2) => binary(Op::Gt),
                (operators::GREATER_EQUALS, 2) => binary(Op::Ge),
                (operators::ADD, 2) => binary(Op::Add),
                (operators::SUBSTRACT, 2) => binary(Op::Sub),
                (operators::MULTIPLY, 2) => binary(Op::Mul),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `root.a.b` as `["a", "b"]` (at least one field; no `has()` tests).
fn path(ast: &IdedExpr, root: &str) -> Option<Vec<Box<str>>> {
    let mut fields = Vec::new();
    let mut cur = ast;
    loop {
        match &cur.expr {
            Ast::Select(s) if !s.test => {
                fields.push(s.field.as_str().into());
                cur = &s.operand;
            }
            Ast::Ident(name) if name == root && !fields.is_empty() => {
                fields.reverse();
                return Some(fields);
            }
            _ => return None,
        }
    }
}

impl Node {
    /// The result as JSON, or `None`: ask the interpreter.
    #[must_use]
    pub fn eval(&self, event: &Value) -> Option<Value> {
        Some(match self.value(event)? {
            V::Null => Value::Null,
            V::Bool(b) => Value::Bool(b),
            V::Int(i) => Value::from(i),
            V::UInt(u) => Value::from(u),
            V::Double(d) => Value::Number(serde_json::Number::from_f64(d)?),
            V::Str(s) => Value::String(s.into_owned()),
        })
    }

    /// A condition's result, or `None`: ask the interpreter.
    #[must_use]
    pub fn eval_bool(&self, event: &Value) -> Option<bool> {
        match self.value(event)? {
            V::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn value<'a>(&'a self, event: &'a Value) -> Option<V<'a>> {
        match self {
            Node::Field(p) => {
                let mut cur = event;
                for f in p.iter() {
                    // A missing key is CEL's error, not null.
                    cur = cur.as_object()?.get(&**f)?;
                }
                of_json(cur)
            }
            Node::Var(name) => event.get(&**name).map_or(Some(V::Null), of_json),
            Node::Lit(l) => Some(match l {
                Lit::Null => V::Null,
                Lit::Bool(b) => V::Bool(*b),
                Lit::Int(i) => V::Int(*i),
                Lit::UInt(u) => V::UInt(*u),
                Lit::Double(d) => V::Double(*d),
                Lit::Str(s) => V::Str(Cow::Borrowed(s)),
            }),
            Node::Not(x) => match x.value(event)? {
                V::Bool(b) => Some(V::Bool(!b)),
                _ => None,
            },
            Node::Neg(x) => match x.value(event)? {
                V::Int(i) => i.checked_neg().map(V::Int),
                V::Double(d) => Some(V::Double(-d)),
                _ => None,
            },
            // Only a decided left side is taken: CEL evaluates both sides
            // and lets a `false` (`true`) on either side absorb an error on
            // the other, which the interpreter does better than a copy.
            Node::And(x, y) => match x.value(event)? {
                V::Bool(false) => Some(V::Bool(false)),
                V::Bool(true) => bool_of(y.value(event)?),
                _ => None,
            },
            Node::Or(x, y) => match x.value(event)? {
                V::Bool(true) => Some(V::Bool(true)),
                V::Bool(false) => bool_of(y.value(event)?),
                _ => None,
            },
            Node::Cond(c, x, y) => match c.value(event)? {
                V::Bool(true) => x.value(event),
                V::Bool(false) => y.value(event),
                _ => None,
            },
            Node::Bin(op, x, y) => binary(*op, x.value(event)?, y.value(event)?),
        }
    }
}

fn bool_of(v: V<'_>) -> Option<V<'_>> {
    matches!(v, V::Bool(_)).then_some(v)
}

/// A JSON value as [`crate::expr::json_to_cel`] would convert it; objects
/// and arrays are left to the interpreter.
fn of_json(v: &Value) -> Option<V<'_>> {
    Some(match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                V::Int(i)
            } else if let Some(u) = n.as_u64() {
                V::UInt(u)
            } else {
                V::Double(n.as_f64()?)
            }
        }
        Value::String(s) => V::Str(Cow::Borrowed(s)),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// `a op b` for operands of one type; `None` for anything else, an
/// overflow or a result JSON cannot hold.
fn binary<'a>(op: Op, a: V<'a>, b: V<'a>) -> Option<V<'a>> {
    use std::cmp::Ordering;
    let order: Option<Ordering> = match (&a, &b) {
        (V::Int(x), V::Int(y)) => Some(x.cmp(y)),
        (V::UInt(x), V::UInt(y)) => Some(x.cmp(y)),
        (V::Double(x), V::Double(y)) => x.partial_cmp(y),
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        (V::Bool(x), V::Bool(y)) if matches!(op, Op::Eq | Op::Ne) => Some(x.cmp(y)),
        (V::Null, V::Null) if matches!(op, Op::Eq | Op::Ne) => Some(Ordering::Equal),
        _ => None,
    };
    match op {
        Op::Eq => order.map(|o| V::Bool(o == Ordering::Equal)),
        Op::Ne => order.map(|o| V::Bool(o != Ordering::Equal)),
        Op::Lt => order.map(|o| V::Bool(o == Ordering::Less)),
        Op::Le => order.map(|o| V::Bool(o != Ordering::Greater)),
        Op::Gt => order.map(|o| V::Bool(o == Ordering::Greater)),
        Op::Ge => order.map(|o| V::Bool(o != Ordering::Less)),
        Op::Add | Op::Sub | Op::Mul => arithmetic(op, a, b),
    }
}

fn arithmetic<'a>(op: Op, a: V<'a>, b: V<'a>) -> Option<V<'a>> {
    match (a, b) {
        (V::Int(x), V::Int(y)) => match op {
            Op::Add => x.checked_add(y),
            Op::Sub => x.checked_sub(y),
            _ => x.checked_mul(y),
        }
        .map(V::Int),
        (V::UInt(x), V::UInt(y)) => match op {
            Op::Add => x.checked_add(y),
            Op::Sub => x.checked_sub(y),
            _ => x.checked_mul(y),
        }
        .map(V::UInt),
        (V::Double(x), V::Double(y)) => {
            let r = match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                _ => x * y,
            };
            r.is_finite().then_some(V::Double(r))
        }
        (V::Str(x), V::Str(y)) if op == Op::Add => Some(V::Str(Cow::Owned(x.into_owned() + &y))),
        _ => None,
    }
}
