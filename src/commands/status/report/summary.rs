//! `status` without a kind: how many channels and PhoneConfigurations are
//! ready, and the not-ready channels grouped by reason.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use super::views::{ReadyConditionView, key_of};
use crate::core::api::{DeploymentChannel, DeploymentType, PhoneConfiguration};

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
            let id = key_of(&channel.metadata);
            groups
                .entry(readiness.reason.clone().unwrap_or_default())
                .or_default()
                .push(NotReadyChannel {
                    namespace: id.namespace.to_string(),
                    name: id.name.to_string(),
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
