//! `spec.processor.sidecars`: containers the user adds next to the
//! processor must fit the pod the operator builds, which meets the
//! `restricted` Pod Security Standard.
//!
//! The operator fills in the restricted settings a sidecar leaves unset
//! (no privilege escalation, non-root, every capability dropped); what a
//! sidecar sets against them is refused here, naming the field, because a
//! namespace that enforces `restricted` would otherwise refuse the pods and
//! leave the Deployment stalled with nothing on the pipeline saying why.
//!
//! `readOnlyRootFilesystem: false` is allowed: the standard does not
//! require a read-only root (the operator defaults it to `true`).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, SecurityContext};

use super::Errors;

/// The processor container's name, which a sidecar must not reuse.
pub const PROCESSOR_CONTAINER: &str = "processor";

/// The pod's volumes, the only ones a sidecar can mount: the rendered
/// pipeline (`config`) and the writable scratch directory (`tmp`). A spec
/// has no way to add volumes, so no hostPath either.
pub const POD_VOLUMES: &[&str] = &["config", "tmp"];

/// The one capability `restricted` lets a container add.
const ADDABLE_CAPABILITY: &str = "NET_BIND_SERVICE";

/// SELinux types `baseline` (and so `restricted`) allow.
const SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

const RESTRICTED: &str = "the restricted Pod Security Standard";

pub(super) fn validate(sidecars: &[Container], errs: &mut Errors) {
    let mut names = HashSet::new();
    for (i, c) in sidecars.iter().enumerate() {
        let path = format!("spec.processor.sidecars[{i}]");
        if c.name == PROCESSOR_CONTAINER {
            errs.push(
                format!("{path}.name"),
                format!(
                    "{PROCESSOR_CONTAINER:?} is the processor container's name; choose another"
                ),
            );
        } else if !names.insert(c.name.as_str()) {
            errs.push(
                format!("{path}.name"),
                format!("another sidecar is already named {:?}", c.name),
            );
        }
        for (j, port) in c.ports.iter().flatten().enumerate() {
            if port.host_port.is_some_and(|p| p != 0) {
                errs.push(
                    format!("{path}.ports[{j}].hostPort"),
                    format!("must be unset: {RESTRICTED} forbids host ports"),
                );
            }
        }
        for (j, mount) in c.volume_mounts.iter().flatten().enumerate() {
            if !POD_VOLUMES.contains(&mount.name.as_str()) {
                errs.push(
                    format!("{path}.volumeMounts[{j}].name"),
                    format!(
                        "no volume {:?} in the processor pod; a sidecar can mount only {} \
                         (other volumes, hostPath among them, cannot be added)",
                        mount.name,
                        POD_VOLUMES.join(" or ")
                    ),
                );
            }
        }
        if let Some(sc) = &c.security_context {
            security_context(sc, &format!("{path}.securityContext"), errs);
        }
    }
}

