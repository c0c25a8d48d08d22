//! Pattern conditions with a fast path for the commonest one, `event.path
//! == 'literal'`, which reads the field directly and compares strings
//! instead of binding the record for the CEL interpreter: CEP evaluates
//! every step's condition on every record, so this is its hot path.

use std::sync::Arc;

use serde_json::Value;

use crate::expr::{Expr, ExprError};

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Cond {
    /// `event.a.b == 'text'`: a plain path equal to a string literal.
    PathEq {
        /// The path (a plain-path [`Expr`], read without the interpreter).
        path: Expr,
        /// The literal.
        text: String,
    },
    /// Anything else, through CEL.
    Cel(Expr),
}

impl Cond {
    /// Compiles `src`.
    ///
    /// # Errors
    /// [`ExprError::Compile`] when it is not valid CEL.
    pub fn compile(src: &str, env: &Arc<cel::Env>) -> Result<Self, ExprError> {
        if let Some((lhs, text)) = path_eq_literal(src) {
            let path = Expr::compile(lhs, env)?;
            if path.get(&Value::Null).is_some() {
                return Ok(Self::PathEq { path, text });
            }
        }
        Ok(Self::Cel(Expr::compile(src, env)?))
    }

    /// Whether the condition holds for `event`. A missing field or a value
    /// of another type is unequal, as in CEL (where it is an error that
    /// the step counts as false).
    ///
    /// # Errors
    /// When CEL evaluation fails or does not yield a bool.
    pub fn holds(&self, event: &Value) -> Result<bool, ExprError> {
        match self {
            Self::PathEq { path, text } => {
                Ok(matches!(path.get(event), Some(Value::String(s)) if s == text))
            }
            Self::Cel(e) => e.eval_bool(event),
        }
    }
}

/// Splits `lhs == 'text'` (or `"text"`) when the literal has no quotes or
/// escapes inside and the left side has no operators; otherwise `None`.
fn path_eq_literal(src: &str) -> Option<(&str, String)> {
    let (lhs, rhs) = src.split_once("==")?;
    let (lhs, rhs) = (lhs.trim(), rhs.trim());
    if lhs.is_empty() || lhs.contains(['=', '!', '<', '>', '&', '|', '(', '?', '\'', '"', '[']) {
        return None;
    }
    let quote = rhs.chars().next()?;
    if quote != '\'' && quote != '"' {
        return None;
    }
    let inner = rhs.strip_prefix(quote)?.strip_suffix(quote)?;
    if inner.contains(['\'', '"', '\\']) {
        return None;
    }
    Some((lhs, inner.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_fast_path_agrees_with_cel() {
        let env = crate::expr::env();
        let events = [
            json!({"t": "a"}),
            json!({"t": "b"}),
            json!({"t": 1}),
            json!({"t": null}),
            json!({"u": {"t": "a"}}),
        ];
        for src in ["event.t == 'a'", "event.t == \"a\"", "event.u.t == 'a'"] {
            let fast = Cond::compile(src, &env).unwrap();
            assert!(matches!(fast, Cond::PathEq { .. }), "{src}");
            let cel = Expr::compile(src, &env).unwrap();
            for e in &events {
                let want = cel.eval_bool(e).unwrap_or(false);
                assert_eq!(fast.holds(e).unwrap(), want, "{src} on {e}");
            }
        }
        for src in [
            "event.t == 'a' && event.x == 'b'",
            "event.t == 'it''s'",
            "event.t != 'a'",
            "size(event.t) == 1",
            "'a' == event.t",
        ] {
            assert!(
                matches!(Cond::compile(src, &env), Ok(Cond::Cel(_)) | Err(_)),
                "{src}"
            );
        }
    }
}
