//! The shell around the pure core: watches both kinds into caches and the
//! index, runs one controller per kind, and writes status.
//!
//! Data flow for each kind: watcher (metadata the operator never reads is
//! skipped) → (channels: update the index) → cache, shared by both
//! controllers (channels in their compact form, [`crate::operator::channel_cache`]) →
//! triggers for the objects a change affects → [`scheduler`] → reconcile.

mod channel;
mod coalesce;
mod events;
mod ingest;
mod phone;
mod scheduler;
mod status_writer;
mod unreadable;
mod watch;

use std::{future::Future, sync::Arc, time::Duration};

use foldhash::{HashMap, HashMapExt};
use futures::channel::mpsc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Client,
    runtime::{
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use parking_lot::{Mutex, MutexGuard};
use tracing::{info, warn};

pub use channel::reconcile_channel;
pub use ingest::cached_form;
pub use phone::reconcile_phone_configuration;

use crate::{
    core::api::{
        DeploymentChannel, DeploymentChannelStatus, PhoneConfiguration, PhoneConfigurationStatus,
    },
    core::decoding::Stored,
    core::index::{Index, ObjectKey},
    operator::channel_cache::ChannelCache,
    operator::leader_election::Leadership,
    operator::metrics::TableLabels,
    operator::metrics::{ErrorLabels, KindLabels, Metrics, ReconcileLabels},
    operator::replica_readiness::ReplicaReadiness,
};
use coalesce::Request;
use status_writer::StatusWriter;
use unreadable::UnreadableRegistry;

/// After channels start or stop referencing a PhoneConfiguration, its
/// `boundChannels` is written once such changes have stopped for this long,
/// or [`Settings::bound_channels_refresh`] after the first change of a burst.
const PHONE_CONFIGURATION_QUIET: Duration = Duration::from_secs(1);

/// The field manager of every status write, the same in every replica.
pub const FIELD_MANAGER: &str = "deploymentchannel-operator";

/// The two kinds the operator watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    DeploymentChannel,
    PhoneConfiguration,
}

impl Kind {
    /// The kind's name, as in `kind:` and on `/metrics`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::DeploymentChannel => "DeploymentChannel",
            Kind::PhoneConfiguration => "PhoneConfiguration",
        }
    }
}

/// Errors of one reconcile; the controller backs off and retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    MissingMetadata(&'static str),
    #[error("reconcile took longer than {0:?}")]
    Timeout(Duration),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(status)) => {
                if status.reason.is_empty() {
                    format!("Api{}", status.code)
                } else {
                    status.reason.clone()
                }
            }
            Error::Kube(_) => "ClientError".into(),
            Error::MissingMetadata(_) => "MissingMetadata".into(),
            Error::Timeout(_) => "Timeout".into(),
        }
    }
}

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch this namespace only; `None` watches all.
    pub namespace: Option<String>,
    /// How many reconciles of one kind run at once.
    pub concurrency: u16,
    /// Name reported on Kubernetes Events (`reportingInstance`), usually the pod name.
    pub instance: Option<String>,
    /// Longest a PhoneConfiguration's `boundChannels` waits while channel
    /// changes go on: a long apply refreshes it this often, one status
    /// write per PhoneConfiguration each time.
    pub bound_channels_refresh: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: None,
            concurrency: 16,
            instance: None,
            bound_channels_refresh: Duration::from_secs(300),
        }
    }
}

/// What every reconcile reads and writes through.
pub struct Context {
    pub client: Client,
    pub channels: ChannelCache,
    pub phone_configurations: Store<PhoneConfiguration>,
    pub index: Arc<Mutex<Index>>,
    pub readiness: Arc<ReplicaReadiness>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The current time, second precision (status timestamps are RFC 3339 seconds).
    pub clock: fn() -> Time,
    channel_status: StatusWriter<DeploymentChannel, DeploymentChannelStatus>,
    phone_status: StatusWriter<PhoneConfiguration, PhoneConfigurationStatus>,
    failures: Mutex<HashMap<ObjectKey, u32>>,
    /// The objects of each kind whose stored form cannot be read.
    pub unreadable_channels: Arc<UnreadableRegistry>,
    pub unreadable_phone_configurations: Arc<UnreadableRegistry>,
    /// Reconciles run and Events are recorded only while this replica leads.
    pub leadership: Leadership,
}

