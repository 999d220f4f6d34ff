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
