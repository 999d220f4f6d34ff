//! Status writes: only when the desired status differs from what is stored,
//! to the status subresource, by server-side apply with one field manager.

use std::fmt::Debug;

use foldhash::HashMap;

use parking_lot::Mutex;

use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};
use tracing::info;

use super::{Error, FIELD_MANAGER};
use crate::{core::index::ObjectKey, operator::channel_cache::Digest};

/// What a reconcile knows of an object's current status: its digest, and
/// the status itself as far as the status computation reads it (the
/// channel cache keeps only each condition's type, status and transition
/// time).
#[derive(Clone, Debug)]
pub struct Current<S> {
    pub digest: Digest,
    pub status: S,
}

impl<S: Serialize> Current<S> {
    /// A status known in full.
    pub fn full(status: S) -> Self {
        Self {
            digest: Digest::of(&status),
            status,
        }
    }
}

/// Remembers each status this replica wrote until the cache shows it, so a
/// reconcile that runs before the watch delivers our own write starts from
/// what was written, not from the stale cached status, and does not write
/// the same status again. An entry goes when the watch delivers the version
/// the write made or a later one ([`cached`](Self::cached)), or at the first
/// reconcile that finds the cache past the version the write replaced.
pub struct StatusWriter<K: Resource, S> {
    /// Object → its write the cache does not show yet.
    in_flight: Mutex<HashMap<ObjectKey, InFlight<S>>>,
    _kind: std::marker::PhantomData<fn() -> K>,
}

impl<K: Resource, S> Default for StatusWriter<K, S> {
    fn default() -> Self {
        Self {
            in_flight: Mutex::default(),
            _kind: std::marker::PhantomData,
        }
    }
}

/// A write the cache does not show yet.
struct InFlight<S> {
    /// The resourceVersion the cache showed when the write was computed.
    replaced: Box<str>,
    /// The resourceVersions this replica's writes made since then, oldest
    /// first: a second write can land before the watch brings the first.
    made: Vec<Box<str>>,
    /// What the last of them wrote.
    status: Current<S>,
}

/// How a version the cache shows relates to a write in flight.
enum Seen {
    /// The version the write replaced: the write is still to come.
    Replaced,
    /// An earlier write of ours; the last one is still to come.
    OursBeforeTheLast,
    /// What the last write made.
    TheLast,
    /// Someone else's change.
    Other,
}

/// Notes that the cache shows `version` of `key`: a record the cache
/// caught up with or moved past goes, one the cache shows an earlier write
/// of is now measured from it. Answers how the version relates to the
/// record, `None` without one.
fn observe<S>(
    in_flight: &mut HashMap<ObjectKey, InFlight<S>>,
    key: &ObjectKey,
    version: &str,
) -> Option<Seen> {
    let write = in_flight.get_mut(key)?;
    if *write.replaced == *version {
        return Some(Seen::Replaced);
    }
    let seen = match write.made.iter().position(|made| **made == *version) {
        Some(i) if i + 1 < write.made.len() => {
            write.made.drain(..=i);
            write.replaced = version.into();
            return Some(Seen::OursBeforeTheLast);
        }
        Some(_) => Seen::TheLast,
        None => Seen::Other,
    };
    in_flight.remove(key);
    Some(seen)
}

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// The status was patched.
    Patched,
    /// The stored (or just written) status already is the desired one.
    Unchanged,
    /// The object was deleted, re-created or changed by someone else
    /// before the write reached it (its watch event brings the next reconcile).
    Gone,
}

