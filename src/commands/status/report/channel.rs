//! `status channel NAME`: why a channel is or is not ready, and what to do next.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::Event, apimachinery::pkg::apis::meta::v1::Time};
use serde::Serialize;

use super::{
    EVENTS_SHOWN, Fetched,
    advice::{self, ChannelSituation, ConditionReason},
    views::{
        ConditionView, ConflictView, EventView, Lookup, PhoneConfigurationView, ReadyConditionView,
        condition_views, key_of,
    },
};
use crate::core::{
    api::{DeploymentChannel, DeploymentType, PhoneConfiguration, find_condition},
    desired_status::condition,
    index::{Index, ObjectKey},
    validation::validate_channel,
};

/// Everything `status channel NAME` says.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelReport {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub deployment_type: DeploymentType,
    pub identifier: String,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub ready: ReadyConditionView,
    pub conditions: Vec<ConditionView>,
    /// CALLS and SMS: the PhoneConfiguration the spec names.
    pub phone_configuration: Option<PhoneConfigurationView>,
    /// While the Ready reason is IdentifierConflict.
    pub conflict: Option<ConflictView>,
    /// Same-namespace channels waiting for this channel's identifier.
    pub waiting: Vec<ObjectKey>,
    /// The latest Events, oldest first.
    pub events: Vec<EventView>,
    /// What could not be read, each with why.
    pub unreadable: Vec<String>,
    pub next_step: String,
}

/// What `status channel NAME` reads.
pub struct ChannelInputs {
    pub channel: DeploymentChannel,
    /// The PhoneConfiguration its spec names; `None` when it names none.
    pub phone_configuration: Option<Fetched<PhoneConfiguration>>,
    /// The channels of its namespace, for identifier conflicts.
    pub neighbours: Result<Vec<DeploymentChannel>, String>,
    /// Events about the channel.
    pub events: Result<Vec<Event>, String>,
}

/// The reference a CALLS or SMS channel's spec makes, valid or not.
pub fn referenced_phone_configuration(channel: &DeploymentChannel) -> Option<&str> {
    matches!(
        channel.spec.deployment_type,
        DeploymentType::Calls | DeploymentType::Sms
    )
    .then_some(channel.spec.configuration.phone_configuration_id.as_deref())
    .flatten()
}

/// Builds the report of one channel.
pub fn channel_report(inputs: &ChannelInputs) -> ChannelReport {
    let channel = &inputs.channel;
    let id = key_of(&channel.metadata);
    let conditions = channel
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let observed_generation = channel.status.as_ref().and_then(|s| s.observed_generation);
    let ready =
        ReadyConditionView::of(conditions, channel.metadata.generation, observed_generation);
    let reason = ready.reason.as_deref().and_then(ConditionReason::from_code);
    let mut unreadable = Vec::new();

    let phone_configuration = referenced_phone_configuration(channel).map(|name| {
        let fetched = inputs.phone_configuration.as_ref();
        phone_configuration_view(name, fetched)
    });
    if let Some(Fetched::Unreadable(why)) = &inputs.phone_configuration {
        unreadable.push(why.clone());
    }
    let found_phone = match &inputs.phone_configuration {
        Some(Fetched::Found(pc)) => Some(pc),
        _ => None,
    };

    let (conflict, waiting) = match &inputs.neighbours {
        Ok(neighbours) => claims(channel, neighbours, reason),
        Err(why) => {
            unreadable.push(why.clone());
            let conflict =
                (reason == Some(ConditionReason::IdentifierConflict)).then(|| ConflictView {
                    identifier: channel.spec.channel_identifier.clone(),
                    holder: None,
                    held_in_another_namespace: false,
                });
            (conflict, Vec::new())
        }
    };

    let events = match &inputs.events {
        Ok(events) => latest_events(events),
        Err(why) => {
            unreadable.push(why.clone());
            Vec::new()
        }
    };

    let spec_errors = validate_channel(&channel.spec).err().unwrap_or_default();
    let situation = ChannelSituation {
        namespace: &id.namespace,
        deployment_type: channel.spec.deployment_type,
        identifier: &channel.spec.channel_identifier,
        phone_configuration_name: referenced_phone_configuration(channel),
        phone_configuration: found_phone,
        spec_errors: &spec_errors,
        holder: conflict.as_ref().and_then(|c| c.holder.as_ref()),
    };
    let next_step = match (reason, &ready) {
        (_, r) if r.reason.is_none() => {
            "wait: the operator has not reported on this channel yet; if this lasts, check that the operator runs and watches this namespace".to_string()
        }
        (Some(reason), r) if r.current => advice::channel_next_step(reason, &situation),
        (Some(_), _) => format!(
            "wait: the operator has not yet reported on generation {} of this channel; if this lasts, check that the operator runs",
            channel.metadata.generation.unwrap_or_default()
        ),
        (None, r) => unknown_reason(r),
    };

    ChannelReport {
        kind: "DeploymentChannel",
        namespace: id.namespace.to_string(),
        name: id.name.to_string(),
        deployment_type: channel.spec.deployment_type,
        identifier: channel.spec.channel_identifier.clone(),
        generation: channel.metadata.generation,
        observed_generation,
        ready,
        conditions: condition_views(conditions),
        phone_configuration,
        conflict,
        waiting,
        events,
        unreadable,
        next_step,
    }
}

