//! The cross-field CEL rules of `DeploymentChannel.spec`: which configuration
//! fields each `deploymentType` needs and forbids, and the per-type shape of
//! `channelIdentifier`.
//!
//! Each rule names the field it is about (`fieldPath`) and the kind of
//! problem (`reason`), so the API server reports, for example,
//! `spec.configuration.packageName: Forbidden: ...` instead of a generic
//! `spec: Invalid value`. Every rule guards each field it reads with `has()`:
//! an object that already breaks one rule still gets the precise messages of
//! the others, and a status write on an object stored before a rule
//! tightened never fails with "no such key".

use schemars::Schema;
use serde_json::{Value, json};

/// What kind of problem a rule reports; the API server's field error types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleErrorType {
    /// The field is missing but this deploymentType needs it.
    Required,
    /// The field belongs to another deploymentType.
    Forbidden,
    /// The field holds a wrong value.
    Invalid,
}

impl RuleErrorType {
    /// The value of the rule's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleErrorType::Required => "FieldValueRequired",
            RuleErrorType::Forbidden => "FieldValueForbidden",
            RuleErrorType::Invalid => "FieldValueInvalid",
        }
    }
}

/// One rule on `spec`.
#[derive(Clone, Debug)]
pub struct SpecRule {
    /// The CEL expression; `self` is the spec.
    pub rule: String,
    /// The field the rule is about, relative to `spec`.
    pub field_path: &'static str,
    pub reason: RuleErrorType,
    /// The message when `message_expression` is absent or cannot be used.
    pub message: &'static str,
    /// A message that quotes the offending value (bounded in length).
    pub message_expression: Option<String>,
}

/// Longest quoted value in a message; longer ones are cut with `...`.
const QUOTE_MAX: usize = 64;

/// CEL for `"<value>"`, cut to [`QUOTE_MAX`] characters.
fn quoted(value: &str) -> String {
    format!(
        "'\"' + (size({value}) > {QUOTE_MAX} ? {value}.substring(0, {cut}) + '...' : {value}) + '\"'",
        cut = QUOTE_MAX - 3
    )
}

/// CEL: the channel is of one of `types`.
fn type_in(types: &[&str]) -> String {
    let list = types
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("has(self.deploymentType) && self.deploymentType in [{list}]")
}

/// CEL: the configuration holds `field` (a path such as `.configuration.platform`).
fn has_config(field: &str) -> String {
    let name = field.trim_start_matches(".configuration.");
    format!("has(self.configuration) && has(self.configuration.{name})")
}

/// A configuration field that `types` need.
fn required(field: &'static str, types: &[&str], message: &'static str) -> SpecRule {
    SpecRule {
        rule: format!("!({}) || ({})", type_in(types), has_config(field)),
        field_path: field,
        reason: RuleErrorType::Required,
        message,
        message_expression: None,
    }
}

/// A configuration field that only `types` may hold.
fn forbidden(field: &'static str, types: &[&str], message: &'static str) -> SpecRule {
    SpecRule {
        rule: format!("!({}) || ({})", has_config(field), type_in(types)),
        field_path: field,
        reason: RuleErrorType::Forbidden,
        message,
        message_expression: None,
    }
}

/// The shape `channelIdentifier` must have for `types`.
fn identifier(types: &[&str], pattern: &str, message: &'static str, expected: &str) -> SpecRule {
    SpecRule {
        rule: format!(
            "!({}) || !has(self.channelIdentifier) || self.channelIdentifier.matches('{pattern}')",
            type_in(types)
        ),
        field_path: ".channelIdentifier",
        reason: RuleErrorType::Invalid,
        message,
        message_expression: Some(format!(
            "{} + ' {expected}'",
            quoted("self.channelIdentifier")
        )),
    }
}