impl Context {
    /// A context over the given caches and index.
    pub fn new(
        client: Client,
        channels: ChannelCache,
        phone_configurations: Store<PhoneConfiguration>,
        index: Arc<Mutex<Index>>,
        readiness: Arc<ReplicaReadiness>,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Self {
            unreadable_channels: Arc::new(UnreadableRegistry::new(
                Kind::DeploymentChannel,
                metrics.clone(),
            )),
            unreadable_phone_configurations: Arc::new(UnreadableRegistry::new(
                Kind::PhoneConfiguration,
                metrics.clone(),
            )),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            channels,
            phone_configurations,
            index,
            readiness,
            metrics,
            clock: now,
            channel_status: StatusWriter::default(),
            phone_status: StatusWriter::default(),
            failures: Mutex::default(),
            leadership: Leadership::always(),
        }
    }

    /// Reads the index once both caches are listed and no relist is being
    /// applied. Checked under the index's lock, which a relist takes to
    /// begin: the read never sees part of one.
    pub async fn settled_index<T>(&self, read: impl Fn(&Index) -> T) -> T {
        loop {
            self.readiness.settled().await;
            let index = self.index();
            if self.readiness.is_settled() {
                return read(&index);
            }
        }
    }

    /// The index, for a short read or update.
    pub fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock()
    }

    fn reset_failures(&self, key: &ObjectKey) {
        self.failures.lock().remove(key);
    }

    /// Forgets everything the reconciles keep for a deleted channel.
    fn forget_channel(&self, key: &ObjectKey) {
        self.channel_status.forget(key);
        self.reset_failures(key);
    }

    /// Forgets everything the reconciles keep for a deleted PhoneConfiguration.
    fn forget_phone_configuration(&self, key: &ObjectKey) {
        self.phone_status.forget(key);
        self.reset_failures(key);
    }

    /// Forgets everything the reconciles keep for an object of `kind` that is gone.
    pub fn forget(&self, kind: Kind, key: &ObjectKey) {
        match kind {
            Kind::DeploymentChannel => self.forget_channel(key),
            Kind::PhoneConfiguration => self.forget_phone_configuration(key),
        }
    }

    /// The objects of `kind` whose stored form cannot be read.
    pub fn unreadable(&self, kind: Kind) -> &UnreadableRegistry {
        match kind {
            Kind::DeploymentChannel => &self.unreadable_channels,
            Kind::PhoneConfiguration => &self.unreadable_phone_configurations,
        }
    }

    /// Drops what is still kept for objects no longer cached: a record
    /// made by a reconcile that finished after its object's deletion was
    /// processed.
    pub fn prune_departed(&self) {
        let channel = |key: &ObjectKey| self.channels.contains(key);
        let phone = |key: &ObjectKey| {
            self.phone_configurations
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .is_some()
        };
        self.channel_status.retain(channel);
        self.phone_status.retain(phone);
        self.failures
            .lock()
            .retain(|key, _| channel(key) || phone(key));
    }

    /// Exports the size of every table the reconciles and the index keep per object.
    pub fn export_table_sizes(&self) {
        let failures = self.failures.lock().len();
        let (channels, claims, references) = {
            let index = self.index();
            (index.len(), index.claims_len(), index.references_len())
        };
        for (table, size) in [
            ("channel_status_writes", self.channel_status.len()),
            ("phone_configuration_status_writes", self.phone_status.len()),
            ("backoff_counters", failures),
            ("index_channels", channels),
            ("index_claims", claims),
            ("index_references", references),
            ("unreadable_channels", self.unreadable_channels.len()),
            (
                "unreadable_phone_configurations",
                self.unreadable_phone_configurations.len(),
            ),
        ] {
            self.metrics
                .table_entries
                .get_or_create(&TableLabels { table })
                .set(size as i64);
        }
    }

    /// Objects with a per-object record: status writes in flight, failures.
    pub fn records(&self) -> (usize, usize) {
        (
            self.channel_status.len() + self.phone_status.len(),
            self.failures.lock().len(),
        )
    }

    /// Exponential backoff per object ([`backoff_delay`]), jittered.
    fn backoff(&self, key: ObjectKey) -> Duration {
        let mut failures = self.failures.lock();
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        backoff_delay(*count, fastrand::f64())
    }
}

