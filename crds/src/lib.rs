//! The StreamPipeline API.