/// RE2 form of the E.164 shape: `+`, then 2–15 digits, no leading 0.
pub const E164_PATTERN: &str = r"^\+[1-9][0-9]{1,14}$";
/// RE2 form of an absolute http(s) URL with a host and no user-info.
/// No control character (C0, DEL, C1: `Cc`) or invisible format character
/// (bidi controls, zero-width: `Cf`) anywhere: they can never be part of a
/// URL a person reads, and would reach the terminals that show it.
const URL_PATTERN: &str = r"^https?://[^/?#@\s\p{Cc}\p{Cf}]+([/?#][^\s\p{Cc}\p{Cf}]*)?$";
/// RE2 form of a reverse-DNS app identifier.
const REVERSE_DNS_PATTERN: &str = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$";
/// RE2 form of a lower-case RFC 1123 subdomain, the shape of a Kubernetes object name.
pub const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Every cross-field rule of `DeploymentChannel.spec`, in the order the CRD lists them.
pub fn spec_rules() -> Vec<SpecRule> {
    let phone = ["CALLS", "SMS"];
    let mut package_matches = SpecRule {
        rule: format!(
            "!({}) || !has(self.channelIdentifier) || !({}) || self.configuration.packageName == self.channelIdentifier",
            type_in(&["MOBILE"]),
            has_config(".configuration.packageName")
        ),
        field_path: ".configuration.packageName",
        reason: RuleErrorType::Invalid,
        message: "must equal spec.channelIdentifier when deploymentType is MOBILE",
        message_expression: None,
    };
    package_matches.message_expression = Some(format!(
        "{} + ' must equal spec.channelIdentifier ' + {} + ' when deploymentType is MOBILE'",
        quoted("self.configuration.packageName"),
        quoted("self.channelIdentifier")
    ));
    vec![
        required(
            ".configuration.phoneConfigurationId",
            &phone,
            "required when deploymentType is CALLS or SMS: set it to the name of a PhoneConfiguration in this namespace",
        ),
        forbidden(
            ".configuration.phoneConfigurationId",
            &phone,
            "only allowed when deploymentType is CALLS or SMS",
        ),
        forbidden(
            ".configuration.communicationType",
            &["WEB"],
            "only allowed when deploymentType is WEB",
        ),
        forbidden(
            ".configuration.widgetConfiguration",
            &["WEB"],
            "only allowed when deploymentType is WEB",
        ),
        required(
            ".configuration.packageName",
            &["MOBILE"],
            "required when deploymentType is MOBILE: set it to the same value as spec.channelIdentifier",
        ),
        required(
            ".configuration.platform",
            &["MOBILE"],
            "required when deploymentType is MOBILE: set it to IOS or ANDROID",
        ),
        forbidden(
            ".configuration.packageName",
            &["MOBILE"],
            "only allowed when deploymentType is MOBILE",
        ),
        forbidden(
            ".configuration.platform",
            &["MOBILE"],
            "only allowed when deploymentType is MOBILE",
        ),
        identifier(
            &phone,
            &cel_string(E164_PATTERN),
            "must be a phone number in E.164 format when deploymentType is CALLS or SMS: '+', then 2 to 15 digits, no leading 0 (for example +12125551234)",
            "is not a phone number in E.164 format, which CALLS and SMS channels need: \\'+\\', then 2 to 15 digits, no leading 0 (for example +12125551234)",
        ),
        identifier(
            &["WEB"],
            &cel_string(URL_PATTERN),
            "must be an absolute http:// or https:// URL with a host and no user-info when deploymentType is WEB (for example https://example.com)",
            "is not an absolute http:// or https:// URL with a host and no user-info, which WEB channels need (for example https://example.com)",
        ),
        identifier(
            &["MOBILE"],
            &cel_string(REVERSE_DNS_PATTERN),
            "must be an app bundle ID or package name in reverse-DNS form when deploymentType is MOBILE (for example com.example.app)",
            "is not an app bundle ID or package name in reverse-DNS form, which MOBILE channels need (for example com.example.app)",
        ),
        package_matches,
    ]
}

/// A regular expression as the body of a single-quoted CEL string.
pub fn cel_string(pattern: &str) -> String {
    pattern.replace('\\', "\\\\")
}

impl SpecRule {
    /// The rule as an `x-kubernetes-validations` entry.
    fn to_json(&self) -> Value {
        let mut rule = json!({
            "rule": self.rule,
            "fieldPath": self.field_path,
            "reason": self.reason.as_str(),
            "message": self.message,
        });
        if let Some(expression) = &self.message_expression {
            rule["messageExpression"] = json!(expression);
        }
        rule
    }
}

/// Appends rules to a schema's `x-kubernetes-validations`.
fn add_rules(schema: &mut Schema, rules: impl IntoIterator<Item = Value>) {
    let object = schema.ensure_object();
    let existing = object
        .entry("x-kubernetes-validations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(existing) = existing {
        existing.extend(rules);
    }
}

/// Schema transform that adds [`spec_rules`] to the spec's schema.
pub fn add_spec_rules(schema: &mut Schema) {
    add_rules(schema, spec_rules().iter().map(SpecRule::to_json));
}

/// Schema transform for a string that names a Kubernetes object.
pub fn object_name_rule(schema: &mut Schema) {
    add_rules(
        schema,
        [json!({
            "rule": format!("self.matches('{}')", cel_string(OBJECT_NAME_PATTERN)),
            "message": "must be the metadata.name of a PhoneConfiguration: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (underscores are not allowed in Kubernetes names)",
        })],
    );
}

/// Schema transform for a string that holds an E.164 phone number.
pub fn e164_rule(schema: &mut Schema) {
    add_rules(
        schema,
        [json!({
            "rule": format!("self.matches('{}')", cel_string(E164_PATTERN)),
            "message": "must be a phone number in E.164 format: '+', then 2 to 15 digits, no leading 0 (for example +12125551234)",
        })],
    );
}