impl<K, S> StatusWriter<K, S>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
    S: Serialize + Clone,
{
    /// Forgets a deleted object.
    pub fn forget(&self, key: &ObjectKey) {
        self.in_flight.lock().remove(key);
    }

    /// How many objects have a write the cache does not show yet.
    pub fn len(&self) -> usize {
        self.in_flight.lock().len()
    }

    /// The object's current status: the one this replica last wrote while the
    /// cache still shows `version`, the version that write replaced; else
    /// the cached one.
    pub fn current(
        &self,
        key: &ObjectKey,
        version: &str,
        cached: Option<Current<S>>,
    ) -> Option<Current<S>> {
        let mut in_flight = self.in_flight.lock();
        match observe(&mut in_flight, key, version) {
            Some(Seen::Replaced | Seen::OursBeforeTheLast) => {
                in_flight.get(key).map(|write| write.status.clone())
            }
            // The cache caught up, or moved on: trust it from now on.
            _ => cached,
        }
    }

    /// Writes `desired` to the object `key`, cached at `version`, unless
    /// `current` (from [`current`](Self::current)) already is it.
    ///
    /// Only onto the version the status was computed from: the cached one,
    /// or the one this replica's last write made. An object deleted and
    /// re-created under the same name since, or changed by someone else,
    /// is not written (`Gone`): its watch event brings a reconcile of its
    /// own.
    pub async fn write(
        &self,
        api: &Api<K>,
        key: &ObjectKey,
        version: &str,
        current: Option<Digest>,
        desired: &S,
    ) -> Result<Written, Error> {
        let digest = Digest::of(desired);
        if current == Some(digest) {
            return Ok(Written::Unchanged);
        }
        let mut patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": desired,
        });
        let holds = self
            .in_flight
            .lock()
            .get(key)
            .and_then(|write| write.made.last().map(ToString::to_string))
            .unwrap_or_else(|| version.to_string());
        if !holds.is_empty() {
            patch["metadata"] = json!({ "resourceVersion": holds });
        }
        let made = match apply_status(api, &key.name, &patch).await {
            Ok(made) => made,
            // Deleted (churn), re-created or changed meanwhile: its events are on their way.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                return Ok(Written::Gone);
            }
            Err(error) => return Err(error.into()),
        };
        let mut in_flight = self.in_flight.lock();
        // A write on top of earlier ones the cache does not show yet: they
        // stay ours (the record kept is always at the cache's version or,
        // if the watch brought one of them meanwhile, past it).
        let (replaced, mut ours) = match in_flight.remove(key) {
            Some(earlier) => (earlier.replaced, earlier.made),
            None => (version.into(), Vec::new()),
        };
        ours.extend(made.map(String::into_boxed_str));
        let write = InFlight {
            replaced,
            made: ours,
            status: Current {
                digest,
                status: desired.clone(),
            },
        };
        in_flight.insert(key.clone(), write);
        Ok(Written::Patched)
    }

    /// The cache now holds version `version` of `key`: forgets a write it
    /// shows or that someone else's change overtook. Answers whether that
    /// version is one this replica's writes made, which needs no reconcile:
    /// its inputs are those the write was computed from (a change of any of
    /// them brings its own).
    pub fn cached(&self, key: &ObjectKey, version: &str) -> bool {
        let seen = observe(&mut self.in_flight.lock(), key, version);
        matches!(seen, Some(Seen::OursBeforeTheLast | Seen::TheLast))
    }

    /// Keeps only the records of objects for which `keep` holds.
    pub fn retain(&self, mut keep: impl FnMut(&ObjectKey) -> bool) {
        self.in_flight.lock().retain(|key, _| keep(key));
    }
}

