//! Event time and watermarks.

mod watermark;

pub use watermark::Watermarks;
