//! Why a channel is or is not ready and what to do next, for `status`: turns
//! objects read from the cluster into reports, rendered as a tree for people
//! ([`render`]) or as JSON for scripts (the reports' `Serialize`). Pure: the
//! caller fetches, and passes the current time in.

pub mod advice;
pub mod render;

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::Event,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use serde::Serialize;

use crate::{
    core::api::{DeploymentChannel, DeploymentType, PhoneConfiguration, find_condition},
    core::desired_status::condition,
    core::index::{Index, ObjectKey},
    core::validation::{validate_channel, validate_phone_configuration},
};
use advice::{ChannelSituation, ConditionReason};

/// How many of the latest Events a channel report shows.
pub const EVENTS_SHOWN: usize = 5;

/// The outcome of reading one object the report needs.
#[derive(Clone, Debug)]
pub enum Fetched<T> {
    Found(T),
    NotFound,
    /// It could not be read (for example, the user may not): why, for a person.
    Unreadable(String),
}

/// A namespaced object's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectName {
    pub namespace: String,
    pub name: String,
}

impl ObjectName {
    fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// An object's Ready condition, as far as a reader can tell.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadyConditionView {
    /// `True`, `False`, or `Unknown` when there is no Ready condition yet.
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// When Ready last changed.
    pub since: Option<Time>,
    /// Whether the status describes the object's current generation.
    pub current: bool,
}

impl ReadyConditionView {
    fn of(
        conditions: &[Condition],
        generation: Option<i64>,
        observed_generation: Option<i64>,
    ) -> Self {
        let ready = find_condition(conditions, condition::READY);
        Self {
            status: ready.map_or("Unknown", |c| c.status.as_str()).to_string(),
            reason: ready.map(|c| c.reason.clone()),
            message: ready.map(|c| c.message.clone()),
            since: ready.map(|c| c.last_transition_time.clone()),
            current: ready.is_some() && observed_generation == generation,
        }
    }

    fn is_ready(&self) -> bool {
        self.status == "True"
    }
}

/// One status condition.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Time,
}

fn condition_views(conditions: &[Condition]) -> Vec<ConditionView> {
    conditions
        .iter()
        .map(|c| ConditionView {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: c.last_transition_time.clone(),
        })
        .collect()
}

/// Whether a referenced object was there to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Lookup {
    Found,
    NotFound,
    Unreadable,
}

/// The PhoneConfiguration a channel names.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneConfigurationView {
    pub name: String,
    pub lookup: Lookup,
    pub phone_number: Option<String>,
    pub provider: Option<String>,
    pub capabilities: Vec<String>,
    pub ready: Option<ReadyConditionView>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// Who else claims a channel's identifier.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictView {
    /// The claimed identifier in normal form.
    pub identifier: String,
    /// The holder, when it is in the same namespace.
    pub holder: Option<ObjectName>,
    /// The holder is in a namespace the report does not name.
    pub held_in_another_namespace: bool,
}

/// One Event about an object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
    pub last_seen: Option<Time>,
}

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
    pub waiting: Vec<ObjectName>,
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
    let id = ObjectName::of(&channel.metadata);
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
        namespace: id.namespace,
        name: id.name,
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

fn unknown_reason(ready: &ReadyConditionView) -> String {
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
) -> (Option<ConflictView>, Vec<ObjectName>) {
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
            holder: holder.map(|h| ObjectName {
                namespace: h.namespace.to_string(),
                name: h.name.to_string(),
            }),
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
            .map(|k| ObjectName {
                namespace: k.namespace.to_string(),
                name: k.name.to_string(),
            })
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
    let id = ObjectName::of(&pc.metadata);
    let status = pc.status.as_ref();
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let observed_generation = status.and_then(|s| s.observed_generation);
    let ready = ReadyConditionView::of(conditions, pc.metadata.generation, observed_generation);
    let mut unreadable = Vec::new();
    let mut bound_channels: Vec<BoundChannel> = match channels {
        Ok(channels) => channels
            .iter()
            .filter(|c| {
                referenced_phone_configuration(c) == Some(id.name.as_str())
                    && c.metadata.namespace.as_deref() == Some(id.namespace.as_str())
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
        namespace: id.namespace,
        name: id.name,
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

/// How many objects are ready, not ready, or not yet reported on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub total: usize,
    pub ready: usize,
    pub not_ready: usize,
    /// No status for the current generation yet.
    pub pending: usize,
}

impl Counts {
    fn add(&mut self, readiness: &ReadyConditionView) {
        self.total += 1;
        if !readiness.current {
            self.pending += 1;
        } else if readiness.is_ready() {
            self.ready += 1;
        } else {
            self.not_ready += 1;
        }
    }
}

/// Counts of one channel type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeCounts {
    #[serde(rename = "type")]
    pub deployment_type: DeploymentType,
    #[serde(flatten)]
    pub counts: Counts,
}

/// A not-ready channel in the summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotReadyChannel {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub deployment_type: DeploymentType,
    pub message: String,
    /// Not ready since.
    pub since: Option<Time>,
}

/// The not-ready channels with one reason, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonGroup {
    pub reason: String,
    pub channels: Vec<NotReadyChannel>,
}