/// Applies `patch` (apiVersion, kind, status, perhaps a resourceVersion to
/// hold to) to the status subresource under the operator's field manager,
/// then removes what an earlier managedFields reset left (see
/// [`replace_leftovers`]). Answers the resourceVersion the writes made,
/// when known.
pub(super) async fn apply_status<R>(
    api: &Api<R>,
    name: &str,
    patch: &Value,
) -> Result<Option<String>, kube::Error>
where
    R: Resource + Clone,
{
    let written = patch_status(
        api,
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    replace_leftovers(api, name, written, &patch["status"]).await
}

/// What the API server answers to a status write, read only as far as the
/// writer needs it: the whole object comes back, with managedFields, and
/// decoding all of it for every write cost more than building the write.
#[derive(Debug, Deserialize)]
pub(super) struct Answer {
    metadata: AnswerMetadata,
    #[serde(default)]
    status: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerMetadata {
    resource_version: Option<String>,
    #[serde(default)]
    managed_fields: Vec<FieldManager>,
}

/// Of a managedFields entry, only who manages it.
#[derive(Debug, Deserialize)]
struct FieldManager {
    manager: Option<String>,
}

impl Answer {
    /// The resourceVersion the write made.
    pub(super) fn resource_version(self) -> Option<String> {
        self.metadata.resource_version
    }
}

/// `Api::patch_status`, answering only what [`Answer`] reads.
async fn patch_status<R, P>(
    api: &Api<R>,
    name: &str,
    params: &PatchParams,
    patch: &Patch<P>,
) -> Result<Answer, kube::Error>
where
    R: Resource + Clone,
    P: Serialize + Debug,
{
    let mut request = kube::core::Request::new(api.resource_url())
        .patch_subresource("status", name, params, patch)
        .map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("patch_status");
    api.clone().into_client().request::<Answer>(request).await
}

/// The manager the API server gives the fields of an object whose
/// managedFields it reset, at the next apply.
const RESET_MANAGER: &str = "before-first-apply";

/// An apply removes only the fields its manager owns. When the API server
/// resets an object's managedFields (it does so after an update it cannot
/// track, such as a fix of a spec that its schema refused), the next apply
/// hands everything already there to `before-first-apply`, and a condition
/// this operator wrote before — `Stalled` on a channel fixed since — would
/// stay for good. So when the object an apply returns shows such fields and
/// a status other than the one applied, the status is replaced once by a
/// merge patch, which removes what the apply could not.
async fn replace_leftovers<R>(
    api: &Api<R>,
    name: &str,
    written: Answer,
    desired: &Value,
) -> Result<Option<String>, kube::Error>
where
    R: Resource + Clone,
{
    let reset = written
        .metadata
        .managed_fields
        .iter()
        .any(|m| m.manager.as_deref() == Some(RESET_MANAGER));
    if !reset || written.status == *desired {
        return Ok(written.resource_version());
    }
    info!(
        object = name,
        "replacing status fields left from before the object's managedFields were reset"
    );
    // Only onto the object just written: a newer one gets its own reconcile.
    let version = written.metadata.resource_version.as_deref();
    match merge_status(api, name, version, &written.status, desired).await {
        Ok(merged) => Ok(merged.resource_version()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(error) => Err(error),
    }
}

/// Whether an apply failed because the API server cannot apply to the
/// object at all: its stored form does not fit the schema (a wrong JSON
/// type), so the server cannot build the typed object an apply needs. An
/// update of the status still works there.
pub(super) fn cannot_apply(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status)
        if status.code == 500 && status.message.contains("failed to create typed live object"))
}

/// Turns the stored status `current` into `desired` with a JSON merge patch,
/// only while the object is at `resource_version` when one is given (else
/// the API server answers 409 Conflict).
pub(super) async fn merge_status<R>(
    api: &Api<R>,
    name: &str,
    resource_version: Option<&str>,
    current: &Value,
    desired: &Value,
) -> Result<Answer, kube::Error>
where
    R: Resource + Clone,
{
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let mut patch = json!({ "status": replacing(current, desired) });
    if let Some(version) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    patch_status(api, name, &params, &Patch::Merge(&patch)).await
}

/// A JSON merge patch that turns `current` into `desired`: what `desired`
/// holds, and `null` for every field only `current` has.
fn replacing(current: &Value, desired: &Value) -> Value {
    match (current, desired) {
        (Value::Object(current), Value::Object(desired)) => {
            let mut patch: Map<String, Value> = desired
                .iter()
                .map(|(field, value)| {
                    let value = match current.get(field) {
                        Some(old) => replacing(old, value),
                        None => value.clone(),
                    };
                    (field.clone(), value)
                })
                .collect();
            for field in current.keys().filter(|f| !desired.contains_key(*f)) {
                patch.insert(field.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => desired.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_removes_what_only_the_current_status_has() {
        let current = json!({
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "Stalled", "status": "True"}],
            "phoneConfiguration": {"name": "line", "uid": "u", "extra": 1},
        });
        let desired = json!({
            "observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True"}],
            "phoneConfiguration": {"name": "line", "uid": "u"},
        });
        assert_eq!(
            replacing(&current, &desired),
            json!({
                "observedGeneration": 2,
                "conditions": [{"type": "Ready", "status": "True"}],
                "phoneConfiguration": {"name": "line", "uid": "u", "extra": null},
            })
        );
        assert_eq!(
            replacing(&current, &json!({"observedGeneration": 2})),
            json!({"observedGeneration": 2, "conditions": null, "phoneConfiguration": null})
        );
        assert_eq!(replacing(&Value::Null, &desired), desired);
    }
}
