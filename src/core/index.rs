//! What references what, kept up to date from watch events so that a
//! reconcile answers references and conflicts without asking the API:
//!
//! - PhoneConfiguration → the channels that reference it by name;
//! - claim (type, normalised identifier) → the channels making it, oldest
//!   first (`creationTimestamp`, then namespace/name): the first holds it.
//!
//! Every change says which other objects it affects, so the controllers
//! re-reconcile exactly those.

use std::{collections::BTreeSet, sync::Arc};

use foldhash::HashMap;

use jiff::Timestamp;

use crate::{
    core::api::{DeploymentChannel, DeploymentType},
    core::desired_status::ClaimHolder,
    core::validation::{Claim, validate_channel},
};

/// A namespaced object's namespace and name. Cloning one shares its
/// strings: every table that keeps an object holds the same two.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ObjectKey {
    pub fn new(namespace: impl AsRef<str>, name: impl AsRef<str>) -> Self {
        Self {
            namespace: namespaces::intern(namespace.as_ref()),
            name: name.as_ref().into(),
        }
    }

    /// The key of an object with metadata; `None` without a name.
    pub fn of<K: kube::Resource>(object: &K) -> Option<Self> {
        let meta = object.meta();
        Some(Self::new(
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref()?,
        ))
    }
}

/// Namespaces are few and shared by many objects: each is held once.
mod namespaces {
    use std::sync::{Arc, Mutex, OnceLock};

    use foldhash::HashSet;

    /// Above this many distinct namespaces the set is no longer grown (a
    /// key then holds its own copy), so it cannot grow without bound.
    const MOST: usize = 10_000;

    pub fn intern(namespace: &str) -> Arc<str> {
        static KNOWN: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
        let mut known = KNOWN
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(shared) = known.get(namespace) {
            return shared.clone();
        }
        let shared: Arc<str> = namespace.into();
        if known.len() < MOST {
            known.insert(shared.clone());
        }
        shared
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Position in a claim's queue: older first, then namespace/name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seniority {
    created: Option<Timestamp>,
    key: ObjectKey,
}

/// The channels making one claim, most senior first. Most claims have one
/// channel: a sorted vector holds it in one small allocation, where a
/// B-tree allocates a node of eleven.
#[derive(Debug, Default)]
struct Queue(Vec<Seniority>);

impl Queue {
    fn insert(&mut self, seniority: Seniority) {
        if let Err(at) = self.0.binary_search(&seniority) {
            self.0.insert(at, seniority);
        }
    }

    fn remove(&mut self, seniority: &Seniority) {
        if let Ok(at) = self.0.binary_search(seniority) {
            self.0.remove(at);
        }
    }

    fn first(&self) -> Option<&Seniority> {
        self.0.first()
    }

    fn iter(&self) -> impl Iterator<Item = &Seniority> {
        self.0.iter()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the index remembers of one channel.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    seniority: Seniority,
    claim: Option<Claim>,
    reference: Option<ObjectKey>,
}

/// The objects a change affects, besides the changed channel itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affected {
    pub channels: BTreeSet<ObjectKey>,
    pub phone_configurations: BTreeSet<ObjectKey>,
}

impl Affected {
    /// Adds what `other` affected.
    pub fn merge(&mut self, other: Affected) {
        self.channels.extend(other.channels);
        self.phone_configurations.extend(other.phone_configurations);
    }
}

/// References and claims of every channel in the watched scope.
#[derive(Debug, Default)]
pub struct Index {
    channels: HashMap<ObjectKey, Entry>,
    claims: HashMap<Claim, Queue>,
    references: HashMap<ObjectKey, BTreeSet<ObjectKey>>,
}

impl Index {
    /// An index of `channels` whose claims go to them in the given order, as
    /// when they are created in that order: for manifests, which have no
    /// creation time.
    pub fn in_order<'a>(channels: impl IntoIterator<Item = &'a DeploymentChannel>) -> Self {
        let mut index = Self::default();
        for (position, channel) in channels.into_iter().enumerate() {
            let mut channel = channel.clone();
            channel.metadata.creation_timestamp = jiff::Timestamp::from_second(position as i64)
                .ok()
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
            index.apply(&channel);
        }
        index
    }

