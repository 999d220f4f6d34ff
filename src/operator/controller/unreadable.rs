//! Objects the operator cannot read. The watches carry stored objects
//! ([`Stored`]); [`decoded`] decodes each on its own, so an unreadable one
//! never fails the list, a relist or the watch of the others. It leaves the
//! caches (to the rest of the operator it does not exist: it holds no claim,
//! and a channel referencing it learns why), is counted on `/metrics`, and is
//! reported where a user looks by [`report`]: a Warning Event once per
//! distinct problem, and `Ready=False`/`Stalled=True` when the API server
//! accepts that status.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt, channel::mpsc, future};
use kube::{
    Api, Resource,
    api::{ApiResource, DynamicObject},
    runtime::{
        events::{Event, EventType},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{Context, status_writer};
use crate::{
    core::api::{
        DeploymentChannel, DeploymentChannelStatus, PhoneConfiguration, PhoneConfigurationStatus,
    },
    core::decoding::{Decodable, Stored, decode},
    core::desired_status::{self, ChannelFacts},
    core::field_error::FieldError,
    core::index::ObjectKey,
    operator::metrics::{EventLabels, KindLabels, Metrics, ReconcileLabels},
};

/// The Event reason (and condition reason) for an unreadable object.
pub const REASON: &str = crate::core::desired_status::reason::INVALID_SPEC;

/// The unreadable objects of one kind and what is wrong with each.
pub struct Unreadable {
    kind: &'static str,
    problems: Mutex<HashMap<ObjectKey, FieldError>>,
    metrics: Arc<Metrics>,
}

impl Unreadable {
    pub fn new(kind: &'static str, metrics: Arc<Metrics>) -> Self {
        metrics
            .unreadable_objects
            .get_or_create(&KindLabels { kind })
            .set(0);
        Self {
            kind,
            problems: Mutex::default(),
            metrics,
        }
    }

    fn problems(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, FieldError>> {
        self.problems.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is wrong with an object, when it cannot be read.
    pub fn problem(&self, key: &ObjectKey) -> Option<FieldError> {
        self.problems().get(key).cloned()
    }

    /// How many objects cannot be read.
    pub fn len(&self) -> usize {
        self.problems().len()
    }

    /// Whether every object can be read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn keys(&self) -> Vec<ObjectKey> {
        self.problems().keys().cloned().collect()
    }

    fn set(&self, key: ObjectKey, problem: FieldError) {
        let mut problems = self.problems();
        problems.insert(key, problem);
        self.export(problems.len());
    }

    /// Forgets an object; whether it was unreadable.
    fn clear(&self, key: &ObjectKey) -> bool {
        let mut problems = self.problems();
        let was = problems.remove(key).is_some();
        self.export(problems.len());
        was
    }

    fn export(&self, count: usize) {
        self.metrics
            .unreadable_objects
            .get_or_create(&KindLabels { kind: self.kind })
            .set(count as i64);
    }
}

/// What the decoding tells the rest of the operator about one object.
pub enum Notice<K> {
    /// The object cannot be read: report the problem.
    Unreadable(FieldError, Box<Stored<K>>),
    /// The object can be read again: its report is over.
    Readable(ObjectKey),
    /// The object is gone: every table kept for it forgets it.
    Gone(ObjectKey),
    /// Try a failed report again.
    Retry(ObjectKey),
}

/// Decodes each stored object of a watch on its own (`cached` names the
/// objects the cache holds). Readable objects go on
/// as usual; an unreadable one is recorded in `unreadable` and announced on
/// `notices`, and leaves the caches (an `Apply` becomes a `Delete`). Objects
/// that vanished while the watch was down are announced gone when the
/// relist that notices it completes.
pub fn decoded<K>(
    events: impl Stream<Item = watcher::Result<watcher::Event<Stored<K>>>> + Send,
    unreadable: Arc<Unreadable>,
    cached: impl Fn() -> Vec<ObjectKey> + Send + 'static,
    notices: mpsc::UnboundedSender<Notice<K>>,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Decodable + Clone + Send + Sync + 'static,
{
    // During a relist: what was known before it, and what it listed.
    let mut before: HashSet<ObjectKey> = HashSet::new();
    let mut listed: HashSet<ObjectKey> = HashSet::new();
    events.filter_map(move |event| {
        let event = match event {
            Ok(event) => event,
            Err(error) => return future::ready(Some(Err(error))),
        };
        let out = match event {
            watcher::Event::Init => {
                listed.clear();
                before = cached().into_iter().chain(unreadable.keys()).collect();
                Some(watcher::Event::Init)
            }
            watcher::Event::InitApply(stored) => {
                let key = ObjectKey::of(&stored);
                if let Some(key) = &key {
                    listed.insert(key.clone());
                }
                match read(stored, key, &unreadable, &notices) {
                    Ok(object) => Some(watcher::Event::InitApply(object)),
                    Err(_) => None,
                }
            }
            watcher::Event::InitDone => {
                for key in before.drain().filter(|key| !listed.contains(key)) {
                    unreadable.clear(&key);
                    let _ = notices.unbounded_send(Notice::Gone(key));
                }
                listed = HashSet::new();
                Some(watcher::Event::InitDone)
            }
            watcher::Event::Apply(stored) => {
                let key = ObjectKey::of(&stored);
                match read(stored, key, &unreadable, &notices) {
                    Ok(object) => Some(watcher::Event::Apply(object)),
                    Err(metadata) => Some(watcher::Event::Delete(K::placeholder(*metadata))),
                }
            }
            watcher::Event::Delete(stored) => {
                if let Some(key) = ObjectKey::of(&stored) {
                    unreadable.clear(&key);
                    let _ = notices.unbounded_send(Notice::Gone(key));
                }
                let object = decode(stored).unwrap_or_else(|(_, s)| K::placeholder(s.metadata));
                Some(watcher::Event::Delete(object))
            }
        };
        future::ready(out.map(Ok))
    })
}

/// Decodes one object, recording and announcing whether it can be read.
fn read<K: Decodable>(
    stored: Stored<K>,
    key: Option<ObjectKey>,
    unreadable: &Unreadable,
    notices: &mpsc::UnboundedSender<Notice<K>>,
) -> Result<K, Box<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>> {
    match decode(stored) {
        Ok(object) => {
            if let Some(key) = key
                && unreadable.clear(&key)
            {
                info!(kind = unreadable.kind, object = %key, "object can be read again");
                let _ = notices.unbounded_send(Notice::Readable(key));
            }
            Ok(object)
        }
        Err((problem, stored)) => {
            let metadata = Box::new(stored.metadata.clone());
            if let Some(key) = key {
                if unreadable.problem(&key).as_ref() != Some(&problem) {
                    warn!(kind = unreadable.kind, object = %key, %problem, "cannot read object: skipping it until it is fixed");
                }
                unreadable.set(key, problem.clone());
            }
            let _ = notices.unbounded_send(Notice::Unreadable(problem, Box::new(stored)));
            Err(metadata)
        }
    }
}

/// A kind whose unreadable objects get a status.
pub trait Reported:
    Decodable + Resource<Scope = kube::core::NamespaceResourceScope> + Send + Sync + 'static
{
    type Status: Serialize + DeserializeOwned + PartialEq + Clone + Send;
    /// The status of an object that cannot be read for `problem`.
    fn unreadable_status(
        key: &ObjectKey,
        problem: &FieldError,
        generation: Option<i64>,
        previous: Option<&Self::Status>,
        ctx: &Context,
    ) -> Self::Status;
    /// The message of the Ready condition of a status.
    fn ready_message(status: &Self::Status) -> Option<&str>;
}

impl Reported for DeploymentChannel {
    type Status = DeploymentChannelStatus;

    fn unreadable_status(
        key: &ObjectKey,
        problem: &FieldError,
        generation: Option<i64>,
        previous: Option<&Self::Status>,
        ctx: &Context,
    ) -> Self::Status {
        let facts = ChannelFacts {
            namespace: &key.namespace,
            generation,
            validation: &Err(vec![problem.clone()]),
            phone_configuration: None,
            phone_configuration_problem: None,
            claim_holder: None,
        };
        desired_status::channel_status(&facts, previous, &(ctx.clock)())
    }

    fn ready_message(status: &Self::Status) -> Option<&str> {
        crate::core::api::find_condition(&status.conditions, desired_status::condition::READY)
            .map(|c| c.message.as_str())
    }
}

impl Reported for PhoneConfiguration {
    type Status = PhoneConfigurationStatus;

    fn unreadable_status(
        key: &ObjectKey,
        problem: &FieldError,
        generation: Option<i64>,
        previous: Option<&Self::Status>,
        ctx: &Context,
    ) -> Self::Status {
        desired_status::phone_configuration_status(
            generation,
            &Err(vec![problem.clone()]),
            ctx.index().bound_channels(key),
            previous,
            &(ctx.clock)(),
        )
    }

    fn ready_message(status: &Self::Status) -> Option<&str> {
        crate::core::api::find_condition(&status.conditions, desired_status::condition::READY)
            .map(|c| c.message.as_str())
    }
}

/// What was reported about one unreadable object.
struct Report<K: Reported> {
    /// The latest stored form, for a retry.
    stored: Box<Stored<K>>,
    problem: FieldError,
    /// The problem an Event was recorded for.
    event_for: Option<FieldError>,
    /// The problem and generation whose status the API server refused.
    refused: Option<(FieldError, Option<i64>)>,
    /// (resourceVersion the write replaced, the status written).
    written: Option<(String, K::Status)>,
    failures: u32,
}

/// Reports unreadable objects of one kind, and has every per-object table
/// forget the objects that are gone, until `notices` closes. `retries`
/// sends to `notices`.
pub async fn report<K: Reported>(
    mut notices: mpsc::UnboundedReceiver<Notice<K>>,
    retries: mpsc::UnboundedSender<Notice<K>>,
    ctx: Arc<Context>,
) {
    let kind = K::kind(&()).to_string();
    let mut reports: HashMap<ObjectKey, Report<K>> = HashMap::new();
    while let Some(notice) = notices.next().await {
        let key = match notice {
            Notice::Gone(key) => {
                reports.remove(&key);
                ctx.forget::<K>(&key);
                continue;
            }
            Notice::Readable(key) => {
                reports.remove(&key);
                continue;
            }
            Notice::Retry(key) => key,
            Notice::Unreadable(problem, stored) => {
                let Some(key) = ObjectKey::of(stored.as_ref()) else {
                    continue;
                };
                match reports.get_mut(&key) {
                    Some(report) => {
                        report.stored = stored;
                        report.problem = problem;
                    }
                    None => {
                        reports.insert(
                            key.clone(),
                            Report {
                                stored,
                                problem,
                                event_for: None,
                                refused: None,
                                written: None,
                                failures: 0,
                            },
                        );
                    }
                }
                key
            }
        };
        ctx.metrics
            .table_entries
            .get_or_create(&crate::operator::metrics::TableLabels {
                table: if kind == "DeploymentChannel" {
                    "unreadable_channel_reports"
                } else {
                    "unreadable_phone_configuration_reports"
                },
            })
            .set(reports.len() as i64);
        let Some(report) = reports.get_mut(&key) else {
            continue;
        };
        if let Err(delay) = report_one(&ctx, &kind, &key, report).await {
            let retries = retries.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = retries.unbounded_send(Notice::Retry(key));
            });
        }
    }
}

/// Records the Event and writes the status of one unreadable object; on a
/// failure worth retrying, how long to wait.
async fn report_one<K: Reported>(
    ctx: &Context,
    kind: &str,
    key: &ObjectKey,
    report: &mut Report<K>,
) -> Result<(), Duration> {
    let registry = if kind == "DeploymentChannel" {
        &ctx.unreadable_channels
    } else {
        &ctx.unreadable_phone_configurations
    };
    if registry.problem(key).is_none() {
        // Readable (or gone) since this report was queued: nothing to say.
        return Ok(());
    }
    let stored = &report.stored;
    let version = stored.metadata.resource_version.clone().unwrap_or_default();
    let generation = stored.metadata.generation;
    let cached: Option<K::Status> = stored
        .rest
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let previous = match &report.written {
        Some((replaced, written)) if *replaced == version => Some(written.clone()),
        _ => cached,
    };
    let message = report.problem.to_string();
    let already_says_so = previous
        .as_ref()
        .and_then(|s| K::ready_message(s))
        .is_some_and(|m| m == message);
    if report.event_for.as_ref() != Some(&report.problem) && !already_says_so {
        let event = Event {
            type_: EventType::Warning,
            reason: REASON.into(),
            note: Some(truncate(&format!(
                "cannot read {message}; the operator skips this {kind} until it is fixed"
            ))),
            action: "Decode".into(),
            secondary: None,
        };
        match ctx.recorder.publish(&event, &stored.object_ref(&())).await {
            Ok(()) => {
                ctx.metrics
                    .events
                    .get_or_create(&EventLabels { reason: REASON })
                    .inc();
            }
            Err(error) => warn!(%kind, object = %key, %error, "could not record the Event"),
        }
    }
    report.event_for = Some(report.problem.clone());
    let desired = K::unreadable_status(key, &report.problem, generation, previous.as_ref(), ctx);
    if previous.as_ref() == Some(&desired)
        || report.refused.as_ref() == Some(&(report.problem.clone(), generation))
    {
        return Ok(());
    }
    // Written as a plain object: its metadata decoded in full (the watch's
    // `Stored` form leaves managedFields out), since the apply's response
    // tells whether the API server reset them.
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &key.namespace,
        &ApiResource::erase::<K>(&()),
    );
    // Only onto the version the status was computed for: a write that
    // lands after the object was fixed would put back a stale Stalled.
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()),
        "metadata": {"resourceVersion": version}, "status": desired});
    let written = match status_writer::apply_status(&api, &key.name, &patch).await {
        Ok(_) => Ok(()),
        Err(error) if status_writer::cannot_apply(&error) => {
            let stored = stored.rest.get("status").cloned().unwrap_or(Value::Null);
            status_writer::merge_status(&api, &key.name, Some(&version), &stored, &patch["status"])
                .await
                .map(drop)
        }
        Err(error) => Err(error),
    };
    match written {
        Ok(()) => {
            report.failures = 0;
            report.written = Some((version, desired));
            ctx.metrics
                .reconciles
                .get_or_create(&ReconcileLabels {
                    kind: if kind == "DeploymentChannel" {
                        "DeploymentChannel"
                    } else {
                        "PhoneConfiguration"
                    },
                    result: "written",
                })
                .inc();
            Ok(())
        }
        // Gone, or changed since: the newer version gets its own notice.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(kube::Error::Api(status))
            if (400..500).contains(&status.code) && status.code != 429 =>
        {
            warn!(%kind, object = %key, error = %status.message, "the API server refused the status of an unreadable object; the Event stays, and the status is not written again until the object changes");
            report.refused = Some((report.problem.clone(), generation));
            Ok(())
        }
        Err(error) => {
            report.failures = report.failures.saturating_add(1);
            let delay = (Duration::from_millis(250) * (1u32 << (report.failures - 1).min(11)))
                .min(Duration::from_secs(300));
            warn!(%kind, object = %key, %error, retry_in = ?delay, "could not write the status of an unreadable object");
            Err(delay)
        }
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 1024;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use crate::operator::channel_cache::ChannelCache;
    use futures::stream;
    use serde_json::{Value, json};

    use super::*;

    fn stored(name: &str, spec: Value) -> Stored<DeploymentChannel> {
        serde_json::from_value(json!({
            "apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"}, "spec": spec}))
        .unwrap()
    }

    fn good(name: &str) -> Stored<DeploymentChannel> {
        stored(
            name,
            json!({"deploymentType": "WEB", "channelIdentifier": "https://a.example.com", "configuration": {}}),
        )
    }

    fn bad(name: &str) -> Stored<DeploymentChannel> {
        stored(
            name,
            json!({"deploymentType": "FAX", "channelIdentifier": "x", "configuration": {}}),
        )
    }

    /// What `decoded` passes on: (event, name) pairs.
    fn names(events: &[watcher::Event<DeploymentChannel>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                watcher::Event::Init => "Init".into(),
                watcher::Event::InitDone => "InitDone".into(),
                watcher::Event::InitApply(c) => {
                    format!("InitApply {}", c.metadata.name.as_deref().unwrap())
                }
                watcher::Event::Apply(c) => {
                    format!("Apply {}", c.metadata.name.as_deref().unwrap())
                }
                watcher::Event::Delete(c) => {
                    format!("Delete {}", c.metadata.name.as_deref().unwrap())
                }
            })
            .collect()
    }

    fn notices(rx: &mut mpsc::UnboundedReceiver<Notice<DeploymentChannel>>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(notice) = rx.try_recv() {
            seen.push(match notice {
                Notice::Unreadable(problem, stored) => format!(
                    "Unreadable {}: {problem}",
                    stored.metadata.name.as_deref().unwrap()
                ),
                Notice::Readable(key) => format!("Readable {}", key.name),
                Notice::Gone(key) => format!("Gone {}", key.name),
                Notice::Retry(key) => format!("Retry {}", key.name),
            });
        }
        seen
    }

    async fn run(
        events: Vec<watcher::Event<Stored<DeploymentChannel>>>,
        unreadable: &Arc<Unreadable>,
        cache: ChannelCache,
        tx: mpsc::UnboundedSender<Notice<DeploymentChannel>>,
    ) -> Vec<watcher::Event<DeploymentChannel>> {
        decoded(
            stream::iter(events.into_iter().map(Ok)),
            unreadable.clone(),
            move || cache.keys(),
            tx,
        )
        .map(|e| e.unwrap())
        .collect()
        .await
    }

    #[tokio::test]
    async fn an_unreadable_object_never_stops_a_list_or_a_watch() {
        let metrics = Arc::new(Metrics::default());
        let unreadable = Arc::new(Unreadable::new("DeploymentChannel", metrics.clone()));
        let cache = ChannelCache::default();
        let (tx, mut rx) = mpsc::unbounded();
        let out = run(
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(good("a")),
                watcher::Event::InitApply(bad("b")),
                watcher::Event::InitApply(good("c")),
                watcher::Event::InitDone,
                watcher::Event::Apply(bad("a")),
            ],
            &unreadable,
            cache.clone(),
            tx.clone(),
        )
        .await;
        assert_eq!(
            names(&out),
            ["Init", "InitApply a", "InitApply c", "InitDone", "Delete a"]
        );
        let fax = r#"spec.deploymentType: Unsupported value: "FAX": supported values: "CALLS", "SMS", "WEB", "MOBILE""#;
        assert_eq!(
            notices(&mut rx),
            [
                format!("Unreadable b: {fax}"),
                format!("Unreadable a: {fax}")
            ]
        );
        assert_eq!(unreadable.len(), 2);
        assert_eq!(
            unreadable
                .problem(&ObjectKey::new("ns", "b"))
                .unwrap()
                .field,
            "spec.deploymentType"
        );
        assert!(metrics.render().contains(
            "deploymentchannel_operator_unreadable_objects{kind=\"DeploymentChannel\"} 2"
        ));

        // Fixed, and deleted while the watch was down (the relist misses it).
        let out = run(
            vec![
                watcher::Event::Apply(good("a")),
                watcher::Event::Init,
                watcher::Event::InitApply(good("a")),
                watcher::Event::InitDone,
            ],
            &unreadable,
            cache,
            tx,
        )
        .await;
        assert_eq!(names(&out), ["Apply a", "Init", "InitApply a", "InitDone"]);
        assert_eq!(notices(&mut rx), ["Readable a", "Gone b"]);
        assert!(unreadable.is_empty());
        assert!(metrics.render().contains(
            "deploymentchannel_operator_unreadable_objects{kind=\"DeploymentChannel\"} 0"
        ));
    }

    #[tokio::test]
    async fn a_deleted_object_is_gone_readable_or_not() {
        let unreadable = Arc::new(Unreadable::new(
            "DeploymentChannel",
            Arc::new(Metrics::default()),
        ));
        let cache = ChannelCache::default();
        let (tx, mut rx) = mpsc::unbounded();
        let out = run(
            vec![
                watcher::Event::Apply(bad("b")),
                watcher::Event::Delete(bad("b")),
                watcher::Event::Delete(good("a")),
            ],
            &unreadable,
            cache,
            tx,
        )
        .await;
        assert_eq!(names(&out), ["Delete b", "Delete b", "Delete a"]);
        let seen = notices(&mut rx);
        assert_eq!(seen[1..], ["Gone b", "Gone a"]);
        assert!(unreadable.is_empty());
    }
}
