//! The PodDisruptionBudget: voluntary disruptions (node drains) take at
//! most one processor at a time, so a pipeline keeps consuming while its
//! partitions move.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use tributary_crds::StreamPipeline;

use super::{metadata, selector};
use crate::Config;

/// Builds the PodDisruptionBudget of `sp`.
#[must_use]
pub fn pdb(sp: &StreamPipeline, _cfg: &Config) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(sp, sp.name_any()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector(sp)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::fixture;

    #[test]
    fn allows_one_processor_down_at_a_time() {
        let p = pdb(&fixture::pipeline(), &Config::default());
        assert_eq!(p.metadata.name.as_deref(), Some("clicks"));
        let spec = p.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        let labels = spec.selector.unwrap().match_labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/instance"], "clicks");
    }
}