    /// Records a created or changed channel.
    pub fn apply(&mut self, channel: &DeploymentChannel) -> Affected {
        match ObjectKey::of(channel) {
            Some(key) => self.apply_keyed(key, channel),
            None => Affected::default(),
        }
    }

    /// Records a created or changed channel whose key is known (and shared).
    pub fn apply_keyed(&mut self, key: ObjectKey, channel: &DeploymentChannel) -> Affected {
        let entry = Entry {
            seniority: Seniority {
                created: channel.metadata.creation_timestamp.as_ref().map(|t| t.0),
                key: key.clone(),
            },
            claim: validate_channel(&channel.spec)
                .ok()
                .map(|valid| valid.claim()),
            reference: reference_of(channel, &key),
        };
        if self.channels.get(&key) == Some(&entry) {
            return Affected::default();
        }
        let mut affected = self.delete(&key);
        if let Some(claim) = &entry.claim {
            let queue = self.claims.entry(claim.clone()).or_default();
            queue.insert(entry.seniority.clone());
            // The others report who holds the claim, so only a new holder changes them.
            if queue.first() == Some(&entry.seniority) {
                affected
                    .channels
                    .extend(queue.iter().map(|s| s.key.clone()));
            }
        }
        if let Some(reference) = &entry.reference {
            self.references
                .entry(reference.clone())
                .or_default()
                .insert(key.clone());
            affected.phone_configurations.insert(reference.clone());
        }
        affected.channels.remove(&key);
        self.channels.insert(key, entry);
        affected
    }

    /// Forgets a deleted channel.
    pub fn delete(&mut self, key: &ObjectKey) -> Affected {
        let mut affected = Affected::default();
        let Some(entry) = self.channels.remove(key) else {
            return affected;
        };
        if let Some(claim) = &entry.claim
            && let Some(queue) = self.claims.get_mut(claim)
        {
            let held = queue.first() == Some(&entry.seniority);
            queue.remove(&entry.seniority);
            if held {
                affected
                    .channels
                    .extend(queue.iter().map(|s| s.key.clone()));
            }
            if queue.is_empty() {
                self.claims.remove(claim);
            }
        }
        if let Some(reference) = &entry.reference
            && let Some(channels) = self.references.get_mut(reference)
        {
            channels.remove(key);
            if channels.is_empty() {
                self.references.remove(reference);
            }
            affected.phone_configurations.insert(reference.clone());
        }
        affected
    }

    /// Every channel in the index.
    pub fn keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.channels.keys()
    }

    /// The channel that holds `key`'s claim when that is another channel.
    pub fn claim_holder(&self, key: &ObjectKey) -> Option<ClaimHolder> {
        let claim = self.channels.get(key)?.claim.as_ref()?;
        let holder = &self.claims.get(claim)?.first()?.key;
        (holder != key).then(|| ClaimHolder {
            namespace: holder.namespace.to_string(),
            name: holder.name.to_string(),
        })
    }

    /// The channels that reference a PhoneConfiguration.
    pub fn channels_referencing(
        &self,
        phone_configuration: &ObjectKey,
    ) -> impl Iterator<Item = &ObjectKey> {
        self.references
            .get(phone_configuration)
            .into_iter()
            .flatten()
    }

    /// How many channels reference a PhoneConfiguration.
    pub fn bound_channels(&self, phone_configuration: &ObjectKey) -> usize {
        self.references
            .get(phone_configuration)
            .map_or(0, BTreeSet::len)
    }

    /// How many channels the index holds.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// How many claims the index holds.
    pub fn claims_len(&self) -> usize {
        self.claims.len()
    }

    /// How many PhoneConfigurations channels reference.
    pub fn references_len(&self) -> usize {
        self.references.len()
    }

    /// Whether the index holds no channel.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

/// The PhoneConfiguration a CALLS or SMS channel names, valid or not: it is
/// bound to it either way, and must hear when that PhoneConfiguration changes.
fn reference_of(channel: &DeploymentChannel, key: &ObjectKey) -> Option<ObjectKey> {
    matches!(
        channel.spec.deployment_type,
        DeploymentType::Calls | DeploymentType::Sms
    )
    .then(|| channel.spec.configuration.phone_configuration_id.as_ref())
    .flatten()
    .map(|name| ObjectKey::new(key.namespace.clone(), name.clone()))
}

#[cfg(test)]
mod tests;