fn security_context(sc: &SecurityContext, path: &str, errs: &mut Errors) {
    let mut refuse = |field: &str, what: &str| {
        errs.push(format!("{path}.{field}"), format!("{what}: {RESTRICTED}"));
    };
    if sc.privileged == Some(true) {
        refuse("privileged", "must be false or unset");
    }
    if sc.allow_privilege_escalation == Some(true) {
        refuse(
            "allowPrivilegeEscalation",
            "must be false or unset (the operator sets false)",
        );
    }
    if sc.run_as_non_root == Some(false) {
        refuse(
            "runAsNonRoot",
            "must be true or unset (the operator sets true)",
        );
    }
    if sc.run_as_user == Some(0) {
        refuse(
            "runAsUser",
            "must not be 0 (root); leave it unset for the operator's non-root user",
        );
    }
    if let Some(caps) = &sc.capabilities {
        for (j, cap) in caps.add.iter().flatten().enumerate() {
            if cap != ADDABLE_CAPABILITY {
                refuse(
                    &format!("capabilities.add[{j}]"),
                    &format!("only {ADDABLE_CAPABILITY} may be added, not {cap:?}"),
                );
            }
        }
        if caps
            .drop
            .as_ref()
            .is_some_and(|d| !d.iter().any(|c| c == "ALL"))
        {
            refuse(
                "capabilities.drop",
                "must include ALL, or be unset (the operator drops ALL)",
            );
        }
    }
    if let Some(profile) = &sc.seccomp_profile
        && !matches!(profile.type_.as_str(), "RuntimeDefault" | "Localhost")
    {
        refuse(
            "seccompProfile.type",
            &format!(
                "must be RuntimeDefault or Localhost, not {:?}, or unset (the pod's RuntimeDefault applies)",
                profile.type_
            ),
        );
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        refuse("procMount", "must be Default or unset");
    }
    if let Some(se) = &sc.se_linux_options {
        if let Some(t) = se.type_.as_deref().filter(|t| !t.is_empty())
            && !SELINUX_TYPES.contains(&t)
        {
            refuse(
                "seLinuxOptions.type",
                &format!("must be one of {}", SELINUX_TYPES.join(", ")),
            );
        }
        if se.user.as_deref().is_some_and(|u| !u.is_empty()) {
            refuse("seLinuxOptions.user", "must be unset");
        }
        if se.role.as_deref().is_some_and(|r| !r.is_empty()) {
            refuse("seLinuxOptions.role", "must be unset");
        }
    }
    if sc
        .windows_options
        .as_ref()
        .is_some_and(|w| w.host_process == Some(true))
    {
        refuse("windowsOptions.hostProcess", "must be false or unset");
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::tests::{assert_refused, errors};

    fn sidecar(fields: &str) -> String {
        let sep = if fields.is_empty() { "" } else { ", " };
        format!("processor:\n  sidecars:\n    - {{name: udf, image: udf:1{sep}{fields}}}\n")
    }

    #[test]
    fn a_sidecar_within_restricted_passes() {
        for ok in [
            "",
            "securityContext: {}",
            "securityContext: {privileged: false, allowPrivilegeEscalation: false, runAsNonRoot: true, runAsUser: 1000}",
            "securityContext: {capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}",
            "securityContext: {seccompProfile: {type: RuntimeDefault}, readOnlyRootFilesystem: false}",
            "securityContext: {seLinuxOptions: {type: container_t}, procMount: Default}",
            "volumeMounts: [{name: tmp, mountPath: /tmp}, {name: config, mountPath: /cfg}]",
            "ports: [{containerPort: 8080}]",
        ] {
            let errs = errors(&sidecar(ok));
            assert!(errs.is_empty(), "{ok}: {errs:#?}");
        }
    }

    /// Regression: these used to be kept as written, so the pods were
    /// refused by an enforcing namespace and the pipeline stalled.
    #[test]
    fn what_contradicts_restricted_is_refused_naming_the_field() {
        let base = "spec.processor.sidecars[0]";
        for (fields, field, needle) in [
            (
                "securityContext: {privileged: true}",
                "securityContext.privileged",
                "restricted",
            ),
            (
                "securityContext: {allowPrivilegeEscalation: true}",
                "securityContext.allowPrivilegeEscalation",
                "false",
            ),
            (
                "securityContext: {runAsNonRoot: false}",
                "securityContext.runAsNonRoot",
                "true",
            ),
            (
                "securityContext: {runAsUser: 0}",
                "securityContext.runAsUser",
                "root",
            ),
            (
                "securityContext: {capabilities: {add: [NET_BIND_SERVICE, SYS_ADMIN]}}",
                "securityContext.capabilities.add[1]",
                "SYS_ADMIN",
            ),
            (
                "securityContext: {capabilities: {drop: [NET_RAW]}}",
                "securityContext.capabilities.drop",
                "ALL",
            ),
            (
                "securityContext: {seccompProfile: {type: Unconfined}}",
                "securityContext.seccompProfile.type",
                "Unconfined",
            ),
            (
                "securityContext: {procMount: Unmasked}",
                "securityContext.procMount",
                "Default",
            ),
            (
                "securityContext: {seLinuxOptions: {type: spc_t, user: root}}",
                "securityContext.seLinuxOptions.type",
                "container_t",
            ),
            (
                "securityContext: {windowsOptions: {hostProcess: true}}",
                "securityContext.windowsOptions.hostProcess",
                "restricted",
            ),
            (
                "ports: [{containerPort: 80, hostPort: 80}]",
                "ports[0].hostPort",
                "host ports",
            ),
            (
                "volumeMounts: [{name: host-root, mountPath: /host}]",
                "volumeMounts[0].name",
                "hostPath",
            ),
        ] {
            assert_refused(&sidecar(fields), &format!("{base}.{field}"), needle);
        }
    }

    #[test]
    fn every_contradiction_is_reported_at_once() {
        let errs = errors(&sidecar(
            "securityContext: {privileged: true, allowPrivilegeEscalation: true, runAsUser: 0, runAsNonRoot: false}",
        ));
        assert_eq!(errs.len(), 4, "{errs:#?}");
    }

    #[test]
    fn sidecar_names_must_not_clash() {
        let yaml = "processor:\n  sidecars:\n    - {name: processor, image: a}\n    - {name: udf, image: b}\n    - {name: udf, image: c}\n";
        assert_refused(yaml, "spec.processor.sidecars[0].name", "processor");
        assert_refused(yaml, "spec.processor.sidecars[2].name", "already named");
    }
}
