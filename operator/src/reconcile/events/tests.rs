use kube::{Resource, ResourceExt};

use super::*;
use crate::Config;
use crate::children::fixture;
use crate::reconcile::apply::Applied;

/// `k` as the apiserver stores it: a resourceVersion, and a generation
/// for kinds that have a spec the apiserver tracks.
fn stored<K: Resource>(mut k: K, rv: u32, generation: Option<i64>) -> K {
    k.meta_mut().resource_version = Some(rv.to_string());
    k.meta_mut().generation = generation;
    k
}

/// Every child unchanged by the apply.
fn settled(c: &Children) -> AppliedChildren {
    fn same<K: Resource + Clone>(k: K) -> Applied<K> {
        Applied {
            before: Some(k.clone()),
            after: k,
        }
    }
    AppliedChildren {
        configmap: same(stored(c.configmap.clone(), 1, None)),
        deployment: same(stored(c.deployment.clone(), 1, Some(1))),
        service: same(stored(c.service.clone(), 1, None)),
        pdb: same(stored(c.pdb.clone(), 1, Some(1))),
    }
}

fn reasons(ds: &[Decision]) -> Vec<&str> {
    ds.iter().map(|d| d.reason).collect()
}

fn desired() -> Children {
    Children::desired(&fixture::pipeline(), &Config::default())
}

#[test]
fn first_apply_is_one_created_event() {
    let c = desired();
    let mut a = settled(&c);
    a.configmap.before = None;
    a.deployment.before = None;
    a.service.before = None;
    a.pdb.before = None;
    assert_eq!(reasons(&decide(&a, &c, true)), ["Created"]);
}

#[test]
fn nothing_changed_says_nothing() {
    let c = desired();
    assert!(decide(&settled(&c), &c, false).is_empty());
    assert!(decide(&settled(&c), &c, true).is_empty());
}

#[test]
fn a_spec_edit_rolls_and_scales_without_calling_it_drift() {
    let old = desired();
    let mut sp = fixture::pipeline();
    sp.spec.steps.clear();
    sp.spec.replicas = 5;
    let new = Children::desired(&sp, &Config::default());
    let mut a = settled(&old);
    a.configmap.after = stored(new.configmap.clone(), 2, None);
    a.deployment.after = stored(new.deployment.clone(), 2, Some(2));
    let ds = decide(&a, &new, true);
    assert_eq!(reasons(&ds), ["Rolled", "Scaled"]);
    assert!(ds[1].note.contains("from 2 to 5"), "{}", ds[1].note);
}

#[test]
fn a_deleted_child_is_repaired_drift() {
    let c = desired();
    let mut a = settled(&c);
    a.service.before = None;
    let ds = decide(&a, &c, false);
    assert_eq!(reasons(&ds), ["RepairedDrift"]);
    assert!(ds[0].note.contains("Service (missing)"), "{}", ds[0].note);
}

#[test]
fn scaling_the_deployment_by_hand_is_drift_not_scaling() {
    let c = desired();
    let mut a = settled(&c);
    let mut edited = c.deployment.clone();
    edited.spec.replicas = Some(9);
    a.deployment.before = Some(stored(edited, 1, Some(1)));
    a.deployment.after = stored(c.deployment.clone(), 2, Some(2));
    let ds = decide(&a, &c, false);
    assert_eq!(reasons(&ds), ["RepairedDrift"]);
    assert!(ds[0].note.contains("Deployment (edited)"), "{}", ds[0].note);
}

#[test]
fn a_removed_label_is_drift_even_when_the_spec_is_the_same() {
    let c = desired();
    let mut a = settled(&c);
    let mut unlabeled = c.pdb.clone();
    unlabeled
        .labels_mut()
        .remove("app.kubernetes.io/managed-by");
    a.pdb.before = Some(stored(unlabeled, 1, Some(1)));
    let ds = decide(&a, &c, false);
    assert!(
        ds[0].note.contains("PodDisruptionBudget (edited)"),
        "{}",
        ds[0].note
    );
}
