use super::*;
use crate::children::fixture;

fn processor(d: &Deployment) -> &Container {
    &d.spec.template.spec.as_ref().unwrap().containers[0]
}

fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.as_ref()?.iter().find(|e| e.name == name)
}

#[test]
fn runs_the_processor_on_the_mounted_config() {
    let sp = fixture::pipeline();
    let d = deployment(&sp, &Config::default());
    assert_eq!(d.metadata.name.as_deref(), Some("clicks"));
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(2));
    let c = processor(&d);
    assert_eq!(c.name, "processor");
    assert_eq!(
        c.image.as_deref(),
        Some(crate::config::DEFAULT_PROCESSOR_IMAGE)
    );
    assert_eq!(c.command.as_deref(), Some(&["tributary".to_owned()][..]));
    assert_eq!(
        c.args.as_ref().unwrap(),
        &["run", "-f", "/etc/tributary/pipeline.yaml"]
    );
    let addr = env_value(c, "TRIBUTARY_METRICS_ADDR").unwrap();
    assert_eq!(addr.value.as_deref(), Some("0.0.0.0:9090"));
    for (var, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let from = env_value(c, var).unwrap().value_from.as_ref().unwrap();
        assert_eq!(from.field_ref.as_ref().unwrap().field_path, path);
    }
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("metrics"), 9090)
    );
    let live = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(live.path.as_deref(), Some("/healthz"));
    assert_eq!(live.port, IntOrString::String("metrics".to_owned()));
    let ready = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(ready.path.as_deref(), Some("/readyz"));
    let pod = spec.template.spec.as_ref().unwrap();
    let cm = pod.volumes.as_ref().unwrap()[0]
        .config_map
        .as_ref()
        .unwrap();
    assert_eq!(cm.name, "clicks-pipeline");
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/etc/tributary", Some(true))
    );
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
}

#[test]
fn selects_its_pods_by_instance_and_labels_them_all() {
    let sp = fixture::pipeline();
    let d = deployment(&sp, &Config::default());
    let spec = &d.spec;
    let sel = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(sel.len(), 1);
    assert_eq!(sel["app.kubernetes.io/instance"], "clicks");
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(pod_labels["app.kubernetes.io/component"], "processor");
    assert_eq!(
        pod_labels["app.kubernetes.io/managed-by"],
        "tributary-operator"
    );
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("StreamPipeline", "clicks")
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
}

#[test]
fn meets_the_restricted_pod_security_standard() {
    let d = deployment(&fixture::with_sidecar(), &Config::default());
    let pod = d.spec.template.spec.as_ref().unwrap();
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.containers.len(), 2, "processor + sidecar");
    for c in &pod.containers {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        let drop = sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap();
        assert_eq!(drop, &["ALL"], "{}", c.name);
    }
    let user = |i: usize| {
        pod.containers[i]
            .security_context
            .as_ref()
            .unwrap()
            .run_as_user
    };
    assert_eq!(user(0), Some(65532));
    assert_eq!(user(1), Some(1000), "a sidecar's own setting is kept");
}

#[test]
fn takes_image_and_resources_from_the_spec() {
    let d = deployment(&fixture::with_sidecar(), &Config::default());
    let c = processor(&d);
    assert_eq!(c.image.as_deref(), Some("example.com/processor:dev"));
    let req = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(req["cpu"].0, "500m");
    let cfg = Config {
        processor_image: "registry.local/p:1".to_owned(),
    };
    let d = deployment(&fixture::pipeline(), &cfg);
    assert_eq!(processor(&d).image.as_deref(), Some("registry.local/p:1"));
}

#[test]
fn passes_secrets_as_env_from_secret_key_refs() {
    let d = deployment(&fixture::with_secrets(), &Config::default());
    let c = processor(&d);
    let mut keys: Vec<(String, String)> = (0..2)
        .map(|n| {
            let var = env_value(c, &format!("TRIBUTARY_SECRET_{n}")).unwrap();
            let r = var
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            (r.name.clone(), r.key.clone())
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("kafka-user".into(), "password".into()),
            ("kafka-user".into(), "username".into())
        ]
    );
}

#[test]
fn a_spec_change_changes_the_config_hash_annotation() {
    let cfg = Config::default();
    let sp = fixture::pipeline();
    let hash = |sp: &StreamPipeline| {
        let d = deployment(sp, &cfg);
        let t = d.spec.template.metadata.unwrap();
        t.annotations.unwrap()[HASH_ANNOTATION].clone()
    };
    let mut edited = sp.clone();
    edited.spec.steps.clear();
    assert_ne!(hash(&sp), hash(&edited));
    assert_eq!(
        hash(&sp),
        configmap::config_hash(&configmap::configmap(&sp, &cfg))
    );
}

/// A sidecar that sets part of its security context gets the rest of the
/// `restricted` settings filled in; what it sets within the standard stays.
#[test]
fn a_partial_sidecar_security_context_is_completed() {
    let given = SecurityContext {
        run_as_user: Some(2000),
        read_only_root_filesystem: Some(false),
        capabilities: Some(Capabilities {
            add: Some(vec!["NET_BIND_SERVICE".to_owned()]),
            drop: None,
        }),
        ..SecurityContext::default()
    };
    let sc = restricted(Some(given));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(2000));
    assert_eq!(sc.read_only_root_filesystem, Some(false));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(
        caps.add.as_deref(),
        Some(&["NET_BIND_SERVICE".to_owned()][..])
    );
    assert_eq!(sc.privileged, None, "unset means not privileged");
}

/// Every sidecar the shared validation accepts is completed into one the
/// `restricted` standard admits; the validation's idea of the pod (its
/// container and volume names) is the builder's.
#[test]
fn validation_and_builder_agree_on_the_pod() {
    use tributary_crds::validate::sidecars::{POD_VOLUMES, PROCESSOR_CONTAINER};
    assert_eq!(CONTAINER, PROCESSOR_CONTAINER);
    let sp = fixture::with_sidecar();
    let d = deployment(&sp, &Config::default());
    let pod = d.spec.template.spec.as_ref().unwrap();
    let names: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, POD_VOLUMES);
    assert!(tributary_crds::validate(&sp.spec).is_ok());
    for c in &pod.containers {
        let sc = c.security_context.as_ref().unwrap();
        assert_ne!(sc.privileged, Some(true), "{}", c.name);
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
        assert_ne!(sc.run_as_user, Some(0), "{}", c.name);
    }
}
