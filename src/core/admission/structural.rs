//! The OpenAPI part of admission: a value checked against a CRD's structural
//! schema, reported with the field errors the API server returns (types,
//! enums, required fields, lengths, patterns, list sizes, sets), and the
//! fields the schema does not declare, which strict field validation refuses.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

use crate::core::field_error::{FieldError, json_type};

/// A compiled structural schema.
pub struct StructuralSchema {
    root: Value,
    patterns: HashMap<String, Regex>,
}

/// What a value is refused for.
#[derive(Default)]
pub struct SchemaErrors {
    /// Fields the schema does not declare: a strict client is refused
    /// before anything else is checked.
    pub unknown: Vec<FieldError>,
    /// Everything else, as the API server reports it.
    pub errors: Vec<FieldError>,
}

impl StructuralSchema {
    /// Compiles a schema (an `openAPIV3Schema` or one of its properties).
    pub fn new(root: Value) -> Self {
        let mut patterns = HashMap::new();
        collect_patterns(&root, &mut patterns);
        Self { root, patterns }
    }

    /// Checks `value`, found at `path`, against the schema.
    pub fn check(&self, path: &str, value: &Value) -> SchemaErrors {
        let mut errors = SchemaErrors::default();
        self.check_node(&self.root, path, value, &mut errors);
        errors
    }

    fn check_node(&self, schema: &Value, path: &str, value: &Value, out: &mut SchemaErrors) {
        if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        let expected = schema.get("type").and_then(Value::as_str);
        let actual = json_type(value);
        let type_matches = expected.is_none_or(|expected| {
            actual == expected || (expected == "number" && actual == "integer")
        });
        if let Some(expected) = expected.filter(|_| !type_matches) {
            out.errors
                .push(FieldError::type_invalid(path, expected, value));
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            out.errors
                .push(FieldError::not_supported(path, value, allowed));
        }
        if !type_matches {
            return;
        }
        match value {
            Value::String(s) => self.check_string(schema, path, s, value, out),
            Value::Array(items) => self.check_array(schema, path, items, out),
            Value::Object(fields) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                // The API server drops a null field unless its schema is
                // nullable, before it validates.
                let present = |name: &str| {
                    fields.get(name).is_some_and(|v| {
                        !v.is_null()
                            || properties
                                .and_then(|p| p.get(name))
                                .and_then(|p| p.get("nullable"))
                                == Some(&Value::Bool(true))
                    })
                };
                for required in schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !present(required) {
                        out.errors
                            .push(FieldError::required(child(path, required), ""));
                    }
                }
                let mut names: Vec<&String> = fields
                    .iter()
                    .filter(|(name, value)| !value.is_null() || present(name))
                    .map(|(name, _)| name)
                    .collect();
                names.sort();
                for name in names {
                    let child = child(path, name);
                    match properties.map(|p| p.get(name)) {
                        Some(Some(property)) => {
                            self.check_node(property, &child, &fields[name], out)
                        }
                        Some(None) => out.unknown.push(FieldError::unknown(child)),
                        // An object without declared properties takes any field.
                        None => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn check_string(
        &self,
        schema: &Value,
        path: &str,
        s: &str,
        value: &Value,
        out: &mut SchemaErrors,
    ) {
        let length = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            out.errors.push(FieldError::too_long(path, max));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            out.errors.push(FieldError::invalid(
                path,
                Some(value),
                &format!("{path} in body should be at least {min} chars long"),
            ));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && !self.patterns[pattern].is_match(s)
        {
            out.errors.push(FieldError::invalid(
                path,
                Some(value),
                &format!("{path} in body should match '{pattern}'"),
            ));
        }
    }

    fn check_array(&self, schema: &Value, path: &str, items: &[Value], out: &mut SchemaErrors) {
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            out.errors
                .push(FieldError::too_many(path, items.len(), max));
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            out.errors.push(FieldError::invalid(
                path,
                Some(&Value::from(items.len())),
                &format!("{path} in body should have at least {min} items"),
            ));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check_node(item_schema, &format!("{path}[{i}]"), item, out);
            }
        }
        if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
            // Linear: each item is looked up among those seen, by its
            // canonical JSON text (object keys are sorted).
            let mut seen = std::collections::HashSet::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    out.errors
                        .push(FieldError::duplicate(format!("{path}[{i}]"), item));
                }
            }
        }
    }
}

/// The path of a field of the object at `path` (the root is `""`).
fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Compiles every `pattern` of a schema once.
fn collect_patterns(schema: &Value, patterns: &mut HashMap<String, Regex>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    if let Some(pattern) = object.get("pattern").and_then(Value::as_str) {
        let regex = Regex::new(pattern).expect("a generated schema pattern is a valid regex");
        patterns.insert(pattern.to_string(), regex);
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        properties
            .values()
            .for_each(|p| collect_patterns(p, patterns));
    }
    if let Some(items) = object.get("items") {
        collect_patterns(items, patterns);
    }
}
