//! CEL expression checks: they must parse and use only known variables.

use super::Errors;

/// Checks that `source` is CEL that reads only `allowed` variables.
///
/// # Errors
/// A message saying what is wrong with the expression.
pub fn check_expression(source: &str, allowed: &[&str]) -> Result<(), String> {
    if source.trim().is_empty() {
        return Err("empty expression".to_owned());
    }
    let program = cel::Program::compile(source)
        .map_err(|e| format!("not a valid CEL expression ({source:?}): {e}"))?;
    let mut unknown = Vec::new();
    free_variables(program.expression(), &mut Vec::new(), &mut unknown);
    unknown.retain(|v| !allowed.contains(&v.as_str()));
    unknown.sort_unstable();
    unknown.dedup();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unknown name(s) {} in {source:?}; the expression may use {}",
            unknown.join(", "),
            allowed.join(", ")
        ))
    }
}

/// Names `e` reads that no enclosing macro (`map`, `filter`, `all`,
/// `exists`, …) binds: the comprehension's iteration variables are in scope
/// only in its condition, step and result. `cel`'s own `references()`
/// counts them as free, which refused `items.map(i, i.price)`.
fn free_variables(e: &cel::IdedExpr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    use cel::common::ast::{EntryExpr, Expr};
    match &e.expr {
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.contains(name) {
                out.push(name.clone());
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                free_variables(target, bound, out);
            }
            for arg in &call.args {
                free_variables(arg, bound, out);
            }
        }
        Expr::Comprehension(c) => {
            free_variables(&c.iter_range, bound, out);
            free_variables(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.iter().cloned());
            free_variables(&c.loop_cond, bound, out);
            free_variables(&c.loop_step, bound, out);
            free_variables(&c.result, bound, out);
            bound.truncate(depth);
        }
        Expr::List(list) => {
            for item in &list.elements {
                free_variables(item, bound, out);
            }
        }
        Expr::Map(map) => map.entries.iter().for_each(|entry| match &entry.expr {
            EntryExpr::StructField(f) => free_variables(&f.value, bound, out),
            EntryExpr::MapEntry(m) => {
                free_variables(&m.key, bound, out);
                free_variables(&m.value, bound, out);
            }
        }),
        Expr::Struct(st) => {
            for entry in &st.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    free_variables(&f.value, bound, out);
                }
            }
        }
        Expr::Select(select) => free_variables(&select.operand, bound, out),
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

pub(super) fn check_into(source: &str, path: &str, allowed: &[&str], errs: &mut Errors) {
    if let Err(e) = check_expression(source, allowed) {
        errs.push(path, e);
    }
}

#[cfg(test)]
mod tests {
    use super::check_expression;

    #[test]
    fn macro_variables_are_bound_only_inside_their_macro() {
        let ok = [
            "event.items.map(i, i.price * 2.0)",
            "event.items.exists(i, i.sku == 'a') && event.tags.all(t, t != '')",
            "[1, 2].map(a, [3, 4].map(b, a * b)).size() > 0",
            "{'k': event.x}.exists(k, k == 'k')",
        ];
        for e in ok {
            assert_eq!(check_expression(e, &["event"]), Ok(()), "{e}");
        }
        let err = check_expression("event.items.map(i, i.price) + [i]", &["event"]).unwrap_err();
        assert!(err.contains("unknown name(s) i"), "{err}");
        let err = check_expression("other.x > 1", &["event"]).unwrap_err();
        assert!(err.contains("unknown name(s) other"), "{err}");
    }
}
