//! Watch streams into caches, per-object tables and triggers.
//!
//! Every watch goes through one mechanism: [`TableFeed`] turns its events into
//! `apply` and `delete` calls on a [`Table`], a relist being the applies of
//! what was listed followed by the deletes of what was not. The tables are
//! everything kept per object: for channels the index, the readiness tally
//! and the cache itself (updated in place, also during a relist); for
//! PhoneConfigurations the spec versions (their cache is kube's reflector
//! store); and the reconciles' own records (status writes in flight,
//! backoff), so a deleted object leaves nothing behind.
//!
//! The index is updated *before* the cache, so a reconcile that the cache
//! starts always sees an index at least as new as its object; triggers for
//! other objects are sent *after* the cache, so a triggered reconcile always
//! reads the change that triggered it.

use std::{collections::BTreeSet, mem, sync::Arc};

use foldhash::HashMap;
use futures::{Stream, StreamExt, channel::mpsc::UnboundedSender, future};
use kube::{
    Resource,
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, Store, store::Writer},
        watcher,
    },
};
use parking_lot::Mutex;
use tracing::warn;

use super::{Context, coalesce::Request, watch::ListedKeys};
use crate::{
    core::api::{DeploymentChannel, PhoneConfiguration},
    core::desired_status::reason,
    core::index::{Affected, Index, ObjectKey},
    operator::channel_cache::{CachedChannel, ChannelCache, ReadyLabel},
    operator::metrics::{KindLabels, Metrics, ReadyLabels, TableLabels},
};

/// What a table reports a change affected.
pub(super) trait Changes: Default {
    fn merge(&mut self, other: Self);
}

impl Changes for () {
    fn merge(&mut self, _: Self) {}
}

impl Changes for Affected {
    fn merge(&mut self, other: Self) {
        Affected::merge(self, other);
    }
}

impl Changes for BTreeSet<ObjectKey> {
    fn merge(&mut self, other: Self) {
        self.extend(other);
    }
}

/// Something kept per object of one watch.
pub(super) trait Table<K> {
    type Changes: Changes;
    /// An object was created or changed (or listed).
    fn apply(&mut self, object: &K) -> Self::Changes;
    /// An object was deleted (or was missing from a relist).
    fn delete(&mut self, key: &ObjectKey) -> Self::Changes;
    /// Every object the table holds.
    fn keys(&self) -> Vec<ObjectKey>;
}

/// Feeds one watch's events to a table. During a relist, what the applies
/// change is held back and reported with the deletes when the list is
/// complete, since only then does the cache hold the listed objects.
#[derive(Default)]
pub(super) struct TableFeed<C> {
    listed: ListedKeys,
    held: C,
}

impl<C: Changes> TableFeed<C> {
    /// Applies one event to `table`; returns what it changed.
    pub fn on<K: Resource, T: Table<K, Changes = C>>(
        &mut self,
        event: &watcher::Event<K>,
        table: &mut T,
    ) -> C {
        match event {
            watcher::Event::Init => {
                self.listed.start();
                C::default()
            }
            watcher::Event::InitApply(object) => {
                if let Some(key) = ObjectKey::of(object) {
                    self.listed.insert(key);
                }
                let changes = table.apply(object);
                self.held.merge(changes);
                C::default()
            }
            watcher::Event::InitDone => {
                let mut changes = mem::take(&mut self.held);
                for key in self.listed.finish(table.keys()) {
                    changes.merge(table.delete(&key));
                }
                changes
            }
            watcher::Event::Apply(object) => table.apply(object),
            watcher::Event::Delete(object) => ObjectKey::of(object)
                .map(|key| table.delete(&key))
                .unwrap_or_default(),
        }
    }
}

/// Drops what the operator never reads (managedFields, the last applied
/// configuration), so the caches stay small.
pub fn cached_form<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A failed watch or list: logged and counted; the watch retries it with
/// backoff ([`super::watch::resuming`]).
fn watch_failed(metrics: &Metrics, kind: &'static str, error: &watcher::Error) {
    metrics
        .watch_restarts
        .get_or_create(&KindLabels { kind })
        .inc();
    warn!(kind, %error, "watch failed; retrying with backoff");
}

