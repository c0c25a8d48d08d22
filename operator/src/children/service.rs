//! The ClusterIP Service in front of the processors' metrics port, for
//! Prometheus and the operator's own lag and rate readings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use tributary_crds::StreamPipeline;

use super::{INSTANCE_LABEL, METRICS_PORT, METRICS_PORT_NAME, metadata};
use crate::Config;

/// Builds the Service of `sp`.
#[must_use]
pub fn service(sp: &StreamPipeline, _cfg: &Config) -> Service {
    Service {
        metadata: metadata(sp, sp.name_any()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(BTreeMap::from([(INSTANCE_LABEL.to_owned(), sp.name_any())])),
            ports: Some(vec![ServicePort {
                name: Some(METRICS_PORT_NAME.to_owned()),
                port: METRICS_PORT,
                target_port: Some(IntOrString::String(METRICS_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::fixture;

    #[test]
    fn exposes_the_metrics_port_of_the_pipeline_pods() {
        let s = service(&fixture::pipeline(), &Config::default());
        assert_eq!(s.metadata.name.as_deref(), Some("clicks"));
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(
            spec.selector.unwrap()["app.kubernetes.io/instance"],
            "clicks"
        );
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("metrics"), 9090));
        assert_eq!(
            port.target_port,
            Some(IntOrString::String("metrics".into()))
        );
        assert!(s.metadata.owner_references.is_some());
    }
}
