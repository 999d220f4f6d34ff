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
mod tests;
