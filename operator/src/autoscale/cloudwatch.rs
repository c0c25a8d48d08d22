//! Reading the lag signal from a CloudWatch metric (for Kinesis,
//! `GetRecords.IteratorAgeMilliseconds` or `MillisBehindLatest`) with
//! `GetMetricData`. The value is the lag in the metric's unit, compared with
//! `targetLagPerReplica` in that same unit. CloudWatch gives no offsets, so
//! no rates: the decision uses its lag-per-replica fallback, and an idle
//! stream (value 0) goes back to `minReplicas`.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use tributary_crds::CloudWatchMetric;

use super::Sample;
use super::signal::SignalError;

/// Where a pipeline's lag is read in CloudWatch.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudWatchTarget {
    metric: CloudWatchMetric,
}

impl CloudWatchTarget {
    /// The target for `metric`.
    #[must_use]
    pub fn new(metric: &CloudWatchMetric) -> Self {
        Self {
            metric: metric.clone(),
        }
    }

    /// Reads the latest datapoint of the last ten periods; no datapoint
    /// reads as zero lag (CloudWatch omits periods without data).
    ///
    /// # Errors
    /// [`SignalError::CloudWatch`] when the request fails.
    pub async fn read(
        &self,
        client: &aws_sdk_cloudwatch::Client,
        at_ms: i64,
    ) -> Result<Sample, SignalError> {
        let m = &self.metric;
        let period = i32::try_from(m.period.0.as_secs().max(1)).unwrap_or(60);
        let dimensions: Vec<Dimension> = m
            .dimensions
            .iter()
            .map(|(k, v)| Dimension::builder().name(k).value(v).build())
            .collect();
        let query = MetricDataQuery::builder()
            .id("lag")
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(&m.namespace)
                            .metric_name(&m.metric_name)
                            .set_dimensions(Some(dimensions))
                            .build(),
                    )
                    .period(period)
                    .stat(&m.statistic)
                    .build(),
            )
            .build();
        let now = SystemTime::now();
        let span = Duration::from_secs(u64::try_from(period).unwrap_or(60) * 10);
        let out = client
            .get_metric_data()
            .metric_data_queries(query)
            .scan_by(ScanBy::TimestampDescending)
            .start_time((now - span).into())
            .end_time((now + Duration::from_secs(60)).into())
            .send()
            .await
            .map_err(|e| SignalError::CloudWatch {
                metric: format!("{}/{}", m.namespace, m.metric_name),
                message: aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string(),
            })?;
        // The newest datapoint: by timestamp, whatever order the server used.
        let latest = out
            .metric_data_results()
            .iter()
            .flat_map(|r| r.timestamps().iter().zip(r.values()))
            .max_by_key(|(t, _)| (t.secs(), t.subsec_nanos()))
            .map_or(0.0, |(_, v)| *v);
        Ok(Sample {
            at_ms,
            lag: latest.max(0.0).round() as i64,
            end_offsets: 0,
            committed: 0,
        })
    }
}
