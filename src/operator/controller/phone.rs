//! Reconciles one PhoneConfiguration: validate, count bound channels, write
//! status when it changed.

use std::{sync::Arc, time::Duration};

use kube::{Api, ResourceExt};
use tracing::debug;

use super::{
    Context, Error, Kind,
    status_writer::{Current, Written},
};
use crate::{
    core::api::PhoneConfiguration, core::desired_status::phone_configuration_status,
    core::index::ObjectKey, core::validation::validate_phone_configuration,
};

const KIND: &str = Kind::PhoneConfiguration.as_str();

/// Brings one PhoneConfiguration's status up to date with the cluster.
pub async fn reconcile_phone_configuration(
    phone: Arc<PhoneConfiguration>,
    ctx: Arc<Context>,
) -> Option<Duration> {
    let key = ObjectKey::of(phone.as_ref()).unwrap_or_else(|| ObjectKey::new("", ""));
    super::measured(&ctx, KIND, &key, reconcile(&phone, &ctx)).await
}

async fn reconcile(phone: &PhoneConfiguration, ctx: &Context) -> Result<Written, Error> {
    // boundChannels comes from the index: complete, never a relist applied in part.
    let key = ObjectKey::of(phone).ok_or(Error::MissingMetadata("name"))?;
    let bound = ctx.settled_index(|index| index.bound_channels(&key)).await;
    let namespace = phone
        .namespace()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let validation = validate_phone_configuration(&phone.spec);
    let version = phone
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or_default();
    let previous = ctx
        .phone_status
        .current(&key, version, phone.status.clone().map(Current::full));
    let desired = phone_configuration_status(
        phone.metadata.generation,
        &validation,
        bound,
        previous.as_ref().map(|p| &p.status),
        &(ctx.clock)(),
    );
    let api: Api<PhoneConfiguration> = Api::namespaced(ctx.client.clone(), &namespace);
    let written = ctx
        .phone_status
        .write(
            &api,
            &key,
            version,
            previous.as_ref().map(|p| p.digest),
            &desired,
        )
        .await?;
    ctx.reset_failures(&key);
    if written == Written::Patched {
        debug!(phone_configuration = %key, bound, "status written");
    }
    Ok(written)
}
