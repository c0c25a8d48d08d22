//! Test bed helpers and end-to-end tests for Tributary.
//!
//! The test bed itself is `e2e/testbed` (a shell script): it builds or
//! fetches a real Kubernetes control plane, Kafka and the other servers and
//! runs them on loopback. This crate holds what the Rust side needs to use it.
//!
//! # Layout
//!
//! - [`env`]: the test bed's env file, read once; a missing test bed is an
//!   error that says to run `e2e/testbed up`, never a skipped test.
//! - [`fixture`]: the loaded test bed, unique names, clients per identity.
//! - [`poll`]: wait for a condition with a deadline instead of sleeping.
//! - [`kafka`]: topics, keyed numbered workloads, read-to-the-end readers,
//!   result checkers and the toxiproxy switch, for the Kafka pipeline tests.
//! - [`net`]: a free loopback port and a plain HTTP GET.
//! - [`pubsub`]: the Pub/Sub emulator's REST API (topics, subscriptions,
//!   publish, pull) and a toxiproxy proxy of a test's own in front of it.
//! - [`numbered`]: `{"n": i}` workloads and the at-least-once check.
//! - [`process`]: local `tributary run` replicas a test kills, restarts,
//!   scales and stops.
//! - [`server`]: a test's own broker process (free port, own data) for outage tests.
//! - [`tools`]: run the CLIs the test bed built (`kubectl`, `helm`, …).
//! - [`runner`]: the pod runner. Under kwok, processor pods never run, so
//!   the `pod-runner` binary starts the real `tributary` binary as a local
//!   process for every Running processor pod and stops it when the pod goes.
//! - [`operator`]: the chart installed per test, the operator run as a local
//!   process with its ServiceAccount's token, its metrics and the audit log.
//! - `tests/`: smoke tests proving each part of the test bed is real, and
//!   the pod runner's scaling test.

pub mod env;
pub mod fixture;
pub mod kafka;
pub mod net;
pub mod numbered;
pub mod operator;
pub mod poll;
pub mod process;
pub mod pubsub;
pub mod redis_stream;
pub mod runner;
pub mod server;
pub mod tools;
