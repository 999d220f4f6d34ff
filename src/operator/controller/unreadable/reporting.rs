//! What a user sees of an unreadable object: a Warning Event once per
//! distinct problem, and `Ready=False`/`Stalled=True` when the API server
//! accepts that status.

use std::{sync::Arc, time::Duration};

use foldhash::{HashMap, HashSet};
use kube::{
    Api, Resource,
    api::{ApiResource, DynamicObject},
    runtime::events::{Event, EventType},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tokio::task::AbortHandle;
use tracing::warn;

use super::mailbox::{Mailbox, Notice, Pending, Sighting};
use crate::{
    core::{
        api::{
            DeploymentChannel, DeploymentChannelStatus, PhoneConfiguration,
            PhoneConfigurationStatus, find_condition,
        },
        decoding::Decodable,
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
struct Report {
    /// What the report needs of its latest stored form.
    sighting: Box<Sighting>,
    /// The problem an Event was recorded for.
    event_for: Option<FieldError>,
    /// The problem and generation whose status the API server refused.
    refused: Option<(FieldError, Option<i64>)>,
    /// (resourceVersion the write replaced, the status written).
    written: Option<(String, Value)>,
    failures: u32,
    /// The one pending retry, if a write failed.
    retry: Option<AbortHandle>,
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(retry) = self.retry.take() {
            retry.abort();
        }
    }
}

/// Reports unreadable objects of one kind, and has every per-object table
/// forget the objects that are gone. Keeps one report per unreadable
/// object; a standby keeps its reports (not a queue) for when it leads.
pub async fn report<K: Reported>(notices: Mailbox, ctx: Arc<Context>) {
    let mut reports: HashMap<ObjectKey, Report> = HashMap::default();
    // The objects whose report is to be (re)done once this replica leads.
    let mut due: HashSet<ObjectKey> = HashSet::default();
    let table = match K::KIND {
        Kind::DeploymentChannel => "unreadable_channel_reports",
        Kind::PhoneConfiguration => "unreadable_phone_configuration_reports",
    };
    loop {
        let leading = ctx.leadership.is_leading();
        tokio::select! {
            taken = notices.take() => {
                for (key, pending) in taken {
                    take_notice(&ctx, K::KIND, &mut reports, &mut due, key, pending);
                }
            }
            _ = ctx.leadership.acquired(), if !leading && !due.is_empty() => {}
        }
        ctx.metrics
            .table_entries
            .get_or_create(&TableLabels { table })
            .set(reports.len() as i64);
        if !ctx.leadership.is_leading() {
            continue;
        }
        for key in std::mem::take(&mut due) {
            let Some(report) = reports.get_mut(&key) else {
                continue;
            };
            if let Err(delay) = report_one::<K>(&ctx, &key, report).await {
                if let Some(previous) = report.retry.take() {
                    previous.abort();
                }
                let notices = notices.clone();
                report.retry = Some(
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        notices.send(key, Notice::Retry);
                    })
                    .abort_handle(),
                );
            }
        }
    }
}

/// Applies one object's news to the reports.
fn take_notice(
    ctx: &Context,
    kind: Kind,
    reports: &mut HashMap<ObjectKey, Report>,
    due: &mut HashSet<ObjectKey>,
    key: ObjectKey,
    pending: Pending,
) {
    if pending.forget {
        reports.remove(&key);
        due.remove(&key);
        ctx.forget(kind, &key);
    }
    match pending.notice {
        Notice::Gone => {}
        Notice::Readable => {
            reports.remove(&key);
            due.remove(&key);
        }
        Notice::Retry => {
            if reports.contains_key(&key) {
                due.insert(key);
            }
        }
        Notice::Unreadable(sighting) => {
            match reports.get_mut(&key) {
                Some(report) => report.sighting = sighting,
                None => {
                    reports.insert(
                        key.clone(),
                        Report {
                            sighting,
                            event_for: None,
                            refused: None,
                            written: None,
                            failures: 0,
                            retry: None,
                        },
                    );
                }
            }
            due.insert(key);
        }
    }
}

/// Records the Event and writes the status of one unreadable object; on a
/// failure worth retrying, how long to wait.
async fn report_one<K: Reported>(
    ctx: &Context,
    key: &ObjectKey,
    report: &mut Report,
) -> Result<(), Duration> {
    let kind = K::KIND.as_str();
    if ctx.unreadable(K::KIND).problem(key).is_none() {
        // Readable (or gone) since this report was queued: nothing to say.
        return Ok(());
    }
    let sighting = &report.sighting;
    let version = sighting.version.clone();
    let generation = sighting.generation;
    let previous: Option<K::Status> = match &report.written {
        Some((replaced, written)) if *replaced == version => Some(written),
        _ => sighting.status.as_ref(),
    }
    .and_then(|status| serde_json::from_value(status.clone()).ok());
    let message = report.sighting.problem.to_string();
    let already_says_so = previous
        .as_ref()
        .and_then(|s| K::ready_message(s))
        .is_some_and(|m| m == message);
    if report.event_for.as_ref() != Some(&report.sighting.problem) && !already_says_so {
        let event = Event {
            type_: EventType::Warning,
            reason: REASON.into(),
            note: Some(events::note(&format!(
                "cannot read {message}; the operator skips this {kind} until it is fixed"
            ))),
            action: "Decode".into(),
            secondary: None,
        };
        let regarding = sighting.reference.clone();
        events::publish(ctx, K::KIND, key, &event, &regarding, REASON).await;
    }
    report.event_for = Some(report.sighting.problem.clone());
    let desired = K::unreadable_status(
        key,
        &report.sighting.problem,
        generation,
        previous.as_ref(),
        ctx,
    );
    if previous.as_ref() == Some(&desired)
        || report.refused.as_ref() == Some(&(report.sighting.problem.clone(), generation))
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
    let mut patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()),
        "metadata": {"resourceVersion": version}, "status": desired});
    let written = match status_writer::apply_status(&api, &key.name, &patch).await {
        Ok(_) => Ok(()),
        Err(error) if status_writer::cannot_apply(&error) => {
            let stored = sighting.status.clone().unwrap_or(Value::Null);
            status_writer::merge_status(&api, &key.name, Some(&version), &stored, &patch["status"])
                .await
                .map(drop)
        }
        Err(error) => Err(error),
    };
    match written {
        Ok(()) => {
            report.failures = 0;
            report.written = Some((version, patch["status"].take()));
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
            report.refused = Some((report.sighting.problem.clone(), generation));
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
