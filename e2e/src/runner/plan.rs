//! What to run for a pod: a pure function of the pod and the ConfigMaps and
//! Secrets it references, so it is tested without a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Volume};

/// Why a pod cannot be turned into a process.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The pod has no containers.
    #[error("pod has no containers")]
    NoContainer,
    /// A referenced ConfigMap or Secret (or one of its keys) does not exist.
    #[error("{kind} {name}{} not found", key.as_ref().map(|k| format!(" key {k}")).unwrap_or_default())]
    Missing {
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The key, when a single key was referenced.
        key: Option<String>,
    },
    /// An env var uses a source the runner does not support.
    #[error("env var {0} uses an unsupported valueFrom")]
    UnsupportedEnv(String),
    /// A volume item path tries to leave its volume directory.
    #[error("volume {volume} has an unsafe path {path}")]
    UnsafePath {
        /// The volume.
        volume: String,
        /// The offending path.
        path: String,
    },
}

/// The objects a pod references, by name, from the pod's namespace.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, Secret>,
}

/// Names of the ConfigMaps and Secrets a pod references (volumes, env).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    /// ConfigMap names.
    pub config_maps: BTreeSet<String>,
    /// Secret names.
    pub secrets: BTreeSet<String>,
}

/// When to start the process again after it exits (the pod's restartPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always (Deployments).
    Always,
    /// Only after a failure.
    OnFailure,
    /// Never.
    Never,
}

/// A file to write before the process starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Path relative to the pod's work directory.
    pub path: PathBuf,
    /// Content.
    pub content: Vec<u8>,
}

/// Everything needed to run one pod as a local process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Arguments after the binary (the container's `command[1..]` + `args`).
    pub args: Vec<String>,
    /// The container's environment, resolved.
    pub env: BTreeMap<String, String>,
    /// Volume files, relative to the work directory.
    pub files: Vec<File>,
    /// Directories to create (emptyDir volumes, mount points).
    pub dirs: Vec<PathBuf>,
    /// Restart policy.
    pub restart: Restart,
    /// How long to wait after SIGTERM before SIGKILL.
    pub grace: Duration,
}

/// The container that runs the processor: the one named `processor`, else
/// the first.
#[must_use]
pub fn processor_container(pod: &Pod) -> Option<&Container> {
    let containers = &pod.spec.as_ref()?.containers;
    containers
        .iter()
        .find(|c| c.name == "processor")
        .or_else(|| containers.first())
}

/// The ConfigMaps and Secrets the processor container needs.
#[must_use]
pub fn references(pod: &Pod) -> References {
    let mut refs = References::default();
    let Some(container) = processor_container(pod) else {
        return refs;
    };
    let volumes = pod_volumes(pod);
    for mount in container.volume_mounts.iter().flatten() {
        if let Some(v) = volumes.get(mount.name.as_str()) {
            if let Some(cm) = &v.config_map {
                refs.config_maps.insert(cm.name.clone());
            }
            if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                refs.secrets.insert(name);
            }
        }
    }
    for env in container.env.iter().flatten() {
        if let Some(from) = &env.value_from {
            if let Some(r) = &from.config_map_key_ref {
                refs.config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                refs.secrets.insert(r.name.clone());
            }
        }
    }
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            refs.config_maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            refs.secrets.insert(r.name.clone());
        }
    }
    refs
}

fn pod_volumes(pod: &Pod) -> BTreeMap<&str, &Volume> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|vs| vs.iter().map(|v| (v.name.as_str(), v)).collect())
        .unwrap_or_default()
}

