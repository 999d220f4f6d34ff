//! What the reports show of the objects they read: views shared by the
//! channel, PhoneConfiguration and summary reports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde::Serialize;

use crate::core::{api::find_condition, desired_status::condition, index::ObjectKey};

/// The key of an object as read; empty parts where the metadata has none.
pub(super) fn key_of(meta: &ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
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
    pub(super) fn of(
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

    pub(super) fn is_ready(&self) -> bool {
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

pub(super) fn condition_views(conditions: &[Condition]) -> Vec<ConditionView> {
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
    pub holder: Option<ObjectKey>,
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
