//! Expressions: CEL compiled once per pipeline, with plain field paths
//! (`event.a.b`) read directly from the JSON value, without the interpreter,
//! because they are the common case on the hot path (keys, aggregated fields).

mod convert;
mod fast;
#[cfg(test)]
mod proptests;

use std::sync::Arc;

use serde_json::Value;

pub use convert::{cel_to_json, json_to_cel};

/// An expression could not be compiled or evaluated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExprError {
    /// The text is not valid CEL.
    #[error("cannot compile {source_text:?}: {message}")]
    Compile {
        /// The expression.
        source_text: String,
        /// The parser's message.
        message: String,
    },
    /// Evaluation failed on a record (missing field, wrong type, …).
    #[error("evaluating {source_text:?}: {message}")]
    Eval {
        /// The expression.
        source_text: String,
        /// The interpreter's message.
        message: String,
    },
    /// A boolean was expected.
    #[error("{source_text:?} must yield a bool, got {got}")]
    NotBool {
        /// The expression.
        source_text: String,
        /// What it gave.
        got: String,
    },
}

/// A compiled expression over a record bound to `event` (or, for the right
/// side of a join, to another name: see [`Expr::compile_as`]).
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    kind: Kind,
    /// The variable the record is bound to.
    root: Arc<str>,
}

#[derive(Clone)]
enum Kind {
    /// `event.a.b`: read directly; a missing field is `null` (as `has()` would say).
    Path(Arc<[Box<str>]>),
    /// The whole record.
    Event,
    /// Anything else goes through the CEL interpreter. `fields` lists the
    /// top-level fields the expression reads (`event.a…`) when it never uses
    /// `event` whole: then only those are converted, not the whole record.
    Cel {
        program: Arc<cel::Program>,
        env: Arc<cel::Env>,
        vars: Arc<[Box<str>]>,
        fields: Option<Arc<[Box<str>]>>,
        /// The native evaluator, when the expression is in its subset.
        fast: Option<Arc<fast::Node>>,
    },
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// Splits `event.a.b` (with `root` = `event`) into `["a", "b"]` when the
/// text is a plain path.
fn plain_path(src: &str, root: &str) -> Option<Vec<Box<str>>> {
    let rest = src.trim().strip_prefix(root)?;
    if rest.is_empty() {
        return Some(vec![]);
    }
    let rest = rest.strip_prefix('.')?;
    let segs: Vec<Box<str>> = rest.split('.').map(Into::into).collect();
    let ident = |s: &str| {
        let mut cs = s.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    segs.iter().all(|s| ident(s)).then_some(segs)
}

impl Expr {
    /// Compiles `source`, which may read the variables `event` and, for
    /// expressions over window results, `extra_vars`.
    ///
    /// # Errors
    /// [`ExprError::Compile`] when the text is not valid CEL.
    pub fn compile(source: &str, env: &Arc<cel::Env>) -> Result<Self, ExprError> {
        Self::compile_with_vars(source, env, &[])
    }

    /// Like [`Expr::compile`], also binding each of `vars` to the field of the same name.
    ///
    /// # Errors
    /// [`ExprError::Compile`] when the text is not valid CEL.
    pub fn compile_with_vars(
        source: &str,
        env: &Arc<cel::Env>,
        vars: &[String],
    ) -> Result<Self, ExprError> {
        Self::compile_inner(source, env, vars, "event")
    }

    /// Like [`Expr::compile`], with the record bound to `root` instead of
    /// `event` (a join's `on.right` reads the right record as `other`).
    ///
    /// # Errors
    /// [`ExprError::Compile`] when the text is not valid CEL.
    pub fn compile_as(source: &str, env: &Arc<cel::Env>, root: &str) -> Result<Self, ExprError> {
        Self::compile_inner(source, env, &[], root)
    }

    fn compile_inner(
        source: &str,
        env: &Arc<cel::Env>,
        vars: &[String],
        root: &str,
    ) -> Result<Self, ExprError> {
        let kind = match plain_path(source, root) {
            Some(p) if p.is_empty() => Kind::Event,
            Some(p) => Kind::Path(p.into()),
            None => {
                let program = env.compile(source).map_err(|e| ExprError::Compile {
                    source_text: source.to_owned(),
                    message: e.to_string(),
                })?;
                let refs = program.references();
                let used: Vec<Box<str>> = vars
                    .iter()
                    .filter(|v| refs.has_variable(v.as_str()))
                    .map(|v| v.as_str().into())
                    .collect();
                let fast = cel::parser::Parser::new()
                    .parse(source)
                    .ok()
                    .and_then(|ast| fast::compile(&ast, root, vars))
                    .map(Arc::new);
                Kind::Cel {
                    program: Arc::new(program),
                    env: env.clone(),
                    vars: used.into(),
                    fields: event_fields(source, root).map(Into::into),
                    fast,
                }
            }
        };
        Ok(Self {
            source: source.into(),
            kind,
            root: root.into(),
        })
    }

    /// The expression text.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Reads a plain path without copying; `None` for CEL expressions.
    #[must_use]
    pub fn get<'a>(&self, event: &'a Value) -> Option<&'a Value> {
        match &self.kind {
            Kind::Event => Some(event),
            Kind::Path(p) => {
                let mut cur = event;
                for seg in p.iter() {
                    match cur.get(&**seg) {
                        Some(v) => cur = v,
                        None => return Some(&Value::Null),
                    }
                }
                Some(cur)
            }
            Kind::Cel { .. } => None,
        }
    }

