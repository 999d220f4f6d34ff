//! Status writes: only when the desired status differs from what is stored,
//! to the status subresource, by server-side apply with one field manager.

use std::{collections::BTreeSet, fmt::Debug};

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

/// Of a managedFields entry, who manages it and which status fields.
#[derive(Debug, Deserialize)]
struct FieldManager {
    manager: Option<String>,
    #[serde(rename = "fieldsV1", default, deserialize_with = "status_fields")]
    status_fields: Option<Map<String, Value>>,
}

/// Of a `fieldsV1` tree, only its `f:status` subtree.
fn status_fields<'de, D: serde::Deserializer<'de>>(
    input: D,
) -> Result<Option<Map<String, Value>>, D::Error> {
    let fields = Option::<Map<String, Value>>::deserialize(input)?;
    Ok(fields
        .and_then(|mut fields| fields.remove("f:status"))
        .and_then(|status| match status {
            Value::Object(status) => Some(status),
            _ => None,
        }))
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
/// track, such as a fix of a spec that its schema refused), the status
/// fields this operator wrote before belong to no one, or to
/// `before-first-apply`, and a condition no longer wanted — `Stalled` on a
/// channel fixed since — would stay for good. So after an apply, the status
/// fields that no other manager owns and the desired status does not hold
/// are removed by one merge patch ([`leftovers`]). Fields another manager
/// owns stay, and once the leftovers are gone there are none, so later
/// writes send nothing more: one repair per reset.
async fn replace_leftovers<R>(
    api: &Api<R>,
    name: &str,
    written: Answer,
    desired: &Value,
) -> Result<Option<String>, kube::Error>
where
    R: Resource + Clone,
{
    let Some(removal) = leftovers(&written, desired) else {
        return Ok(written.resource_version());
    };
    info!(
        object = name,
        "removing status fields left from before the object's managedFields were reset"
    );
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    // Only onto the object just written: a newer one gets its own reconcile.
    let mut patch = json!({ "status": removal });
    if let Some(version) = written.metadata.resource_version.as_deref() {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    match patch_status(api, name, &params, &Patch::Merge(&patch)).await {
        Ok(merged) => Ok(merged.resource_version()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(error) => Err(error),
    }
}

/// A JSON merge patch of the status that removes what a reset left
/// (fields no manager but this operator or `before-first-apply` owns, that
/// `desired` does not hold), or `None` when there is nothing.
fn leftovers(written: &Answer, desired: &Value) -> Option<Value> {
    if written.status == *desired {
        return None;
    }
    let mut others = Map::new();
    let mut ours = Map::new();
    for entry in &written.metadata.managed_fields {
        let Some(fields) = &entry.status_fields else {
            continue;
        };
        match entry.manager.as_deref() {
            Some(FIELD_MANAGER) => merge_fields(&mut ours, fields),
            Some(RESET_MANAGER) => {}
            _ => merge_fields(&mut others, fields),
        }
    }
    removal(Some(&others), Some(&ours), &written.status, desired)
}

/// Adds the fields of `more` to `into`.
fn merge_fields(into: &mut Map<String, Value>, more: &Map<String, Value>) {
    for (field, sub) in more {
        match (into.get_mut(field), sub) {
            (Some(Value::Object(have)), Value::Object(sub)) => merge_fields(have, sub),
            (Some(_), _) => {}
            (None, _) => {
                into.insert(field.clone(), sub.clone());
            }
        }
    }
}

/// Of `current`, what `others` do not own and `desired` does not hold, as
/// a merge patch: `null` for a field, the list without those items for a
/// map-type list (a merge patch replaces lists whole; its keys are read
/// from the `k:` entries of `others` and `ours`; a list with none is left
/// alone).
fn removal(
    others: Option<&Map<String, Value>>,
    ours: Option<&Map<String, Value>>,
    current: &Value,
    desired: &Value,
) -> Option<Value> {
    match current {
        Value::Object(current) => {
            let mut patch = Map::new();
            for (name, value) in current {
                let field = format!("f:{name}");
                let owned = others.is_some_and(|o| o.contains_key(&field));
                let change = match desired.get(name) {
                    None if !owned => Some(Value::Null),
                    wanted => removal(
                        subtree(others, &field),
                        subtree(ours, &field),
                        value,
                        wanted.unwrap_or(&Value::Null),
                    ),
                };
                if let Some(change) = change {
                    patch.insert(name.clone(), change);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        Value::Array(items) => {
            let keys = |tree: Option<&Map<String, Value>>| -> Vec<Map<String, Value>> {
                tree.into_iter()
                    .flat_map(|t| t.keys())
                    .filter_map(|field| serde_json::from_str(field.strip_prefix("k:")?).ok())
                    .collect()
            };
            let theirs = keys(others);
            let mut names = BTreeSet::new();
            for key in theirs.iter().chain(keys(ours).iter()) {
                names.extend(key.keys().cloned());
            }
            if names.is_empty() {
                return None;
            }
            let wanted = desired.as_array().map(Vec::as_slice).unwrap_or_default();
            let same = |a: &Value, b: &Value| names.iter().all(|n| a.get(n) == b.get(n));
            let kept: Vec<Value> = items
                .iter()
                .filter(|item| {
                    wanted.iter().any(|w| same(item, w))
                        || theirs.iter().any(|key| matches_key(item, key))
                })
                .cloned()
                .collect();
            (kept.len() != items.len()).then_some(Value::Array(kept))
        }
        _ => None,
    }
}

/// The fields under `field` of a managedFields tree.
fn subtree<'a>(
    tree: Option<&'a Map<String, Value>>,
    field: &str,
) -> Option<&'a Map<String, Value>> {
    tree.and_then(|t| t.get(field)).and_then(Value::as_object)
}

/// Whether a list item has every field of a `k:` key.
fn matches_key(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter()
        .all(|(field, value)| item.get(field) == Some(value))
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

    fn condition(type_: &str, status: &str) -> Value {
        json!({"type": type_, "status": status, "reason": "R", "message": "",
               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    fn owned_condition(type_: &str) -> (String, Value) {
        (
            format!("k:{{\"type\":\"{type_}\"}}"),
            json!({".": {}, "f:type": {}, "f:status": {}, "f:reason": {}}),
        )
    }

    /// What an apply answers: `status`, and managedFields of
    /// (manager, f:status tree).
    fn answer(status: Value, managers: &[(&str, Value)]) -> Answer {
        let managed: Vec<Value> = managers
            .iter()
            .map(|(manager, status)| {
                json!({"manager": manager, "operation": "Update", "subresource": "status",
                       "fieldsType": "FieldsV1", "fieldsV1": {"f:status": status}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"resourceVersion": "5", "managedFields": managed},
            "status": status,
        }))
        .unwrap()
    }

    fn conditions_owned(types: &[&str]) -> Value {
        let mut fields: Map<String, Value> = types.iter().map(|t| owned_condition(t)).collect();
        fields.insert(".".into(), json!({}));
        json!({"f:conditions": fields})
    }

    #[test]
    fn a_reset_leaves_only_what_no_one_else_owns_to_remove() {
        let desired = json!({"observedGeneration": 2, "conditions": [condition("Ready", "True")]});
        let written = answer(
            json!({
                "observedGeneration": 2,
                "phoneConfiguration": {"name": "old"},
                "conditions": [condition("Ready", "True"), condition("Stalled", "True"),
                               condition("Synced", "True")],
            }),
            &[
                (
                    RESET_MANAGER,
                    json!({"f:observedGeneration": {}, "f:phoneConfiguration": {"f:name": {}},
                           "f:conditions": {"k:{\"type\":\"Ready\"}": {}, "k:{\"type\":\"Stalled\"}": {},
                                            "k:{\"type\":\"Synced\"}": {}}}),
                ),
                (FIELD_MANAGER, json!({"f:observedGeneration": {}})),
                // Someone else's condition, which they applied too.
                ("argocd-controller", conditions_owned(&["Synced"])),
            ],
        );
        assert_eq!(
            leftovers(&written, &desired),
            Some(json!({
                "phoneConfiguration": null,
                "conditions": [condition("Ready", "True"), condition("Synced", "True")],
            }))
        );
    }

    #[test]
    fn fields_no_manager_owns_after_a_reset_are_removed() {
        // What a real API server shows after `managedFields: [{}]` and a
        // fix of the spec: the old Stalled condition belongs to no one.
        let desired = json!({"observedGeneration": 2,
            "conditions": [condition("Ready", "True"), condition("Valid", "True")]});
        let written = answer(
            json!({"observedGeneration": 2, "conditions": [condition("Ready", "True"),
                   condition("Valid", "True"), condition("Stalled", "True")]}),
            &[(FIELD_MANAGER, conditions_owned(&["Ready", "Valid"]))],
        );
        assert_eq!(
            leftovers(&written, &desired),
            Some(json!({"conditions": [condition("Ready", "True"), condition("Valid", "True")]}))
        );
    }

    #[test]
    fn fields_another_manager_shares_stay() {
        let desired = json!({"conditions": [condition("Ready", "True")]});
        let written = answer(
            json!({"observedGeneration": 7, "conditions": [condition("Ready", "True")]}),
            &[
                (RESET_MANAGER, json!({"f:observedGeneration": {}})),
                ("kubectl-patch", json!({"f:observedGeneration": {}})),
            ],
        );
        assert_eq!(leftovers(&written, &desired), None);
    }

    #[test]
    fn once_the_leftovers_are_gone_there_is_nothing_more_to_remove() {
        let desired = json!({"conditions": [condition("Ready", "True")]});
        // What the repair leaves: the reset manager owns no status field
        // the desired status does not hold.
        let repaired = answer(
            json!({"conditions": [condition("Ready", "True"), condition("Synced", "True")]}),
            &[
                (RESET_MANAGER, conditions_owned(&["Ready"])),
                ("argocd-controller", conditions_owned(&["Synced"])),
            ],
        );
        assert_eq!(leftovers(&repaired, &desired), None);
        // No reset at all: nothing is even looked at.
        let plain = answer(
            json!({"conditions": [condition("Ready", "True"), condition("Synced", "True")]}),
            &[("argocd-controller", conditions_owned(&["Synced"]))],
        );
        assert_eq!(leftovers(&plain, &desired), None);
    }

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
