//! The desired status of each kind, computed from what the cluster holds now
//! (the object, its PhoneConfiguration, the claim index). Pure: no I/O, the
//! current time is an input, so the same inputs always give the same status.

use std::ops::Deref;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::{
    core::api::{
        DeploymentChannelStatus, PhoneConfiguration, PhoneConfigurationReference,
        PhoneConfigurationStatus, find_condition,
    },
    core::field_error::{FieldError, join},
    core::validation::{ValidChannel, ValidPhoneConfiguration, validate_phone_configuration},
};

/// Condition types.
pub mod condition {
    /// The summary: True only when everything else holds.
    pub const READY: &str = "Ready";
    /// The spec passed the controller's semantic validation.
    pub const VALID: &str = "Valid";
    /// CALLS and SMS: the referenced PhoneConfiguration exists and fits.
    pub const PHONE_CONFIGURATION_RESOLVED: &str = "PhoneConfigurationResolved";
    /// Present (and True) only while the object cannot heal without a spec change.
    pub const STALLED: &str = "Stalled";
}

/// Condition reasons.
pub mod reason {
    pub const READY: &str = "Ready";
    pub const VALID: &str = "Valid";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const RESOLVED: &str = "Resolved";
    pub const PHONE_CONFIGURATION_NOT_FOUND: &str = "PhoneConfigurationNotFound";
    pub const PHONE_CONFIGURATION_NOT_READY: &str = "PhoneConfigurationNotReady";
    pub const CAPABILITY_MISSING: &str = "CapabilityMissing";
    pub const PHONE_NUMBER_MISMATCH: &str = "PhoneNumberMismatch";
    pub const IDENTIFIER_CONFLICT: &str = "IdentifierConflict";
}

/// The channel that holds a claim another channel also makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimHolder {
    pub namespace: String,
    pub name: String,
}

/// Everything a channel's status depends on.
pub(crate) struct ChannelFacts<'a> {
    /// `metadata.namespace` of the channel.
    pub namespace: &'a str,
    /// `metadata.generation` of the channel.
    pub generation: Option<i64>,
    /// The result of validating the channel's spec.
    pub validation: &'a Result<ValidChannel, Vec<FieldError>>,
    /// The PhoneConfiguration its reference names, when it exists.
    pub phone_configuration: Option<&'a PhoneConfiguration>,
    /// Why the PhoneConfiguration its reference names cannot be read, when
    /// it exists but cannot.
    pub phone_configuration_problem: Option<&'a FieldError>,
    /// Another channel that holds this channel's claim, when one does.
    pub claim_holder: Option<&'a ClaimHolder>,
}

