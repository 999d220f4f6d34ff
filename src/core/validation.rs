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
    use parking_lot::Mutex;

    use foldhash::HashSet;

    const CAPACITY: usize = 1 << 16;

    static NUMBERS: Mutex<Option<HashSet<Box<str>>>> = Mutex::new(None);

    pub fn contains(number: &str) -> bool {
        let numbers = NUMBERS.lock();
        numbers.as_ref().is_some_and(|n| n.contains(number))
    }

    pub fn insert(number: &str) {
        let mut numbers = NUMBERS.lock();
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
            ValidChannel::Web { url, .. } => web_claim(url),
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
    if let Some(c) = spec
        .provider
        .chars()
        .find(|c| crate::core::printable::is_unsafe(*c))
    {
        errors.push(FieldError::new(
            "spec.provider",
            format!(
                "holds the control or invisible character U+{:04X}: remove it",
                c as u32
            ),
        ));
    }
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

/// The normal form of a WEB identifier, which two channels claim when it is
/// the same: the URL as the `url` crate normalises it (lower-case scheme
/// and host, IDNA hosts in punycode, default port dropped), and then
/// without what does not change the page a browser opens: the host's
/// trailing dot, an empty query (`?`), the fragment (`#...`), a trailing
/// slash; percent-encoding in one form (unreserved characters decoded, hex
/// digits upper-case). Hosts in different scripts stay different claims.
pub fn web_claim(url: &Url) -> String {
    let mut url = url.clone();
    url.set_fragment(None);
    if url.query() == Some("") {
        url.set_query(None);
    }
    if let Some(host) = url.host_str()
        && host.len() > 1
        && host.ends_with('.')
    {
        let trimmed = host.trim_end_matches('.').to_string();
        let _ = url.set_host(Some(&trimmed));
    }
    let path = normal_percent_encoding(url.path());
    url.set_path(&path);
    if let Some(query) = url.query().map(normal_percent_encoding) {
        url.set_query(Some(&query));
    }
    url.as_str().trim_end_matches('/').to_string()
}

/// Percent-encoding in one form: `%XX` of an unreserved character decoded,
/// every other `%xx` written with upper-case hex digits.
fn normal_percent_encoding(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = &text[i + 1..i + 3];
            let value = u8::from_str_radix(hex, 16).expect("two hex digits");
            if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                out.push(value as char);
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            let c = text[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Whether a URL's host mixes scripts in one label (Latin letters beside
/// Cyrillic, Greek, ...), the mark of a host that imitates another.
pub fn host_mixes_scripts(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let (unicode, _) = idna::domain_to_unicode(host);
    unicode.split('.').any(|label| {
        let ascii = label.chars().any(|c| c.is_ascii_alphabetic());
        let other = label.chars().any(|c| c.is_alphabetic() && !c.is_ascii());
        ascii && other
    })
}

/// An absolute http or https URL with a host and no user-info.
pub fn parse_web_url(text: &str) -> Result<Url, String> {
    if let Some(c) = text.chars().find(|c| crate::core::printable::is_unsafe(*c)) {
        return Err(format!(
            "{:?} holds the control or invisible character U+{:04X}: remove it",
            crate::core::printable::escape(text),
            c as u32
        ));
    }
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
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::core::api::{CustomTheme, WidgetPosition};

    fn calls(id: &str, phone: Option<&str>) -> DeploymentChannelSpec {
        DeploymentChannelSpec {
            deployment_type: DeploymentType::Calls,
            channel_name: Some("Customer Support Line".into()),
            recording_enabled: true,
            channel_identifier: id.into(),
            configuration: ChannelConfiguration {
                phone_configuration_id: phone.map(Into::into),
                ..Default::default()
            },
        }
    }

    fn web(id: &str) -> DeploymentChannelSpec {
        DeploymentChannelSpec {
            deployment_type: DeploymentType::Web,
            channel_name: None,
            recording_enabled: true,
            channel_identifier: id.into(),
            configuration: ChannelConfiguration::default(),
        }
    }

    fn mobile(
        id: &str,
        package: Option<&str>,
        platform: Option<MobilePlatform>,
    ) -> DeploymentChannelSpec {
        DeploymentChannelSpec {
            deployment_type: DeploymentType::Mobile,
            channel_name: None,
            recording_enabled: false,
            channel_identifier: id.into(),
            configuration: ChannelConfiguration {
                package_name: package.map(Into::into),
                platform,
                ..Default::default()
            },
        }
    }

    fn fields(result: Result<ValidChannel, Vec<FieldError>>) -> Vec<String> {
        result
            .expect_err("expected the spec to be invalid")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    /// Asserts exactly one error, on `field`, whose message contains `needle`.
    fn assert_one(result: Result<ValidChannel, Vec<FieldError>>, field: &str, needle: &str) {
        let errors = result.expect_err("expected the spec to be invalid");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].field, field, "{errors:#?}");
        assert!(
            errors[0].message.contains(needle),
            "{:?} lacks {needle:?}",
            errors[0].message
        );
    }

    #[test]
    fn seed_calls_example_is_valid() {
        let valid = validate_channel(&calls("+12125551234", Some("phone-xyz789"))).unwrap();
        assert_eq!(
            valid,
            ValidChannel::Calls {
                number: E164::parse("+12125551234").unwrap(),
                phone_configuration: "phone-xyz789".into()
            }
        );
        assert_eq!(valid.required_capability(), Some(Capability::Voice));
        assert_eq!(&*valid.claim().identifier, "+12125551234");
    }

    #[test]
    fn seed_web_example_is_valid_and_defaults_to_unified() {
        let mut spec = web("https://example.com");
        spec.configuration.widget_configuration = Some(WidgetConfiguration {
            position: Some(WidgetPosition::Right),
            custom_theme: Some(CustomTheme {
                primary_color: Some("#007bff".into()),
            }),
        });
        match validate_channel(&spec).unwrap() {
            ValidChannel::Web {
                communication_type,
                widget,
                ..
            } => {
                assert_eq!(communication_type, CommunicationType::Unified);
                assert!(widget.is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn valid_phone_numbers_across_plans() {
        for number in [
            "+12125551234",
            "+447911123456",
            "+4930123456",
            "+81312345678",
            "+61212345678",
        ] {
            assert!(E164::parse(number).is_ok(), "{number}");
        }
    }

    #[test]
    fn a_number_checked_again_gets_the_same_answer_from_the_memo() {
        // A number of its own, so that no other test fills the memo with it.
        let number = "+12125550199";
        let first = E164::parse(number).unwrap();
        assert!(super::known_valid::contains(number), "remembered as valid");
        assert_eq!(E164::parse(number).unwrap(), first);
        // An invalid number is never remembered, however often it is checked.
        for _ in 0..2 {
            assert!(E164::parse("+99912345670").is_err());
            assert!(!super::known_valid::contains("+99912345670"));
        }
    }

    #[test]
    fn phone_numbers_no_plan_assigns_are_invalid() {
        for number in ["+99912345678", "+10005551234", "+4412", "+1212555123"] {
            let err = E164::parse(number).unwrap_err();
            assert!(err.contains("not a valid phone number"), "{number}: {err}");
        }
    }

    #[test]
    fn phone_numbers_outside_e164_shape_are_invalid() {
        for number in [
            "12125551234",
            "+0123",
            "+1",
            "+1234567890123456",
            "+1 212 555 1234",
            "+1-212",
            "",
        ] {
            let err = E164::parse(number).unwrap_err();
            assert!(err.contains("not in E.164 format"), "{number}: {err}");
        }
    }

    #[test]
    fn calls_and_sms_need_a_valid_number_and_reference() {
        assert_one(
            validate_channel(&calls("+99912345678", Some("p"))),
            "spec.channelIdentifier",
            "not a valid phone number",
        );
        assert_one(
            validate_channel(&calls("+12125551234", None)),
            "spec.configuration.phoneConfigurationId",
            "is required when deploymentType is CALLS",
        );
        let mut sms = calls("+12125551234", Some("p"));
        sms.deployment_type = DeploymentType::Sms;
        assert_eq!(
            validate_channel(&sms).unwrap().required_capability(),
            Some(Capability::Sms)
        );
        // Every problem at once.
        assert_eq!(
            fields(validate_channel(&calls("2125551234", None))),
            vec![
                "spec.configuration.phoneConfigurationId",
                "spec.channelIdentifier"
            ]
        );
    }

    #[test]
    fn phone_configuration_id_must_be_an_object_name() {
        assert_one(
            validate_channel(&calls("+12125551234", Some("phone_xyz789"))),
            "spec.configuration.phoneConfigurationId",
            "underscores are not allowed",
        );
        for bad in ["Phone", "-p", "p-", "a..b", "a b", ""] {
            assert_one(
                validate_channel(&calls("+12125551234", Some(bad))),
                "spec.configuration.phoneConfigurationId",
                "is not the name of a PhoneConfiguration",
            );
        }
        assert!(validate_channel(&calls("+12125551234", Some(&"a".repeat(254)))).is_err());
        assert!(validate_channel(&calls("+12125551234", Some("a.b-c.d1"))).is_ok());
    }

    #[test]
    fn web_urls() {
        for good in [
            "https://example.com",
            "http://example.com:8080/chat?x=1#top",
            "https://EXAMPLE.com/",
        ] {
            assert!(validate_channel(&web(good)).is_ok(), "{good}");
        }
        let cases = [
            ("ftp://example.com", "only http and https"),
            ("example.com", "not a valid URL"),
            ("https://user:pw@example.com", "user-info"),
            ("https://user@example.com", "user-info"),
            ("mailto:someone@example.com", "only http and https"),
            ("https://", "not a valid URL"),
        ];
        for (bad, needle) in cases {
            assert_one(
                validate_channel(&web(bad)),
                "spec.channelIdentifier",
                needle,
            );
        }
    }

    #[test]
    fn web_claims_are_normalised() {
        let claim = |id: &str| validate_channel(&web(id)).unwrap().claim();
        assert_eq!(claim("https://Example.COM/"), claim("https://example.com"));
        assert_eq!(
            claim("https://example.com/chat/"),
            claim("https://example.com/chat")
        );
        assert_eq!(
            claim("https://example.com:443"),
            claim("https://example.com")
        );
        assert_ne!(claim("http://example.com"), claim("https://example.com"));
        for same in [
            "https://example.com.",
            "https://example.com./",
            "https://example.com/?",
            "https://example.com/#x",
            "https://example.com#",
            "https://EXAMPLE.com.:443/?#top",
        ] {
            assert_eq!(claim(same), claim("https://example.com"), "{same}");
        }
        assert_eq!(
            claim("https://example.com/%7Echat"),
            claim("https://example.com/~chat")
        );
        assert_eq!(
            claim("https://example.com/a%2fb"),
            claim("https://example.com/a%2Fb")
        );
        assert_ne!(
            claim("https://example.com/a%2Fb"),
            claim("https://example.com/a/b")
        );
        assert_eq!(
            claim("https://example.com/?q=%61"),
            claim("https://example.com/?q=a")
        );
        // A host in another script (Cyrillic 'е') is another claim.
        assert_ne!(
            claim("https://\u{435}xample.com"),
            claim("https://example.com")
        );
        assert!(host_mixes_scripts(
            &parse_web_url("https://\u{435}xample.com").unwrap()
        ));
        assert!(!host_mixes_scripts(
            &parse_web_url("https://example.com").unwrap()
        ));
        assert!(!host_mixes_scripts(
            &parse_web_url("https://\u{4f8b}\u{5b50}.jp").unwrap()
        ));
        assert_eq!(
            &*claim("https://example.com").identifier,
            "https://example.com"
        );
    }

    #[test]
    fn phone_claims_include_the_type() {
        let call = validate_channel(&calls("+12125551234", Some("p")))
            .unwrap()
            .claim();
        let mut sms = calls("+12125551234", Some("p"));
        sms.deployment_type = DeploymentType::Sms;
        assert_ne!(call, validate_channel(&sms).unwrap().claim());
    }

    #[test]
    fn web_widget_colour() {
        let mut spec = web("https://example.com");
        for (color, ok) in [
            ("#fff", true),
            ("#007BFF", true),
            ("007bff", false),
            ("#12345", false),
            ("#ggg", false),
        ] {
            spec.configuration.widget_configuration = Some(WidgetConfiguration {
                position: None,
                custom_theme: Some(CustomTheme {
                    primary_color: Some(color.into()),
                }),
            });
            match validate_channel(&spec) {
                Ok(_) => assert!(ok, "{color} accepted"),
                Err(_) if !ok => assert_one(
                    validate_channel(&spec),
                    "spec.configuration.widgetConfiguration.customTheme.primaryColor",
                    "hex colour",
                ),
                Err(e) => panic!("{color} refused: {e:?}"),
            }
        }
    }

    #[test]
    fn mobile_apps_per_platform() {
        let ok = |id: &str, p| validate_channel(&mobile(id, Some(id), Some(p))).is_ok();
        assert!(ok("com.example.app", MobilePlatform::Android));
        assert!(ok("com.example.my_app", MobilePlatform::Android));
        assert!(!ok("com.example.my-app", MobilePlatform::Android));
        assert!(!ok("com.1example.app", MobilePlatform::Android));
        assert!(ok("com.example.my-app", MobilePlatform::Ios));
        assert!(ok("com.Example.App2", MobilePlatform::Ios));
        assert!(!ok("com.example.my_app", MobilePlatform::Ios));
        for platform in [MobilePlatform::Ios, MobilePlatform::Android] {
            assert!(!ok("app", platform));
            assert!(!ok("com..app", platform));
            assert!(!ok(".com.app", platform));
        }
        assert_one(
            validate_channel(&mobile(
                "com.example.app",
                Some("com.example.other"),
                Some(MobilePlatform::Ios),
            )),
            "spec.configuration.packageName",
            "must equal spec.channelIdentifier",
        );
        assert_one(
            validate_channel(&mobile("com.example.app", None, Some(MobilePlatform::Ios))),
            "spec.configuration.packageName",
            "is required",
        );
        assert_one(
            validate_channel(&mobile("com.example.app", Some("com.example.app"), None)),
            "spec.configuration.platform",
            "is required",
        );
    }

    #[test]
    fn fields_of_other_types_are_errors() {
        let mut spec = calls("+12125551234", Some("p"));
        spec.configuration.platform = Some(MobilePlatform::Ios);
        spec.configuration.communication_type = Some(CommunicationType::Unified);
        assert_eq!(
            fields(validate_channel(&spec)),
            vec![
                "spec.configuration.communicationType",
                "spec.configuration.platform"
            ]
        );
        let mut spec = web("https://example.com");
        spec.configuration.phone_configuration_id = Some("p".into());
        spec.configuration.package_name = Some("com.a.b".into());
        let errors = validate_channel(&spec).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "spec.configuration.phoneConfigurationId: is only allowed when deploymentType is CALLS or SMS, not WEB"
        );
        assert_eq!(errors[1].field, "spec.configuration.packageName");
    }

    #[test]
    fn channel_name_length() {
        let mut spec = web("https://example.com");
        spec.channel_name = Some(String::new());
        assert_one(validate_channel(&spec), "spec.channelName", "1 to 256");
        spec.channel_name = Some("é".repeat(256));
        assert!(validate_channel(&spec).is_ok());
        spec.channel_name = Some("x".repeat(257));
        assert_one(validate_channel(&spec), "spec.channelName", "not 257");
    }

    fn phone_spec(number: &str, capabilities: Vec<Capability>) -> PhoneConfigurationSpec {
        PhoneConfigurationSpec {
            phone_number: number.into(),
            provider: "twilio".into(),
            capabilities,
            description: None,
        }
    }

    #[test]
    fn phone_configurations() {
        let valid = validate_phone_configuration(&phone_spec(
            "+12125551234",
            vec![Capability::Sms, Capability::Voice],
        ))
        .unwrap();
        assert_eq!(valid.capabilities, vec![Capability::Voice, Capability::Sms]);
        let errors = validate_phone_configuration(&phone_spec("+99912345678", vec![])).unwrap_err();
        assert_eq!(
            errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            vec!["spec.phoneNumber", "spec.capabilities"]
        );
        let errors = validate_phone_configuration(&phone_spec(
            "+12125551234",
            vec![Capability::Sms, Capability::Sms],
        ))
        .unwrap_err();
        assert_eq!(errors[0].message, "lists a capability more than once");
        let mut spec = phone_spec("+12125551234", vec![Capability::Voice]);
        spec.provider = "p".repeat(64);
        spec.description = Some("d".repeat(1025));
        let errors = validate_phone_configuration(&spec).unwrap_err();
        assert_eq!(
            errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            vec!["spec.provider", "spec.description"]
        );
    }

    proptest! {
        #[test]
        fn e164_parse_never_panics_and_round_trips(text in "\\PC{0,20}") {
            if let Ok(number) = E164::parse(&text) {
                prop_assert_eq!(E164::parse(number.as_str()).unwrap(), number.clone());
                prop_assert!(is_e164_shape(number.as_str()));
            }
        }

        #[test]
        fn any_identifier_gives_a_verdict_with_field_paths(id in "\\PC{0,40}", ty in 0..4usize) {
            let mut spec = calls(&id, Some("p"));
            spec.deployment_type = [DeploymentType::Calls, DeploymentType::Sms, DeploymentType::Web, DeploymentType::Mobile][ty];
            spec.configuration = match spec.deployment_type {
                DeploymentType::Calls | DeploymentType::Sms => spec.configuration,
                DeploymentType::Web => ChannelConfiguration::default(),
                DeploymentType::Mobile => ChannelConfiguration { package_name: Some(id.clone()), platform: Some(MobilePlatform::Ios), ..Default::default() },
            };
            match validate_channel(&spec) {
                Ok(valid) => prop_assert_eq!(valid.deployment_type(), spec.deployment_type),
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    prop_assert!(errors.iter().all(|e| e.field.starts_with("spec.") && !e.message.is_empty()));
                }
            }
        }

        #[test]
        fn url_claims_are_stable_under_host_case_and_trailing_slash(host in "[a-z]{1,10}\\.(com|org|dev)", path in "(/[a-z0-9]{1,8}){0,3}") {
            let plain = validate_channel(&web(&format!("https://{host}{path}"))).unwrap().claim();
            let shouty = validate_channel(&web(&format!("https://{}{path}/", host.to_uppercase()))).unwrap().claim();
            prop_assert_eq!(&plain, &shouty);
            prop_assert!(!plain.identifier.ends_with('/'));
        }
    }
}
