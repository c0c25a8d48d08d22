//! The autoscaler loop (leader only): every `pollInterval` per pipeline with
//! `autoscaling.enabled`, read the lag, decide, and act by patching
//! `spec.replicas` — the scale subresource's path, so the Deployment follows
//! through the normal reconcile. Every decision shows in the `Autoscaling`
//! condition, `status.lag`, metrics, and an Event on each change.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use prometheus::{IntGaugeVec, Opts};
use serde_json::json;
use tributary_crds::StreamPipeline;

use super::cloudwatch::CloudWatchTarget;
use super::decide::{Decision, Memory, Observed, Policy, Sample, decide};
use super::signal::{KafkaTarget, SignalError};
use crate::conditions;
use crate::reconcile::{Context, key, write_status};

/// The field manager of the autoscaler's patches (the reconciler has its own).
pub const FIELD_MANAGER: &str = "tributary-autoscaler";

/// The condition the autoscaler owns.
pub const AUTOSCALING: &str = "Autoscaling";

/// How often the loop looks for pipelines that are due.
const TICK: Duration = Duration::from_secs(2);

/// Samples kept per pipeline (the decision uses the last two minutes).
const KEEP: usize = 64;

/// The autoscaler's gauges, per pipeline.
#[derive(Clone)]
struct Gauges {
    desired: IntGaugeVec,
    current: IntGaugeVec,
    lag: IntGaugeVec,
}

impl Gauges {
    fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let vec = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["namespace", "pipeline"])
        };
        let g = Self {
            desired: vec(
                "tributary_operator_autoscaler_desired_replicas",
                "Replicas the autoscaler decided on.",
            )?,
            current: vec(
                "tributary_operator_autoscaler_current_replicas",
                "spec.replicas when the autoscaler decided.",
            )?,
            lag: vec(
                "tributary_operator_autoscaler_lag_records",
                "Source lag the decision used.",
            )?,
        };
        registry.register(Box::new(g.desired.clone()))?;
        registry.register(Box::new(g.current.clone()))?;
        registry.register(Box::new(g.lag.clone()))?;
        Ok(g)
    }
}

#[derive(Default)]
struct Tracked {
    samples: VecDeque<Sample>,
    memory: Memory,
    next: Option<Instant>,
    /// The pipeline's generation at the last poll.
    generation: Option<i64>,
    /// The generation this autoscaler's last `spec.replicas` patch produced.
    own_generation: Option<i64>,
}

impl Tracked {
    /// Notes the pipeline's generation. A spec change by someone else
    /// restarts the rate history (the pipeline may process at a different
    /// speed now); the autoscaler's own patch keeps it, whatever count it
    /// set — a step limit or snapping often makes that count differ from
    /// the recommendation, and dropping the history then would send the
    /// next poll back to the cold-start rule.
    fn observe_generation(&mut self, generation: Option<i64>) {
        let changed = self.generation.is_some() && self.generation != generation;
        if changed && self.own_generation != generation {
            self.samples.clear();
        }
        self.generation = generation;
    }
}

