//! The API permissions the operator uses, and nothing more. The Helm
//! chart's ClusterRole and leader-election Role, and the same objects in the
//! kustomize base (`deploy/base/operator.yaml`), grant exactly these; tests
//! parse both and compare them with these lists.
//!
//! Where each verb comes from:
//! - `streampipelines` `list`, `watch`: the controller's watch (and the
//!   autoscaler's list); `patch`: the autoscaler sets `spec.replicas`;
//!   `get`: a status write that lost a race (409) re-reads the pipeline.
//! - `streampipelines/status` `patch`: status merge patches.
//! - children `get` (read before apply, to tell created and drifted
//!   children apart), `list`/`watch` (the controller's `owns` watches),
//!   `create`/`patch` (server-side apply; creating through apply also needs
//!   `create`).
//! - `events` `create`/`patch`: kube's event recorder (it patches a series).
//! - `leases` `get`/`create`/`update`: leader election in the release
//!   namespace.

/// One RBAC rule: API group, resources and verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Resources (with subresources as `resource/sub`).
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
}

const CHILD_VERBS: &[&str] = &["get", "list", "watch", "create", "patch"];

/// What the ClusterRole grants (every watched namespace).
pub const CLUSTER_RULES: &[Rule] = &[
    Rule {
        group: "tributary.dev",
        resources: &["streampipelines"],
        verbs: &["get", "list", "watch", "patch"],
    },
    Rule {
        group: "tributary.dev",
        resources: &["streampipelines/status"],
        verbs: &["patch"],
    },
    Rule {
        group: "",
        resources: &["configmaps", "services"],
        verbs: CHILD_VERBS,
    },
    Rule {
        group: "apps",
        resources: &["deployments"],
        verbs: CHILD_VERBS,
    },
    Rule {
        group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: CHILD_VERBS,
    },
    Rule {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
    },
];

/// What the leader-election Role grants in the operator's namespace.
pub const LEADER_ELECTION_RULES: &[Rule] = &[Rule {
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "create", "update"],
}];

/// Every `(group, resource, verb)` that `rules` grant.
#[must_use]
pub fn expand(rules: &[Rule]) -> std::collections::BTreeSet<(String, String, String)> {
    rules
        .iter()
        .flat_map(|r| {
            r.resources.iter().flat_map(move |res| {
                r.verbs
                    .iter()
                    .map(move |v| (r.group.to_owned(), (*res).to_owned(), (*v).to_owned()))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
