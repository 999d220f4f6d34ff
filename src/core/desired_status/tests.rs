use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;

/// Whether the Ready condition is True.
fn is_ready(conditions: &[Condition]) -> bool {
    find_condition(conditions, condition::READY).is_some_and(|c| c.status == "True")
}
use crate::{
    core::api::{
        Capability, ChannelConfiguration, DeploymentChannelSpec, DeploymentType,
        PhoneConfigurationSpec,
    },
    core::validation::validate_channel,
};

fn at(second: i64) -> Time {
    Time(jiff::Timestamp::from_second(second).unwrap())
}

fn calls_spec(number: &str) -> DeploymentChannelSpec {
    DeploymentChannelSpec {
        deployment_type: DeploymentType::Calls,
        channel_name: None,
        recording_enabled: true,
        channel_identifier: number.into(),
        configuration: ChannelConfiguration {
            phone_configuration_id: Some("phone-xyz789".into()),
            ..Default::default()
        },
    }
}

fn phone(number: &str, capabilities: Vec<Capability>) -> PhoneConfiguration {
    PhoneConfiguration {
        metadata: ObjectMeta {
            name: Some("phone-xyz789".into()),
            namespace: Some("team-a".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        },
        spec: PhoneConfigurationSpec {
            phone_number: number.into(),
            provider: "twilio".into(),
            capabilities,
            description: None,
        },
        status: None,
    }
}

fn facts<'a>(
    validation: &'a Result<ValidChannel, Vec<FieldError>>,
    phone: Option<&'a PhoneConfiguration>,
    holder: Option<&'a ClaimHolder>,
) -> ChannelFacts<'a> {
    ChannelFacts {
        namespace: "team-a",
        generation: Some(3),
        validation,
        phone_configuration: phone,
        phone_configuration_problem: None,
        claim_holder: holder,
    }
}

/// (type, status, reason) of each condition, in order.
fn summary(status: &DeploymentChannelStatus) -> Vec<(String, String, String)> {
    status
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn triple(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

#[test]
fn resolved_calls_channel_is_ready() {
    let validation = validate_channel(&calls_spec("+12125551234"));
    let pc = phone("+12125551234", vec![Capability::Voice]);
    let status = channel_status(&facts(&validation, Some(&pc), None), None, &at(100));
    assert_eq!(
        summary(&status),
        vec![
            triple("Ready", "True", "Ready"),
            triple("Valid", "True", "Valid"),
            triple("PhoneConfigurationResolved", "True", "Resolved"),
        ]
    );
    assert_eq!(status.observed_generation, Some(3));
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3) && c.last_transition_time == at(100))
    );
    assert_eq!(
        status.phone_configuration,
        Some(PhoneConfigurationReference {
            name: "phone-xyz789".into(),
            uid: "uid-1".into(),
            phone_number: "+12125551234".into()
        })
    );
}

#[test]
fn missing_phone_configuration_is_not_stalled() {
    let validation = validate_channel(&calls_spec("+12125551234"));
    let status = channel_status(&facts(&validation, None, None), None, &at(100));
    assert_eq!(
        summary(&status),
        vec![
            triple("Ready", "False", "PhoneConfigurationNotFound"),
            triple("Valid", "True", "Valid"),
            triple(
                "PhoneConfigurationResolved",
                "False",
                "PhoneConfigurationNotFound"
            ),
        ]
    );
    assert_eq!(
        status.conditions[0].message,
        "PhoneConfiguration \"phone-xyz789\" does not exist in namespace \"team-a\""
    );
    assert_eq!(status.phone_configuration, None);
}