    /// Evaluates against a record value.
    ///
    /// # Errors
    /// [`ExprError::Eval`] when the interpreter fails (missing field, wrong type).
    pub fn eval(&self, event: &Value) -> Result<Value, ExprError> {
        if let Some(v) = self.get(event) {
            return Ok(v.clone());
        }
        if let Some(v) = self.native().and_then(|f| f.eval(event)) {
            return Ok(v);
        }
        self.interpret(event)
    }

    /// The native evaluator, when the expression is in its subset.
    fn native(&self) -> Option<&fast::Node> {
        match &self.kind {
            Kind::Cel { fast, .. } => fast.as_deref(),
            _ => None,
        }
    }

    /// Evaluates with the CEL interpreter alone (`null` for the plain
    /// paths it never sees).
    fn interpret(&self, event: &Value) -> Result<Value, ExprError> {
        let Kind::Cel {
            program,
            env,
            vars,
            fields,
            ..
        } = &self.kind
        else {
            return Ok(Value::Null);
        };
        let mut ctx = cel::Context::with_env(env.clone());
        for var in vars.iter() {
            let v = event.get(&**var).map_or(cel::Value::Null, json_to_cel);
            ctx.add_variable_from_value(var.to_string(), v);
        }
        let bound = match (fields.as_deref(), event) {
            (Some(fields), Value::Object(obj)) => {
                let partial: std::collections::HashMap<String, cel::Value> = fields
                    .iter()
                    .filter_map(|f| obj.get(&**f).map(|v| (f.to_string(), json_to_cel(v))))
                    .collect();
                cel::Value::from(partial)
            }
            _ => json_to_cel(event),
        };
        ctx.add_variable_from_value(self.root.to_string(), bound);
        let out = program
            .execute(&ctx)
            .map_err(|e| self.eval_error(e.to_string()))?;
        cel_to_json(&out).map_err(|e| self.eval_error(e))
    }

    /// Evaluates a condition.
    ///
    /// # Errors
    /// As [`Expr::eval`], and [`ExprError::NotBool`] for a non-boolean result.
    pub fn eval_bool(&self, event: &Value) -> Result<bool, ExprError> {
        match self.get(event) {
            Some(Value::Bool(b)) => return Ok(*b),
            Some(other) => return Err(self.not_bool(other)),
            None => {}
        }
        if let Some(b) = self.native().and_then(|f| f.eval_bool(event)) {
            return Ok(b);
        }
        // The native evaluator had no boolean answer: asking it again
        // through `eval` would only repeat its work.
        match self.interpret(event)? {
            Value::Bool(b) => Ok(b),
            other => Err(self.not_bool(&other)),
        }
    }

    fn eval_error(&self, message: String) -> ExprError {
        ExprError::Eval {
            source_text: self.source.to_string(),
            message,
        }
    }

    fn not_bool(&self, got: &Value) -> ExprError {
        let mut s = got.to_string();
        s.truncate(80);
        ExprError::NotBool {
            source_text: self.source.to_string(),
            got: s,
        }
    }
}

/// The top-level fields an expression reads through `event.<field>` (`root`
/// is `event`), or `None` when it uses `event` in any other way
/// (`size(event)`, `event[k]`, `has(event)`), in which case the whole
/// record must be bound. String literals are skipped so `'event'` inside
/// quotes does not count.
fn event_fields(src: &str, root: &str) -> Option<Vec<Box<str>>> {
    let b = src.as_bytes();
    let mut fields: Vec<Box<str>> = Vec::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        if c == b'\'' || c == b'"' {
            // Skip a string literal (with escapes).
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if src[i..].starts_with(root) && (i == 0 || !ident(b[i - 1]) && b[i - 1] != b'.') {
            let mut j = i + root.len();
            if j < b.len() && ident(b[j]) {
                i = j;
                continue;
            }
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            if j >= b.len() || b[j] != b'.' {
                return None;
            }
            j += 1;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let start = j;
            while j < b.len() && ident(b[j]) {
                j += 1;
            }
            if start == j {
                return None;
            }
            let f: Box<str> = src[start..j].into();
            if !fields.contains(&f) {
                fields.push(f);
            }
            i = j;
            continue;
        }
        i += 1;
    }
    Some(fields)
}

