//! What the API server checks at admission (validation layers 1 and 2),
//! done offline from the generated CRD: the object's name, the OpenAPI
//! schema and the CEL rules, reported with the field path, reason and
//! message that a 1.30+ API server returns.
//!
//! The `validate` command uses it so that a pull request gets the API
//! server's verdict, word for word, before anything is applied, and the unit
//! tests use it so that losing a schema constraint or a CEL rule fails the
//! build.

mod structural;

use std::{collections::HashMap, sync::OnceLock};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{CompiledSchema, ErrorKind, ValidationError, Validator, compile_schema};
use serde_json::Value;

use kube::CustomResourceExt;

use crate::{
    core::api::{DeploymentChannel, PhoneConfiguration},
    core::field_error::{FieldError, FieldErrorType, NO_FIELD},
};
use structural::StructuralSchema;

/// The admission checks of one kind, compiled once.
pub struct AdmissionChecker {
    schema: StructuralSchema,
    cel_schema: CompiledSchema,
    cel: Validator,
    /// What the API server needs to word a failed rule: its `fieldPath`
    /// and its static `message`, by rule text.
    rules: HashMap<String, RuleFacts>,
}

#[derive(Clone, Debug, Default)]
struct RuleFacts {
    field_path: Option<String>,
    message: Option<String>,
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
        let mut rules = HashMap::new();
        collect_rules(&schema, &mut rules);
        Self {
            cel_schema: compile_schema(&schema),
            schema: StructuralSchema::new(schema),
            cel: Validator::new(),
            rules,
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
    /// or as an update of `old`), in the order it reports them.
    ///
    /// As on the API server: a field the schema does not declare refuses the
    /// object before anything else is checked (kubectl's strict field
    /// validation); the CEL rules are skipped, with a note saying so, when
    /// the schema already found a wrong type, an unsupported value, a missing
    /// field or a value over its maximum.
    pub fn check(&self, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut checked = object.clone();
        if let Some(fields) = checked.as_object_mut() {
            // Checked on their own (type and name) or not at all (status: a
            // create ignores it).
            for own in ["apiVersion", "kind", "metadata", "status"] {
                fields.remove(own);
            }
        }
        let mut found = self.schema.check("", &checked);
        if !found.unknown.is_empty() {
            return found.unknown;
        }
        let mut errors = object_name_errors(object);
        errors.extend(metadata_errors(object));
        errors.append(&mut found.errors);
        errors.sort();
        if errors.iter().any(FieldError::blocks_cel) {
            errors.push(FieldError::cel_not_checked());
            return errors;
        }
        if let Err(cel_errors) = self.cel.validate_compiled(&self.cel_schema, object, old) {
            let mut cel: Vec<FieldError> = cel_errors
                .into_vec()
                .iter()
                .map(|e| self.cel_error(object, e))
                .collect();
            cel.sort();
            errors.extend(cel);
        }
        errors
    }

    /// A failed CEL rule, worded as the API server words it.
    fn cel_error(&self, object: &Value, error: &ValidationError) -> FieldError {
        let facts = self.rules.get(&error.rule).cloned().unwrap_or_default();
        let field = if error.field_path.is_empty() {
            NO_FIELD.to_string()
        } else {
            error.field_path.clone()
        };
        if error.kind != ErrorKind::ValidationFailure {
            return FieldError::invalid(field, None, &error.message);
        }
        // A messageExpression that yields nothing usable falls back to message.
        let message = if error.message.trim().is_empty() || error.message.contains('\n') {
            facts.message.clone().unwrap_or_default()
        } else {
            error.message.clone()
        };
        // The rule sits on the node above its fieldPath; Invalid errors quote
        // that node's value unless it is an object or a list.
        let node = match &facts.field_path {
            Some(path) => field.strip_suffix(path.as_str()).unwrap_or(&field),
            None => &field,
        };
        let value = lookup(object, node).filter(|v| !v.is_object() && !v.is_array());
        match FieldErrorType::from_rule(error.reason.as_deref()) {
            FieldErrorType::Required => FieldError::required(field, &message),
            FieldErrorType::Forbidden => FieldError::forbidden(field, &message),
            FieldErrorType::Duplicate => {
                FieldError::duplicate(field, value.unwrap_or(&Value::Null))
            }
            _ => FieldError::invalid(field, value, &message),
        }
    }
}

/// The API server's check of `metadata.name`: a lower-case RFC 1123 subdomain.
fn object_name_errors(object: &Value) -> Vec<FieldError> {
    const FIELD: &str = "metadata.name";
    let name = object.pointer("/metadata/name").filter(|n| !n.is_null());
    let Some(name) = name.filter(|n| n.as_str() != Some("")) else {
        return vec![FieldError::required(
            FIELD,
            "name or generateName is required",
        )];
    };
    let Some(text) = name.as_str() else {
        return vec![FieldError::type_invalid(FIELD, "string", name)];
    };
    let mut errors = Vec::new();
    if !object_name_regex().is_match(text) {
        errors.push(FieldError::invalid(
            FIELD,
            Some(name),
            r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ));
    }
    if text.len() > 253 {
        errors.push(FieldError::invalid(
            FIELD,
            Some(name),
            "must be no more than 253 characters",
        ));
    }
    errors
}

/// The API server's checks of the rest of `metadata` (ObjectMeta
/// validation): the namespace, label keys and values, annotation keys and
/// the annotations' total size.
fn metadata_errors(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(metadata) = object.get("metadata").filter(|m| !m.is_null()) else {
        return errors;
    };
    let Some(metadata) = metadata.as_object() else {
        errors.push(FieldError::type_invalid("metadata", "object", metadata));
        return errors;
    };
    if let Some(namespace) = metadata.get("namespace").filter(|n| !n.is_null()) {
        match namespace.as_str() {
            None => errors.push(FieldError::type_invalid(
                "metadata.namespace",
                "string",
                namespace,
            )),
            Some("") => {}
            Some(text) => {
                if !dns_label_regex().is_match(text) {
                    errors.push(FieldError::invalid(
                        "metadata.namespace",
                        Some(namespace),
                        r"a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                    ));
                }
                if text.len() > 63 {
                    errors.push(FieldError::invalid(
                        "metadata.namespace",
                        Some(namespace),
                        "must be no more than 63 characters",
                    ));
                }
            }
        }
    }
    for (field, is_labels) in [("labels", true), ("annotations", false)] {
        let path = format!("metadata.{field}");
        let Some(map) = metadata.get(field).filter(|m| !m.is_null()) else {
            continue;
        };
        let Some(map) = map.as_object() else {
            errors.push(FieldError::type_invalid(&path, "object", map));
            continue;
        };
        let mut total = 0usize;
        for (key, value) in map {
            let key_value = Value::from(key.as_str());
            for problem in qualified_name_problems(key) {
                errors.push(FieldError::invalid(&path, Some(&key_value), &problem));
            }
            let Some(text) = value.as_str() else {
                if !value.is_null() {
                    errors.push(FieldError::type_invalid(
                        &format!("{path}.{key}"),
                        "string",
                        value,
                    ));
                }
                continue;
            };
            total += key.len() + text.len();
            if is_labels {
                if text.len() > 63 {
                    errors.push(FieldError::invalid(
                        &path,
                        Some(value),
                        "must be no more than 63 characters",
                    ));
                }
                if !label_value_regex().is_match(text) {
                    errors.push(FieldError::invalid(
                        &path,
                        Some(value),
                        r"a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                    ));
                }
            }
        }
        const TOTAL_ANNOTATION_BYTES: usize = 256 * 1024;
        if !is_labels && total > TOTAL_ANNOTATION_BYTES {
            errors.push(FieldError::too_long(&path, TOTAL_ANNOTATION_BYTES as u64));
        }
    }
    errors
}

/// Why `key` is not a qualified name (`[prefix/]name`): what the API server
/// says about label and annotation keys.
fn qualified_name_problems(key: &str) -> Vec<String> {
    const NAME_FORMAT: &str = r"name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let mut problems = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > 253 {
                    problems.push("prefix part must be no more than 253 characters".to_string());
                }
                if !object_name_regex().is_match(prefix) {
                    problems.push(r"prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
                }
            }
            *name
        }
        _ => {
            problems.push(format!("a qualified name {NAME_FORMAT} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
            return problems;
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            problems.push("name part must be no more than 63 characters".to_string());
        }
        if !qualified_name_regex().is_match(name) {
            problems.push(NAME_FORMAT.to_string());
        }
    }
    problems
}

fn dns_label_regex() -> &'static regex::Regex {
    static LABEL: OnceLock<regex::Regex> = OnceLock::new();
    LABEL.get_or_init(|| regex::Regex::new("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("valid"))
}

fn qualified_name_regex() -> &'static regex::Regex {
    static NAME: OnceLock<regex::Regex> = OnceLock::new();
    NAME.get_or_init(|| {
        regex::Regex::new("^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("valid")
    })
}

fn label_value_regex() -> &'static regex::Regex {
    static VALUE: OnceLock<regex::Regex> = OnceLock::new();
    VALUE.get_or_init(|| {
        regex::Regex::new("^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").expect("valid")
    })
}

fn object_name_regex() -> &'static regex::Regex {
    static SUBDOMAIN: OnceLock<regex::Regex> = OnceLock::new();
    SUBDOMAIN.get_or_init(|| {
        regex::Regex::new(crate::core::api::OBJECT_NAME_PATTERN).expect("a valid pattern")
    })
}

/// Every `x-kubernetes-validations` rule of a schema, by its text.
fn collect_rules(schema: &Value, rules: &mut HashMap<String, RuleFacts>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    for rule in object
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |key: &str| rule.get(key).and_then(Value::as_str).map(str::to_string);
        if let Some(expression) = text("rule") {
            rules.insert(
                expression,
                RuleFacts {
                    field_path: text("fieldPath"),
                    message: text("message"),
                },
            );
        }
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        properties.values().for_each(|p| collect_rules(p, rules));
    }
    if let Some(items) = object.get("items") {
        collect_rules(items, rules);
    }
}

/// The value at a dotted path such as `spec.configuration.platform` or
/// `spec.capabilities[1]`.
fn lookup<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = object;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = segment.split_once('[').unwrap_or((segment, ""));
        if !name.is_empty() {
            value = value.get(name)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            value = value.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests;
