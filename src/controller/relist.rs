//! Watches that start over with a full list after any failure. After an API
//! server outage a watch may resume where it stopped or be told `410 Gone`;
//! either way the cache may have missed changes, so the operator relists
//! (and `/readyz` fails from the failure until that list is in the cache:
//! [`crate::readiness::Readiness::track`]).

use std::pin::Pin;

use futures::{Stream, StreamExt};
use kube::{Api, Resource, runtime::watcher};
use serde::de::DeserializeOwned;

/// A watch of `api` that relists after every error: the error is passed on
/// (the consumer backs off on it), then a new watcher starts with a list.
pub fn relisting<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    type Watch<K> = Pin<Box<dyn Stream<Item = watcher::Result<watcher::Event<K>>> + Send>>;
    futures::stream::unfold(None::<Watch<K>>, move |current| {
        let api = api.clone();
        let config = config.clone();
        async move {
            let mut watch = current.unwrap_or_else(|| watcher::watcher(api, config).boxed());
            let event = watch.next().await?;
            let next = if event.is_ok() { Some(watch) } else { None };
            Some((event, next))
        }
    })
}
