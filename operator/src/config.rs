//! What the child builders need besides the pipeline itself.

/// The processor image used when `spec.processor.image` is absent.
pub const DEFAULT_PROCESSOR_IMAGE: &str = "ghcr.io/tributary/processor:0.1.0";

/// Operator-wide settings that shape the children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Image of the processor container when the spec names none.
    pub processor_image: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            processor_image: DEFAULT_PROCESSOR_IMAGE.to_owned(),
        }
    }
}