/// Keeps a relative item path inside its volume.
fn safe_relative(volume: &str, path: &str) -> Result<PathBuf, Error> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(p.to_path_buf())
    } else {
        Err(Error::UnsafePath {
            volume: volume.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// Files of one volume, keyed by path inside the volume.
fn volume_files(
    volume: &Volume,
    objects: &Objects,
) -> Result<Option<BTreeMap<PathBuf, Vec<u8>>>, Error> {
    if let Some(src) = &volume.config_map {
        let Some(cm) = objects.config_maps.get(&src.name) else {
            return if src.optional == Some(true) {
                Ok(Some(BTreeMap::new()))
            } else {
                Err(Error::Missing {
                    kind: "ConfigMap",
                    name: src.name.clone(),
                    key: None,
                })
            };
        };
        let mut all: BTreeMap<String, Vec<u8>> = cm
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        all.extend(
            cm.binary_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone())),
        );
        return select_items(
            &volume.name,
            &src.name,
            "ConfigMap",
            &all,
            src.items.as_deref(),
        )
        .map(Some);
    }
    if let Some(src) = &volume.secret {
        let name = src.secret_name.clone().unwrap_or_default();
        let Some(secret) = objects.secrets.get(&name) else {
            return if src.optional == Some(true) {
                Ok(Some(BTreeMap::new()))
            } else {
                Err(Error::Missing {
                    kind: "Secret",
                    name,
                    key: None,
                })
            };
        };
        let all: BTreeMap<String, Vec<u8>> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        return select_items(&volume.name, &name, "Secret", &all, src.items.as_deref()).map(Some);
    }
    if volume.empty_dir.is_some() {
        return Ok(Some(BTreeMap::new()));
    }
    Ok(None)
}

fn select_items(
    volume: &str,
    object: &str,
    kind: &'static str,
    all: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Result<BTreeMap<PathBuf, Vec<u8>>, Error> {
    match items {
        None => all
            .iter()
            .map(|(k, v)| Ok((safe_relative(volume, k)?, v.clone())))
            .collect(),
        Some(items) => items
            .iter()
            .map(|item| {
                let v = all.get(&item.key).ok_or_else(|| Error::Missing {
                    kind,
                    name: object.to_owned(),
                    key: Some(item.key.clone()),
                })?;
                Ok((safe_relative(volume, &item.path)?, v.clone()))
            })
            .collect(),
    }
}

/// Rewrites container paths under mount points to local paths.
#[derive(Debug, Clone, Default)]
struct Rewriter {
    /// (mount path, local path), longest mount path first.
    mounts: Vec<(String, String)>,
}

impl Rewriter {
    fn rewrite_path(&self, s: &str) -> Option<String> {
        self.mounts.iter().find_map(|(mount, local)| {
            let mount = mount.trim_end_matches('/');
            if s == mount {
                Some(local.clone())
            } else {
                s.strip_prefix(mount)
                    .filter(|rest| rest.starts_with('/'))
                    .map(|rest| format!("{local}{rest}"))
            }
        })
    }

    /// `/etc/x/f` and `--flag=/etc/x/f` both become local paths.
    fn rewrite(&self, s: &str) -> String {
        if let Some(r) = self.rewrite_path(s) {
            return r;
        }
        if let Some((flag, value)) = s.split_once('=')
            && let Some(r) = self.rewrite_path(value)
        {
            return format!("{flag}={r}");
        }
        s.to_owned()
    }
}

/// Turns `pod` into a [`Plan`], with volumes under `workdir/volumes/<name>`.
///
/// # Errors
///
/// When the pod has no container, references a missing (non-optional)
/// ConfigMap, Secret or key, or uses an env source the runner cannot resolve.
pub fn plan(pod: &Pod, objects: &Objects, workdir: &Path) -> Result<Plan, Error> {
    let container = processor_container(pod).ok_or(Error::NoContainer)?;
    let spec = pod.spec.as_ref().ok_or(Error::NoContainer)?;
    let volumes = pod_volumes(pod);

    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut rewriter = Rewriter::default();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.get(mount.name.as_str()) else {
            continue;
        };
        let Some(content) = volume_files(volume, objects)? else {
            continue;
        };
        let base = PathBuf::from("volumes").join(&volume.name);
        dirs.push(base.clone());
        for (path, bytes) in content {
            files.push(File {
                path: base.join(path),
                content: bytes,
            });
        }
        let mut local = workdir.join(&base);
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            local = local.join(safe_relative(&volume.name, sub)?);
        }
        rewriter
            .mounts
            .push((mount.mount_path.clone(), local.display().to_string()));
    }
    rewriter
        .mounts
        .sort_by_key(|(mount, _)| std::cmp::Reverse(mount.len()));
    files.dedup_by(|a, b| a.path == b.path);

    // command[0] is the binary inside the image; the runner substitutes the
    // local `tributary`, so only what follows it is kept.
    let args: Vec<String> = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten())
        .map(|a| rewriter.rewrite(a))
        .collect();

    let env = resolve_env(pod, container, objects)?
        .into_iter()
        .map(|(k, v)| {
            let v = rewriter.rewrite(&v);
            (k, v)
        })
        .collect();

    let restart = match spec.restart_policy.as_deref() {
        Some("Never") => Restart::Never,
        Some("OnFailure") => Restart::OnFailure,
        _ => Restart::Always,
    };
    let grace = Duration::from_secs(
        spec.termination_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(30)
            .min(30),
    );
    Ok(Plan {
        args,
        env,
        files,
        dirs,
        restart,
        grace,
    })
}

