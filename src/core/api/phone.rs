//! `PhoneConfiguration`: a phone number and the provider that serves it,
//! referenced by CALLS and SMS channels in the same namespace.

// `printcolumn(...)` repeats `type_ = "string"` once per column by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a PhoneConfiguration.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "interactions.dev",
    version = "v1alpha1",
    kind = "PhoneConfiguration",
    plural = "phoneconfigurations",
    shortname = "phonecfg",
    category = "interactions",
    namespaced,
    status = "PhoneConfigurationStatus",
    derive = "PartialEq",
    doc = "A PhoneConfiguration is a phone number and the provider that serves it. CALLS and SMS DeploymentChannels in the same namespace reference it by name.",
    annotation("argocd.argoproj.io/sync-wave", "-10"),
    printcolumn(
        name = "Number",
        type_ = "string",
        json_path = ".spec.phoneNumber",
        description = "Phone number in E.164 format"
    ),
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".spec.provider",
        description = "Telephony provider"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the configuration is ready"
    ),
    printcolumn(
        name = "Bound",
        type_ = "integer",
        json_path = ".status.boundChannels",
        description = "DeploymentChannels referencing it"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(cel)]
pub struct PhoneConfigurationSpec {
    /// Phone number in E.164 format: '+', then 2 to 15 digits, no leading 0
    /// (for example +12125551234). Channels using this configuration must
    /// have the same number as their channelIdentifier.
    #[schemars(length(min = 3, max = 16))]
    #[schemars(transform = super::rules::e164_rule)]
    pub phone_number: String,

    /// Telephony provider that serves the number, 1 to 63 characters, none
    /// of them a control or invisible format character.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[^\p{Cc}\p{Cf}]*$"))]
    pub provider: String,

    /// What the number can do: VOICE (needed by CALLS channels) and/or SMS
    /// (needed by SMS channels). At least one.
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub capabilities: Vec<Capability>,

    /// Free-form description, at most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
}

/// Something a phone number can do.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum Capability {
    /// Voice calls.
    #[serde(rename = "VOICE")]
    Voice,
    /// Text messages.
    #[serde(rename = "SMS")]
    Sms,
}

impl Capability {
    /// The name used in manifests (`VOICE`, `SMS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Voice => "VOICE",
            Capability::Sms => "SMS",
        }
    }
}

/// Observed state of a PhoneConfiguration, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhoneConfigurationStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready (the summary), Valid, and Stalled (only while the spec is invalid).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// How many DeploymentChannels in this namespace reference it.
    #[serde(default)]
    pub bound_channels: i32,
}
