//! One problem with one field of a manifest, as every validation layer reports it.

use serde::Serialize;

/// A problem with a field, named by its dotted path from the object root
/// (for example `spec.configuration.phoneConfigurationId`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FieldError {
    /// Dotted path of the field, from the object root.
    pub field: String,
    /// What is wrong and what is expected, for a person to act on.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
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
