//! The Tributary engine.
