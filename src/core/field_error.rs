//! One problem with one field of a manifest, as every validation layer reports
//! it, in the words of the Kubernetes API server: the field's path, the
//! error type (`reason`, as in a Status cause) and the message that
//! `kubectl apply` prints after the path.

use serde::Serialize;
use serde_json::Value;

/// The kind of problem: the API server's field error types, plus the unknown
/// fields that strict field validation refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum FieldErrorType {
    #[serde(rename = "FieldValueRequired")]
    Required,
    #[serde(rename = "FieldValueForbidden")]
    Forbidden,
    #[serde(rename = "FieldValueInvalid")]
    Invalid,
    #[serde(rename = "FieldValueTypeInvalid")]
    TypeInvalid,
    #[serde(rename = "FieldValueNotSupported")]
    NotSupported,
    #[serde(rename = "FieldValueTooLong")]
    TooLong,
    #[serde(rename = "FieldValueTooMany")]
    TooMany,
    #[serde(rename = "FieldValueDuplicate")]
    Duplicate,
    /// A field the schema does not declare: `kubectl apply` (strict field
    /// validation) refuses the object; other clients see it pruned.
    #[serde(rename = "FieldValueUnknown")]
    Unknown,
}

impl FieldErrorType {
    /// The name used in Status causes (`FieldValueRequired`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::TypeInvalid => "FieldValueTypeInvalid",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::TooMany => "FieldValueTooMany",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::Unknown => "FieldValueUnknown",
        }
    }

    /// Parses a CEL rule's `reason`; Kubernetes reads anything else as invalid.
    pub fn from_rule(reason: Option<&str>) -> Self {
        match reason {
            Some("FieldValueRequired") => FieldErrorType::Required,
            Some("FieldValueForbidden") => FieldErrorType::Forbidden,
            Some("FieldValueDuplicate") => FieldErrorType::Duplicate,
            _ => FieldErrorType::Invalid,
        }
    }
}

/// A problem with a field, named by its path from the object root (for
/// example `spec.configuration.phoneConfigurationId`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FieldError {
    /// Path of the field, from the object root.
    pub field: String,
    /// The kind of problem.
    pub reason: FieldErrorType,
    /// What is wrong, as the API server words it after the field's path.
    pub message: String,
}

/// The field path the API server gives problems that belong to no field.
pub const NO_FIELD: &str = "<nil>";

impl FieldError {
    /// A problem the controller finds (an invalid value), with its own words.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: FieldErrorType::Invalid,
            message: message.into(),
        }
    }

    fn with(field: impl Into<String>, reason: FieldErrorType, message: String) -> Self {
        Self {
            field: field.into(),
            reason,
            message,
        }
    }

    /// `Required value[: detail]`.
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        Self::with(
            field,
            FieldErrorType::Required,
            body("Required value", None, detail),
        )
    }

    /// `Forbidden[: detail]`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self::with(
            field,
            FieldErrorType::Forbidden,
            body("Forbidden", None, detail),
        )
    }

    /// `Invalid value[: value][: detail]`; `None` omits the value, as the
    /// API server does for objects and lists.
    pub fn invalid(field: impl Into<String>, value: Option<&Value>, detail: &str) -> Self {
        Self::with(
            field,
            FieldErrorType::Invalid,
            body("Invalid value", value, detail),
        )
    }

    /// A value of the wrong JSON type.
    pub fn type_invalid(field: &str, expected: &str, actual: &Value) -> Self {
        let actual = json_type(actual);
        let detail = format!(
            "{field} in body must be of type {expected}: {}",
            go_quote(actual)
        );
        Self::with(
            field,
            FieldErrorType::TypeInvalid,
            body("Invalid value", Some(&Value::from(actual)), &detail),
        )
    }

    /// A value outside an enum.
    pub fn not_supported(field: impl Into<String>, value: &Value, allowed: &[Value]) -> Self {
        let allowed = allowed
            .iter()
            .map(|v| match v {
                Value::String(s) => go_quote(s),
                other => go_quote(&other.to_string()),
            })
            .collect::<Vec<_>>()
            .join(", ");
        Self::with(
            field,
            FieldErrorType::NotSupported,
            body(
                "Unsupported value",
                Some(value),
                &format!("supported values: {allowed}"),
            ),
        )
    }

    /// A string over its schema's `maxLength`.
    pub fn too_long(field: impl Into<String>, max: u64) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Self::with(
            field,
            FieldErrorType::TooLong,
            format!("Too long: may not be more than {max} {unit}"),
        )
    }

    /// A list over its schema's `maxItems`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: u64) -> Self {
        Self::with(
            field,
            FieldErrorType::TooMany,
            format!("Too many: {actual}: must have at most {max} items"),
        )
    }

    /// A repeated item of a set.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Self::with(
            field,
            FieldErrorType::Duplicate,
            body("Duplicate value", Some(value), ""),
        )
    }

    /// A field the schema does not declare.
    pub fn unknown(field: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("unknown field {}", go_quote(&field));
        Self::with(field, FieldErrorType::Unknown, message)
    }

    /// Whether the API server skips the CEL rules after this error: they
    /// only run on an object whose types, enums, required fields and
    /// lengths are right.
    pub fn blocks_cel(&self) -> bool {
        matches!(
            self.reason,
            FieldErrorType::NotSupported
                | FieldErrorType::Required
                | FieldErrorType::TooLong
                | FieldErrorType::TooMany
                | FieldErrorType::TypeInvalid
        )
    }

    /// The API server's note that the CEL rules were skipped.
    pub fn cel_not_checked() -> Self {
        Self::invalid(
            NO_FIELD,
            Some(&Value::Null),
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        )
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// `kind[: value][: detail]`, as Go's `field.Error.ErrorBody`.
fn body(kind: &str, value: Option<&Value>, detail: &str) -> String {
    let mut body = kind.to_string();
    if let Some(value) = value {
        body.push_str(": ");
        body.push_str(&go_value(value));
    }
    if !detail.is_empty() {
        body.push_str(": ");
        body.push_str(detail);
    }
    body
}

/// A value as the API server prints it in an error: strings quoted, numbers
/// and booleans bare, anything else as JSON.
fn go_value(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        other => other.to_string(),
    }
}