/// Runs until the task is aborted (when the leader steps down).
///
/// Reads the pipelines from the controller's cache (`pipelines`), so the
/// loop adds no apiserver requests of its own besides its patches.
pub async fn run(ctx: Arc<Context>, pipelines: Store<StreamPipeline>) {
    let gauges = match Gauges::new(&ctx.metrics.registry) {
        Ok(g) => g,
        Err(error) => {
            tracing::error!(%error, "cannot register the autoscaler's metrics; autoscaling is off");
            return;
        }
    };
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    loop {
        let list = pipelines.state();
        let live: Vec<String> = list.iter().map(|sp| key(sp)).collect();
        tracked.retain(|k, _| live.contains(k));
        for sp in &list {
            let enabled = sp.spec.autoscaling.as_ref().is_some_and(|a| a.enabled);
            if !enabled {
                tracked.remove(&key(sp));
                continue;
            }
            let t = tracked.entry(key(sp)).or_default();
            if t.next.is_some_and(|n| Instant::now() < n) {
                continue;
            }
            step(&ctx, sp, t, &gauges).await;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// What one poll read: the sample, and the partition (shard) count when
/// the signal knows it.
struct Reading {
    sample: Sample,
    partitions: Option<i32>,
}

/// Reads the pipeline's signal: the CloudWatch metric when set, else the
/// Kafka consumer lag.
async fn read_signal(
    sp: &StreamPipeline,
    spec: &tributary_crds::AutoscalingSpec,
    now_ms: i64,
) -> Result<Reading, SignalError> {
    if let Some(metric) = spec.metric.cloud_watch.as_ref() {
        let client = cloudwatch_client().await;
        let sample = CloudWatchTarget::new(metric).read(client, now_ms).await?;
        return Ok(Reading {
            sample,
            partitions: None,
        });
    }
    let target = KafkaTarget::of(sp)?;
    let r = tokio::task::spawn_blocking(move || target.read(now_ms))
        .await
        .unwrap_or_else(|e| {
            Err(SignalError::Unsupported(format!(
                "the lag reader failed: {e}"
            )))
        })?;
    Ok(Reading {
        sample: r.sample,
        partitions: Some(r.partitions),
    })
}

/// One client for the process, from the SDK's default chain (environment,
/// web identity / IRSA, instance profile); `AWS_ENDPOINT_URL` points it at
/// an emulator.
async fn cloudwatch_client() -> &'static aws_sdk_cloudwatch::Client {
    static CLIENT: tokio::sync::OnceCell<aws_sdk_cloudwatch::Client> =
        tokio::sync::OnceCell::const_new();
    CLIENT
        .get_or_init(|| async {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            aws_sdk_cloudwatch::Client::new(&config)
        })
        .await
}

/// One poll of one pipeline: read, decide, act, report.
async fn step(ctx: &Context, sp: &StreamPipeline, t: &mut Tracked, gauges: &Gauges) {
    let Some(spec) = sp.spec.autoscaling.as_ref() else {
        return;
    };
    t.next = Some(Instant::now() + spec.poll_interval.0.max(Duration::from_secs(1)));
    let policy = Policy::from(spec);
    let now = k8s_openapi::jiff::Timestamp::now();
    let now_ms = now.as_millisecond();
    let reading = match read_signal(sp, spec, now_ms).await {
        Ok(r) => r,
        Err(e) => {
            let c = condition(false, "SignalUnavailable", e.to_string());
            report(ctx, sp, None, None, c).await;
            return;
        }
    };
    t.observe_generation(sp.metadata.generation);
    t.samples.push_back(reading.sample);
    while t.samples.len() > KEEP {
        t.samples.pop_front();
    }
    let status = sp.status.clone().unwrap_or_default();
    let progressing = status
        .conditions
        .iter()
        .any(|c| c.type_ == conditions::PROGRESSING && c.status == "True");
    let last_scale_ms = status
        .last_scale_time
        .as_ref()
        .map(|t| t.0.as_millisecond());
    let samples: Vec<Sample> = t.samples.iter().copied().collect();
    let current = sp.spec.replicas;
    let seen = Observed {
        now_ms,
        samples: &samples,
        current,
        ready: status.ready_replicas.unwrap_or(0),
        rolling_out: progressing,
        partitions: reading.partitions,
        last_scale_ms,
    };
    let d = decide(&policy, &seen, &mut t.memory);
    let labels = [sp.namespace().unwrap_or_default(), sp.name_any()];
    let labels = [labels[0].as_str(), labels[1].as_str()];
    gauges
        .desired
        .with_label_values(&labels)
        .set(i64::from(d.desired));
    gauges
        .current
        .with_label_values(&labels)
        .set(i64::from(current));
    gauges.lag.with_label_values(&labels).set(d.lag);
    tracing::info!(pipeline = %key(sp), decision = %d.message(current), "autoscaler");
    let mut scaled_at = None;
    // The pipeline the status is written on top of: the patched one after
    // a scale (the cache has not seen it yet).
    let mut base = None;
    if d.desired != current {
        match scale(ctx, sp, d.desired).await {
            Ok(patched) => {
                t.own_generation = patched.metadata.generation;
                scaled_at = Some(Time(now));
                publish(ctx, sp, &d, current).await;
                base = Some(patched);
            }
            Err(e) => {
                report(
                    ctx,
                    sp,
                    Some(&d),
                    None,
                    condition(false, "ScaleFailed", e.to_string()),
                )
                .await;
                return;
            }
        }
    }
    let c = condition(true, d.reason.as_str(), d.message(current));
    report(ctx, base.as_ref().unwrap_or(sp), Some(&d), scaled_at, c).await;
}

fn condition(ok: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: AUTOSCALING.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: None,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// Patches `spec.replicas` (what `kubectl scale` changes); returns the
/// pipeline as patched (with the generation the patch produced).
async fn scale(
    ctx: &Context,
    sp: &StreamPipeline,
    replicas: i32,
) -> Result<StreamPipeline, kube::Error> {
    let api: Api<StreamPipeline> =
        Api::namespaced(ctx.client.clone(), &sp.namespace().unwrap_or_default());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(
        &sp.name_any(),
        &params,
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
}

async fn publish(ctx: &Context, sp: &StreamPipeline, d: &Decision, current: i32) {
    let ev = Event {
        type_: EventType::Normal,
        reason: "Autoscaled".to_owned(),
        note: Some(d.message(current)),
        // kube's recorder folds events of one reason and action into a
        // series (count + last time); one series per direction.
        action: if d.desired > current {
            "ScaleUp"
        } else {
            "ScaleDown"
        }
        .to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&ev, &sp.object_ref(&())).await {
        tracing::warn!(%error, "could not publish the Autoscaled event");
    }
}

/// Writes `status.lag`, `status.lastScaleTime` (when it scaled) and the
/// `Autoscaling` condition; other conditions are kept as they are (the
/// write is checked against the reconciler's, see [`write_status`]).
async fn report(
    ctx: &Context,
    sp: &StreamPipeline,
    d: Option<&Decision>,
    scaled_at: Option<Time>,
    c: Condition,
) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let api: Api<StreamPipeline> =
        Api::namespaced(ctx.client.clone(), &sp.namespace().unwrap_or_default());
    let build = |fresh: &StreamPipeline| {
        let old = fresh.status.as_ref().map_or(&[][..], |s| &s.conditions[..]);
        let merged = conditions::merge(old, vec![c.clone()], fresh.metadata.generation, &now);
        let mut status = json!({ "conditions": merged });
        if let Some(d) = d {
            status["lag"] = json!({"records": d.lag, "observedAt": now});
        }
        if let Some(at) = &scaled_at {
            status["lastScaleTime"] = json!(at);
        }
        Some(status)
    };
    if let Err(error) = write_status(&api, sp, FIELD_MANAGER, build).await {
        tracing::warn!(%error, pipeline = %key(sp), "autoscaler: patching status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64) -> Sample {
        Sample {
            at_ms,
            lag: 5_000,
            end_offsets: 0,
            committed: 0,
        }
    }

    fn tracked_at(generation: i64) -> Tracked {
        Tracked {
            samples: (0..4).map(|k| sample(k * 15_000)).collect(),
            generation: Some(generation),
            ..Tracked::default()
        }
    }

    /// The autoscaler's own patch keeps the sample history, also when a
    /// step limit or snapping made the count it set differ from what it
    /// recommended (the patch is recognised by the generation it produced,
    /// not by the count).
    #[test]
    fn the_autoscalers_own_patch_keeps_the_sample_history_whatever_count_it_set() {
        let mut t = tracked_at(4);
        // Recommended 12, stepped to 5: the recommendation is not the count.
        t.memory.recommendations.push_back((45_000, 12));
        t.own_generation = Some(5);
        t.observe_generation(Some(5));
        assert_eq!(t.samples.len(), 4);
        // Polls before the cache saw the patch change nothing either.
        let mut t = tracked_at(4);
        t.own_generation = Some(5);
        t.observe_generation(Some(4));
        t.observe_generation(Some(5));
        assert_eq!(t.samples.len(), 4);
    }

    /// A spec change by anyone else (or on top of the autoscaler's own)
    /// restarts the rate history.
    #[test]
    fn a_spec_change_by_someone_else_restarts_the_sample_history() {
        let mut t = tracked_at(4);
        t.observe_generation(Some(5));
        assert!(t.samples.is_empty());
        let mut t = tracked_at(5);
        t.own_generation = Some(5);
        t.observe_generation(Some(6));
        assert!(t.samples.is_empty());
    }
}
