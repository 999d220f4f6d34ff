//! Reconciles one DeploymentChannel: validate, resolve, check the claim,
//! write status when it changed, and record an Event when readiness flips.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Resource,
    runtime::{
        events::{Event, EventType},
        reflector::ObjectRef,
    },
};
use tracing::{debug, info};

use super::{
    Context, Error, Kind, events,
    status_writer::{Current, Written},
};
use crate::{
    core::api::DeploymentChannel,
    core::desired_status::{ReadyTransition, desired_channel_status, ready_transition},
    core::index::ObjectKey,
    core::validation::validate_channel,
    operator::channel_cache::CachedChannel,
};

const KIND: &str = Kind::DeploymentChannel.as_str();

/// Brings one channel's status up to date with the cluster; answers when
/// to try again after a failure.
pub async fn reconcile_channel(channel: Arc<CachedChannel>, ctx: Arc<Context>) -> Option<Duration> {
    super::measured(&ctx, KIND, &channel.key, reconcile(&channel, &ctx)).await
}

async fn reconcile(channel: &CachedChannel, ctx: &Context) -> Result<Written, Error> {
    // References are answered from the PhoneConfiguration cache and claims
    // from the index: both complete, never a relist applied in part.
    let key = &channel.key;
    let claim_holder = ctx.settled_index(|index| index.claim_holder(key)).await;
    let validation = validate_channel(&channel.spec);
    let cached = channel.status.as_ref().map(|summary| Current {
        digest: summary.digest(),
        status: summary.previous(),
    });
    let previous = ctx
        .channel_status
        .current(key, &channel.resource_version, cached);
    let desired = desired_channel_status(
        (&key.namespace, channel.generation),
        &validation,
        |namespace, name| match ctx
            .phone_configurations
            .get(&ObjectRef::new(name).within(namespace))
        {
            Some(found) => Ok(Some(found)),
            // There, but its stored form cannot be read.
            None => ctx
                .unreadable_phone_configurations
                .problem(&ObjectKey::new(namespace, name))
                .map_or(Ok(None), Err),
        },
        claim_holder.as_ref(),
        previous.as_ref().map(|p| &p.status),
        &(ctx.clock)(),
    );
    let api: Api<DeploymentChannel> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let written = ctx
        .channel_status
        .write(
            &api,
            key,
            &channel.resource_version,
            previous.as_ref().map(|p| p.digest),
            &desired,
        )
        .await?;
    ctx.reset_failures(key);
    match written {
        Written::Unchanged => {
            debug!(channel = %key, "status unchanged");
            return Ok(written);
        }
        Written::Gone => return Ok(written),
        Written::Patched => {}
    }
    let ready = desired
        .conditions
        .first()
        .map(|c| (c.status.as_str(), c.reason.as_str()));
    debug!(channel = %key, ?ready, "status written");
    let previous_conditions = previous
        .as_ref()
        .map(|p| p.status.conditions.as_slice())
        .unwrap_or_default();
    if let Some(change) = ready_transition(previous_conditions, &desired.conditions) {
        publish(ctx, channel, change).await;
    }
    Ok(written)
}

/// Records a readiness change as a Kubernetes Event. A failure to record is
/// logged, not retried: the status already says the same.
async fn publish(ctx: &Context, channel: &CachedChannel, change: ReadyTransition) {
    let key = &channel.key;
    let (event, reason) = match change {
        ReadyTransition::Lost { reason, message } => {
            info!(channel = %key, %reason, %message, "channel is no longer ready");
            (
                Event {
                    type_: EventType::Warning,
                    reason: "NotReady".into(),
                    note: Some(events::note(&format!("{reason}: {message}"))),
                    action: "Reconcile".into(),
                    secondary: None,
                },
                "NotReady",
            )
        }
        ReadyTransition::Recovered => {
            info!(channel = %key, "channel is ready again");
            (
                Event {
                    type_: EventType::Normal,
                    reason: "Ready".into(),
                    note: Some("the channel is ready again".into()),
                    action: "Reconcile".into(),
                    secondary: None,
                },
                "Ready",
            )
        }
    };
    let regarding = ObjectReference {
        api_version: Some(DeploymentChannel::api_version(&()).into()),
        kind: Some(KIND.into()),
        namespace: Some(key.namespace.to_string()),
        name: Some(key.name.to_string()),
        uid: channel.uid.as_ref().map(ToString::to_string),
        resource_version: Some(channel.resource_version.to_string()),
        field_path: None,
    };
    events::publish(
        ctx,
        Kind::DeploymentChannel,
        key,
        &event,
        &regarding,
        reason,
    )
    .await;
}
