//! Reconciles one DeploymentChannel: validate, resolve, check the claim,
//! write status when it changed, and record an Event when readiness flips.

use std::sync::Arc;

use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        controller::Action,
        events::{Event, EventType},
        reflector::ObjectRef,
    },
};
use tracing::{debug, info, warn};

use super::{Context, Error, status_writer::Written};
use crate::{
    api::DeploymentChannel,
    index::ObjectKey,
    metrics::EventLabels,
    status::{ReadinessChange, desired_channel_status, readiness_change},
    validation::validate_channel,
};

const KIND: &str = "DeploymentChannel";

/// Brings one channel's status up to date with the cluster.
pub async fn reconcile_channel(
    channel: Arc<DeploymentChannel>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    super::measured(&ctx.metrics, KIND, reconcile(&channel, &ctx)).await
}

async fn reconcile(channel: &DeploymentChannel, ctx: &Context) -> Result<Written, Error> {
    // References are answered from the PhoneConfiguration cache: wait for its first full list.
    ctx.readiness.phone_configurations().await;
    let key = ObjectKey::of(channel).ok_or(Error::MissingMetadata("name"))?;
    let namespace = channel
        .namespace()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let validation = validate_channel(&channel.spec);
    let claim_holder = ctx.index().claim_holder(&key);
    let previous = ctx.channel_status.current(channel, channel.status.as_ref());
    let desired = desired_channel_status(
        channel,
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
        previous.as_ref(),
        &(ctx.clock)(),
    );
    let api: Api<DeploymentChannel> = Api::namespaced(ctx.client.clone(), &namespace);
    let written = ctx
        .channel_status
        .write(&api, channel, previous.as_ref(), &desired)
        .await?;
    ctx.reset_failures(&key);
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
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if let Some(change) = readiness_change(previous_conditions, &desired.conditions) {
        publish(ctx, channel, &key, change).await;
    }
    Ok(written)
}

/// Records a readiness change as a Kubernetes Event. A failure to record is
/// logged, not retried: the status already says the same.
async fn publish(
    ctx: &Context,
    channel: &DeploymentChannel,
    key: &ObjectKey,
    change: ReadinessChange,
) {
    let (event, reason) = match change {
        ReadinessChange::Lost { reason, message } => {
            info!(channel = %key, %reason, %message, "channel is no longer ready");
            (
                Event {
                    type_: EventType::Warning,
                    reason: "NotReady".into(),
                    note: Some(truncate(&format!("{reason}: {message}"), 1024)),
                    action: "Reconcile".into(),
                    secondary: None,
                },
                "NotReady",
            )
        }
        ReadinessChange::Recovered => {
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
    match ctx.recorder.publish(&event, &channel.object_ref(&())).await {
        Ok(()) => {
            ctx.metrics
                .events
                .get_or_create(&EventLabels { reason })
                .inc();
        }
        Err(error) => warn!(channel = %key, %error, "could not record the Event"),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
