//! The shell around the pure core: watches both kinds into caches and the
//! index, runs one controller per kind, and writes status.
//!
//! Data flow for each kind: watcher → strip metadata the operator never reads
//! → (channels: update the index) → reflector cache, shared by both
//! controllers → triggers for the objects a change affects.

mod channel;
mod coalesce;
mod ingest;
mod phone;
mod relist;
mod status_writer;
mod unreadable;

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, channel::mpsc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Client,
    runtime::{
        Controller,
        controller::{self, Action},
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tracing::{info, warn};

pub use channel::reconcile_channel;
pub use phone::reconcile_phone_configuration;

use crate::{
    api::{
        DeploymentChannel, DeploymentChannelStatus, PhoneConfiguration, PhoneConfigurationStatus,
    },
    decoding::Stored,
    field_error::FieldError,
    index::{Index, ObjectKey},
    metrics::{ErrorLabels, KindLabels, Metrics, ReconcileLabels, TableLabels},
};
use relist::{Cache, Wholeness};
use status_writer::StatusWriter;
pub use unreadable::Unreadable;

/// A PhoneConfiguration's status (its `boundChannels` above all) is written
/// once channels and PhoneConfigurations have stopped changing for this long…
const PHONE_CONFIGURATION_QUIET: Duration = Duration::from_secs(1);
/// …or this long after the first change of a burst.
const PHONE_CONFIGURATION_MAX_WAIT: Duration = Duration::from_secs(60);

/// The field manager of every status write, the same in every replica.
pub const FIELD_MANAGER: &str = "deploymentchannel-operator";

/// Errors of one reconcile; the controller backs off and retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    MissingMetadata(&'static str),
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: None,
            concurrency: 16,
            instance: None,
        }
    }
}

/// Whether each cache holds its first full list. (The caches' own
/// `wait_until_ready` wakes only one waiter at a time, so reconciles wait here.)
#[derive(Debug)]
pub struct CacheReadiness {
    channels: tokio::sync::watch::Sender<bool>,
    phone_configurations: tokio::sync::watch::Sender<bool>,
}

impl Default for CacheReadiness {
    fn default() -> Self {
        Self {
            channels: tokio::sync::watch::Sender::new(false),
            phone_configurations: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl CacheReadiness {
    /// Marks the channel cache as listed.
    pub fn channels_listed(&self) {
        self.channels.send_replace(true);
    }

    /// Marks the PhoneConfiguration cache as listed.
    pub fn phone_configurations_listed(&self) {
        self.phone_configurations.send_replace(true);
    }

    /// Waits until the channel cache is listed.
    pub async fn channels(&self) {
        let _ = self.channels.subscribe().wait_for(|listed| *listed).await;
    }

    /// Waits until the PhoneConfiguration cache is listed.
    pub async fn phone_configurations(&self) {
        let _ = self
            .phone_configurations
            .subscribe()
            .wait_for(|listed| *listed)
            .await;
    }

    /// Whether both caches are listed.
    pub fn all(&self) -> bool {
        *self.channels.borrow() && *self.phone_configurations.borrow()
    }
}

/// An object's uid and generation: a new one means a new spec.
type ObjectVersion = (Option<String>, Option<i64>);

/// What every reconcile reads and writes through.
pub struct Context {
    pub client: Client,
    pub channels: Store<DeploymentChannel>,
    pub phone_configurations: Store<PhoneConfiguration>,
    pub index: Arc<Mutex<Index>>,
    pub readiness: Arc<CacheReadiness>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The current time, second precision (status timestamps are RFC 3339 seconds).
    pub clock: fn() -> Time,
    channel_status: StatusWriter<DeploymentChannel, DeploymentChannelStatus>,
    phone_status: StatusWriter<PhoneConfiguration, PhoneConfigurationStatus>,
    failures: Mutex<HashMap<ObjectKey, u32>>,
    /// The objects of each kind that cannot be read.
    pub unreadable_channels: Arc<Unreadable>,
    pub unreadable_phone_configurations: Arc<Unreadable>,
    /// Each PhoneConfiguration's (uid, generation) last seen by the watch.
    phone_generations: Mutex<HashMap<ObjectKey, ObjectVersion>>,
}

impl Context {
    /// A context over the given caches and index.
    pub fn new(
        client: Client,
        channels: Store<DeploymentChannel>,
        phone_configurations: Store<PhoneConfiguration>,
        index: Arc<Mutex<Index>>,
        readiness: Arc<CacheReadiness>,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Self {
            unreadable_channels: Arc::new(Unreadable::new("DeploymentChannel", metrics.clone())),
            unreadable_phone_configurations: Arc::new(Unreadable::new(
                "PhoneConfiguration",
                metrics.clone(),
            )),
            phone_generations: Mutex::default(),
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
        }
    }

    /// The index, for a short read or update.
    pub fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Uses these records of unreadable objects (those the watches fill).
    pub fn with_unreadable(mut self, channels: Arc<Unreadable>, phones: Arc<Unreadable>) -> Self {
        self.unreadable_channels = channels;
        self.unreadable_phone_configurations = phones;
        self
    }

    /// Why the PhoneConfiguration `name` in `namespace` cannot be read, when
    /// it exists (is not `cached`) but cannot.
    fn unreadable_phone_configuration(
        &self,
        name: Option<&str>,
        namespace: &str,
        cached: bool,
    ) -> Option<FieldError> {
        let name = name.filter(|_| !cached)?;
        self.unreadable_phone_configurations
            .problem(&ObjectKey::new(namespace, name))
    }

    /// Forgets everything kept for an object of kind `K` that is gone.
    pub fn forget<K: kube::Resource<DynamicType = ()>>(&self, key: &ObjectKey) {
        self.reset_failures(key);
        if K::kind(&()) == "DeploymentChannel" {
            self.channel_status.forget(key);
        } else {
            self.phone_status.forget(key);
            self.phone_generations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
        }
    }

    /// Drops what is still kept for objects no longer cached: a record
    /// made by a reconcile that finished after its object's deletion was
    /// processed.
    pub fn prune_departed(&self) {
        let channel = |key: &ObjectKey| {
            self.channels
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .is_some()
        };
        let phone = |key: &ObjectKey| {
            self.phone_configurations
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .is_some()
        };
        self.channel_status.retain(channel);
        self.phone_status.retain(phone);
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| channel(key) || phone(key));
        self.phone_generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| phone(key));
    }

    /// Exports the size of every table kept per object.
    pub fn export_table_sizes(&self) {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let generations = self
            .phone_generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let (channels, claims, references) = {
            let index = self.index();
            (index.len(), index.claims_len(), index.references_len())
        };
        for (table, size) in [
            ("channel_status_writes", self.channel_status.len()),
            ("phone_configuration_status_writes", self.phone_status.len()),
            ("backoff_counters", failures),
            ("phone_configuration_generations", generations),
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

    fn reset_failures(&self, key: &ObjectKey) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Exponential backoff per object: 250 ms, 500 ms, 1 s … capped at 5 minutes.
    fn backoff(&self, key: ObjectKey) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        (Duration::from_millis(250) * (1u32 << (*count - 1).min(11))).min(Duration::from_secs(300))
    }
}

/// The current time truncated to whole seconds.
pub fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).expect("now is a valid timestamp"))
}