/// Where reconcile requests for other objects go.
pub struct Triggers {
    pub channels: UnboundedSender<ObjectKey>,
    /// PhoneConfigurations whose status to write once changes of the
    /// references to them settle.
    pub phone_configurations: UnboundedSender<Request<ObjectKey>>,
    /// PhoneConfigurations to reconcile at once.
    pub phone_configurations_now: UnboundedSender<ObjectKey>,
}

/// Everything kept per DeploymentChannel: the index, then the cache (after
/// it, so that a reconcile sees an index at least as new as its channel),
/// and the readiness tally's counts (each channel's own label is in its
/// cache entry). One key per channel, shared by the index and the cache.
pub(super) struct ChannelTables {
    pub index: Arc<Mutex<Index>>,
    pub tally: ReadyConditionTally,
    pub cache: ChannelCache,
    pub ctx: Arc<Context>,
}

impl Table<DeploymentChannel> for ChannelTables {
    type Changes = Affected;

    fn apply(&mut self, channel: &DeploymentChannel) -> Affected {
        let Some(key) = ObjectKey::of(channel) else {
            return Affected::default();
        };
        let affected = self.index.lock().apply_keyed(key.clone(), channel);
        let cached = CachedChannel::with_key(key, channel);
        let ready = cached.ready;
        let old = self.cache.insert(cached);
        self.tally.apply(old.map(|c| c.ready), ready);
        affected
    }

    fn delete(&mut self, key: &ObjectKey) -> Affected {
        self.ctx.forget_channel(key);
        let affected = self.index.lock().delete(key);
        if let Some(old) = self.cache.remove(key) {
            self.tally.delete(old.ready);
        }
        affected
    }

    fn keys(&self) -> Vec<ObjectKey> {
        self.index.lock().keys().cloned().collect()
    }
}

/// DeploymentChannels: tables and cache, then triggers for the channels and
/// PhoneConfigurations a change affects. A relist updates the one cache in
/// place (no second copy is built while it runs) and reconciles every
/// channel once it is complete.
pub(super) async fn channels(
    watch: impl Stream<Item = watcher::Result<watcher::Event<DeploymentChannel>>> + Send,
    mut tables: ChannelTables,
    phone_configurations: Store<PhoneConfiguration>,
    triggers: Triggers,
) {
    let ctx = tables.ctx.clone();
    let labels = KindLabels {
        kind: "DeploymentChannel",
    };
    let mut feed = TableFeed::default();
    let cache = tables.cache.clone();
    let metrics = ctx.metrics.clone();
    let mut relisted = Relisted::default();
    watch
        .for_each(move |event| {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    watch_failed(&metrics, "DeploymentChannel", &error);
                    return future::ready(());
                }
            };
            metrics.watch_events.get_or_create(&labels).inc();
            if let watcher::Event::InitApply(channel) = &event
                && let Some(key) = ObjectKey::of(channel)
            {
                let cached = cache.get(&key);
                relisted.listed(key, cached.as_ref().map(|c| &*c.resource_version), channel);
            }
            if let watcher::Event::Init = &event {
                // Under the index's lock: see `Context::settled_index`.
                let _index = tables.index.lock();
                ctx.readiness.channels_relisting();
            }
            let affected = feed.on(&event, &mut tables);
            tables.tally.export(&metrics);
            metrics
                .cached_objects
                .get_or_create(&labels)
                .set(cache.len() as i64);
            // The changed channel itself (unless the change is only this
            // replica's own status write), or once a list is complete those
            // it found new or changed.
            match &event {
                watcher::Event::Apply(channel) => {
                    if let Some(key) = ObjectKey::of(channel) {
                        let version = channel.metadata.resource_version.as_deref();
                        if !ctx.channel_status.cached(&key, version.unwrap_or_default()) {
                            let _ = triggers.channels.unbounded_send(key);
                        }
                    }
                }
                watcher::Event::InitDone => {
                    ctx.readiness.channels_listed();
                    for key in relisted.take() {
                        let _ = triggers.channels.unbounded_send(key);
                    }
                }
                _ => {}
            }
            // A channel still in the initial list is reconciled when the list completes.
            for key in affected.channels {
                let _ = triggers.channels.unbounded_send(key);
            }
            // Only a change of references moves the batch: churn that leaves
            // them alone (annotations, this replica's status writes) does not
            // hold back a PhoneConfiguration's status.
            if let watcher::Event::Apply(_) | watcher::Event::Delete(_) = &event
                && !affected.phone_configurations.is_empty()
            {
                let _ = triggers
                    .phone_configurations
                    .unbounded_send(Request::Activity);
            }
            for key in affected.phone_configurations {
                if phone_configurations
                    .get(&ObjectRef::new(&key.name).within(&key.namespace))
                    .is_some()
                {
                    let _ = triggers
                        .phone_configurations
                        .unbounded_send(Request::Batch(key));
                }
            }
            future::ready(())
        })
        .await;
}

