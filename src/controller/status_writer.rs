//! Status writes: only when the desired status differs from what is stored,
//! to the status subresource, by server-side apply with one field manager.

use std::{collections::HashMap, fmt::Debug, sync::Mutex};

use crate::sync::lock;

use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

use super::{Error, FIELD_MANAGER};
use crate::index::ObjectKey;

/// Remembers each status this replica wrote until the cache shows it, so a
/// reconcile that runs before the watch delivers our own write starts from
/// what was written, not from the stale cached status, and does not write
/// the same status again. An entry goes at the first reconcile after the
/// cache has caught up, which our own write's watch event always causes.
pub struct StatusWriter<K: Resource, S> {
    /// Object → (resourceVersion the write replaced, the status written).
    in_flight: Mutex<HashMap<ObjectKey, (String, S)>>,
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

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// The status was patched.
    Patched,
    /// The stored (or just written) status already is the desired one.
    Unchanged,
}

impl<K, S> StatusWriter<K, S>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize + PartialEq + Clone,
{
    /// Forgets a deleted object.
    pub fn forget(&self, key: &ObjectKey) {
        lock(&self.in_flight).remove(key);
    }

    /// How many objects have a write the cache does not show yet.
    pub fn len(&self) -> usize {
        lock(&self.in_flight).len()
    }

    /// The object's current status: the one this replica last wrote while the
    /// cache still shows the version that write replaced, else the cached one.
    pub fn current(&self, object: &K, cached: Option<&S>) -> Option<S> {
        let key = ObjectKey::of(object)?;
        let version = object
            .meta()
            .resource_version
            .as_deref()
            .unwrap_or_default();
        let mut in_flight = lock(&self.in_flight);
        match in_flight.get(&key) {
            Some((replaced, written)) if replaced == version => return Some(written.clone()),
            // The cache moved on: trust it from now on.
            Some(_) => {
                in_flight.remove(&key);
            }
            None => {}
        }
        cached.cloned()
    }

    /// Writes `desired` unless `current` (from [`current`](Self::current)) already is it.
    pub async fn write(
        &self,
        api: &Api<K>,
        object: &K,
        current: Option<&S>,
        desired: &S,
    ) -> Result<Written, Error> {
        if current == Some(desired) {
            return Ok(Written::Unchanged);
        }
        let key = ObjectKey::of(object).ok_or(Error::MissingMetadata("name"))?;
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": desired,
        });
        api.patch_status(
            &key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        let version = object.meta().resource_version.clone().unwrap_or_default();
        lock(&self.in_flight).insert(key, (version, desired.clone()));
        Ok(Written::Patched)
    }

    /// Keeps only the records of objects for which `keep` holds.
    pub fn retain(&self, mut keep: impl FnMut(&ObjectKey) -> bool) {
        lock(&self.in_flight).retain(|key, _| keep(key));
    }
}
