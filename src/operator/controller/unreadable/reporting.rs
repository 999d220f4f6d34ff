//! What a user sees of an unreadable object: a Warning Event once per
//! distinct problem, and `Ready=False`/`Stalled=True` when the API server
//! accepts that status.

use std::{sync::Arc, time::Duration};

use foldhash::HashMap;
use futures::{StreamExt, channel::mpsc};
use kube::{
    Api, Resource,
    api::{ApiResource, DynamicObject},
    runtime::events::{Event, EventType},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tracing::warn;

use super::decoding::Notice;
use crate::{
    core::{
        api::{
            DeploymentChannel, DeploymentChannelStatus, PhoneConfiguration,
            PhoneConfigurationStatus, find_condition,
        },
        decoding::{Decodable, Stored},
        desired_status::{self, ChannelFacts},
        field_error::FieldError,
        index::ObjectKey,
    },
    operator::{
        controller::{Context, Kind, backoff_delay, events, status_writer},
        metrics::{ReconcileLabels, TableLabels},
    },
};

/// The Event reason (and condition reason) for an unreadable object.
pub const REASON: &str = desired_status::reason::INVALID_SPEC;

/// A kind whose unreadable objects get a status.
pub trait Reported:
    Decodable + Resource<Scope = kube::core::NamespaceResourceScope> + Send + Sync + 'static
{
    /// The kind, for the tables, labels and logs.
    const KIND: Kind;
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
    const KIND: Kind = Kind::DeploymentChannel;
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
        find_condition(&status.conditions, desired_status::condition::READY)
            .map(|c| c.message.as_str())
    }
}

impl Reported for PhoneConfiguration {
    const KIND: Kind = Kind::PhoneConfiguration;
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
        find_condition(&status.conditions, desired_status::condition::READY)
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
    let mut reports: HashMap<ObjectKey, Report<K>> = HashMap::default();
    loop {
        // A standby keeps the notices for when it leads.
        ctx.leadership.acquired().await;
        let Some(notice) = notices.next().await else {
            break;
        };
        let key = match notice {
            Notice::Gone(key) => {
                reports.remove(&key);
                ctx.forget(K::KIND, &key);
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
        let table = match K::KIND {
            Kind::DeploymentChannel => "unreadable_channel_reports",
            Kind::PhoneConfiguration => "unreadable_phone_configuration_reports",
        };
        ctx.metrics
            .table_entries
            .get_or_create(&TableLabels { table })
            .set(reports.len() as i64);
        let Some(report) = reports.get_mut(&key) else {
            continue;
        };
        if let Err(delay) = report_one(&ctx, &key, report).await {
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
    key: &ObjectKey,
    report: &mut Report<K>,
) -> Result<(), Duration> {
    let kind = K::KIND.as_str();
    if ctx.unreadable(K::KIND).problem(key).is_none() {
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
            note: Some(events::note(&format!(
                "cannot read {message}; the operator skips this {kind} until it is fixed"
            ))),
            action: "Decode".into(),
            secondary: None,
        };
        let regarding = stored.object_ref(&());
        events::publish(ctx, K::KIND, key, &event, &regarding, REASON).await;
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
                    kind,
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
            let delay = backoff_delay(report.failures, fastrand::f64());
            warn!(%kind, object = %key, %error, retry_in = ?delay, "could not write the status of an unreadable object");
            Err(delay)
        }
    }
}