fn resolve_env(
    pod: &Pod,
    container: &Container,
    objects: &Objects,
) -> Result<BTreeMap<String, String>, Error> {
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match objects.config_maps.get(&r.name) {
                Some(cm) => env.extend(
                    cm.data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (format!("{prefix}{k}"), v.clone())),
                ),
                None if r.optional == Some(true) => {}
                None => {
                    return Err(Error::Missing {
                        kind: "ConfigMap",
                        name: r.name.clone(),
                        key: None,
                    });
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match objects.secrets.get(&r.name) {
                Some(s) => env.extend(s.data.iter().flatten().map(|(k, v)| {
                    (
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v.0).into_owned(),
                    )
                })),
                None if r.optional == Some(true) => {}
                None => {
                    return Err(Error::Missing {
                        kind: "Secret",
                        name: r.name.clone(),
                        key: None,
                    });
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => Some(expand(var.value.as_deref().unwrap_or(""), &env)),
            Some(from) => {
                if let Some(r) = &from.config_map_key_ref {
                    let v = objects
                        .config_maps
                        .get(&r.name)
                        .and_then(|cm| cm.data.as_ref())
                        .and_then(|d| d.get(&r.key))
                        .cloned();
                    if v.is_none() && r.optional != Some(true) {
                        return Err(Error::Missing {
                            kind: "ConfigMap",
                            name: r.name.clone(),
                            key: Some(r.key.clone()),
                        });
                    }
                    v
                } else if let Some(r) = &from.secret_key_ref {
                    let v = objects
                        .secrets
                        .get(&r.name)
                        .and_then(|s| s.data.as_ref())
                        .and_then(|d| d.get(&r.key))
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
                    if v.is_none() && r.optional != Some(true) {
                        return Err(Error::Missing {
                            kind: "Secret",
                            name: r.name.clone(),
                            key: Some(r.key.clone()),
                        });
                    }
                    v
                } else if let Some(f) = &from.field_ref {
                    Some(
                        field(pod, &f.field_path)
                            .ok_or_else(|| Error::UnsupportedEnv(var.name.clone()))?,
                    )
                } else {
                    return Err(Error::UnsupportedEnv(var.name.clone()));
                }
            }
        };
        if let Some(v) = value {
            env.insert(var.name.clone(), v);
        }
    }
    Ok(env)
}

/// `$(NAME)` references to earlier variables, as the kubelet expands them.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) if env.contains_key(&after[..end]) => {
                out.push_str(&env[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The downward API fields a processor may ask for.
fn field(pod: &Pod, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let label = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        map.as_ref()?.get(key).cloned()
    };
    match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        "status.podIP" => pod.status.as_ref()?.pod_ip.clone(),
        "status.hostIP" => pod.status.as_ref()?.host_ip.clone(),
        _ if path.starts_with("metadata.labels['") => label(&m.labels, "metadata.labels['"),
        _ if path.starts_with("metadata.annotations['") => {
            label(&m.annotations, "metadata.annotations['")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
