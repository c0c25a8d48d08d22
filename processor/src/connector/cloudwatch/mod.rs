//! `spec.metrics.cloudWatch`: each replica publishes its key metrics to
//! Amazon CloudWatch with `PutMetricData` every `interval`.
//!
//! The values are read from the same [`Metrics`] that `/metrics` serves
//! (the engine counters, the latency histogram and the connectors' lag
//! gauges), never from counters of their own.
//!
//! # Guarantees
//! Best effort. A failed publish is logged, counted in
//! `tributary_cloudwatch_publish_failures_total` and retried at the next
//! interval with everything since the last successful one (counters are
//! published as their increase since the last *successful* publish, so no
//! count is lost while CloudWatch is unreachable, only its time
//! resolution); it never stops the pipeline. [`Exporter::finish`] publishes
//! once more, so a bounded run's last interval is not lost. A process that
//! is killed (SIGKILL, OOM) loses what it had not published.
//!
//! # Layout
//! - [`datum`]: two readings to the values of one interval (pure).
//! - this file: the publisher thread and the SDK calls.

pub mod datum;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use prometheus::{IntCounter, Opts};
use tributary_crds::CloudWatchExport;

use crate::runtime::Metrics;
use datum::{Datum, Snapshot, Unit};

/// How long one `PutMetricData` may take, retries included; also bounds
/// the final publish at shutdown.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the publisher thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// The exporter cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Its runtime or thread could not be created.
    #[error("cannot start the CloudWatch exporter: {0}")]
    Start(#[source] std::io::Error),
}

/// Who publishes: the values of the `Pipeline` and `Replica` dimensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The pipeline's `metadata.name` (or the file stem of a bare spec).
    pub pipeline: String,
    /// The replica: `POD_NAME`, else `HOSTNAME`, else `local`.
    pub replica: String,
}

impl Identity {
    /// `pipeline`, and the replica from the environment (see
    /// [`replica_name`]).
    #[must_use]
    pub fn new(pipeline: impl Into<String>) -> Self {
        Self {
            pipeline: pipeline.into(),
            replica: replica_name(
                std::env::var("POD_NAME").ok().as_deref(),
                std::env::var("HOSTNAME").ok().as_deref(),
            ),
        }
    }
}

/// The `Replica` dimension: the pod name (`POD_NAME`, which the operator
/// sets), else `HOSTNAME` (the pod name in Kubernetes, the host elsewhere),
/// else `local`. No process id: a restarted container keeps its series.
#[must_use]
pub fn replica_name(pod: Option<&str>, host: Option<&str>) -> String {
    [pod, host]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("local")
        .to_owned()
}

/// The publisher counters, in the pipeline's registry (`/metrics`).
#[derive(Clone)]
struct Counters {
    publishes: IntCounter,
    failures: IntCounter,
}

impl Counters {
    fn register(metrics: &Metrics, pipeline: &str) -> Self {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("pipeline", pipeline);
        let publishes = IntCounter::with_opts(opts(
            "tributary_cloudwatch_publishes_total",
            "PutMetricData calls that succeeded.",
        ));
        let failures = IntCounter::with_opts(opts(
            "tributary_cloudwatch_publish_failures_total",
            "PutMetricData calls that failed (retried at the next interval).",
        ));
        match (publishes, failures) {
            (Ok(publishes), Ok(failures)) => {
                let _ = metrics.registry.register(Box::new(publishes.clone()));
                let _ = metrics.registry.register(Box::new(failures.clone()));
                Self {
                    publishes,
                    failures,
                }
            }
            _ => unreachable!("constant metric options are valid"),
        }
    }
}

