//! Watch streams into caches, the index and triggers.
//!
//! The index is updated *before* the cache, so a reconcile that the cache
//! starts always sees an index at least as new as its object; triggers for
//! other objects are sent *after* the cache, so a triggered reconcile always
//! reads the change that triggered it.

use std::{
    collections::{HashMap, HashSet},
    mem,
    sync::{Arc, Mutex},
};

use futures::{Stream, StreamExt, channel::mpsc::UnboundedSender, future};
use kube::{
    Resource,
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, Store, store::Writer},
        watcher,
    },
};
use tracing::warn;

use super::CacheReadiness;
use crate::{
    api::{DeploymentChannel, PhoneConfiguration},
    index::{Affected, Index, ObjectKey},
    metrics::{KindLabels, Metrics, ReadyLabels},
    status::reason,
};

/// Where reconcile requests for other objects go.
pub struct Triggers {
    pub channels: UnboundedSender<ObjectRef<DeploymentChannel>>,
    /// PhoneConfigurations whose bound channels changed (`Some`), and any
    /// other channel change (`None`), which delays their batch.
    pub phone_configurations: UnboundedSender<Option<ObjectKey>>,
}

/// Drops what the operator never reads, so the caches stay small.
fn strip<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

fn lock(index: &Mutex<Index>) -> std::sync::MutexGuard<'_, Index> {
    index
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A failed watch or list: logged and counted; the watcher retries it with backoff.
fn watch_failed(metrics: &Metrics, kind: &'static str, error: &watcher::Error) {
    metrics
        .watch_restarts
        .get_or_create(&KindLabels { kind })
        .inc();
    warn!(kind, %error, "watch failed; retrying with backoff");
}

/// DeploymentChannels: index, cache, then triggers for the channels and
/// PhoneConfigurations a change affects.
pub async fn channels(
    watch: impl Stream<Item = watcher::Result<watcher::Event<DeploymentChannel>>> + Send,
    writer: Writer<DeploymentChannel>,
    index: Arc<Mutex<Index>>,
    readiness: Arc<CacheReadiness>,
    phone_configurations: Store<PhoneConfiguration>,
    triggers: Triggers,
    metrics: Arc<Metrics>,
) {
    let pending = Arc::new(Mutex::new(Affected::default()));
    let labels = KindLabels {
        kind: "DeploymentChannel",
    };
    let before = pending.clone();
    let cache = writer.as_reader();
    let mut readiness_tally = ReadinessTally::default();
    let tally_metrics = metrics.clone();
    watch
        .default_backoff()
        .modify(strip)
        .inspect(move |event| {
            let event = match event {
                Ok(event) => event,
                Err(error) => return watch_failed(&metrics, "DeploymentChannel", error),
            };
            metrics.watch_events.get_or_create(&labels).inc();
            let mut index = lock(&index);
            let affected = match event {
                watcher::Event::Init => {
                    index.begin_resync();
                    Affected::default()
                }
                watcher::Event::InitApply(channel) => {
                    index.apply(channel);
                    Affected::default()
                }
                watcher::Event::InitDone => index.end_resync(),
                watcher::Event::Apply(channel) => index.apply(channel),
                watcher::Event::Delete(channel) => ObjectKey::of(channel)
                    .map(|k| index.delete(&k))
                    .unwrap_or_default(),
            };
            metrics
                .cached_objects
                .get_or_create(&labels)
                .set(index.len() as i64);
            let mut pending = before.lock().unwrap_or_else(|p| p.into_inner());
            pending.channels.extend(affected.channels);
            pending
                .phone_configurations
                .extend(affected.phone_configurations);
        })
        .reflect_shared(writer)
        .for_each(move |event| {
            if let Ok(event) = &event {
                readiness_tally.record(event);
                readiness_tally.export(&tally_metrics);
                if let watcher::Event::InitDone = event {
                    readiness.channels_listed();
                }
            }
            let affected = mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
            for key in affected.channels {
                let object_ref = ObjectRef::new(&key.name).within(&key.namespace);
                // A channel still in the initial list is reconciled when the list completes.
                if cache.get(&object_ref).is_some() {
                    let _ = triggers.channels.unbounded_send(object_ref);
                }
            }
            if let Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) = &event {
                let _ = triggers.phone_configurations.unbounded_send(None);
            }
            for key in affected.phone_configurations {
                if phone_configurations
                    .get(&ObjectRef::new(&key.name).within(&key.namespace))
                    .is_some()
                {
                    let _ = triggers.phone_configurations.unbounded_send(Some(key));
                }
            }
            future::ready(())
        })
        .await;
}

