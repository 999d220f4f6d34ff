//! Semantic validation (layer 3): what admission cannot know. Real phone
//! number validity, URL parsing, per-platform app identifiers, and every
//! per-type configuration rule again, so that a channel that reached the
//! cluster without the CEL rules (an old server, an object stored before the
//! rules existed) is still judged correctly.
//!
//! It returns every problem at once, each naming its field, and turns a valid
//! spec into a typed value so that code after it never re-checks strings.

use phonenumber::Mode;
use url::Url;

use crate::{
    core::api::{
        Capability, ChannelConfiguration, CommunicationType, DeploymentChannelSpec, DeploymentType,
        MobilePlatform, PhoneConfigurationSpec, WidgetConfiguration,
    },
    core::field_error::FieldError,
};

/// A phone number that a numbering plan assigns, in E.164 form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses and checks a phone number written in E.164 form. The error says
    /// what is wrong, without naming the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !is_e164_shape(text) {
            return Err(format!(
                "{text:?} is not in E.164 format: '+', then 2 to 15 digits, no leading 0 (for example +12125551234)"
            ));
        }
        if known_valid::contains(text) {
            return Ok(Self(text.to_string()));
        }
        let number = phonenumber::parse(None, text)
            .map_err(|e| format!("{text} is not a valid phone number: {e}"))?;
        if !number.is_valid() {
            return Err(format!(
                "{text} is not a valid phone number: no numbering plan assigns it (check the country code and the digits)"
            ));
        }
        let normal = number.format().mode(Mode::E164).to_string();
        if normal == text {
            known_valid::insert(text);
        }
        Ok(Self(normal))
    }

    /// The number as `+` and digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for E164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Numbers already found valid and in normal form. Checking a number
/// against the numbering plans costs tens of microseconds, and the same few
/// numbers are checked again for every channel event, reconcile and
/// PhoneConfiguration that names them. Bounded: emptied when full.
mod known_valid {
    use std::sync::{Mutex, PoisonError};

    use foldhash::HashSet;

    const CAPACITY: usize = 1 << 16;

    static NUMBERS: Mutex<Option<HashSet<Box<str>>>> = Mutex::new(None);

    pub fn contains(number: &str) -> bool {
        let numbers = NUMBERS.lock().unwrap_or_else(PoisonError::into_inner);
        numbers.as_ref().is_some_and(|n| n.contains(number))
    }

    pub fn insert(number: &str) {
        let mut numbers = NUMBERS.lock().unwrap_or_else(PoisonError::into_inner);
        let numbers = numbers.get_or_insert_with(HashSet::default);
        if numbers.len() >= CAPACITY {
            numbers.clear();
        }
        numbers.insert(number.into());
    }
}

fn is_e164_shape(text: &str) -> bool {
    let Some(digits) = text.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// A channel whose spec passed validation, one variant per channel type.
#[derive(Clone, Debug, PartialEq)]
pub enum ValidChannel {
    /// A voice channel on a phone number, backed by a PhoneConfiguration.
    Calls {
        number: E164,
        phone_configuration: String,
    },
    /// A text messaging channel on a phone number, backed by a PhoneConfiguration.
    Sms {
        number: E164,
        phone_configuration: String,
    },
    /// A chat widget on a website.
    Web {
        url: Url,
        communication_type: CommunicationType,
        widget: Option<WidgetConfiguration>,
    },
    /// A native app.
    Mobile {
        app_id: String,
        platform: MobilePlatform,
    },
}

/// What a channel claims: its type and its identifier in normal form (E.164
/// numbers, URLs with a lower-case host and no trailing slash). Two channels
/// with the same claim conflict.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Claim {
    pub deployment_type: DeploymentType,
    /// Shared by the index's copies of the claim.
    pub identifier: std::sync::Arc<str>,
}

impl ValidChannel {
    /// The channel's type.
    pub fn deployment_type(&self) -> DeploymentType {
        match self {
            ValidChannel::Calls { .. } => DeploymentType::Calls,
            ValidChannel::Sms { .. } => DeploymentType::Sms,
            ValidChannel::Web { .. } => DeploymentType::Web,
            ValidChannel::Mobile { .. } => DeploymentType::Mobile,
        }
    }

    /// The identifier this channel claims, in normal form.
    pub fn claim(&self) -> Claim {
        let identifier = match self {
            ValidChannel::Calls { number, .. } | ValidChannel::Sms { number, .. } => {
                number.as_str().to_string()
            }
            ValidChannel::Web { url, .. } => url.as_str().trim_end_matches('/').to_string(),
            ValidChannel::Mobile { app_id, .. } => app_id.clone(),
        };
        Claim {
            deployment_type: self.deployment_type(),
            identifier: identifier.into(),
        }
    }