/// The objects a list found new or changed (another resourceVersion than
/// the cached one): only they are reconciled when it completes, as a
/// client-go handler skips an update whose resourceVersion did not change.
/// Those it did not list are deleted, and what depends on them is
/// triggered through the tables.
#[derive(Default)]
pub(super) struct Relisted(Vec<ObjectKey>);

impl Relisted {
    /// The list holds `object`; the cache held it at `cached` (a resourceVersion).
    pub fn listed<K: Resource>(&mut self, key: ObjectKey, cached: Option<&str>, object: &K) {
        if cached != object.meta().resource_version.as_deref() {
            self.0.push(key);
        }
    }

    /// The objects to reconcile now that the list is complete.
    pub fn take(&mut self) -> Vec<ObjectKey> {
        mem::take(&mut self.0)
    }
}

/// Everything kept per PhoneConfiguration besides the cache: what channels
/// depend on (its uid and spec, by generation) and the reconciles' records.
pub(super) struct PhoneTables {
    pub versions: HashMap<ObjectKey, (Option<String>, Option<i64>)>,
    pub ctx: Arc<Context>,
}

impl Table<PhoneConfiguration> for PhoneTables {
    /// PhoneConfigurations created, deleted, or with a new spec.
    type Changes = BTreeSet<ObjectKey>;

    fn apply(&mut self, pc: &PhoneConfiguration) -> Self::Changes {
        let Some(key) = ObjectKey::of(pc) else {
            return BTreeSet::new();
        };
        let version = (pc.metadata.uid.clone(), pc.metadata.generation);
        if self.versions.insert(key.clone(), version.clone()) == Some(version) {
            BTreeSet::new()
        } else {
            BTreeSet::from([key])
        }
    }

    fn delete(&mut self, key: &ObjectKey) -> Self::Changes {
        self.ctx.forget_phone_configuration(key);
        match self.versions.remove(key) {
            Some(_) => BTreeSet::from([key.clone()]),
            None => BTreeSet::new(),
        }
    }

    fn keys(&self) -> Vec<ObjectKey> {
        self.versions.keys().cloned().collect()
    }
}

/// PhoneConfigurations: tables, cache, then triggers: the channels that
/// reference one that was created, deleted or given a new spec, and its own
/// reconcile, at once, for any change but this replica's own status write.
pub(super) async fn phone_configurations(
    watch: impl Stream<Item = watcher::Result<watcher::Event<PhoneConfiguration>>> + Send,
    writer: Writer<PhoneConfiguration>,
    mut tables: PhoneTables,
    triggers: Triggers,
) {
    let ctx = tables.ctx.clone();
    let labels = KindLabels {
        kind: "PhoneConfiguration",
    };
    let cache = writer.as_reader();
    let mut feed = TableFeed::default();
    // Noted before the reflector replaces the cached version.
    let relisted = Arc::new(Mutex::new(Relisted::default()));
    let noted = relisted.clone();
    let before = cache.clone();
    watch
        .modify(cached_form)
        .inspect(move |event| {
            if let Ok(watcher::Event::InitApply(pc)) = event
                && let Some(key) = ObjectKey::of(pc)
            {
                let cached = before.get(&ObjectRef::new(&key.name).within(&key.namespace));
                let version = cached
                    .as_ref()
                    .and_then(|c| c.metadata.resource_version.clone());
                noted.lock().listed(key, version.as_deref(), pc);
            }
        })
        .reflect(writer)
        .for_each(move |event| {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    watch_failed(&ctx.metrics, "PhoneConfiguration", &error);
                    return future::ready(());
                }
            };
            ctx.metrics.watch_events.get_or_create(&labels).inc();
            // The cache now shows this version: a status write it shows or
            // replaced needs no record any more. Any other change (its spec,
            // someone else's edit of its status) is reconciled at once.
            let mut now = BTreeSet::new();
            if let watcher::Event::Apply(pc) = &event
                && let Some(key) = ObjectKey::of(pc)
            {
                let version = pc.metadata.resource_version.as_deref();
                if !ctx.phone_status.cached(&key, version.unwrap_or_default()) {
                    now.insert(key);
                }
            }
            if let watcher::Event::Init = &event {
                ctx.readiness.phone_configurations_relisting();
            }
            let changed = feed.on(&event, &mut tables);
            ctx.metrics
                .cached_objects
                .get_or_create(&labels)
                .set(cache.len() as i64);
            ctx.metrics
                .table_entries
                .get_or_create(&TableLabels {
                    table: "phone_configuration_generations",
                })
                .set(tables.versions.len() as i64);
            {
                let index = ctx.index();
                for pc in &changed {
                    for channel in index.channels_referencing(pc) {
                        let _ = triggers.channels.unbounded_send(channel.clone());
                    }
                }
            }
            // After a list, those it found new or changed.
            if let watcher::Event::InitDone = &event {
                ctx.readiness.phone_configurations_listed();
                now.extend(relisted.lock().take());
            }
            now.extend(changed);
            for key in now {
                let _ = triggers.phone_configurations_now.unbounded_send(key);
            }
            future::ready(())
        })
        .await;
}