/// A string quoted as Go's `%q` quotes it.
pub fn go_quote(s: &str) -> String {
    let mut quoted = String::with_capacity(s.len() + 2);
    quoted.push('"');
    for c in s.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\u{b}' => quoted.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                quoted.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_ascii() || go_printable(c) => quoted.push(c),
            c if (c as u32) < 0x10000 => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    quoted.push('"');
    quoted
}

/// Whether Go's `strconv.IsPrint` holds: a letter, mark, number,
/// punctuation or symbol. Anything else (C1 controls, bidi and other
/// format characters, spaces other than ' ', unassigned code points) `%q`
/// escapes as `\uXXXX`.
fn go_printable(c: char) -> bool {
    static PRINTABLE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let printable = PRINTABLE.get_or_init(|| {
        regex::Regex::new(r"^[\p{L}\p{M}\p{N}\p{P}\p{S}]$").expect("a valid pattern")
    });
    let mut buffer = [0u8; 4];
    printable.is_match(c.encode_utf8(&mut buffer))
}

/// The OpenAPI type name of a JSON value.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Joins problems into one line, as a status condition message carries them.
pub fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn messages_read_as_the_api_server_writes_them() {
        let cases = [
            (FieldError::required("spec.x", ""), "spec.x: Required value"),
            (
                FieldError::required("spec.x", "needed"),
                "spec.x: Required value: needed",
            ),
            (
                FieldError::forbidden("spec.x", "not here"),
                "spec.x: Forbidden: not here",
            ),
            (
                FieldError::invalid("spec.x", Some(&json!("a\"b")), "bad"),
                "spec.x: Invalid value: \"a\\\"b\": bad",
            ),
            (
                FieldError::invalid("spec.x", None, "bad"),
                "spec.x: Invalid value: bad",
            ),
            (
                FieldError::invalid("spec.l", Some(&json!(0)), "too few"),
                "spec.l: Invalid value: 0: too few",
            ),
            (
                FieldError::type_invalid("spec.b", "boolean", &json!("yes")),
                "spec.b: Invalid value: \"string\": spec.b in body must be of type boolean: \"string\"",
            ),
            (
                FieldError::not_supported("spec.t", &json!("FAX"), &[json!("CALLS"), json!("SMS")]),
                "spec.t: Unsupported value: \"FAX\": supported values: \"CALLS\", \"SMS\"",
            ),
            (
                FieldError::too_long("spec.s", 256),
                "spec.s: Too long: may not be more than 256 bytes",
            ),
            (
                FieldError::too_many("spec.l", 3, 2),
                "spec.l: Too many: 3: must have at most 2 items",
            ),
            (
                FieldError::duplicate("spec.l[1]", &json!("VOICE")),
                "spec.l[1]: Duplicate value: \"VOICE\"",
            ),
            (
                FieldError::unknown("spec.foo"),
                "spec.foo: unknown field \"spec.foo\"",
            ),
            (
                FieldError::cel_not_checked(),
                "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn only_structural_errors_block_the_cel_rules() {
        assert!(FieldError::required("a", "").blocks_cel());
        assert!(FieldError::too_long("a", 1).blocks_cel());
        assert!(FieldError::type_invalid("a", "string", &json!(1)).blocks_cel());
        assert!(!FieldError::invalid("a", None, "pattern").blocks_cel());
        assert!(!FieldError::forbidden("a", "x").blocks_cel());
        assert!(!FieldError::duplicate("a", &json!(1)).blocks_cel());
    }

    #[test]
    fn go_quoting_escapes_what_go_escapes() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("tab\there"), "\"tab\\there\"");
        assert_eq!(go_quote("\u{1b}"), "\"\\x1b\"");
        assert_eq!(go_quote("café"), "\"café\"");
        // As Go's strconv.Quote: what is not a letter, mark, number,
        // punctuation, symbol or ' ' is escaped.
        assert_eq!(go_quote("a\u{85}b"), "\"a\\u0085b\"");
        assert_eq!(go_quote("x\u{202e}y"), "\"x\\u202ey\"");
        assert_eq!(go_quote("\u{a0}\u{200b}"), "\"\\u00a0\\u200b\"");
        assert_eq!(go_quote("\u{e0001}"), "\"\\U000e0001\"");
        assert_eq!(go_quote("電話 — ✓"), "\"電話 — ✓\"");
    }
}