    /// Name of the referenced PhoneConfiguration (CALLS and SMS).
    pub fn phone_configuration(&self) -> Option<&str> {
        match self {
            ValidChannel::Calls {
                phone_configuration,
                ..
            }
            | ValidChannel::Sms {
                phone_configuration,
                ..
            } => Some(phone_configuration),
            _ => None,
        }
    }

    /// The phone number of a CALLS or SMS channel.
    pub fn phone_number(&self) -> Option<&E164> {
        match self {
            ValidChannel::Calls { number, .. } | ValidChannel::Sms { number, .. } => Some(number),
            _ => None,
        }
    }

    /// The PhoneConfiguration capability this channel needs (CALLS: VOICE, SMS: SMS).
    pub fn required_capability(&self) -> Option<Capability> {
        match self {
            ValidChannel::Calls { .. } => Some(Capability::Voice),
            ValidChannel::Sms { .. } => Some(Capability::Sms),
            _ => None,
        }
    }
}

/// Checks a DeploymentChannel spec; every problem at once, or the typed channel.
pub fn validate_channel(spec: &DeploymentChannelSpec) -> Result<ValidChannel, Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Some(name) = &spec.channel_name {
        check_length(&mut errors, "spec.channelName", name, 1, 256);
    }
    let config = &spec.configuration;
    check_configuration_fields(&mut errors, spec.deployment_type, config);
    check_widget(&mut errors, config.widget_configuration.as_ref());
    let id = spec.channel_identifier.as_str();
    let valid = match spec.deployment_type {
        DeploymentType::Calls | DeploymentType::Sms => {
            let number = E164::parse(id)
                .map_err(|e| errors.push(FieldError::new("spec.channelIdentifier", e)))
                .ok();
            let reference = phone_configuration_id(&mut errors, config);
            number.zip(reference).map(|(number, phone_configuration)| {
                if spec.deployment_type == DeploymentType::Calls {
                    ValidChannel::Calls {
                        number,
                        phone_configuration,
                    }
                } else {
                    ValidChannel::Sms {
                        number,
                        phone_configuration,
                    }
                }
            })
        }
        DeploymentType::Web => parse_web_url(id)
            .map_err(|e| errors.push(FieldError::new("spec.channelIdentifier", e)))
            .ok()
            .map(|url| ValidChannel::Web {
                url,
                communication_type: config
                    .communication_type
                    .unwrap_or(CommunicationType::Unified),
                widget: config.widget_configuration.clone(),
            }),
        DeploymentType::Mobile => mobile_app(&mut errors, id, config),
    };
    match valid {
        Some(channel) if errors.is_empty() => Ok(channel),
        _ => Err(errors),
    }
}

/// A PhoneConfiguration spec that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidPhoneConfiguration {
    pub number: E164,
    pub capabilities: Vec<Capability>,
}

/// Checks a PhoneConfiguration spec; every problem at once, or the typed value.
pub fn validate_phone_configuration(
    spec: &PhoneConfigurationSpec,
) -> Result<ValidPhoneConfiguration, Vec<FieldError>> {
    let mut errors = Vec::new();
    let number = E164::parse(&spec.phone_number)
        .map_err(|e| errors.push(FieldError::new("spec.phoneNumber", e)))
        .ok();
    check_length(&mut errors, "spec.provider", &spec.provider, 1, 63);
    if spec.capabilities.is_empty() {
        errors.push(FieldError::new(
            "spec.capabilities",
            "must list at least one capability: VOICE (for CALLS channels) and/or SMS (for SMS channels)",
        ));
    }
    let mut capabilities = spec.capabilities.clone();
    capabilities.sort();
    capabilities.dedup();
    if capabilities.len() != spec.capabilities.len() {
        errors.push(FieldError::new(
            "spec.capabilities",
            "lists a capability more than once",
        ));
    }
    if let Some(description) = &spec.description {
        check_length(&mut errors, "spec.description", description, 0, 1024);
    }
    match number {
        Some(number) if errors.is_empty() => Ok(ValidPhoneConfiguration {
            number,
            capabilities,
        }),
        _ => Err(errors),
    }
}

fn check_length(errors: &mut Vec<FieldError>, field: &str, value: &str, min: usize, max: usize) {
    let len = value.chars().count();
    if len < min || len > max {
        let range = if min == 0 {
            format!("at most {max}")
        } else {
            format!("{min} to {max}")
        };
        errors.push(FieldError::new(
            field,
            format!("must be {range} characters long, not {len}"),
        ));
    }
}

