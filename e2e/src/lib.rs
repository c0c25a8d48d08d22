//! Test bed helpers and end-to-end tests for Tributary.
