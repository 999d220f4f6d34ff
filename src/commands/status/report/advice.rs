//! What to do next, keyed by the reason codes the controller writes. Every
//! code in [`crate::core::desired_status::reason`] is a [`ConditionReason`], and every `ConditionReason` has
//! advice by an exhaustive match, so a new reason cannot ship without it.

use crate::{
    core::api::{DeploymentType, PhoneConfiguration},
    core::desired_status::reason,
    core::field_error::FieldError,
    core::index::ObjectKey,
    core::validation::validate_phone_configuration,
};

/// A reason code the controller writes on a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConditionReason {
    Ready,
    Valid,
    InvalidSpec,
    Resolved,
    PhoneConfigurationNotFound,
    PhoneConfigurationNotReady,
    CapabilityMissing,
    PhoneNumberMismatch,
    IdentifierConflict,
}

impl ConditionReason {
    /// Every reason.
    pub const ALL: [ConditionReason; 9] = [
        ConditionReason::Ready,
        ConditionReason::Valid,
        ConditionReason::InvalidSpec,
        ConditionReason::Resolved,
        ConditionReason::PhoneConfigurationNotFound,
        ConditionReason::PhoneConfigurationNotReady,
        ConditionReason::CapabilityMissing,
        ConditionReason::PhoneNumberMismatch,
        ConditionReason::IdentifierConflict,
    ];

    /// The code as the controller writes it.
    pub fn code(self) -> &'static str {
        match self {
            ConditionReason::Ready => reason::READY,
            ConditionReason::Valid => reason::VALID,
            ConditionReason::InvalidSpec => reason::INVALID_SPEC,
            ConditionReason::Resolved => reason::RESOLVED,
            ConditionReason::PhoneConfigurationNotFound => reason::PHONE_CONFIGURATION_NOT_FOUND,
            ConditionReason::PhoneConfigurationNotReady => reason::PHONE_CONFIGURATION_NOT_READY,
            ConditionReason::CapabilityMissing => reason::CAPABILITY_MISSING,
            ConditionReason::PhoneNumberMismatch => reason::PHONE_NUMBER_MISMATCH,
            ConditionReason::IdentifierConflict => reason::IDENTIFIER_CONFLICT,
        }
    }

    /// The reason a code names; `None` for a code this build does not know.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// What the advice for a channel may refer to.
pub struct ChannelSituation<'a> {
    pub namespace: &'a str,
    pub deployment_type: DeploymentType,
    /// The channel's identifier as written in its spec.
    pub identifier: &'a str,
    /// The PhoneConfiguration its spec names, when it names one.
    pub phone_configuration_name: Option<&'a str>,
    /// That PhoneConfiguration, when it could be read.
    pub phone_configuration: Option<&'a PhoneConfiguration>,
    /// What is wrong with the channel's spec, by the controller's own checks.
    pub spec_errors: &'a [FieldError],
    /// The same-namespace channel holding its identifier, when known.
    pub holder: Option<&'a ObjectKey>,
}

/// One line: what to do next about a channel whose Ready reason is `reason`.
pub fn channel_next_step(reason: ConditionReason, s: &ChannelSituation<'_>) -> String {
    let config = s.phone_configuration_name.unwrap_or("(unnamed)");
    let capability = match s.deployment_type {
        DeploymentType::Sms => "SMS",
        _ => "VOICE",
    };
    match reason {
        ConditionReason::Ready | ConditionReason::Valid | ConditionReason::Resolved => {
            "nothing to do: the channel is ready".to_string()
        }
        ConditionReason::InvalidSpec => match s.spec_errors {
            [] => "fix the field named in the message, then apply the channel again".to_string(),
            errors => format!("fix {}, then apply the channel again", fields(errors)),
        },
        ConditionReason::PhoneConfigurationNotFound => format!(
            "create PhoneConfiguration {config:?} in namespace {:?} with phoneNumber {} and the {capability} capability, or set spec.configuration.phoneConfigurationId to an existing one",
            s.namespace, s.identifier
        ),
        ConditionReason::PhoneConfigurationNotReady => {
            let problems = s
                .phone_configuration
                .and_then(|pc| validate_phone_configuration(&pc.spec).err())
                .unwrap_or_default();
            if problems.is_empty() {
                format!(
                    "fix PhoneConfiguration {config:?}: its own status says what is wrong"
                )
            } else {
                format!("fix {} of PhoneConfiguration {config:?}", fields(&problems))
            }
        }
        ConditionReason::CapabilityMissing => format!(
            "add the {capability} capability to spec.capabilities of PhoneConfiguration {config:?}, or point spec.configuration.phoneConfigurationId at one that has it"
        ),
        ConditionReason::PhoneNumberMismatch => {
            let theirs = s
                .phone_configuration
                .map(|pc| pc.spec.phone_number.as_str())
                .unwrap_or("its number");
            format!(
                "change spec.phoneNumber of PhoneConfiguration {config:?} to {}, or this channel's spec.channelIdentifier to {theirs}",
                s.identifier
            )
        }
        ConditionReason::IdentifierConflict => match s.holder {
            Some(holder) => format!(
                "delete DeploymentChannel {:?} or change its spec.channelIdentifier, or give this channel another identifier; it becomes ready by itself once {:?} lets go",
                holder.name, holder.name
            ),
            None => "the holder is a DeploymentChannel in another namespace: ask its owners to delete or change it, or give this channel another spec.channelIdentifier".to_string(),
        },
    }
}

/// One line: what to do next about a PhoneConfiguration whose Ready reason is
/// `reason`, given its spec problems and how many bound channels are not ready.
pub fn phone_configuration_next_step(
    reason: ConditionReason,
    spec_errors: &[FieldError],
    channels_not_ready: usize,
) -> String {
    match reason {
        ConditionReason::InvalidSpec => match spec_errors {
            [] => "fix the field named in the message, then apply it again".to_string(),
            errors => format!("fix {}, then apply it again", fields(errors)),
        },
        ConditionReason::Ready
        | ConditionReason::Valid
        | ConditionReason::Resolved
        | ConditionReason::PhoneConfigurationNotFound
        | ConditionReason::PhoneConfigurationNotReady
        | ConditionReason::CapabilityMissing
        | ConditionReason::PhoneNumberMismatch
        | ConditionReason::IdentifierConflict => match channels_not_ready {
            0 => "nothing to do: the PhoneConfiguration is ready".to_string(),
            1 => "the PhoneConfiguration is ready; 1 bound channel is not: see its reason above"
                .to_string(),
            n => format!(
                "the PhoneConfiguration is ready; {n} bound channels are not: see their reasons above"
            ),
        },
    }
}

/// `spec.a (problem)` for each problem, joined.
fn fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} ({})", e.field, e.message))
        .collect::<Vec<_>>()
        .join(" and ")
}