/// Which configuration fields each type needs, and which it must not hold.
fn check_configuration_fields(
    errors: &mut Vec<FieldError>,
    ty: DeploymentType,
    config: &ChannelConfiguration,
) {
    use DeploymentType::*;
    // (field, present, the types it belongs to, required for those types)
    let phone_types: &[DeploymentType] = &[Calls, Sms];
    let fields = [
        (
            "phoneConfigurationId",
            config.phone_configuration_id.is_some(),
            phone_types,
            true,
        ),
        (
            "communicationType",
            config.communication_type.is_some(),
            &[Web],
            false,
        ),
        (
            "widgetConfiguration",
            config.widget_configuration.is_some(),
            &[Web],
            false,
        ),
        (
            "packageName",
            config.package_name.is_some(),
            &[Mobile],
            true,
        ),
        ("platform", config.platform.is_some(), &[Mobile], true),
    ];
    for (name, present, owners, required) in fields {
        let field = format!("spec.configuration.{name}");
        let belongs = owners.contains(&ty);
        if present && !belongs {
            let owners = owners
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(" or ");
            errors.push(FieldError::new(
                field,
                format!("is only allowed when deploymentType is {owners}, not {ty}"),
            ));
        } else if !present && belongs && required {
            errors.push(FieldError::new(
                field,
                format!("is required when deploymentType is {ty}"),
            ));
        }
    }
}

fn check_widget(errors: &mut Vec<FieldError>, widget: Option<&WidgetConfiguration>) {
    let color = widget
        .and_then(|w| w.custom_theme.as_ref())
        .and_then(|t| t.primary_color.as_deref());
    if let Some(color) = color {
        let hex = color.strip_prefix('#').unwrap_or("");
        if !color.starts_with('#')
            || !matches!(hex.len(), 3 | 6)
            || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            errors.push(FieldError::new(
                "spec.configuration.widgetConfiguration.customTheme.primaryColor",
                format!("{color:?} is not a hex colour: use #rgb or #rrggbb (for example #007bff)"),
            ));
        }
    }
}

fn phone_configuration_id(
    errors: &mut Vec<FieldError>,
    config: &ChannelConfiguration,
) -> Option<String> {
    let name = config.phone_configuration_id.as_ref()?;
    if let Err(problem) = check_object_name(name) {
        errors.push(FieldError::new(
            "spec.configuration.phoneConfigurationId",
            format!("{name:?} is not the name of a PhoneConfiguration: {problem}"),
        ));
        return None;
    }
    Some(name.clone())
}

/// Kubernetes object names are lower-case RFC 1123 subdomains.
pub fn check_object_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("a name is 1 to 253 characters long".into());
    }
    if name.contains('_') {
        return Err("underscores are not allowed in Kubernetes names (write phone-xyz789, not phone_xyz789)".into());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit".into())
    }
}

/// An absolute http or https URL with a host and no user-info.
pub fn parse_web_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{text:?} has scheme {:?}: only http and https are allowed",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{text:?} holds user-info (user@ or user:password@): remove it"
        ));
    }
    Ok(url)
}

fn mobile_app(
    errors: &mut Vec<FieldError>,
    id: &str,
    config: &ChannelConfiguration,
) -> Option<ValidChannel> {
    let platform = config.platform?;
    if let Some(package) = &config.package_name
        && package != id
    {
        errors.push(FieldError::new(
            "spec.configuration.packageName",
            format!("must equal spec.channelIdentifier ({id:?}), not {package:?}"),
        ));
    }
    let problem = match platform {
        MobilePlatform::Android => check_android_package(id),
        MobilePlatform::Ios => check_ios_bundle_id(id),
    };
    if let Err(problem) = problem {
        errors.push(FieldError::new("spec.channelIdentifier", problem));
        return None;
    }
    config.package_name.as_ref()?;
    Some(ValidChannel::Mobile {
        app_id: id.to_string(),
        platform,
    })
}

/// Android package names: at least two dot-separated segments, each starting
/// with a letter and holding only letters, digits and underscores.
fn check_android_package(id: &str) -> Result<(), String> {
    let segments: Vec<&str> = id.split('.').collect();
    let segment_ok = |s: &&str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if segments.len() < 2 || !segments.iter().all(segment_ok) {
        return Err(format!(
            "{id:?} is not an Android package name: at least two segments separated by '.', each starting with a letter and holding only letters, digits and '_' (for example com.example.app)"
        ));
    }
    if id.len() > 255 {
        return Err(format!(
            "{id:?} is longer than the 255 characters Android allows"
        ));
    }
    Ok(())
}

/// iOS bundle IDs: reverse-DNS, at least two segments of letters, digits and hyphens.
fn check_ios_bundle_id(id: &str) -> Result<(), String> {
    let segments: Vec<&str> = id.split('.').collect();
    let segment_ok =
        |s: &&str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if segments.len() < 2 || !segments.iter().all(segment_ok) {
        return Err(format!(
            "{id:?} is not an iOS bundle ID: reverse-DNS form, at least two segments separated by '.', holding only letters, digits and '-' (for example com.example.app)"
        ));
    }
    if id.len() > 155 {
        return Err(format!(
            "{id:?} is longer than the 155 characters iOS allows"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
