//! Reconciles one PhoneConfiguration: validate, count bound channels, write
//! status when it changed.

use std::sync::Arc;

use kube::{Api, ResourceExt, runtime::controller::Action};
use tracing::debug;

use super::{Context, Error, status_writer::Written};
use crate::{
    api::PhoneConfiguration, index::ObjectKey, status::phone_configuration_status,
    validation::validate_phone_configuration,
};

const KIND: &str = "PhoneConfiguration";

/// Brings one PhoneConfiguration's status up to date with the cluster.
pub async fn reconcile_phone_configuration(
    phone: Arc<PhoneConfiguration>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    super::measured(&ctx.metrics, KIND, reconcile(&phone, &ctx)).await
}

async fn reconcile(phone: &PhoneConfiguration, ctx: &Context) -> Result<Written, Error> {
    // boundChannels comes from the index, complete once the channel cache has its first list.
    ctx.readiness.channels().await;
    let key = ObjectKey::of(phone).ok_or(Error::MissingMetadata("name"))?;
    let namespace = phone
        .namespace()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let validation = validate_phone_configuration(&phone.spec);
    let bound = ctx.index().bound_channels(&key);
    let previous = ctx.phone_status.current(phone, phone.status.as_ref());
    let desired = phone_configuration_status(
        phone.metadata.generation,
        &validation,
        bound,
        previous.as_ref(),
        &(ctx.clock)(),
    );
    let api: Api<PhoneConfiguration> = Api::namespaced(ctx.client.clone(), &namespace);
    let written = ctx
        .phone_status
        .write(&api, phone, previous.as_ref(), &desired)
        .await?;
    ctx.reset_failures(&key);
    if written == Written::Patched {
        debug!(phone_configuration = %key, bound, "status written");
    }
    Ok(written)
}
