use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::*;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

/// A Deployment at `generation` whose controller reports `status`.
fn deploy(generation: i64, status: DeploymentStatus) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(generation),
            ..ObjectMeta::default()
        },
        status: Some(status),
        ..Deployment::default()
    }
}

fn cond(type_: &str, status: &str, reason: &str) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.to_owned()),
        status: Some(status.to_owned()),
        reason: Some(reason.to_owned()),
        ..DeploymentCondition::default()
    }
}

fn settled(n: i32) -> DeploymentStatus {
    DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(n),
        updated_replicas: Some(n),
        ready_replicas: Some(n),
        available_replicas: Some(n),
        conditions: Some(vec![cond("Available", "True", "MinimumReplicasAvailable")]),
        ..DeploymentStatus::default()
    }
}

fn find<'a>(cs: &'a [Condition], t: &str) -> (&'a str, &'a str) {
    let c = cs.iter().find(|c| c.type_ == t).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn an_available_settled_deployment_is_ready() {
    let cs = from_deployment(&deploy(1, settled(2)), 2);
    assert_eq!(find(&cs, READY), ("True", "Available"));
    assert_eq!(find(&cs, PROGRESSING), ("False", "Complete"));
    assert_eq!(find(&cs, DEGRADED), ("False", "AsExpected"));
}

#[test]
fn a_deployment_not_yet_observed_is_not_ready() {
    let cs = from_deployment(&deploy(2, settled(2)), 2);
    assert_eq!(find(&cs, READY), ("False", "Progressing"));
    assert_eq!(find(&cs, PROGRESSING), ("True", "RollingOut"));
}

#[test]
fn old_pods_mean_rolling_out_and_missing_pods_mean_scaling() {
    let mut rolling = settled(2);
    rolling.replicas = Some(3);
    rolling.updated_replicas = Some(1);
    let cs = from_deployment(&deploy(1, rolling), 2);
    assert_eq!(find(&cs, PROGRESSING), ("True", "RollingOut"));
    let cs = from_deployment(&deploy(1, settled(2)), 4);
    assert_eq!(find(&cs, PROGRESSING), ("True", "Scaling"));
    assert_eq!(find(&cs, READY), ("False", "Progressing"));
}

#[test]
fn complete_but_unready_pods_are_unavailable() {
    let mut s = settled(2);
    s.ready_replicas = Some(1);
    s.available_replicas = Some(1);
    let cs = from_deployment(&deploy(1, s), 2);
    assert_eq!(find(&cs, READY), ("False", "Unavailable"));
}

#[test]
fn a_stuck_rollout_is_degraded() {
    let mut s = settled(1);
    s.conditions = Some(vec![cond(
        "Progressing",
        "False",
        "ProgressDeadlineExceeded",
    )]);
    let cs = from_deployment(&deploy(1, s), 1);
    assert_eq!(find(&cs, DEGRADED), ("True", "ProgressDeadlineExceeded"));
}

#[test]
fn an_invalid_spec_names_the_field_everywhere() {
    let errs = [FieldError::new(
        "spec.steps[1].window.size",
        "must be positive",
    )];
    let cs = invalid(&errs);
    assert_eq!(find(&cs, READY), ("False", INVALID_SPEC));
    assert_eq!(find(&cs, PROGRESSING), ("False", INVALID_SPEC));
    assert_eq!(find(&cs, DEGRADED), ("True", INVALID_SPEC));
    let ready = cs.iter().find(|c| c.type_ == READY).unwrap();
    assert!(
        ready.message.contains("spec.steps[1].window.size"),
        "{}",
        ready.message
    );
}

#[test]
fn last_transition_time_moves_only_on_a_status_change() {
    let first = merge(
        &[],
        from_deployment(&deploy(1, settled(2)), 2),
        Some(1),
        &at(100),
    );
    assert!(first.iter().all(|c| c.last_transition_time == at(100)));
    // Same statuses later, with other messages: times are kept.
    let again = merge(
        &first,
        from_deployment(&deploy(1, settled(3)), 3),
        Some(2),
        &at(200),
    );
    assert!(again.iter().all(|c| c.last_transition_time == at(100)));
    assert!(again.iter().all(|c| c.observed_generation == Some(2)));
    // Ready flips: only Ready and Progressing move.
    let scaling = merge(
        &again,
        from_deployment(&deploy(1, settled(3)), 5),
        Some(3),
        &at(300),
    );
    let time = |t: &str| {
        scaling
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
            .last_transition_time
            .clone()
    };
    assert_eq!(time(READY), at(300));
    assert_eq!(time(PROGRESSING), at(300));
    assert_eq!(time(DEGRADED), at(100));
}

#[test]
fn conditions_of_other_loops_are_kept() {
    let mut autoscaling = condition("Autoscaling", true, "Active", String::new());
    autoscaling.last_transition_time = at(5);
    let merged = merge(&[autoscaling.clone()], invalid(&[]), Some(1), &at(9));
    assert_eq!(merged.len(), 4);
    assert!(merged.contains(&autoscaling));
}