#[test]
fn capability_and_number_mismatches() {
    let validation = validate_channel(&calls_spec("+12125551234"));
    let sms_only = phone("+12125551234", vec![Capability::Sms]);
    let status = channel_status(&facts(&validation, Some(&sms_only), None), None, &at(1));
    assert_eq!(status.conditions[0].reason, "CapabilityMissing");
    assert_eq!(
        status.conditions[0].message,
        "PhoneConfiguration \"phone-xyz789\" lacks the VOICE capability that CALLS channels need"
    );

    let other_number = phone("+12125550000", vec![Capability::Voice]);
    let status = channel_status(&facts(&validation, Some(&other_number), None), None, &at(1));
    assert_eq!(status.conditions[0].reason, "PhoneNumberMismatch");
    assert!(
        status.conditions[0].message.contains("+12125550000")
            && status.conditions[0].message.contains("+12125551234")
    );

    let invalid = phone("+99912345678", vec![Capability::Voice]);
    let status = channel_status(&facts(&validation, Some(&invalid), None), None, &at(1));
    assert_eq!(status.conditions[0].reason, "PhoneConfigurationNotReady");
    assert!(status.conditions[0].message.contains("spec.phoneNumber"));
    assert!(find_condition(&status.conditions, "Stalled").is_none());
}

#[test]
fn invalid_spec_is_stalled_with_field_paths() {
    let validation = validate_channel(&calls_spec("+99912345678"));
    let status = channel_status(&facts(&validation, None, None), None, &at(1));
    assert_eq!(
        summary(&status),
        vec![
            triple("Ready", "False", "InvalidSpec"),
            triple("Valid", "False", "InvalidSpec"),
            triple("Stalled", "True", "InvalidSpec"),
        ]
    );
    assert!(
        status.conditions[1]
            .message
            .starts_with("spec.channelIdentifier: ")
    );
}

#[test]
fn conflict_names_the_holder_only_in_the_same_namespace() {
    let validation = validate_channel(&calls_spec("+12125551234"));
    let pc = phone("+12125551234", vec![Capability::Voice]);
    let same = ClaimHolder {
        namespace: "team-a".into(),
        name: "older".into(),
    };
    let status = channel_status(&facts(&validation, Some(&pc), Some(&same)), None, &at(1));
    assert_eq!(status.conditions[0].reason, "IdentifierConflict");
    assert!(
        status.conditions[0]
            .message
            .contains("DeploymentChannel \"older\""),
        "{}",
        status.conditions[0].message
    );
    // The PhoneConfiguration is still resolved: only the claim is contested.
    assert_eq!(status.conditions[2].status, "True");

    let other = ClaimHolder {
        namespace: "team-b".into(),
        name: "secret-name".into(),
    };
    let status = channel_status(&facts(&validation, Some(&pc), Some(&other)), None, &at(1));
    assert!(!status.conditions[0].message.contains("secret-name"));
    assert!(!status.conditions[0].message.contains("team-b"));
    assert!(status.conditions[0].message.contains("another namespace"));
}

#[test]
fn last_transition_time_is_kept_while_status_holds() {
    let validation = validate_channel(&calls_spec("+12125551234"));
    let first = channel_status(&facts(&validation, None, None), None, &at(100));
    // Still not found later: same status, times kept.
    let again = channel_status(&facts(&validation, None, None), Some(&first), &at(200));
    assert_eq!(again, first);
    // The PhoneConfiguration arrives: Ready and PhoneConfigurationResolved flip, Valid keeps its time.
    let pc = phone("+12125551234", vec![Capability::Voice]);
    let healed = channel_status(&facts(&validation, Some(&pc), None), Some(&again), &at(300));
    let time_of = |s: &DeploymentChannelStatus, t: &str| {
        find_condition(&s.conditions, t)
            .unwrap()
            .last_transition_time
            .clone()
    };
    assert_eq!(time_of(&healed, "Ready"), at(300));
    assert_eq!(time_of(&healed, "PhoneConfigurationResolved"), at(300));
    assert_eq!(time_of(&healed, "Valid"), at(100));
    // A different reason with the same status keeps the time too.
    let wrong_cap = phone("+12125551234", vec![Capability::Sms]);
    let other_reason = channel_status(
        &facts(&validation, Some(&wrong_cap), None),
        Some(&first),
        &at(400),
    );
    assert_eq!(time_of(&other_reason, "Ready"), at(100));
    assert_eq!(other_reason.conditions[0].reason, "CapabilityMissing");
}