/// Runs one reconcile, recording its duration and outcome.
async fn measured(
    metrics: &Metrics,
    kind: &'static str,
    reconcile: impl Future<Output = Result<status_writer::Written, Error>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile.await;
    metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    let result_label = match &result {
        Ok(status_writer::Written::Patched) => "written",
        Ok(status_writer::Written::Unchanged) => "unchanged",
        Err(_) => "error",
    };
    metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind,
            result: result_label,
        })
        .inc();
    result.map(|_| Action::await_change())
}

fn error_policy<K: kube::Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let kind: &'static str = if K::kind(&()) == "DeploymentChannel" {
        "DeploymentChannel"
    } else {
        "PhoneConfiguration"
    };
    ctx.metrics
        .errors
        .get_or_create(&ErrorLabels {
            kind,
            reason: error.reason(),
        })
        .inc();
    let key = ObjectKey::of(object.as_ref()).unwrap_or_else(|| ObjectKey::new("", ""));
    if let Error::Kube(kube::Error::Api(status)) = error
        && status.code == 404
    {
        // Deleted meanwhile: nothing to retry, and no backoff to keep.
        ctx.reset_failures(&key);
        return Action::await_change();
    }
    let delay = ctx.backoff(key.clone());
    warn!(object = %key, kind, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs both controllers until `shutdown` completes; in-flight reconciles
/// finish first.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (channel_api, phone_api): (
        Api<Stored<DeploymentChannel>>,
        Api<Stored<PhoneConfiguration>>,
    ) = match &settings.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let (channel_reader, channel_writer) = reflector::store_shared::<DeploymentChannel>(1024);
    let (phone_reader, phone_writer) = reflector::store_shared::<PhoneConfiguration>(1024);
    let channel_events = channel_writer
        .subscribe()
        .expect("a shared store has subscribers");
    let phone_events = phone_writer
        .subscribe()
        .expect("a shared store has subscribers");
    let index = Arc::new(Mutex::new(Index::default()));
    let readiness = Arc::new(CacheReadiness::default());
    let (channel_trigger, channel_triggers) = mpsc::unbounded::<ObjectRef<DeploymentChannel>>();
    // PhoneConfigurations to reconcile (new specs, changed bound channels),
    // batched until channel activity settles.
    let (bound_changed, bound_changes) = mpsc::unbounded::<Option<ObjectKey>>();
    let spec_changed = bound_changed.clone();
    let (bound_settled, bound_settled_rx) = mpsc::unbounded::<ObjectKey>();
    let coalescing = coalesce::forward(
        bound_changes,
        bound_settled,
        coalesce::Coalescer::new(PHONE_CONFIGURATION_QUIET, PHONE_CONFIGURATION_MAX_WAIT),
    );
    let phone_triggers =
        bound_settled_rx.map(|key| ObjectRef::new(&key.name).within(&key.namespace));

    let watch_config = watcher::Config::default().page_size(500);
    let wholeness = Arc::new(Wholeness::new(metrics.clone()));
    let unreadable_channels = Arc::new(Unreadable::new("DeploymentChannel", metrics.clone()));
    let unreadable_phones = Arc::new(Unreadable::new("PhoneConfiguration", metrics.clone()));
    let (channel_notices, channel_notices_rx) = mpsc::unbounded();
    let (phone_notices, phone_notices_rx) = mpsc::unbounded();
    let channel_ingest = ingest::channels(
        wholeness.track(
            Cache::Channels,
            unreadable::decoded(
                relist::relisting(channel_api, watch_config.clone()),
                unreadable_channels.clone(),
                channel_reader.clone(),
                channel_notices.clone(),
            ),
        ),
        channel_writer,
        index.clone(),
        readiness.clone(),
        phone_reader.clone(),
        ingest::Triggers {
            channels: channel_trigger.clone(),
            phone_configurations: bound_changed,
        },
        metrics.clone(),
    );
    let phone_ingest = ingest::phone_configurations(
        wholeness.track(
            Cache::PhoneConfigurations,
            unreadable::decoded(
                relist::relisting(phone_api, watch_config),
                unreadable_phones.clone(),
                phone_reader.clone(),
                phone_notices.clone(),
            ),
        ),
        phone_writer,
        index.clone(),
        readiness.clone(),
        channel_trigger,
        metrics.clone(),
    );

    let ctx = Arc::new(
        Context::new(
            client,
            channel_reader.clone(),
            phone_reader.clone(),
            index,
            readiness.clone(),
            metrics.clone(),
            settings.instance.clone(),
        )
        .with_unreadable(unreadable_channels, unreadable_phones),
    );
    let reporting = futures::future::join(
        unreadable::report(channel_notices_rx, channel_notices, ctx.clone()),
        unreadable::report(phone_notices_rx, phone_notices, ctx.clone()),
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
    let config = controller::Config::default().concurrency(settings.concurrency);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let channel_controller = Controller::for_shared_stream(channel_events, channel_reader.clone())
        .with_config(config.clone())
        .reconcile_on(channel_triggers)
        .graceful_shutdown_on(stopped())
        .run(reconcile_channel, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    // A PhoneConfiguration's own status writes come back as watch events:
    // only a new spec (or a status that lags its spec) needs a reconcile.
    // Those go through the same batch as bound-channel changes, so that a
    // bulk apply writes each PhoneConfiguration's status once.
    let spec_ctx = ctx.clone();
    let phone_spec_changes = phone_events.for_each(move |pc| {
        let mut generations = spec_ctx
            .phone_generations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let current = pc
            .status
            .as_ref()
            .is_some_and(|s| s.observed_generation == pc.metadata.generation);
        if let Some(key) = ObjectKey::of(pc.as_ref()) {
            let version = (pc.metadata.uid.clone(), pc.metadata.generation);
            let seen = generations.insert(key.clone(), version.clone()) == Some(version);
            if !(seen && current) {
                let _ = spec_changed.unbounded_send(Some(key));
            }
        }
        futures::future::ready(())
    });
    let phone_controller =
        Controller::for_shared_stream(futures::stream::pending(), phone_reader.clone())
            .with_config(config)
            .reconcile_on(phone_triggers)
            .graceful_shutdown_on(stopped())
            .run(reconcile_phone_configuration, error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(()));
    let synced = async move {
        readiness.channels().await;
        readiness.phone_configurations().await;
        info!("caches synced");
    };

    info!(
        namespace = settings.namespace.as_deref().unwrap_or("<all>"),
        "controllers starting"
    );
    let controllers = async move {
        futures::join!(channel_controller, phone_controller, synced);
    };
    let ingest = async move {
        futures::join!(
            channel_ingest,
            phone_ingest,
            phone_spec_changes,
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
    metrics.caches_synced.set(0);
    info!("controllers stopped");
}

#[cfg(test)]
mod tests;
