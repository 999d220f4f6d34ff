//! The `interactions.dev/v1alpha1` API: Rust types from which the CRDs, their
//! OpenAPI schemas and their CEL admission rules are generated.

mod channel;
mod phone;

pub use channel::*;
pub use phone::*;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// API group of both kinds.
pub const GROUP: &str = "interactions.dev";
/// API version of both kinds.
pub const VERSION: &str = "v1alpha1";

/// Longest E.164 number: `+` and 15 digits.
pub const E164_MAX_LEN: u32 = 16;
/// CEL/RE2 form of the E.164 shape (`+`, then 2–15 digits, no leading 0).
pub const E164_PATTERN: &str = r"^\+[1-9][0-9]{1,14}$";
/// RE2 form of a lower-case RFC 1123 subdomain, the shape of a Kubernetes object name.
pub const DNS1123_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Looks up a condition by type in a status condition list.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
