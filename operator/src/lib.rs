//! The Tributary operator: turns `StreamPipeline` resources into processor
//! Deployments and reports their state.
//!
//! # Layout
//! - [`cli`]: the command line (flags with environment fallbacks).
//! - [`config`]: what the child builders need besides the pipeline.
//! - [`autoscale`]: the lag-driven scaling decision (pure) and its simulator.
//! - [`children`]: pure builders of the ConfigMap, Deployment, Service and
//!   PodDisruptionBudget a pipeline owns.
//! - [`conditions`]: pure status computation (`Ready`, `Progressing`,
//!   `Degraded`) with `lastTransitionTime` kept across reconciles.
//! - [`reconcile`]: the thin reconcile loop: validate, apply, status, events.
//! - [`controller`]: wiring the kube-runtime `Controller` with its watches.
//! - [`leader`]: leader election through a `coordination.k8s.io` Lease.
//! - [`metrics`], [`http`]: Prometheus metrics and `/metrics`, `/healthz`, `/readyz`.
//! - [`rbac`]: the exact API permissions the operator uses.
//! - [`error`]: the reconcile error type.

pub mod autoscale;
pub mod children;
pub mod cli;
pub mod conditions;
pub mod config;
pub mod controller;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod reconcile;

pub use config::Config;
pub use error::{Error, Result};

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "tributary-operator";