/// Everything `status` without a kind says.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The namespace summarised; `None` for all namespaces.
    pub namespace: Option<String>,
    pub channels: Counts,
    /// Every channel type, in a fixed order.
    pub by_type: Vec<TypeCounts>,
    /// Groups ordered by their oldest member, oldest first.
    pub not_ready: Vec<ReasonGroup>,
    /// `None` when they could not be read.
    pub phone_configurations: Option<Counts>,
    pub unreadable: Vec<String>,
}

/// Builds the summary of a namespace (`None`: all namespaces).
pub fn summary(
    namespace: Option<&str>,
    channels: &[DeploymentChannel],
    phone_configurations: &Result<Vec<PhoneConfiguration>, String>,
) -> Summary {
    let mut total = Counts::default();
    let types = [
        DeploymentType::Calls,
        DeploymentType::Sms,
        DeploymentType::Web,
        DeploymentType::Mobile,
    ];
    let mut by_type: Vec<TypeCounts> = types
        .iter()
        .map(|t| TypeCounts {
            deployment_type: *t,
            counts: Counts::default(),
        })
        .collect();
    let mut groups: BTreeMap<String, Vec<NotReadyChannel>> = BTreeMap::new();
    for channel in channels {
        let status = channel.status.as_ref();
        let readiness = ReadyConditionView::of(
            status.map(|s| s.conditions.as_slice()).unwrap_or_default(),
            channel.metadata.generation,
            status.and_then(|s| s.observed_generation),
        );
        total.add(&readiness);
        if let Some(t) = by_type
            .iter_mut()
            .find(|t| t.deployment_type == channel.spec.deployment_type)
        {
            t.counts.add(&readiness);
        }
        if readiness.current && !readiness.is_ready() {
            let id = ObjectName::of(&channel.metadata);
            groups
                .entry(readiness.reason.clone().unwrap_or_default())
                .or_default()
                .push(NotReadyChannel {
                    namespace: id.namespace,
                    name: id.name,
                    deployment_type: channel.spec.deployment_type,
                    message: readiness.message.clone().unwrap_or_default(),
                    since: readiness.since.clone(),
                });
        }
    }
    let mut not_ready: Vec<ReasonGroup> = groups
        .into_iter()
        .map(|(reason, mut channels)| {
            channels.sort_by(|a, b| {
                (&a.since, &a.namespace, &a.name).cmp(&(&b.since, &b.namespace, &b.name))
            });
            ReasonGroup { reason, channels }
        })
        .collect();
    not_ready
        .sort_by(|a, b| (&a.channels[0].since, &a.reason).cmp(&(&b.channels[0].since, &b.reason)));
    let (phone_configurations, unreadable) = match phone_configurations {
        Ok(list) => {
            let mut counts = Counts::default();
            for pc in list {
                let status = pc.status.as_ref();
                counts.add(&ReadyConditionView::of(
                    status.map(|s| s.conditions.as_slice()).unwrap_or_default(),
                    pc.metadata.generation,
                    status.and_then(|s| s.observed_generation),
                ));
            }
            (Some(counts), Vec::new())
        }
        Err(why) => (None, vec![why.clone()]),
    };
    Summary {
        namespace: namespace.map(str::to_string),
        channels: total,
        by_type,
        not_ready,
        phone_configurations,
        unreadable,
    }
}

#[cfg(test)]
mod tests;
