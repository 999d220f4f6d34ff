//! The `interactions.dev/v1alpha1` API: Rust types from which the CRDs, their
//! OpenAPI schemas and their CEL admission rules are generated.

mod channel;
mod phone;
mod rules;

pub use channel::*;
pub use phone::*;
pub use rules::{E164_PATTERN, OBJECT_NAME_PATTERN, RuleErrorType, SpecRule, spec_rules};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// API group of both kinds.
pub const GROUP: &str = "interactions.dev";
/// API version of both kinds.
pub const VERSION: &str = "v1alpha1";

/// Looks up a condition by type in a status condition list.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
