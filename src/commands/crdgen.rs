//! Renders the CustomResourceDefinitions generated from the API types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::core::api::{DeploymentChannel, PhoneConfiguration};

/// Both CRDs, in the order they are written to `crds/`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![DeploymentChannel::crd(), PhoneConfiguration::crd()]
}

/// The file name under `crds/` for a CRD (`<plural>.<group>.yaml`).
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default())
}

/// One CRD as a YAML document.
pub fn to_yaml(crd: &CustomResourceDefinition) -> String {
    serde_saphyr::to_string(crd).expect("a CRD always serializes to YAML")
}

/// Both CRDs as one multi-document YAML stream, ready for `kubectl apply -f -`.
pub fn all_to_yaml() -> String {
    crds()
        .iter()
        .map(|crd| format!("---\n{}", to_yaml(crd)))
        .collect()
}