pub(super) fn unknown_reason(ready: &ReadyConditionView) -> String {
    format!(
        "the operator reports reason {:?}, which this version of the tool does not know: read the message, or use the tool of the operator's version",
        ready.reason.as_deref().unwrap_or_default()
    )
}

fn phone_configuration_view(
    name: &str,
    fetched: Option<&Fetched<PhoneConfiguration>>,
) -> PhoneConfigurationView {
    let mut view = PhoneConfigurationView {
        name: name.to_string(),
        lookup: Lookup::NotFound,
        phone_number: None,
        provider: None,
        capabilities: Vec::new(),
        ready: None,
        error: None,
    };
    match fetched {
        Some(Fetched::Found(pc)) => {
            let status = pc.status.as_ref();
            view.lookup = Lookup::Found;
            view.phone_number = Some(pc.spec.phone_number.clone());
            view.provider = Some(pc.spec.provider.clone());
            view.capabilities = pc
                .spec
                .capabilities
                .iter()
                .map(|c| c.as_str().to_string())
                .collect();
            view.ready = Some(ReadyConditionView::of(
                status.map(|s| s.conditions.as_slice()).unwrap_or_default(),
                pc.metadata.generation,
                status.and_then(|s| s.observed_generation),
            ));
        }
        Some(Fetched::Unreadable(why)) => {
            view.lookup = Lookup::Unreadable;
            view.error = Some(why.clone());
        }
        Some(Fetched::NotFound) | None => {}
    }
    view
}

/// The conflict over `channel`'s identifier and the channels waiting for it,
/// by the controller's own rule (the oldest claim wins), among `neighbours`.
fn claims(
    channel: &DeploymentChannel,
    neighbours: &[DeploymentChannel],
    reason: Option<ConditionReason>,
) -> (Option<ConflictView>, Vec<ObjectKey>) {
    let Some(key) = ObjectKey::of(channel) else {
        return (None, Vec::new());
    };
    let mut index = Index::default();
    let mut by_key = BTreeMap::new();
    for other in neighbours
        .iter()
        .filter(|c| ObjectKey::of(*c) != Some(key.clone()))
    {
        index.apply(other);
        if let Some(k) = ObjectKey::of(other) {
            by_key.insert(k, other);
        }
    }
    index.apply(channel);
    let identifier = validate_channel(&channel.spec)
        .map(|valid| valid.claim().identifier.to_string())
        .unwrap_or_else(|_| channel.spec.channel_identifier.clone());
    let conflict = (reason == Some(ConditionReason::IdentifierConflict)).then(|| {
        // A same-namespace candidate that is itself in conflict is not the
        // holder: the holder is older still, in another namespace.
        let holder = index
            .claim_holder(&key)
            .map(|h| ObjectKey::new(h.namespace, h.name))
            .filter(|h| {
                by_key.get(h).is_some_and(|c| {
                    let conditions = c
                        .status
                        .as_ref()
                        .map(|s| s.conditions.as_slice())
                        .unwrap_or_default();
                    find_condition(conditions, condition::READY).is_none_or(|r| {
                        ConditionReason::from_code(&r.reason)
                            != Some(ConditionReason::IdentifierConflict)
                    })
                })
            });
        ConflictView {
            identifier: identifier.clone(),
            held_in_another_namespace: holder.is_none(),
            holder: holder.map(|h| ObjectKey::new(&h.namespace, &h.name)),
        }
    });
    let waiting = if conflict.is_some() {
        Vec::new()
    } else {
        by_key
            .keys()
            .filter(|k| {
                index
                    .claim_holder(k)
                    .is_some_and(|h| *h.namespace == *key.namespace && *h.name == *key.name)
            })
            .cloned()
            .collect()
    };
    (conflict, waiting)
}

/// The latest Events, oldest first.
fn latest_events(events: &[Event]) -> Vec<EventView> {
    let mut views: Vec<EventView> = events
        .iter()
        .map(|e| EventView {
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1),
            last_seen: e
                .series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| Time(t.0))
                .or_else(|| e.last_timestamp.clone())
                .or_else(|| e.event_time.as_ref().map(|t| Time(t.0)))
                .or_else(|| e.first_timestamp.clone())
                .or_else(|| e.metadata.creation_timestamp.clone()),
        })
        .collect();
    views.sort_by(|a, b| a.last_seen.cmp(&b.last_seen));
    let skip = views.len().saturating_sub(EVENTS_SHOWN);
    views.split_off(skip)
}