/// PhoneConfigurations: cache, then triggers for the channels that
/// reference a PhoneConfiguration whose spec changed, or that was created,
/// deleted or vanished during a relist. A status-only change (its own
/// `boundChannels`) concerns no channel.
pub async fn phone_configurations(
    watch: impl Stream<Item = watcher::Result<watcher::Event<PhoneConfiguration>>> + Send,
    writer: Writer<PhoneConfiguration>,
    index: Arc<Mutex<Index>>,
    readiness: Arc<CacheReadiness>,
    channels: UnboundedSender<ObjectRef<DeploymentChannel>>,
    metrics: Arc<Metrics>,
) {
    let labels = KindLabels {
        kind: "PhoneConfiguration",
    };
    let cache = writer.as_reader();
    // Keys listed during a relist, and the keys cached before it began.
    let mut listed: HashSet<ObjectKey> = HashSet::new();
    let mut before_relist: HashSet<ObjectKey> = HashSet::new();
    // What channels depend on: the PhoneConfiguration's uid and spec (its generation).
    let mut seen: HashMap<ObjectKey, (Option<String>, Option<i64>)> = HashMap::new();
    watch
        .default_backoff()
        .modify(strip)
        .reflect_shared(writer)
        .for_each(move |event| {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    watch_failed(&metrics, "PhoneConfiguration", &error);
                    return future::ready(());
                }
            };
            metrics.watch_events.get_or_create(&labels).inc();
            let changed: Vec<ObjectKey> = match &event {
                watcher::Event::Init => {
                    listed.clear();
                    // The cache still holds the previous list until InitDone.
                    before_relist = cache
                        .state()
                        .iter()
                        .filter_map(|pc| ObjectKey::of(pc.as_ref()))
                        .collect();
                    vec![]
                }
                watcher::Event::InitApply(pc) => {
                    if let Some(key) = ObjectKey::of(pc) {
                        seen.insert(
                            key.clone(),
                            (pc.metadata.uid.clone(), pc.metadata.generation),
                        );
                        listed.insert(key);
                    }
                    vec![]
                }
                watcher::Event::InitDone => {
                    readiness.phone_configurations_listed();
                    seen.retain(|key, _| listed.contains(key));
                    before_relist
                        .drain()
                        .filter(|k| !listed.contains(k))
                        .collect()
                }
                watcher::Event::Apply(pc) => ObjectKey::of(pc)
                    .filter(|key| {
                        let version = (pc.metadata.uid.clone(), pc.metadata.generation);
                        seen.insert(key.clone(), version.clone()) != Some(version)
                    })
                    .into_iter()
                    .collect(),
                watcher::Event::Delete(pc) => ObjectKey::of(pc)
                    .inspect(|key| {
                        seen.remove(key);
                    })
                    .into_iter()
                    .collect(),
            };
            metrics
                .cached_objects
                .get_or_create(&labels)
                .set(cache.len() as i64);
            if !changed.is_empty() {
                let index = lock(&index);
                for pc in &changed {
                    for channel in index.channels_referencing(pc) {
                        let _ = channels.unbounded_send(
                            ObjectRef::new(&channel.name).within(&channel.namespace),
                        );
                    }
                }
            }
            future::ready(())
        })
        .await;
}

/// Channels counted by their Ready condition's status and reason, kept up
/// to date from watch events so that scraping `/metrics` costs nothing.
#[derive(Default)]
struct ReadinessTally {
    ready_of: HashMap<ObjectKey, Readiness>,
    relisted: HashMap<ObjectKey, Readiness>,
    /// Every (status, reason) seen stays, so that a count that drops to zero is exported as 0.
    counts: HashMap<Readiness, i64>,
}

/// A channel's Ready condition as the metric labels it: (status, reason).
type Readiness = (&'static str, &'static str);

/// Reasons a Ready condition can carry; any other (a status not written
/// by this operator) is counted as `Other`, so the label stays bounded.
const READY_REASONS: [&str; 8] = [
    reason::READY,
    reason::INVALID_SPEC,
    reason::IDENTIFIER_CONFLICT,
    reason::PHONE_CONFIGURATION_NOT_FOUND,
    reason::PHONE_CONFIGURATION_NOT_READY,
    reason::CAPABILITY_MISSING,
    reason::PHONE_NUMBER_MISMATCH,
    "Other",
];

impl ReadinessTally {
    fn readiness(channel: &DeploymentChannel) -> Readiness {
        let ready = channel.status.as_ref().and_then(|s| {
            crate::api::find_condition(&s.conditions, crate::status::condition::READY)
        });
        let Some(ready) = ready else {
            return ("Unknown", "NoStatus");
        };
        let status = match ready.status.as_str() {
            "True" => "True",
            "False" => "False",
            _ => "Unknown",
        };
        let reason = READY_REASONS
            .into_iter()
            .find(|r| *r == ready.reason)
            .unwrap_or("Other");
        (status, reason)
    }

    fn add(&mut self, readiness: Readiness, n: i64) {
        *self.counts.entry(readiness).or_default() += n;
    }

    fn record(&mut self, event: &watcher::Event<DeploymentChannel>) {
        match event {
            watcher::Event::Init => self.relisted.clear(),
            watcher::Event::InitApply(channel) => {
                if let Some(key) = ObjectKey::of(channel) {
                    self.relisted.insert(key, Self::readiness(channel));
                }
            }
            watcher::Event::InitDone => {
                self.ready_of = mem::take(&mut self.relisted);
                self.counts.values_mut().for_each(|n| *n = 0);
                for readiness in self.ready_of.values().copied().collect::<Vec<_>>() {
                    self.add(readiness, 1);
                }
            }
            watcher::Event::Apply(channel) => {
                if let Some(key) = ObjectKey::of(channel) {
                    let readiness = Self::readiness(channel);
                    if let Some(old) = self.ready_of.insert(key, readiness) {
                        self.add(old, -1);
                    }
                    self.add(readiness, 1);
                }
            }
            watcher::Event::Delete(channel) => {
                if let Some(old) = ObjectKey::of(channel).and_then(|key| self.ready_of.remove(&key))
                {
                    self.add(old, -1);
                }
            }
        }
    }

    fn export(&self, metrics: &Metrics) {
        // Before the first list, the three statuses read 0 rather than nothing.
        for ready in ["True", "False", "Unknown"] {
            if !self.counts.keys().any(|(status, _)| *status == ready) {
                let reason = if ready == "True" {
                    reason::READY
                } else {
                    "NoStatus"
                };
                metrics
                    .channels_by_ready
                    .get_or_create(&ReadyLabels { ready, reason })
                    .set(0);
            }
        }
        for ((ready, reason), count) in &self.counts {
            metrics
                .channels_by_ready
                .get_or_create(&ReadyLabels { ready, reason })
                .set(*count);
        }
    }
}