/// Longest one reconcile may take, API requests included: one stuck on a
/// connection that no longer answers fails and is retried instead of
/// holding its slot.
pub const RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait before retrying a failed reconcile.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// How long to wait after the `failures`-th failure in a row (from 1):
/// 250 ms, 500 ms, 1 s … capped at 5 minutes, then scaled by a factor
/// between ½ and 1 (`jitter` from 0 to 1) so that objects that failed
/// together are not retried together.
fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let base = (Duration::from_millis(250) * (1u32 << failures.saturating_sub(1).min(11)))
        .min(BACKOFF_CAP);
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// The current time truncated to whole seconds.
pub fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).expect("now is a valid timestamp"))
}

/// Runs one reconcile, recording its duration and outcome; answers when
/// to try again after a failure.
async fn measured(
    ctx: &Context,
    kind: &'static str,
    key: &ObjectKey,
    reconcile: impl Future<Output = Result<status_writer::Written, Error>>,
) -> Option<Duration> {
    let started = std::time::Instant::now();
    let result = match tokio::time::timeout(RECONCILE_TIMEOUT, reconcile).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout(RECONCILE_TIMEOUT)),
    };
    ctx.metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    let result_label = match &result {
        Ok(status_writer::Written::Patched) => "written",
        Ok(status_writer::Written::Unchanged) => "unchanged",
        Ok(status_writer::Written::Gone) => "gone",
        Err(_) => "error",
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind,
            result: result_label,
        })
        .inc();
    match result {
        Ok(_) => None,
        Err(error) => retry_after(ctx, kind, key, &error),
    }
}

/// After a failed reconcile: counted, logged, and retried with backoff
/// (`None`: nothing to retry).
fn retry_after(
    ctx: &Context,
    kind: &'static str,
    key: &ObjectKey,
    error: &Error,
) -> Option<Duration> {
    ctx.metrics
        .errors
        .get_or_create(&ErrorLabels {
            kind,
            reason: error.reason(),
        })
        .inc();
    if let Error::Kube(kube::Error::Api(status)) = error
        && status.code == 404
    {
        // Deleted meanwhile: nothing to retry, and no backoff to keep.
        ctx.reset_failures(key);
        return None;
    }
    let delay = ctx.backoff(key.clone());
    ctx.metrics
        .retries
        .get_or_create(&KindLabels { kind })
        .inc();
    warn!(object = %key, kind, error = %error, retry_in = ?delay, "reconcile failed");
    Some(delay)
}

/// The API of a kind in the watched scope.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs both controllers until `shutdown` completes; in-flight reconciles
/// finish first.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    readiness: Arc<ReplicaReadiness>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    run_with_leadership(
        client,
        settings,
        metrics,
        readiness,
        Leadership::always(),
        shutdown,
    )
    .await
}

