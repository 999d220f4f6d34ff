//! Watches that start over with a full list after any failure, and whether
//! each cache is whole. After an API server outage a watch may resume where
//! it stopped or be told `410 Gone`; either way the cache may have missed
//! changes, so the operator relists, and `/readyz` fails from the failure
//! until that list is complete.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{Stream, StreamExt};
use kube::{Api, Resource, runtime::watcher};
use serde::de::DeserializeOwned;

use crate::metrics::Metrics;

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

/// Which caches are whole: listed, and no watch failure since.
pub struct Wholeness {
    channels: AtomicBool,
    phone_configurations: AtomicBool,
    metrics: Arc<Metrics>,
}

/// The caches.
#[derive(Clone, Copy, Debug)]
pub enum Cache {
    Channels,
    PhoneConfigurations,
}

impl Wholeness {
    /// Neither cache whole yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.caches_synced.set(0);
        Self {
            channels: AtomicBool::new(false),
            phone_configurations: AtomicBool::new(false),
            metrics,
        }
    }

    fn flag(&self, cache: Cache) -> &AtomicBool {
        match cache {
            Cache::Channels => &self.channels,
            Cache::PhoneConfigurations => &self.phone_configurations,
        }
    }

    /// Records whether `cache` is whole, and exports whether both are.
    pub fn set(&self, cache: Cache, whole: bool) {
        self.flag(cache).store(whole, Ordering::SeqCst);
        self.metrics.caches_synced.set(i64::from(self.all()));
    }

    /// Whether both caches are whole.
    pub fn all(&self) -> bool {
        self.channels.load(Ordering::SeqCst) && self.phone_configurations.load(Ordering::SeqCst)
    }

    /// Passes a watch on, noting that `cache` is whole at the end of each
    /// list and broken at each failure.
    pub fn track<S, K>(
        self: &Arc<Self>,
        cache: Cache,
        events: S,
    ) -> impl Stream<Item = S::Item> + Send
    where
        S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
    {
        let wholeness = self.clone();
        events.inspect(move |event| match event {
            Ok(watcher::Event::InitDone) => wholeness.set(cache, true),
            Err(_) => wholeness.set(cache, false),
            Ok(_) => {}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wholeness_follows_lists_and_failures() {
        let metrics = Arc::new(Metrics::default());
        let wholeness = Arc::new(Wholeness::new(metrics.clone()));
        let events: Vec<watcher::Result<watcher::Event<()>>> = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitDone),
        ];
        wholeness.set(Cache::PhoneConfigurations, true);
        let mut seen = Vec::new();
        let tracked = wholeness.track(Cache::Channels, futures::stream::iter(events));
        futures::pin_mut!(tracked);
        while tracked.next().await.is_some() {
            seen.push(metrics.caches_synced.get());
        }
        assert_eq!(seen, vec![0, 1, 0, 0, 1]);
    }
}
