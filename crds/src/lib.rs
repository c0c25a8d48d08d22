//! The `StreamPipeline` API (`tributary.dev/v1alpha1`): types, defaults and
//! validation, shared by the operator and the processor so that both read
//! and check a pipeline the same way.
//!
//! # Layout
//! - [`pipeline`]: the custom resource and its spec.
//! - [`source`], [`step`], [`window`], [`cep`], [`http`], [`sink`]: the spec sections.
//! - [`runtime`]: guarantee, checkpoints, backpressure.
//! - [`scaling`]: autoscaling, metrics export, pod knobs.
//! - [`status`]: what the operator reports.
//! - [`validate`]: the checks the OpenAPI schema cannot express.
//! - [`load`]: reading a pipeline file (a whole resource or just its spec).
//! - [`duration`]: Go-style durations.
#![deny(missing_docs)]

pub mod cep;
pub mod duration;
pub mod http;
pub mod join;
pub mod load;
pub mod pipeline;
pub mod runtime;
pub mod scaling;
pub mod sink;
pub mod source;
pub mod stages;
pub mod status;
pub mod step;
pub mod validate;
pub mod window;
pub mod yaml11;

pub use cep::*;
pub use duration::{Duration, ParseDurationError};
pub use http::*;
pub use join::*;
pub use load::{LoadedPipeline, load_pipeline};
pub use pipeline::{StreamPipeline, StreamPipelineSpec};
pub use runtime::*;
pub use scaling::*;
pub use sink::*;
pub use source::*;
pub use stages::Repartition;
pub use status::*;
pub use step::*;
pub use validate::{FieldError, validate};
pub use window::*;

/// Renders the CustomResourceDefinition as YAML (what `crdgen` writes).
///
/// # Errors
/// When serialization fails, which would be a bug in the types.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    let crd = crd_value().map_err(<serde_yaml_ng::Error as serde::ser::Error>::custom)?;
    serde_yaml_ng::to_string(&crd).map(|y| yaml11::quote_yaml11_booleans(&y))
}

/// The CustomResourceDefinition as the apiserver should receive it.
///
/// # Errors
/// When serialization fails, which would be a bug in the types.
pub fn crd_value() -> Result<serde_json::Value, serde_json::Error> {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(StreamPipeline::crd())?;
    unsigned_formats_to_minimum(&mut crd);
    Ok(crd)
}

/// schemars marks unsigned integers `format: uint32`/`uint64`, which the
/// apiserver does not know (a warning on every apply); `minimum: 0` says the
/// same thing in OpenAPI terms.
fn unsigned_formats_to_minimum(node: &mut serde_json::Value) {
    match node {
        serde_json::Value::Object(obj) => {
            let unsigned = obj
                .get("format")
                .and_then(|f| f.as_str())
                .is_some_and(|f| f.starts_with("uint"));
            if unsigned {
                obj.remove("format");
                obj.entry("minimum").or_insert(0.into());
            }
            obj.values_mut().for_each(unsigned_formats_to_minimum);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unsigned_formats_to_minimum),
        _ => {}
    }
}
