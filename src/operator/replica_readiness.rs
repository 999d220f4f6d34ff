//! Whether this replica is ready: its caches hold a full list of both kinds
//! (once listed they stay whole: a watch resumes or relists in place, and
//! changes that come late are not lost; a standby keeps them warm too, so
//! it is ready on the same terms). The ingest path marks the caches, and
//! `/readyz` and the reconciles read the same value.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

const CHANNELS: u8 = 1;
const PHONE_CONFIGURATIONS: u8 = 2;

/// The readiness of one replica, shared by the controllers and the HTTP server.
#[derive(Debug)]
pub struct ReplicaReadiness {
    channels: watch::Sender<bool>,
    phone_configurations: watch::Sender<bool>,
    /// Which caches are being relisted ([`CHANNELS`], [`PHONE_CONFIGURATIONS`]):
    /// the caches and the index then hold part of the new list, which no
    /// reconcile reads.
    relisting: watch::Sender<u8>,
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
            relisting: watch::Sender::new(0),
            requirements_met: AtomicBool::new(false),
            synced_gauge,
        }
    }

    /// A list of DeploymentChannels started: until it completes, the
    /// cache and the index are being updated in place.
    pub fn channels_relisting(&self) {
        self.relisting.send_modify(|kinds| *kinds |= CHANNELS);
    }

    /// A list of PhoneConfigurations started.
    pub fn phone_configurations_relisting(&self) {
        self.relisting
            .send_modify(|kinds| *kinds |= PHONE_CONFIGURATIONS);
    }

    /// The DeploymentChannel cache holds a full list.
    pub fn channels_listed(&self) {
        self.channels.send_replace(true);
        self.relisting.send_modify(|kinds| *kinds &= !CHANNELS);
        self.export();
    }

    /// The PhoneConfiguration cache holds a full list.
    pub fn phone_configurations_listed(&self) {
        self.phone_configurations.send_replace(true);
        self.relisting
            .send_modify(|kinds| *kinds &= !PHONE_CONFIGURATIONS);
        self.export();
    }

    /// Waits until both caches hold a full list and neither is being
    /// relisted: what a reconcile reads is then one consistent state, never
    /// a relist applied in part.
    pub async fn settled(&self) {
        self.channels().await;
        self.phone_configurations().await;
        let _ = self
            .relisting
            .subscribe()
            .wait_for(|kinds| *kinds == 0)
            .await;
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

    /// Whether both caches hold a full list and neither is being relisted.
    pub fn is_settled(&self) -> bool {
        self.caches_whole() && *self.relisting.borrow() == 0
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
    async fn reconciles_wait_while_either_cache_is_relisted() {
        let readiness = std::sync::Arc::new(ReplicaReadiness::new(Gauge::default()));
        readiness.set_requirements_met(true);
        readiness.channels_listed();
        readiness.phone_configurations_listed();
        readiness.settled().await;

        readiness.channels_relisting();
        readiness.phone_configurations_relisting();
        // Still ready: the caches stay whole while they are relisted.
        assert!(readiness.is_ready());
        let waiting = tokio::spawn({
            let readiness = readiness.clone();
            async move { readiness.settled().await }
        });
        readiness.channels_listed();
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "settled with a relist in progress");
        readiness.phone_configurations_listed();
        waiting.await.unwrap();
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