/// Runs the watches, caches and index until `shutdown` completes, and both
/// controllers while `leadership` says this replica leads; in-flight
/// reconciles finish first on shutdown and are dropped when leadership is
/// lost (the fence refuses their writes already).
///
/// The path of one change: a watch event goes through
/// [`ingest`] (per-object tables, the cache, then triggers for the objects
/// it affects), the controller for its kind schedules a reconcile, the
/// reconcile computes the desired status with the pure core and the
/// [`StatusWriter`] patches it when it differs.
pub async fn run_with_leadership(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    readiness: Arc<ReplicaReadiness>,
    leadership: Leadership,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // New caches: ready again once both are listed.
    readiness.caches_lost();
    let namespace = settings.namespace.as_deref();
    // The ingest sends each change to the reconciles itself.
    let channel_cache = ChannelCache::default();
    let (phone_reader, phone_writer) = reflector::store::<PhoneConfiguration>();
    let index = Arc::new(Mutex::new(Index::default()));
    let ctx = Arc::new(Context {
        leadership: leadership.clone(),
        ..Context::new(
            client.clone(),
            channel_cache.clone(),
            phone_reader.clone(),
            index.clone(),
            readiness.clone(),
            metrics,
            settings.instance.clone(),
        )
    });

    // Channels to reconcile because another object changed,
    // PhoneConfigurations whose status to write once changes of the
    // references to them settle, and those to reconcile at once.
    let (channel_trigger, channel_triggers) = mpsc::unbounded::<ObjectKey>();
    let (phone_trigger, phone_requests) = mpsc::unbounded::<Request<ObjectKey>>();
    let (phone_now, phone_now_keys) = mpsc::unbounded::<ObjectKey>();
    let (settled, settled_keys) = mpsc::unbounded::<ObjectKey>();
    let coalescing = coalesce::forward(
        phone_requests,
        settled,
        coalesce::Coalescer::new(PHONE_CONFIGURATION_QUIET, settings.bound_channels_refresh),
    );
    let triggers = || ingest::Triggers {
        channels: channel_trigger.clone(),
        phone_configurations: phone_trigger.clone(),
        phone_configurations_now: phone_now.clone(),
    };

    // Each watch: resumed after a failure, relisted only when it must
    // ([`watch::resuming`]), each object decoded on its own (an unreadable
    // one is reported, not a failure of the watch). Once listed, a cache
    // stays whole: a relist updates it in place, and changes that come late
    // are not lost.
    // Streaming lists where the API server offers them, else pages of 500.
    let watch_config = watcher::Config::default().page_size(500).streaming_lists();
    let (channel_notices, phone_notices) = (
        unreadable::Mailbox::default(),
        unreadable::Mailbox::default(),
    );
    let channel_watch = unreadable::decoded(
        watch::resuming(
            scoped::<Stored<DeploymentChannel>>(&client, namespace),
            watch_config.clone(),
            Kind::DeploymentChannel,
            ctx.metrics.clone(),
        ),
        ctx.unreadable_channels.clone(),
        {
            let cache = channel_cache.clone();
            move || cache.keys()
        },
        channel_notices.clone(),
    );
    let phone_watch = unreadable::decoded(
        watch::resuming(
            scoped::<Stored<PhoneConfiguration>>(&client, namespace),
            watch_config,
            Kind::PhoneConfiguration,
            ctx.metrics.clone(),
        ),
        ctx.unreadable_phone_configurations.clone(),
        {
            let cache = phone_reader.clone();
            move || {
                cache
                    .state()
                    .iter()
                    .filter_map(|pc| ObjectKey::of(pc.as_ref()))
                    .collect()
            }
        },
        phone_notices.clone(),
    );
    let channel_ingest = ingest::channels(
        channel_watch,
        ingest::ChannelTables {
            index,
            tally: ingest::ReadyConditionTally::default(),
            cache: channel_cache.clone(),
            ctx: ctx.clone(),
        },
        phone_reader.clone(),
        triggers(),
    );
    let phone_ingest = ingest::phone_configurations(
        phone_watch,
        phone_writer,
        ingest::PhoneTables {
            versions: HashMap::new(),
            ctx: ctx.clone(),
        },
        triggers(),
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let concurrency = usize::from(settings.concurrency);
    // PhoneConfigurations come both at once (a change of their own, someone
    // else's edit of their status) and through the batch (changes of the
    // references to them); their own status writes need no reconcile.
    let (mut channel_triggers, mut phone_keys) = (
        channel_triggers,
        futures::stream::select(settled_keys, phone_now_keys),
    );
    let reconciling = {
        let (ctx, phone_now) = (ctx.clone(), phone_now.clone());
        async move {
            loop {
                // A standby: changes reach the caches and the index, not the reconciles.
                tokio::select! {
                    _ = leadership.acquired() => {}
                    _ = discard(&mut channel_triggers, &mut phone_keys) => {}
                    _ = stopped() => return,
                }
                enqueue_cached(&ctx, &channel_trigger, &phone_now);
                let term = futures::future::join(
                    reconcile_channels(&ctx, &mut channel_triggers, concurrency, stopped()),
                    reconcile_phone_configurations(&ctx, &mut phone_keys, concurrency, stopped()),
                );
                tokio::select! {
                    _ = term => return,
                    // Dropping the term cancels its in-flight reconciles.
                    _ = leadership.lost() => info!("not leading: reconciles stopped, caches kept"),
                }
            }
        }
    };
    let reporting = futures::future::join(
        unreadable::report::<DeploymentChannel>(channel_notices, ctx.clone()),
        unreadable::report::<PhoneConfiguration>(phone_notices, ctx.clone()),
    );
    let table_sizes = {
        let ctx = ctx.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                ctx.prune_departed();
                ctx.export_table_sizes();
            }
        }
    };
    let synced = async move {
        readiness.channels().await;
        readiness.phone_configurations().await;
        info!("caches synced");
    };

    info!(
        namespace = namespace.unwrap_or("<all>"),
        "controllers starting"
    );
    let controllers = async move {
        futures::join!(reconciling, synced);
    };
    let ingest = async move {
        futures::join!(
            channel_ingest,
            phone_ingest,
            coalescing,
            reporting,
            table_sizes
        );
    };
    tokio::pin!(controllers, ingest, shutdown);
    tokio::select! {
        _ = &mut controllers => {}
        _ = &mut ingest => {}
        _ = &mut shutdown => {
            info!("stopping: finishing in-flight reconciles");
            let _ = stop_tx.send(true);
            // The watches keep the caches fresh while the last reconciles finish.
            tokio::select! {
                _ = &mut controllers => {}
                _ = &mut ingest => {}
            }
        }
    }
    ctx.readiness.caches_lost();
    info!("controllers stopped");
}