/// The CEL environment shared by every expression of a pipeline.
#[must_use]
pub fn env() -> Arc<cel::Env> {
    Arc::new(cel::Env::stdlib())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plain_paths_bypass_the_interpreter() {
        let env = env();
        let e = Expr::compile("event.user.id", &env).unwrap();
        assert!(matches!(e.kind, Kind::Path(_)));
        assert_eq!(e.eval(&json!({"user": {"id": "u1"}})).unwrap(), json!("u1"));
        assert_eq!(e.eval(&json!({"user": {}})).unwrap(), Value::Null);
        assert!(plain_path("event.a + 1", "event").is_none());
        assert!(plain_path("events.a", "event").is_none());
    }

    #[test]
    fn cel_expressions_evaluate_against_the_event() {
        let env = env();
        let f = Expr::compile("event.action == 'click' && event.amount > 2.0", &env).unwrap();
        assert!(
            f.eval_bool(&json!({"action": "click", "amount": 3.5}))
                .unwrap()
        );
        assert!(
            !f.eval_bool(&json!({"action": "view", "amount": 3.5}))
                .unwrap()
        );
        let m = Expr::compile("double(event.n) * 2.0", &env).unwrap();
        assert_eq!(m.eval(&json!({"n": 2})).unwrap(), json!(4.0));
        let l = Expr::compile("event.items.map(i, i.sku)", &env).unwrap();
        assert_eq!(
            l.eval(&json!({"items": [{"sku": "a"}, {"sku": "b"}]}))
                .unwrap(),
            json!(["a", "b"])
        );
    }

    #[test]
    fn errors_are_reported_not_panicked() {
        let env = env();
        assert!(Expr::compile("event.a ==", &env).is_err());
        let e = Expr::compile("event.missing.deeper > 1", &env).unwrap();
        assert!(e.eval_bool(&json!({})).is_err());
        let nb = Expr::compile("event.a", &env).unwrap();
        assert!(matches!(
            nb.eval_bool(&json!({"a": 1})),
            Err(ExprError::NotBool { .. })
        ));
    }

    #[test]
    fn finds_the_fields_an_expression_reads() {
        let f = |s: &str| {
            event_fields(s, "event").map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(
            f("event.a == 'event.x' && event.b.c > 1"),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(f("size(event) > 2"), None);
        assert_eq!(f("event['a'] == 1"), None);
        assert_eq!(f("events.a == 1 && myevent == 2"), Some(vec![]));
        let env = env();
        let e = Expr::compile("event.a + event.b > 2 && !has(event.zzz)", &env).unwrap();
        assert!(e.eval_bool(&json!({"a": 1, "b": 2, "c": 3})).unwrap());
        let whole = Expr::compile("size(event) == 3", &env).unwrap();
        assert!(whole.eval_bool(&json!({"a": 1, "b": 2, "c": 3})).unwrap());
    }

    #[test]
    fn the_record_can_be_bound_to_another_name() {
        let env = env();
        let path = Expr::compile_as("other.order.id", &env, "other").unwrap();
        assert!(matches!(path.kind, Kind::Path(_)));
        assert_eq!(path.eval(&json!({"order": {"id": 7}})).unwrap(), json!(7));
        let cel = Expr::compile_as("other.a + '-' + other.b", &env, "other").unwrap();
        assert_eq!(
            cel.eval(&json!({"a": "x", "b": "y", "c": 1})).unwrap(),
            json!("x-y")
        );
        let not_event = Expr::compile_as("event.a", &env, "other").unwrap();
        assert!(
            not_event.eval(&json!({"a": 1})).is_err(),
            "event is not bound"
        );
    }

    #[test]
    fn common_filters_and_maps_run_natively() {
        let env = env();
        for src in [
            "event.action != 'scroll'",
            "event.amount * 100.0",
            "event.a.b >= 3 && (event.c == 'x' || !event.d)",
            "event.n > 2 ? 'big' : 'small'",
            "-event.n + 1",
        ] {
            let e = Expr::compile(src, &env).unwrap();
            assert!(
                matches!(&e.kind, Kind::Cel { fast: Some(_), .. }),
                "{src} is not native"
            );
        }
        for src in [
            "size(event.s) > 1",
            "has(event.a)",
            "event.items.map(i, i.x)",
            "event.n / 2",
            "event['a'] == 1",
        ] {
            let e = Expr::compile(src, &env).unwrap();
            assert!(
                matches!(&e.kind, Kind::Cel { fast: None, .. }),
                "{src} should go to the interpreter"
            );
        }
        let m = Expr::compile("event.amount * 100.0", &env).unwrap();
        assert_eq!(m.eval(&json!({"amount": 1.5})).unwrap(), json!(150.0));
        // Mixed types are the interpreter's to refuse.
        assert!(m.eval(&json!({"amount": 2})).is_err());
        let f = Expr::compile("event.action != 'scroll'", &env).unwrap();
        assert!(f.eval_bool(&json!({"action": "click"})).unwrap());
        assert!(
            f.eval_bool(&json!({})).is_err(),
            "a missing field is CEL's error"
        );
    }

    #[test]
    fn result_fields_can_be_variables() {
        let env = env();
        let h = Expr::compile_with_vars("clicks > 10", &env, &["clicks".into()]).unwrap();
        assert!(h.eval_bool(&json!({"clicks": 11})).unwrap());
        assert!(!h.eval_bool(&json!({"clicks": 10})).unwrap());
    }
}
