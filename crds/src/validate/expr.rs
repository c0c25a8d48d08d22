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
    let refs = program.references();
    let mut unknown: Vec<&str> = refs
        .variables()
        .into_iter()
        .filter(|v| !allowed.contains(v))
        .collect();
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

pub(super) fn check_into(source: &str, path: &str, allowed: &[&str], errs: &mut Errors) {
    if let Err(e) = check_expression(source, allowed) {
        errs.push(path, e);
    }
}