/// The publisher thread; [`finish`](Self::finish) stops it after a last
/// publish.
pub struct Exporter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Starts publishing `metrics` as configured by `spec`.
    ///
    /// The AWS configuration is the SDK's default chain: region from
    /// `AWS_REGION` / `AWS_DEFAULT_REGION` / the profile (else `us-east-1`),
    /// credentials from the environment, web identity (IRSA) or the
    /// instance role, and `AWS_ENDPOINT_URL` (or
    /// `AWS_ENDPOINT_URL_CLOUDWATCH`) to point it at an emulator.
    ///
    /// # Errors
    /// When the thread or its runtime cannot be created.
    pub fn start(
        spec: &CloudWatchExport,
        metrics: Arc<Metrics>,
        who: Identity,
    ) -> Result<Self, ExportError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ExportError::Start)?;
        let counters = Counters::register(&metrics, &who.pipeline);
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = Publisher {
            namespace: spec.namespace.clone(),
            interval: spec.interval.0.max(Duration::from_secs(1)),
            dimensions: vec![
                Dimension::builder()
                    .name("Pipeline")
                    .value(&who.pipeline)
                    .build(),
                Dimension::builder()
                    .name("Replica")
                    .value(&who.replica)
                    .build(),
            ],
            metrics,
            counters,
        };
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("cloudwatch".into())
            .spawn(move || runtime.block_on(publisher.run(&flag)))
            .map_err(ExportError::Start)?;
        tracing::info!(
            namespace = %spec.namespace,
            interval = ?spec.interval.0,
            pipeline = %who.pipeline,
            replica = %who.replica,
            "publishing metrics to CloudWatch"
        );
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Publishes what is left and stops (waits at most about 10 s for
    /// CloudWatch).
    pub fn finish(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The publisher thread's state.
struct Publisher {
    namespace: String,
    interval: Duration,
    dimensions: Vec<Dimension>,
    metrics: Arc<Metrics>,
    counters: Counters,
}

impl Publisher {
    async fn run(self, stop: &AtomicBool) {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(
                aws_config::meta::region::RegionProviderChain::default_provider()
                    .or_else("us-east-1"),
            )
            // One retry within the call; the next interval is the real retry.
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(CALL_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        let client = aws_sdk_cloudwatch::Client::new(&config);
        // The last reading CloudWatch accepted, and when it was taken.
        let mut published = Snapshot::default();
        let mut published_at = Instant::now();
        let mut attempted_at = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if !stopping && attempted_at.elapsed() < self.interval {
                tokio::time::sleep(POLL).await;
                continue;
            }
            attempted_at = Instant::now();
            let cur = Snapshot::read(&self.metrics);
            let data = datum::datums(&published, &cur, published_at.elapsed());
            match self.put(&client, &data).await {
                Ok(()) => {
                    self.counters.publishes.inc();
                    published = cur;
                    published_at = attempted_at;
                }
                Err(e) => {
                    self.counters.failures.inc();
                    tracing::warn!(
                        namespace = %self.namespace,
                        error = %e,
                        "PutMetricData failed; retrying at the next interval"
                    );
                }
            }
            if stopping {
                return;
            }
        }
    }

    async fn put(&self, client: &aws_sdk_cloudwatch::Client, data: &[Datum]) -> Result<(), String> {
        let now = aws_sdk_cloudwatch::primitives::DateTime::from(SystemTime::now());
        // Below a minute, keep every datapoint (high resolution: 1 s);
        // CloudWatch would otherwise aggregate them per minute.
        let resolution = if self.interval < Duration::from_secs(60) {
            1
        } else {
            60
        };
        let metric_data = data
            .iter()
            .map(|d| {
                MetricDatum::builder()
                    .metric_name(d.name)
                    .set_dimensions(Some(self.dimensions.clone()))
                    .timestamp(now)
                    .value(d.value)
                    .unit(unit(d.unit))
                    .storage_resolution(resolution)
                    .build()
            })
            .collect();
        client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(metric_data))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string())
    }
}

fn unit(u: Unit) -> StandardUnit {
    match u {
        Unit::Count => StandardUnit::Count,
        Unit::CountPerSecond => StandardUnit::CountSecond,
        Unit::Milliseconds => StandardUnit::Milliseconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_is_the_pod_then_the_host_then_local() {
        assert_eq!(replica_name(Some("p-0"), Some("h")), "p-0");
        assert_eq!(replica_name(Some(" "), Some("h")), "h");
        assert_eq!(replica_name(None, Some("h")), "h");
        assert_eq!(replica_name(None, None), "local");
        assert_eq!(replica_name(Some(""), Some("")), "local");
    }

    #[test]
    fn units_are_cloudwatch_standard_units() {
        assert_eq!(unit(Unit::Count).as_str(), "Count");
        assert_eq!(unit(Unit::CountPerSecond).as_str(), "Count/Second");
        assert_eq!(unit(Unit::Milliseconds).as_str(), "Milliseconds");
    }
}
