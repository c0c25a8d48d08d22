//! The Helm chart on the test bed: one release per test in a fresh
//! namespace, the CRD installed once per test process, and a kubeconfig
//! that authenticates as the release's ServiceAccount.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

use super::pipeline::kubectl;
use super::{Error, Result, workspace_root};
use crate::env::TestBed;
use crate::tools;

/// The CRD's name.
pub const CRD: &str = "streampipelines.tributary.dev";

/// Whether this process has installed (or refreshed) the CRD; held while a
/// release is installed so two tests never race on it.
static CRD_READY: Mutex<bool> = Mutex::new(false);

/// The chart's directory, `charts/tributary/`.
#[must_use]
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/tributary")
}

/// One installed release of the chart.
#[derive(Debug, Clone)]
pub struct Release {
    /// The release name.
    pub name: String,
    /// Its namespace (the operator's own: ServiceAccount, Lease).
    pub namespace: String,
    /// The operator's ServiceAccount, as the chart named it.
    pub service_account: String,
    /// The Lease name the chart passes to the operator (`--lease-name`).
    pub lease_name: String,
    /// A kubeconfig whose user is a token of `service_account`.
    pub kubeconfig: PathBuf,
    /// A directory for this release's files (kubeconfig, operator logs).
    pub dir: PathBuf,
}

impl Release {
    /// The audit log's user name of the operator's ServiceAccount.
    #[must_use]
    pub fn username(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// Runs `helm` with the admin kubeconfig.
///
/// # Errors
///
/// When helm cannot run or exits non-zero.
pub fn helm(bed: &TestBed, args: &[&str]) -> Result<tools::Output> {
    let kubeconfig = bed.kubeconfig()?;
    let mut all = vec!["--kubeconfig".to_owned(), kubeconfig.display().to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    Ok(tools::run(&bed.bin("helm")?, all, None)?)
}

/// Installs the chart as a new release `prefix-<n>` in a namespace of the
/// same name, and writes a kubeconfig for its ServiceAccount.
///
/// The first install of a test process applies the chart's CRD server-side
/// with `--force-conflicts` (Helm never updates an existing CRD, Helm 4's
/// own apply conflicts with kubectl's field manager, and the test bed may
/// hold one from an older run); every install passes `--skip-crds`.
///
/// # Errors
///
/// When helm or kubectl fail, or the chart does not define exactly one
/// ServiceAccount and an operator Deployment with `--lease-name`.
pub fn install(bed: &TestBed, prefix: &str) -> Result<Release> {
    let mut name = crate::fixture::unique(prefix);
    name.truncate(53);
    let chart = chart_dir();
    let chart_arg = chart.display().to_string();
    {
        let mut crd_ready = CRD_READY.lock().unwrap_or_else(PoisonError::into_inner);
        if !*crd_ready {
            apply_crds(bed, &chart.join("crds"))?;
            *crd_ready = true;
        }
        let args = [
            "install",
            &name,
            &chart_arg,
            "--namespace",
            &name,
            "--create-namespace",
            "--skip-crds",
        ];
        helm(bed, &args)?;
    }
    let selector = format!("app.kubernetes.io/instance={name}");
    let accounts = items(bed, &name, "serviceaccounts", &selector)?;
    let [account] = accounts.as_slice() else {
        return Err(Error::Unexpected(format!(
            "release {name} should create exactly one ServiceAccount, found {}",
            accounts.len()
        )));
    };
    let service_account = str_at(account, "/metadata/name")?.to_owned();
    let lease_name = items(bed, &name, "deployments", &selector)?
        .iter()
        .flat_map(container_args)
        .find_map(|a| a.strip_prefix("--lease-name=").map(str::to_owned))
        .ok_or_else(|| {
            Error::Unexpected(format!(
                "release {name}: no operator Deployment passes --lease-name=…"
            ))
        })?;
    let dir = bed.dir()?.join("operator-e2e").join(&name);
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let token = kubectl(
        bed,
        &[
            "create",
            "token",
            &service_account,
            "--namespace",
            &name,
            "--duration=2h",
        ],
        None,
    )?
    .stdout
    .trim()
    .to_owned();
    let kubeconfig = dir.join("kubeconfig");
    write_token_kubeconfig(&bed.kubeconfig()?, &kubeconfig, &service_account, &token)?;
    Ok(Release {
        namespace: name.clone(),
        name,
        service_account,
        lease_name,
        kubeconfig,
        dir,
    })
}

/// Applies the CRDs at `path` (a file or directory) server-side, taking
/// over fields from earlier managers (Helm, an older run), and waits until
/// the API server serves StreamPipelines.
///
/// # Errors
///
/// When kubectl fails or the CRD is not Established within a minute.
pub fn apply_crds(bed: &TestBed, path: &Path) -> Result<()> {
    let path = path.display().to_string();
    kubectl(
        bed,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=tributary-e2e",
            "-f",
            &path,
        ],
        None,
    )?;
    // Polled rather than `kubectl wait --for=condition=Established`: right
    // after an apply the CRD can have no `status.conditions` yet, and kubectl
    // wait then fails at once ("<nil> is of the type <nil>") instead of
    // waiting.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = kubectl(
            bed,
            &[
                "get",
                &format!("crd/{CRD}"),
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ],
            None,
        );
        let last = match out {
            Ok(out) if out.stdout.trim() == "True" => return Ok(()),
            Ok(out) => format!("Established={:?}", out.stdout.trim()),
            Err(e) => e.to_string(),
        };
        if std::time::Instant::now() >= deadline {
            return Err(Error::Unexpected(format!(
                "CRD {CRD} not Established within 60s; last seen: {last}"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// `kubectl get KIND -n NS -l SELECTOR -o json`'s items.
fn items(bed: &TestBed, namespace: &str, kind: &str, selector: &str) -> Result<Vec<Value>> {
    let out = kubectl(
        bed,
        &["get", kind, "-n", namespace, "-l", selector, "-o", "json"],
        None,
    )?;
    let list: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| Error::Unexpected(format!("kubectl get {kind}: {e}")))?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Result<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Unexpected(format!("{pointer} missing in {v}")))
}

fn container_args(deployment: &Value) -> Vec<String> {
    deployment
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c["args"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

/// Writes a kubeconfig for the admin kubeconfig's cluster whose user is the
/// bearer `token`.
///
/// # Errors
///
/// When the admin kubeconfig cannot be read or names no cluster.
pub fn write_token_kubeconfig(admin: &Path, out: &Path, user: &str, token: &str) -> Result<()> {
    let text = std::fs::read_to_string(admin)
        .map_err(Error::io(format!("reading {}", admin.display())))?;
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| Error::Unexpected(format!("{}: {e}", admin.display())))?;
    let cluster = config["clusters"][0]["cluster"].clone();
    if cluster["server"].as_str().is_none() {
        return Err(Error::Unexpected(format!(
            "{} names no cluster server",
            admin.display()
        )));
    }
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "testbed", "user": user}}],
        "current-context": user,
    });
    let yaml = serde_yaml_ng::to_string(&kubeconfig)
        .map_err(|e| Error::Unexpected(format!("kubeconfig: {e}")))?;
    std::fs::write(out, yaml).map_err(Error::io(format!("writing {}", out.display())))
}
