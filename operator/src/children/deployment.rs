//! The Deployment of processor pods.
//!
//! The pods meet the `restricted` Pod Security Standard: non-root, no
//! privilege escalation, every capability dropped, read-only root
//! filesystem (a writable emptyDir at `/tmp`), seccomp `RuntimeDefault`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use tributary_crds::StreamPipeline;

use super::configmap::{self, HASH_ANNOTATION, KEY, MOUNT_DIR};
use super::{METRICS_PORT, METRICS_PORT_NAME, labels, metadata, secrets, selector};
use crate::Config;

/// The processor container's name.
pub const CONTAINER: &str = "processor";
/// The user every container runs as unless it says otherwise.
pub const RUN_AS_USER: i64 = 65532;

/// Builds the Deployment of `sp`.
#[must_use]
pub fn deployment(sp: &StreamPipeline, cfg: &Config) -> Deployment {
    let hash = configmap::config_hash(&configmap::configmap(sp, cfg));
    let processor = sp.spec.processor.clone().unwrap_or_default();
    let mut containers = vec![processor_container(sp, cfg)];
    containers.extend(processor.sidecars.into_iter().map(|mut c| {
        c.security_context = Some(restricted(c.security_context.take()));
        c
    }));
    Deployment {
        metadata: metadata(sp, sp.name_any()),
        spec: DeploymentSpec {
            replicas: Some(sp.spec.replicas),
            selector: selector(sp),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(sp)),
                    annotations: Some(BTreeMap::from([(HASH_ANNOTATION.to_owned(), hash)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    volumes: Some(volumes(sp)),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    termination_grace_period_seconds: Some(30),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn volumes(sp: &StreamPipeline) -> Vec<Volume> {
    vec![
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: configmap::name(sp),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

fn env_from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(source),
        ..EnvVar::default()
    }
}

fn field_ref(path: &str) -> EnvVarSource {
    EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.to_owned(),
            ..ObjectFieldSelector::default()
        }),
        ..EnvVarSource::default()
    }
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(METRICS_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    }
}

fn processor_container(sp: &StreamPipeline, cfg: &Config) -> Container {
    let processor = sp.spec.processor.as_ref();
    let mut vars = vec![
        env("TRIBUTARY_METRICS_ADDR", &format!("0.0.0.0:{METRICS_PORT}")),
        env_from("POD_NAME", field_ref("metadata.name")),
        env_from("POD_NAMESPACE", field_ref("metadata.namespace")),
        env("RUST_LOG", "info"),
    ];
    let (_, refs) = secrets::rewrite(&sp.spec);
    vars.extend(refs.into_iter().enumerate().map(|(n, r)| {
        let source = EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name,
                key: r.key,
                ..SecretKeySelector::default()
            }),
            ..EnvVarSource::default()
        };
        env_from(&secrets::env_name(n), source)
    }));
    Container {
        name: CONTAINER.to_owned(),
        image: Some(
            processor
                .and_then(|p| p.image.clone())
                .unwrap_or_else(|| cfg.processor_image.clone()),
        ),
        command: Some(vec!["tributary".to_owned()]),
        args: Some(
            ["run", "-f", &format!("{MOUNT_DIR}/{KEY}")]
                .map(str::to_owned)
                .to_vec(),
        ),
        env: Some(vars),
        ports: Some(vec![ContainerPort {
            name: Some(METRICS_PORT_NAME.to_owned()),
            container_port: METRICS_PORT,
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe("/healthz")),
        readiness_probe: Some(probe("/readyz")),
        resources: processor.and_then(|p| p.resources.clone()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".to_owned(),
                mount_path: MOUNT_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(restricted(None)),
        ..Container::default()
    }
}

/// A container security context meeting the `restricted` standard: the
/// restricted settings `given` leaves unset are filled in (no privilege
/// escalation, read-only root, non-root as [`RUN_AS_USER`], every
/// capability dropped), and what it sets is kept.
///
/// # Caveats
/// Keeping is safe only because `tributary_crds::validate` (run before any
/// child is built) refuses a sidecar whose settings contradict the standard
/// (`privileged`, `allowPrivilegeEscalation: true`, `runAsUser: 0`, a
/// `drop` list without `ALL`, …) with `Ready=False, reason=InvalidSpec`.
#[must_use]
pub fn restricted(given: Option<SecurityContext>) -> SecurityContext {
    let mut sc = given.unwrap_or_default();
    sc.allow_privilege_escalation.get_or_insert(false);
    sc.read_only_root_filesystem.get_or_insert(true);
    sc.run_as_non_root.get_or_insert(true);
    sc.run_as_user.get_or_insert(RUN_AS_USER);
    let caps = sc.capabilities.get_or_insert_with(Capabilities::default);
    caps.drop.get_or_insert_with(|| vec!["ALL".to_owned()]);
    sc
}

#[cfg(test)]
mod tests;
