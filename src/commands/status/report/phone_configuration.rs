//! `status phoneconfiguration NAME`: a PhoneConfiguration and the channels
//! bound to it.

use serde::Serialize;

use super::{
    advice::{self, ConditionReason},
    channel::{referenced_phone_configuration, unknown_reason},
    views::{ConditionView, ReadyConditionView, condition_views, key_of},
};
use crate::core::{
    api::{DeploymentChannel, DeploymentType, PhoneConfiguration},
    validation::validate_phone_configuration,
};

/// A channel bound to a PhoneConfiguration.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundChannel {
    pub name: String,
    #[serde(rename = "type")]
    pub deployment_type: DeploymentType,
    pub identifier: String,
    pub ready: ReadyConditionView,
}

/// Everything `status phoneconfiguration NAME` says.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneConfigurationReport {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub phone_number: String,
    pub provider: String,
    pub capabilities: Vec<String>,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub ready: ReadyConditionView,
    pub conditions: Vec<ConditionView>,
    /// The channels of its namespace that name it, by name.
    pub bound_channels: Vec<BoundChannel>,
    pub unreadable: Vec<String>,
    pub next_step: String,
}

/// Builds the report of one PhoneConfiguration from it and the channels of
/// its namespace (or why they could not be read).
pub fn phone_configuration_report(
    pc: &PhoneConfiguration,
    channels: &Result<Vec<DeploymentChannel>, String>,
) -> PhoneConfigurationReport {
    let id = key_of(&pc.metadata);
    let status = pc.status.as_ref();
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let observed_generation = status.and_then(|s| s.observed_generation);
    let ready = ReadyConditionView::of(conditions, pc.metadata.generation, observed_generation);
    let mut unreadable = Vec::new();
    let mut bound_channels: Vec<BoundChannel> = match channels {
        Ok(channels) => channels
            .iter()
            .filter(|c| {
                referenced_phone_configuration(c) == Some(&*id.name)
                    && c.metadata.namespace.as_deref() == Some(&*id.namespace)
            })
            .map(|c| BoundChannel {
                name: c.metadata.name.clone().unwrap_or_default(),
                deployment_type: c.spec.deployment_type,
                identifier: c.spec.channel_identifier.clone(),
                ready: ReadyConditionView::of(
                    c.status
                        .as_ref()
                        .map(|s| s.conditions.as_slice())
                        .unwrap_or_default(),
                    c.metadata.generation,
                    c.status.as_ref().and_then(|s| s.observed_generation),
                ),
            })
            .collect(),
        Err(why) => {
            unreadable.push(why.clone());
            Vec::new()
        }
    };
    bound_channels.sort_by(|a, b| a.name.cmp(&b.name));
    let not_ready = bound_channels
        .iter()
        .filter(|c| !c.ready.is_ready())
        .count();
    let spec_errors = validate_phone_configuration(&pc.spec)
        .err()
        .unwrap_or_default();
    let next_step = match ready.reason.as_deref().map(ConditionReason::from_code) {
        None => "wait: the operator has not reported on this PhoneConfiguration yet; if this lasts, check that the operator runs and watches this namespace".to_string(),
        Some(Some(reason)) if ready.current => {
            advice::phone_configuration_next_step(reason, &spec_errors, not_ready)
        }
        Some(Some(_)) => format!(
            "wait: the operator has not yet reported on generation {} of this PhoneConfiguration; if this lasts, check that the operator runs",
            pc.metadata.generation.unwrap_or_default()
        ),
        Some(None) => unknown_reason(&ready),
    };
    PhoneConfigurationReport {
        kind: "PhoneConfiguration",
        namespace: id.namespace.to_string(),
        name: id.name.to_string(),
        phone_number: pc.spec.phone_number.clone(),
        provider: pc.spec.provider.clone(),
        capabilities: pc
            .spec
            .capabilities
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        generation: pc.metadata.generation,
        observed_generation,
        ready,
        conditions: condition_views(conditions),
        bound_channels,
        unreadable,
        next_step,
    }
}
