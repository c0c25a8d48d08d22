//! Secret values: the spec holds references only. In the cluster the
//! operator turns every `secretKeyRef` into `env: TRIBUTARY_SECRET_<N>`
//! and sets that variable from the Secret; a local run names a variable
//! with `env:` itself.

use tributary_crds::SecretValue;

/// The value of `v`.
///
/// # Errors
/// Why not (the caller prefixes the field path): when the variable is unset, or when a
/// `secretKeyRef` reaches the processor unresolved (a local run).
pub fn resolve(v: &SecretValue) -> Result<String, String> {
    if let Some(var) = &v.env {
        return std::env::var(var).map_err(|_| format!("environment variable {var} is not set"));
    }
    Err(
        "secretKeyRef is resolved by the operator into an env reference; \
         for a local run use `env: VARIABLE`"
            .to_owned(),
    )
}