#[test]
fn stalled_disappears_when_the_spec_is_fixed() {
    let bad = validate_channel(&calls_spec("+99912345678"));
    let stalled = channel_status(&facts(&bad, None, None), None, &at(1));
    let good = validate_channel(&calls_spec("+12125551234"));
    let pc = phone("+12125551234", vec![Capability::Voice]);
    let fixed = channel_status(&facts(&good, Some(&pc), None), Some(&stalled), &at(2));
    assert!(find_condition(&fixed.conditions, "Stalled").is_none());
    assert!(is_ready(&fixed.conditions));
}

#[test]
fn phone_configuration_status_follows_validation() {
    let valid = validate_phone_configuration(&phone("+12125551234", vec![Capability::Voice]).spec);
    let status = phone_configuration_status(Some(2), &valid, 3, None, &at(5));
    assert_eq!(status.bound_channels, 3);
    assert_eq!(status.observed_generation, Some(2));
    assert!(is_ready(&status.conditions));
    let invalid = validate_phone_configuration(&phone("+99912345678", vec![]).spec);
    let status = phone_configuration_status(Some(3), &invalid, 0, Some(&status), &at(6));
    let types: Vec<_> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        types,
        vec![("Ready", "False"), ("Valid", "False"), ("Stalled", "True")]
    );
    assert!(
        status.conditions[0].message.contains("spec.phoneNumber")
            && status.conditions[0].message.contains("spec.capabilities")
    );
}

#[test]
fn readiness_changes_worth_an_event() {
    let validation = validate_channel(&calls_spec("+12125551234"));
    let pc = phone("+12125551234", vec![Capability::Voice]);
    let ready = channel_status(&facts(&validation, Some(&pc), None), None, &at(1)).conditions;
    let lost = channel_status(&facts(&validation, None, None), None, &at(2)).conditions;
    assert_eq!(
        ready_transition(&[], &ready),
        None,
        "a first Ready is not an event"
    );
    assert_eq!(ready_transition(&[], &lost), None);
    assert_eq!(ready_transition(&ready, &ready), None);
    assert_eq!(
        ready_transition(&ready, &lost),
        Some(ReadyTransition::Lost {
            reason: "PhoneConfigurationNotFound".into(),
            message: lost[0].message.clone()
        })
    );
    assert_eq!(
        ready_transition(&lost, &ready),
        Some(ReadyTransition::Recovered)
    );
    assert_eq!(ready_transition(&lost, &lost), None);
}

#[test]
fn an_unreadable_phone_configuration_is_not_ready_and_says_why() {
    let validation = validate_channel(&calls_spec("+12125551234"));
    let problem = FieldError::required("spec.phoneNumber", "");
    let mut facts = facts(&validation, None, None);
    facts.phone_configuration_problem = Some(&problem);
    let status = channel_status(&facts, None, &at(0));
    assert_eq!(
        summary(&status),
        vec![
            triple("Ready", "False", "PhoneConfigurationNotReady"),
            triple("Valid", "True", "Valid"),
            triple(
                "PhoneConfigurationResolved",
                "False",
                "PhoneConfigurationNotReady"
            ),
        ]
    );
    assert_eq!(
        status.conditions[0].message,
        r#"PhoneConfiguration "phone-xyz789" cannot be read: spec.phoneNumber: Required value"#
    );
}

#[test]
fn an_unreadable_object_is_invalid_and_stalled_with_the_problem() {
    let problem = FieldError::required("spec.channelIdentifier", "");
    let validation = Err(vec![problem]);
    let status = channel_status(&facts(&validation, None, None), None, &at(0));
    assert_eq!(
        summary(&status),
        vec![
            triple("Ready", "False", "InvalidSpec"),
            triple("Valid", "False", "InvalidSpec"),
            triple("Stalled", "True", "InvalidSpec"),
        ]
    );
    for condition in &status.conditions {
        assert_eq!(condition.message, "spec.channelIdentifier: Required value");
    }
}