/// A condition before timestamps and generation are filled in.
struct Verdict {
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

impl Verdict {
    fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// The status a DeploymentChannel should have, from everything it depends
/// on: its namespace, its spec (validated) and generation, the PhoneConfiguration its
/// reference names (`find_phone_configuration(namespace, name)`: found,
/// missing, or there but unreadable), the channel that holds its claim, its
/// previous status and the time. The controller, `validate` and the
/// benchmark all compute a channel's status here.
pub fn desired_channel_status<P: Deref<Target = PhoneConfiguration>>(
    (namespace, generation): (&str, Option<i64>),
    validation: &Result<ValidChannel, Vec<FieldError>>,
    find_phone_configuration: impl FnOnce(&str, &str) -> Result<Option<P>, FieldError>,
    claim_holder: Option<&ClaimHolder>,
    previous: Option<&DeploymentChannelStatus>,
    now: &Time,
) -> DeploymentChannelStatus {
    let lookup = validation
        .as_ref()
        .ok()
        .and_then(ValidChannel::phone_configuration)
        .map(|name| find_phone_configuration(namespace, name));
    let (phone_configuration, problem) = match lookup {
        Some(Ok(found)) => (found, None),
        Some(Err(problem)) => (None, Some(problem)),
        None => (None, None),
    };
    let facts = ChannelFacts {
        namespace,
        generation,
        validation,
        phone_configuration: phone_configuration.as_deref(),
        phone_configuration_problem: problem.as_ref(),
        claim_holder,
    };
    channel_status(&facts, previous, now)
}

/// The status a DeploymentChannel should have, from its facts.
pub(crate) fn channel_status(
    facts: &ChannelFacts<'_>,
    previous: Option<&DeploymentChannelStatus>,
    now: &Time,
) -> DeploymentChannelStatus {
    let mut verdicts = Vec::new();
    let mut phone_configuration = None;
    match facts.validation {
        Err(errors) => {
            let message = join(errors);
            verdicts.push(Verdict::new(
                condition::READY,
                false,
                reason::INVALID_SPEC,
                &message,
            ));
            verdicts.push(Verdict::new(
                condition::VALID,
                false,
                reason::INVALID_SPEC,
                &message,
            ));
            verdicts.push(Verdict::new(
                condition::STALLED,
                true,
                reason::INVALID_SPEC,
                message,
            ));
        }
        Ok(channel) => {
            let resolution = channel
                .phone_configuration()
                .map(|name| resolve_phone_configuration(channel, name, facts));
            let ready = if let Some(holder) = facts.claim_holder {
                Verdict::new(
                    condition::READY,
                    false,
                    reason::IDENTIFIER_CONFLICT,
                    conflict_message(channel, holder, facts.namespace),
                )
            } else {
                match &resolution {
                    Some(Err(failure)) => {
                        Verdict::new(condition::READY, false, failure.reason, &failure.message)
                    }
                    _ => Verdict::new(
                        condition::READY,
                        true,
                        reason::READY,
                        "the channel is ready",
                    ),
                }
            };
            verdicts.push(ready);
            verdicts.push(Verdict::new(
                condition::VALID,
                true,
                reason::VALID,
                "the spec is valid",
            ));
            match resolution {
                Some(Ok(resolved)) => {
                    verdicts.push(Verdict::new(
                        condition::PHONE_CONFIGURATION_RESOLVED,
                        true,
                        reason::RESOLVED,
                        format!(
                            "using PhoneConfiguration {:?} ({})",
                            resolved.name, resolved.phone_number
                        ),
                    ));
                    phone_configuration = Some(resolved);
                }
                Some(Err(failure)) => verdicts.push(Verdict::new(
                    condition::PHONE_CONFIGURATION_RESOLVED,
                    false,
                    failure.reason,
                    failure.message,
                )),
                None => {}
            }
        }
    }
    DeploymentChannelStatus {
        observed_generation: facts.generation,
        conditions: conditions(
            verdicts,
            previous
                .map(|p| p.conditions.as_slice())
                .unwrap_or_default(),
            facts.generation,
            now,
        ),
        phone_configuration,
    }
}

struct ResolutionFailure {
    reason: &'static str,
    message: String,
}

fn resolve_phone_configuration(
    channel: &ValidChannel,
    name: &str,
    facts: &ChannelFacts<'_>,
) -> Result<PhoneConfigurationReference, ResolutionFailure> {
    let fail = |reason, message: String| Err(ResolutionFailure { reason, message });
    if let (None, Some(problem)) = (facts.phone_configuration, facts.phone_configuration_problem) {
        return fail(
            reason::PHONE_CONFIGURATION_NOT_READY,
            format!("PhoneConfiguration {name:?} cannot be read: {problem}"),
        );
    }
    let Some(config) = facts.phone_configuration else {
        let place = if facts.namespace.is_empty() {
            "in the same namespace".to_string()
        } else {
            format!("in namespace {:?}", facts.namespace)
        };
        return fail(
            reason::PHONE_CONFIGURATION_NOT_FOUND,
            format!("PhoneConfiguration {name:?} does not exist {place}"),
        );
    };
    let valid = match validate_phone_configuration(&config.spec) {
        Ok(valid) => valid,
        Err(errors) => {
            return fail(
                reason::PHONE_CONFIGURATION_NOT_READY,
                format!(
                    "PhoneConfiguration {name:?} is not ready: {}",
                    join(&errors)
                ),
            );
        }
    };
    let ty = channel.deployment_type();
    if let Some(needed) = channel.required_capability()
        && !valid.capabilities.contains(&needed)
    {
        return fail(
            reason::CAPABILITY_MISSING,
            format!(
                "PhoneConfiguration {name:?} lacks the {} capability that {ty} channels need",
                needed.as_str()
            ),
        );
    }
    let number = channel
        .phone_number()
        .expect("a channel with a PhoneConfiguration has a number");
    if *number != valid.number {
        return fail(
            reason::PHONE_NUMBER_MISMATCH,
            format!(
                "PhoneConfiguration {name:?} has phone number {}, but spec.channelIdentifier is {number}",
                valid.number
            ),
        );
    }
    Ok(PhoneConfigurationReference {
        name: name.to_string(),
        uid: config.metadata.uid.clone().unwrap_or_default(),
        phone_number: valid.number.to_string(),
    })
}

fn conflict_message(channel: &ValidChannel, holder: &ClaimHolder, namespace: &str) -> String {
    let claim = channel.claim();
    let by = if holder.namespace == namespace {
        format!("DeploymentChannel {:?}", holder.name)
    } else {
        "a DeploymentChannel in another namespace".to_string()
    };
    format!(
        "{} channelIdentifier {} is already claimed by {by}, which is older; this channel becomes ready when that one is deleted or changed",
        claim.deployment_type, claim.identifier
    )
}

/// The status a PhoneConfiguration should have.
pub fn phone_configuration_status(
    generation: Option<i64>,
    validation: &Result<ValidPhoneConfiguration, Vec<FieldError>>,
    bound_channels: usize,
    previous: Option<&PhoneConfigurationStatus>,
    now: &Time,
) -> PhoneConfigurationStatus {
    let verdicts = match validation {
        Ok(_) => vec![
            Verdict::new(
                condition::READY,
                true,
                reason::READY,
                "the phone configuration is ready",
            ),
            Verdict::new(condition::VALID, true, reason::VALID, "the spec is valid"),
        ],
        Err(errors) => {
            let message = join(errors);
            vec![
                Verdict::new(condition::READY, false, reason::INVALID_SPEC, &message),
                Verdict::new(condition::VALID, false, reason::INVALID_SPEC, &message),
                Verdict::new(condition::STALLED, true, reason::INVALID_SPEC, message),
            ]
        }
    };
    PhoneConfigurationStatus {
        observed_generation: generation,
        conditions: conditions(
            verdicts,
            previous
                .map(|p| p.conditions.as_slice())
                .unwrap_or_default(),
            generation,
            now,
        ),
        bound_channels: i32::try_from(bound_channels).unwrap_or(i32::MAX),
    }
}

/// Turns verdicts into conditions; a condition whose status did not change
/// keeps its `lastTransitionTime`.
fn conditions(
    verdicts: Vec<Verdict>,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    verdicts
        .into_iter()
        .map(|v| {
            let status = if v.status { "True" } else { "False" };
            let last_transition_time = find_condition(previous, v.type_)
                .filter(|c| c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: v.type_.to_string(),
                status: status.to_string(),
                reason: v.reason.to_string(),
                message: v.message,
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

/// A change of a channel's readiness worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyTransition {
    /// It was Ready and is not any more.
    Lost { reason: String, message: String },
    /// It was not Ready and now is.
    Recovered,
}

/// Whether going from `previous` to `next` is a readiness change worth an
/// Event. A first status (no Ready condition before) is not: applying ten
/// thousand channels must not mean ten thousand Events.
pub fn ready_transition(previous: &[Condition], next: &[Condition]) -> Option<ReadyTransition> {
    let before = find_condition(previous, condition::READY)?;
    let after = find_condition(next, condition::READY)?;
    match (before.status.as_str(), after.status.as_str()) {
        ("True", "False") => Some(ReadyTransition::Lost {
            reason: after.reason.clone(),
            message: after.message.clone(),
        }),
        ("False", "True") => Some(ReadyTransition::Recovered),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
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
        let valid =
            validate_phone_configuration(&phone("+12125551234", vec![Capability::Voice]).spec);
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
}
