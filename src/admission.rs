//! What the API server checks at admission (validation layers 1 and 2),
//! done offline from the generated CRD: the OpenAPI schema and the CEL rules.
//!
//! The `validate` command uses it so that a pull request gets the API
//! server's verdict before anything is applied, and the unit tests use it so
//! that losing a schema constraint or a CEL rule fails the build.
//!
//! It is stricter than the API server in one respect: a field the schema does
//! not declare is reported, where the API server would silently prune it.

use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use serde_json::Value;

use crate::{
    api::{DeploymentChannel, PhoneConfiguration},
    field_error::FieldError,
};
use kube::CustomResourceExt;

/// The admission checks of one kind, compiled once.
pub struct AdmissionChecker {
    spec_schema: jsonschema::Validator,
    cel_schema: CompiledSchema,
    cel: Validator,
}

impl AdmissionChecker {
    /// Compiles the checks from a generated CRD.
    pub fn from_crd(crd: &CustomResourceDefinition) -> Self {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("a generated CRD has an openAPIV3Schema");
        let schema = serde_json::to_value(schema).expect("a schema serializes to JSON");
        let mut spec_schema = schema["properties"]["spec"].clone();
        make_strict(&mut spec_schema);
        let spec_schema = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&spec_schema)
            .expect("the generated spec schema is a valid JSON schema");
        Self {
            spec_schema,
            cel_schema: compile_schema(&schema),
            cel: Validator::new(),
        }
    }

    /// The checks for DeploymentChannel.
    pub fn deployment_channel() -> &'static Self {
        static CHECKER: OnceLock<AdmissionChecker> = OnceLock::new();
        CHECKER.get_or_init(|| Self::from_crd(&DeploymentChannel::crd()))
    }

    /// The checks for PhoneConfiguration.
    pub fn phone_configuration() -> &'static Self {
        static CHECKER: OnceLock<AdmissionChecker> = OnceLock::new();
        CHECKER.get_or_init(|| Self::from_crd(&PhoneConfiguration::crd()))
    }

    /// Every problem the API server would refuse `object` for (as a create,
    /// or as an update of `old`). CEL rules only run on a spec that passes
    /// the schema, as on the API server.
    pub fn check(&self, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let Some(spec) = object.get("spec") else {
            return vec![FieldError::new("spec", "is required")];
        };
        let mut errors: Vec<FieldError> = self
            .spec_schema
            .iter_errors(spec)
            .map(|e| {
                FieldError::new(
                    dotted_path("spec", e.instance_path().as_str()),
                    e.to_string(),
                )
            })
            .collect();
        if errors.is_empty()
            && let Err(cel_errors) = self.cel.validate_compiled(&self.cel_schema, object, old)
        {
            errors.extend(
                cel_errors
                    .into_vec()
                    .into_iter()
                    .map(|e| cel_field_error(&e.field_path, &e.message)),
            );
        }
        errors.sort();
        errors.dedup();
        errors
    }
}

/// Our CEL messages start with the full path of the field they are about
/// (the rule's `fieldPath` needs Kubernetes 1.28, so it is not used); the
/// error is reported against that field rather than the rule's node.
fn cel_field_error(node_path: &str, message: &str) -> FieldError {
    if let Some((field, rest)) = message.split_once(' ')
        && field.starts_with("spec.")
    {
        let rest = rest.trim_start_matches(": ").trim();
        return FieldError::new(field.trim_end_matches(':'), rest);
    }
    FieldError::new(
        if node_path.is_empty() {
            "spec"
        } else {
            node_path
        },
        message,
    )
}

/// `/configuration/phoneConfigurationId` under `spec` becomes
/// `spec.configuration.phoneConfigurationId`; list indexes become `[i]`.
fn dotted_path(root: &str, pointer: &str) -> String {
    let mut path = root.to_string();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.chars().all(|c| c.is_ascii_digit()) && !segment.is_empty() {
            path.push_str(&format!("[{segment}]"));
        } else {
            path.push('.');
            path.push_str(&segment);
        }
    }
    path
}

/// Turns the Kubernetes structural schema into a strict JSON schema: `null`
/// where `nullable`, unique items in `set` lists, and no undeclared fields.
fn make_strict(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.get("nullable") == Some(&Value::Bool(true))
        && let Some(Value::String(ty)) = object.get("type").cloned()
    {
        object.insert("type".into(), serde_json::json!([ty, "null"]));
    }
    if object.get("x-kubernetes-list-type") == Some(&Value::String("set".into())) {
        object.insert("uniqueItems".into(), Value::Bool(true));
    }
    if object.contains_key("properties") && !object.contains_key("additionalProperties") {
        object.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        properties.values_mut().for_each(make_strict);
    }
    if let Some(items) = object.get_mut("items") {
        make_strict(items);
    }
}

#[cfg(test)]
mod tests;