/// Takes in triggers without acting on them, while standing by.
async fn discard(
    channels: &mut (impl futures::Stream<Item = ObjectKey> + Unpin),
    phone_configurations: &mut (impl futures::Stream<Item = ObjectKey> + Unpin),
) {
    use futures::StreamExt;
    loop {
        tokio::select! {
            Some(_) = channels.next() => {}
            Some(_) = phone_configurations.next() => {}
            else => return std::future::pending().await,
        }
    }
}

/// On taking the lead: every cached object once. Those whose stored status
/// is already right are not written.
fn enqueue_cached(
    ctx: &Context,
    channels: &mpsc::UnboundedSender<ObjectKey>,
    phone_configurations: &mpsc::UnboundedSender<ObjectKey>,
) {
    let keys = ctx.channels.keys();
    info!(
        channels = keys.len(),
        "leading: reconciling every cached object once"
    );
    for key in keys {
        let _ = channels.unbounded_send(key);
    }
    for pc in ctx.phone_configurations.state() {
        if let Some(key) = ObjectKey::of(pc.as_ref()) {
            let _ = phone_configurations.unbounded_send(key);
        }
    }
}

/// Every change reaches a reconcile through the ingest's triggers; a
/// channel deleted before its turn is not reconciled.
async fn reconcile_channels(
    ctx: &Arc<Context>,
    triggers: &mut mpsc::UnboundedReceiver<ObjectKey>,
    concurrency: usize,
    stop: impl Future<Output = ()>,
) {
    scheduler::run(
        triggers,
        concurrency,
        |key| {
            let ctx = ctx.clone();
            async move {
                let channel = ctx.channels.get(&key)?;
                reconcile_channel(channel, ctx).await
            }
        },
        pending_retries(ctx, Kind::DeploymentChannel),
        stop,
    )
    .await
}

/// PhoneConfigurations to reconcile, at once or once the references to them
/// settled: their own status writes come back as watch events and need no
/// reconcile.
async fn reconcile_phone_configurations(
    ctx: &Arc<Context>,
    keys: &mut (impl futures::Stream<Item = ObjectKey> + Unpin),
    concurrency: usize,
    stop: impl Future<Output = ()>,
) {
    scheduler::run(
        keys,
        concurrency,
        |key| {
            let ctx = ctx.clone();
            async move {
                let phone = ctx
                    .phone_configurations
                    .get(&ObjectRef::new(&key.name).within(&key.namespace))?;
                reconcile_phone_configuration(phone, ctx).await
            }
        },
        pending_retries(ctx, Kind::PhoneConfiguration),
        stop,
    )
    .await
}

/// The gauge of objects of `kind` waiting for a retry.
fn pending_retries(ctx: &Context, kind: Kind) -> prometheus_client::metrics::gauge::Gauge {
    ctx.metrics
        .pending_retries
        .get_or_create(&KindLabels {
            kind: kind.as_str(),
        })
        .clone()
}

#[cfg(test)]
mod tests;
