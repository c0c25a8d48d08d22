//! The `StreamPipeline` API (`tributary.dev/v1alpha1`): types, defaults and
//! validation, shared by the operator and the processor so that both read
//! and check a pipeline the same way.
//!
//! # Layout
//! - [`pipeline`]: the custom resource and its spec.
//! - [`source`], [`step`], [`window`], [`cep`], [`sink`]: the spec sections.
//! - [`runtime`]: guarantee, checkpoints, backpressure.
//! - [`scaling`]: autoscaling, metrics export, pod knobs.
//! - [`status`]: what the operator reports.
//! - [`validate`]: the checks the OpenAPI schema cannot express.
//! - [`load`]: reading a pipeline file (a whole resource or just its spec).
//! - [`duration`]: Go-style durations.
#![deny(missing_docs)]

pub mod cep;
pub mod duration;
pub mod load;
pub mod pipeline;
pub mod runtime;
pub mod scaling;
pub mod sink;
pub mod source;
pub mod status;
pub mod step;
pub mod validate;
pub mod window;
pub mod yaml11;

pub use cep::*;
pub use duration::{Duration, ParseDurationError};
pub use load::{LoadedPipeline, load_pipeline};
pub use pipeline::{StreamPipeline, StreamPipelineSpec};
pub use runtime::*;
pub use scaling::*;
pub use sink::*;
pub use source::*;
pub use status::*;
pub use step::*;
pub use validate::{FieldError, validate};
pub use window::*;

/// Renders the CustomResourceDefinition as YAML (what `crdgen` writes).
///
/// # Errors
/// When serialization fails, which would be a bug in the types.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    serde_yaml_ng::to_string(&StreamPipeline::crd()).map(|y| yaml11::quote_yaml11_booleans(&y))
}