/// Channels counted by their Ready condition's status and reason, kept up
/// to date from watch events so that scraping `/metrics` costs nothing.
/// Each channel's own label is kept in its cache entry.
#[derive(Default)]
pub(super) struct ReadyConditionTally {
    /// Every (status, reason) seen stays, so that a count that drops to zero is exported as 0.
    counts: HashMap<ReadyLabel, i64>,
}

impl ReadyConditionTally {
    fn add(&mut self, label: ReadyLabel, n: i64) {
        *self.counts.entry(label).or_default() += n;
    }

    /// A channel's label went from `old` (none: it is new) to `new`.
    fn apply(&mut self, old: Option<ReadyLabel>, new: ReadyLabel) {
        if let Some(old) = old {
            self.add(old, -1);
        }
        self.add(new, 1);
    }

    /// A channel with label `old` is gone.
    fn delete(&mut self, old: ReadyLabel) {
        self.add(old, -1);
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

#[cfg(test)]
mod tests {
    //! The one mechanism for apply, delete and relist, on the index: after any
    //! sequence of watch events, the tables hold exactly what one built from the
    //! final cache would.

    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use proptest::prelude::*;

    use super::*;
    use crate::core::api::{ChannelConfiguration, DeploymentChannelSpec, DeploymentType};

    /// The index alone, as a table.
    #[derive(Default)]
    struct IndexTable(Index);

    impl Table<DeploymentChannel> for IndexTable {
        type Changes = Affected;
        fn apply(&mut self, channel: &DeploymentChannel) -> Affected {
            self.0.apply(channel)
        }
        fn delete(&mut self, key: &ObjectKey) -> Affected {
            self.0.delete(key)
        }
        fn keys(&self) -> Vec<ObjectKey> {
            self.0.keys().cloned().collect()
        }
    }

    fn calls(name: &str, created: i64, number: &str, phone: &str) -> DeploymentChannel {
        DeploymentChannel {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                creation_timestamp: Some(Time(jiff::Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: DeploymentChannelSpec {
                deployment_type: DeploymentType::Calls,
                channel_name: None,
                recording_enabled: true,
                channel_identifier: number.into(),
                configuration: ChannelConfiguration {
                    phone_configuration_id: Some(phone.into()),
                    ..Default::default()
                },
            },
            status: None,
        }
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    #[test]
    fn a_relist_forgets_what_it_did_not_list_and_reports_it_when_complete() {
        let mut table = IndexTable::default();
        let mut feed = TableFeed::default();
        feed.on(
            &watcher::Event::Apply(calls("gone", 100, "+12125551234", "p")),
            &mut table,
        );
        feed.on(
            &watcher::Event::Apply(calls("kept", 200, "+12125551234", "p")),
            &mut table,
        );
        assert!(feed.on(&watcher::Event::Init, &mut table) == Affected::default());
        let during = feed.on(
            &watcher::Event::InitApply(calls("kept", 200, "+12125551234", "p")),
            &mut table,
        );
        assert_eq!(
            during,
            Affected::default(),
            "held until the list is complete"
        );
        let affected = feed.on(&watcher::Event::<DeploymentChannel>::InitDone, &mut table);
        assert_eq!(affected.channels, BTreeSet::from([key("kept")]));
        assert_eq!(affected.phone_configurations, BTreeSet::from([key("p")]));
        assert_eq!(table.keys(), vec![key("kept")]);
        assert_eq!(table.0.claim_holder(&key("kept")), None);
    }

    #[test]
    fn a_relist_reconciles_only_what_it_finds_new_or_changed() {
        let mut relisted = Relisted::default();
        let at = |name: &str, version: &str| {
            let mut channel = calls(name, 1, "+12125551234", "p");
            channel.metadata.resource_version = Some(version.into());
            channel
        };
        let (same, changed, new) = (at("same", "5"), at("changed", "9"), at("new", "3"));
        relisted.listed(key("same"), Some("5"), &same);
        relisted.listed(key("changed"), Some("6"), &changed);
        relisted.listed(key("new"), None, &new);
        assert_eq!(relisted.take(), [key("changed"), key("new")]);
        assert!(relisted.take().is_empty(), "once");
    }

    #[test]
    fn a_delete_event_drops_the_entry() {
        let mut table = IndexTable::default();
        let mut feed = TableFeed::default();
        let channel = calls("a", 1, "+12125551234", "p");
        feed.on(&watcher::Event::Apply(channel.clone()), &mut table);
        let affected = feed.on(&watcher::Event::Delete(channel), &mut table);
        assert_eq!(affected.phone_configurations, BTreeSet::from([key("p")]));
        assert!(table.0.is_empty());
        assert_eq!(table.0.bound_channels(&key("p")), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Apply {
            name: usize,
            number: usize,
        },
        Delete {
            name: usize,
        },
        /// A relist that lists the live channels whose bit is set in `keep`
        /// (the others were deleted while the watch was down).
        TableFeed {
            keep: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6usize, 0..3usize).prop_map(|(name, number)| Op::Apply { name, number }),
            (0..6usize).prop_map(|name| Op::Delete { name }),
            any::<u8>().prop_map(|keep| Op::TableFeed { keep }),
        ]
    }

    proptest! {
        #[test]
        fn the_index_equals_one_built_from_the_final_cache(ops in prop::collection::vec(op(), 1..60)) {
            let numbers = ["+12125551234", "+12125551235", "+99912345678"];
            let mut table = IndexTable::default();
            let mut feed = TableFeed::default();
            // The cache: what the watch says exists now.
            let mut cache: BTreeMap<String, DeploymentChannel> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Apply { name, number } => {
                        let name = format!("c{name}");
                        let created = cache.get(&name).map_or(name.len() as i64 * 7 % 5, |c| {
                            c.metadata.creation_timestamp.as_ref().unwrap().0.as_second()
                        });
                        let channel = calls(&name, created, numbers[number], "p");
                        feed.on(&watcher::Event::Apply(channel.clone()), &mut table);
                        cache.insert(name, channel);
                    }
                    Op::Delete { name } => {
                        if let Some(channel) = cache.remove(&format!("c{name}")) {
                            feed.on(&watcher::Event::Delete(channel), &mut table);
                        }
                    }
                    Op::TableFeed { keep } => {
                        cache = cache
                            .into_iter()
                            .enumerate()
                            .filter(|(i, _)| keep & (1 << (i % 8)) != 0)
                            .map(|(_, entry)| entry)
                            .collect();
                        feed.on(&watcher::Event::Init, &mut table);
                        for channel in cache.values() {
                            feed.on(&watcher::Event::InitApply(channel.clone()), &mut table);
                        }
                        feed.on(&watcher::Event::<DeploymentChannel>::InitDone, &mut table);
                    }
                }
            }
            let mut expected = IndexTable::default();
            for channel in cache.values() {
                expected.apply(channel);
            }
            let mut keys = table.keys();
            keys.sort();
            let mut expected_keys = expected.keys();
            expected_keys.sort();
            prop_assert_eq!(&keys, &expected_keys);
            for key in &keys {
                prop_assert_eq!(table.0.claim_holder(key), expected.0.claim_holder(key));
            }
            prop_assert_eq!(table.0.bound_channels(&key("p")), cache.len());
        }
    }
}
