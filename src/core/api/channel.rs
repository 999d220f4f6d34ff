//! `DeploymentChannel`: one interaction channel (CALLS, SMS, WEB or MOBILE).

// `printcolumn(...)` repeats `type_ = "string"` once per column by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a DeploymentChannel, with the field names of the platform's
/// Deployment Channel schema.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "interactions.dev",
    version = "v1alpha1",
    kind = "DeploymentChannel",
    plural = "deploymentchannels",
    shortname = "dchan",
    category = "interactions",
    namespaced,
    status = "DeploymentChannelStatus",
    derive = "PartialEq",
    doc = "A DeploymentChannel declares the channel (phone CALLS, SMS, WEB chat widget or MOBILE app) through which a deployment is reached. The operator validates it, resolves its PhoneConfiguration and reports the result in status.conditions.",
    annotation("argocd.argoproj.io/sync-wave", "-10"),
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".spec.deploymentType",
        description = "Channel type"
    ),
    printcolumn(
        name = "Identifier",
        type_ = "string",
        json_path = ".spec.channelIdentifier",
        description = "Phone number, URL or app package"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the channel is ready"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the channel is or is not ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(cel)]
#[schemars(transform = super::rules::add_spec_rules)]
pub struct DeploymentChannelSpec {
    /// Type of channel: CALLS (voice telephony), SMS (text messaging), WEB
    /// (browser chat widget) or MOBILE (native app). Immutable: a channel is
    /// 1:1 with its type; create a new DeploymentChannel to change it.
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("is immutable: a channel is 1:1 with its type, create a new DeploymentChannel instead"))]
    pub deployment_type: DeploymentType,

    /// Human-readable name for administration, 1 to 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub channel_name: Option<String>,

    /// Whether interactions on this channel are recorded. Defaults to true.
    #[serde(default = "default_true")]
    pub recording_enabled: bool,

    /// Channel-specific identifier: a phone number in E.164 format for CALLS
    /// and SMS (for example +12125551234), the website URL for WEB (absolute
    /// http or https URL), the app bundle ID or package name for MOBILE
    /// (reverse-DNS form, for example com.example.app). Two channels of the
    /// same type may not claim the same identifier.
    #[schemars(length(min = 1, max = 2048))]
    pub channel_identifier: String,

    /// Channel-specific configuration; which fields it must and must not hold
    /// depends on deploymentType.
    pub configuration: ChannelConfiguration,
}

fn default_true() -> bool {
    true
}

/// Type of a deployment channel.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum DeploymentType {
    /// Voice telephony channel for phone calls.
    #[serde(rename = "CALLS")]
    Calls,
    /// Text messaging channel.
    #[serde(rename = "SMS")]
    Sms,
    /// Browser-based chat widget.
    #[serde(rename = "WEB")]
    Web,
    /// Native mobile application integration.
    #[serde(rename = "MOBILE")]
    Mobile,
}

impl DeploymentChannel {
    /// What a status is computed for besides the spec: the channel's
    /// namespace and `metadata.generation`.
    pub fn placement(&self) -> (&str, Option<i64>) {
        (
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.generation,
        )
    }
}

impl DeploymentType {
    /// The name used in manifests (`CALLS`, `SMS`, `WEB`, `MOBILE`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentType::Calls => "CALLS",
            DeploymentType::Sms => "SMS",
            DeploymentType::Web => "WEB",
            DeploymentType::Mobile => "MOBILE",
        }
    }
}

impl std::fmt::Display for DeploymentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Channel-specific configuration. CALLS and SMS take phoneConfigurationId;
/// WEB takes communicationType and widgetConfiguration; MOBILE takes
/// packageName and platform. A field that belongs to another type is refused.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelConfiguration {
    /// CALLS and SMS (required): metadata.name of the PhoneConfiguration in
    /// the same namespace that backs this channel's phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[schemars(transform = super::rules::object_name_rule)]
    pub phone_configuration_id: Option<String>,

    /// WEB (optional): communication protocol. Only UNIFIED exists; absent
    /// means UNIFIED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communication_type: Option<CommunicationType>,

    /// WEB (optional): appearance of the chat widget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widget_configuration: Option<WidgetConfiguration>,

    /// MOBILE (required): package identifier of the app; must equal
    /// channelIdentifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub package_name: Option<String>,

    /// MOBILE (required): platform of the app, IOS or ANDROID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<MobilePlatform>,
}

/// Communication protocol of a WEB channel.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommunicationType {
    /// Unified messaging protocol.
    #[serde(rename = "UNIFIED")]
    Unified,
}

/// Appearance of a WEB chat widget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WidgetConfiguration {
    /// Side of the page the widget sits on: left or right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<WidgetPosition>,

    /// Colours of the widget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_theme: Option<CustomTheme>,
}

/// Side of the page a WEB widget sits on.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WidgetPosition {
    /// Bottom left corner.
    Left,
    /// Bottom right corner.
    Right,
}

/// Colours of a WEB widget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomTheme {
    /// Primary colour as a hex colour, #rgb or #rrggbb (for example #007bff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 7),
        regex(pattern = r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
    )]
    pub primary_color: Option<String>,
}

/// Platform of a MOBILE app.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MobilePlatform {
    /// Apple iOS: channelIdentifier is the app's bundle ID.
    #[serde(rename = "IOS")]
    Ios,
    /// Android: channelIdentifier is the app's package name.
    #[serde(rename = "ANDROID")]
    Android,
}

/// Observed state of a DeploymentChannel, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentChannelStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready (the summary), Valid, PhoneConfigurationResolved (CALLS and SMS)
    /// and Stalled (only while the spec is invalid).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The PhoneConfiguration in use (CALLS and SMS, once resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_configuration: Option<PhoneConfigurationReference>,
}

/// The PhoneConfiguration a CALLS or SMS channel resolved to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PhoneConfigurationReference {
    /// metadata.name of the PhoneConfiguration.
    pub name: String,
    /// metadata.uid of the PhoneConfiguration.
    pub uid: String,
    /// The PhoneConfiguration's phone number in E.164 format.
    pub phone_number: String,
}
