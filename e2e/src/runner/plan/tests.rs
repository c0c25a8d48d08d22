use super::*;

fn pod(yaml: &str) -> Pod {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

const PROCESSOR_POD: &str = r#"
metadata: {name: p-1, namespace: ns, uid: u1, labels: {app: clicks}}
spec:
  nodeName: kwok-node-0
  terminationGracePeriodSeconds: 5
  containers:
  - name: sidecar
    image: busybox
  - name: processor
    image: ghcr.io/tributary/processor:0.1.0
    command: [/usr/local/bin/tributary]
    args: [run, -f, /etc/tributary/pipeline.yaml, --state-dir=/var/lib/tributary/state]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: BROKERS, valueFrom: {configMapKeyRef: {name: settings, key: brokers}}}
    - {name: GREETING, value: "hello $(POD_NAME)"}
    - {name: CONFIG, value: /etc/tributary/pipeline.yaml}
    volumeMounts:
    - {name: config, mountPath: /etc/tributary}
    - {name: state, mountPath: /var/lib/tributary}
  volumes:
  - name: config
    configMap: {name: clicks-config}
  - name: state
    emptyDir: {}
status: {phase: Running}
"#;

fn objects() -> Objects {
    let mut o = Objects::default();
    for cm in [
        config_map("clicks-config", &[("pipeline.yaml", "spec: {}\n")]),
        config_map("settings", &[("brokers", "127.0.0.1:29092")]),
    ] {
        o.config_maps.insert(cm.metadata.name.clone().unwrap(), cm);
    }
    o
}

#[test]
fn config_map_mount_paths_in_args_point_into_the_work_dir() {
    let plan = plan(&pod(PROCESSOR_POD), &objects(), Path::new("/w")).unwrap();
    assert_eq!(
        plan.args,
        [
            "run",
            "-f",
            "/w/volumes/config/pipeline.yaml",
            "--state-dir=/w/volumes/state/state"
        ]
    );
    assert_eq!(
        plan.files,
        [File {
            path: PathBuf::from("volumes/config/pipeline.yaml"),
            content: b"spec: {}\n".to_vec()
        }]
    );
    assert!(plan.dirs.contains(&PathBuf::from("volumes/state")));
    assert_eq!(plan.grace, Duration::from_secs(5));
    assert_eq!(plan.restart, Restart::Always);
}

#[test]
fn env_is_resolved_from_fields_config_maps_and_earlier_vars() {
    let plan = plan(&pod(PROCESSOR_POD), &objects(), Path::new("/w")).unwrap();
    assert_eq!(plan.env["POD_NAME"], "p-1");
    assert_eq!(plan.env["APP"], "clicks");
    assert_eq!(plan.env["BROKERS"], "127.0.0.1:29092");
    assert_eq!(plan.env["GREETING"], "hello p-1");
    assert_eq!(plan.env["CONFIG"], "/w/volumes/config/pipeline.yaml");
}

#[test]
fn references_list_what_must_be_fetched() {
    let refs = references(&pod(PROCESSOR_POD));
    assert_eq!(
        refs.config_maps.into_iter().collect::<Vec<_>>(),
        ["clicks-config", "settings"]
    );
    assert!(refs.secrets.is_empty());
}

#[test]
fn missing_config_map_is_an_error_naming_it() {
    let mut o = objects();
    o.config_maps.remove("clicks-config");
    let err = plan(&pod(PROCESSOR_POD), &o, Path::new("/w")).unwrap_err();
    assert_eq!(err.to_string(), "ConfigMap clicks-config not found");
}

#[test]
fn items_select_and_rename_keys_and_reject_escaping_paths() {
    let yaml = r#"
metadata: {name: p, namespace: ns, uid: u}
spec:
  restartPolicy: Never
  containers:
  - name: processor
    args: [run, -f, /cfg/p.yaml]
    volumeMounts: [{name: c, mountPath: /cfg}]
  volumes:
  - name: c
    configMap: {name: clicks-config, items: [{key: pipeline.yaml, path: p.yaml}]}
"#;
    let p = plan(&pod(yaml), &objects(), Path::new("/w")).unwrap();
    assert_eq!(p.args, ["run", "-f", "/w/volumes/c/p.yaml"]);
    assert_eq!(p.files[0].path, PathBuf::from("volumes/c/p.yaml"));
    assert_eq!(p.restart, Restart::Never);

    let escaping = yaml.replace("path: p.yaml", "path: ../../etc/passwd");
    assert!(matches!(
        plan(&pod(&escaping), &objects(), Path::new("/w")),
        Err(Error::UnsafePath { .. })
    ));
}

#[test]
fn only_running_pods_that_are_not_terminating_get_a_process() {
    let mut p = pod(PROCESSOR_POD);
    assert!(super::super::wants_process(&p));
    p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    assert!(!super::super::wants_process(&p));
    let mut pending = pod(PROCESSOR_POD);
    pending.status.as_mut().unwrap().phase = Some("Pending".into());
    assert!(!super::super::wants_process(&pending));
}
