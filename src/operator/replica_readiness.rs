//! Whether this replica is ready: its caches hold a full list of both kinds
//! (a standby keeps them warm too, so it is ready on the same terms). The
//! ingest path marks the caches, and `/readyz` and the reconciles read the
//! same value.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use futures::{Stream, StreamExt};
use kube::runtime::watcher;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

/// The caches.
#[derive(Clone, Copy, Debug)]
pub enum WatchedCache {
    Channels,
    PhoneConfigurations,
}

/// The readiness of one replica, shared by the controllers and the HTTP server.
#[derive(Debug)]
pub struct ReplicaReadiness {
    channels: watch::Sender<bool>,
    phone_configurations: watch::Sender<bool>,
    /// The CRDs are installed and the permissions granted.
    requirements_met: AtomicBool,
    /// `caches_synced` on `/metrics`, kept equal to [`ReplicaReadiness::caches_whole`].
    synced_gauge: Gauge,
}

impl ReplicaReadiness {
    /// Caches not listed yet, not standing by; `synced_gauge` follows the caches.
    pub fn new(synced_gauge: Gauge) -> Self {
        synced_gauge.set(0);
        Self {
            channels: watch::Sender::new(false),
            phone_configurations: watch::Sender::new(false),
            requirements_met: AtomicBool::new(false),
            synced_gauge,
        }
    }

    /// The DeploymentChannel cache holds a full list.
    pub fn channels_listed(&self) {
        self.channels.send_replace(true);
        self.export();
    }

    /// The PhoneConfiguration cache holds a full list.
    pub fn phone_configurations_listed(&self) {
        self.phone_configurations.send_replace(true);
        self.export();
    }

    /// A watch failed: its cache may have missed changes until it relists.
    pub fn stale(&self, cache: WatchedCache) {
        match cache {
            WatchedCache::Channels => self.channels.send_replace(false),
            WatchedCache::PhoneConfigurations => self.phone_configurations.send_replace(false),
        };
        self.export();
    }

    /// Passes a watch on, marking `cache` stale at each failure (the ingest
    /// marks it listed again once the relist is in the cache).
    pub fn track<S, K>(
        self: &Arc<Self>,
        cache: WatchedCache,
        events: S,
    ) -> impl Stream<Item = S::Item> + Send + use<S, K>
    where
        S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
    {
        let readiness = self.clone();
        events.inspect(move |event| {
            if event.is_err() {
                readiness.stale(cache);
            }
        })
    }

    /// The caches are gone (the controllers stopped) or are being rebuilt.
    pub fn caches_lost(&self) {
        self.channels.send_replace(false);
        self.phone_configurations.send_replace(false);
        self.export();
    }

    /// Whether the CRDs are installed and the permissions granted; until
    /// they are, the replica is never ready.
    pub fn set_requirements_met(&self, met: bool) {
        self.requirements_met.store(met, Ordering::Relaxed);
    }

    /// Waits until the DeploymentChannel cache holds a full list.
    pub async fn channels(&self) {
        let _ = self.channels.subscribe().wait_for(|listed| *listed).await;
    }

    /// Waits until the PhoneConfiguration cache holds a full list.
    pub async fn phone_configurations(&self) {
        let _ = self
            .phone_configurations
            .subscribe()
            .wait_for(|listed| *listed)
            .await;
    }

    /// Whether both caches hold a full list.
    pub fn caches_whole(&self) -> bool {
        *self.channels.borrow() && *self.phone_configurations.borrow()
    }

    /// What `/readyz` answers: with the CRDs and permissions in place,
    /// caches whole, on the leader and on a standby alike.
    pub fn is_ready(&self) -> bool {
        self.requirements_met.load(Ordering::Relaxed) && self.caches_whole()
    }

    fn export(&self) {
        self.synced_gauge.set(i64::from(self.caches_whole()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_both_caches_are_listed_and_the_gauge_follows() {
        let gauge = Gauge::default();
        let readiness = ReplicaReadiness::new(gauge.clone());
        readiness.set_requirements_met(true);
        assert!(!readiness.is_ready());
        readiness.channels_listed();
        assert!(!readiness.is_ready());
        assert_eq!(gauge.get(), 0);
        readiness.phone_configurations_listed();
        assert!(readiness.is_ready());
        assert_eq!(gauge.get(), 1);
        readiness.caches_lost();
        assert!(!readiness.is_ready());
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn never_ready_while_crds_or_permissions_are_missing() {
        let readiness = ReplicaReadiness::new(Gauge::default());
        readiness.channels_listed();
        readiness.phone_configurations_listed();
        assert!(!readiness.is_ready());
        readiness.set_requirements_met(true);
        assert!(readiness.is_ready());
    }

    #[tokio::test]
    async fn a_failed_watch_makes_its_cache_stale_until_listed_again() {
        let gauge = Gauge::default();
        let readiness = Arc::new(ReplicaReadiness::new(gauge.clone()));
        readiness.set_requirements_met(true);
        readiness.channels_listed();
        readiness.phone_configurations_listed();
        let events: Vec<watcher::Result<watcher::Event<()>>> = vec![
            Ok(watcher::Event::Apply(())),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::Init),
        ];
        let seen: Vec<bool> = readiness
            .track(WatchedCache::Channels, futures::stream::iter(events))
            .map(|_| readiness.is_ready())
            .collect()
            .await;
        assert_eq!(seen, [true, false, false]);
        assert_eq!(gauge.get(), 0);
        readiness.channels_listed();
        assert!(readiness.is_ready());
    }

    #[tokio::test]
    async fn waiters_all_wake_when_a_cache_is_listed() {
        let readiness = std::sync::Arc::new(ReplicaReadiness::new(Gauge::default()));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let readiness = readiness.clone();
                tokio::spawn(async move { readiness.phone_configurations().await })
            })
            .collect();
        readiness.phone_configurations_listed();
        for waiter in waiters {
            waiter.await.unwrap();
        }
    }
}
