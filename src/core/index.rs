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
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
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
    use std::sync::{Arc, OnceLock};

    use parking_lot::Mutex;

    use foldhash::HashSet;

    /// Above this many distinct namespaces the set is no longer grown (a
    /// key then holds its own copy), so it cannot grow without bound.
    const MOST: usize = 10_000;

    pub fn intern(namespace: &str) -> Arc<str> {
        static KNOWN: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
        let mut known = KNOWN.get_or_init(Mutex::default).lock();
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
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use proptest::prelude::*;

    use super::*;
    use crate::core::api::{ChannelConfiguration, DeploymentChannelSpec};

    fn channel(
        ns: &str,
        name: &str,
        created: i64,
        ty: DeploymentType,
        id: &str,
        phone: Option<&str>,
    ) -> DeploymentChannel {
        DeploymentChannel {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: DeploymentChannelSpec {
                deployment_type: ty,
                channel_name: None,
                recording_enabled: true,
                channel_identifier: id.into(),
                configuration: ChannelConfiguration {
                    phone_configuration_id: phone.map(Into::into),
                    ..Default::default()
                },
            },
            status: None,
        }
    }

    fn calls(ns: &str, name: &str, created: i64, number: &str, phone: &str) -> DeploymentChannel {
        channel(
            ns,
            name,
            created,
            DeploymentType::Calls,
            number,
            Some(phone),
        )
    }

    fn web(ns: &str, name: &str, created: i64, url: &str) -> DeploymentChannel {
        channel(ns, name, created, DeploymentType::Web, url, None)
    }

    fn key(ns: &str, name: &str) -> ObjectKey {
        ObjectKey::new(ns, name)
    }

    fn keys(items: &[(&str, &str)]) -> BTreeSet<ObjectKey> {
        items.iter().map(|(ns, n)| key(ns, n)).collect()
    }

    #[test]
    fn oldest_channel_holds_a_claim() {
        let mut index = Index::default();
        index.apply(&calls("a", "newer", 200, "+12125551234", "p"));
        let affected = index.apply(&calls("a", "older", 100, "+12125551234", "p"));
        assert_eq!(affected.channels, keys(&[("a", "newer")]));
        assert_eq!(index.claim_holder(&key("a", "older")), None);
        assert_eq!(
            index.claim_holder(&key("a", "newer")),
            Some(ClaimHolder {
                namespace: "a".into(),
                name: "older".into()
            })
        );
    }

    #[test]
    fn equal_ages_are_ordered_by_namespace_then_name() {
        let mut index = Index::default();
        index.apply(&web("b", "a", 100, "https://example.com"));
        index.apply(&web("a", "z", 100, "https://example.com/"));
        index.apply(&web("a", "y", 100, "https://EXAMPLE.com"));
        assert_eq!(index.claim_holder(&key("a", "y")), None);
        assert_eq!(index.claim_holder(&key("a", "z")).unwrap().name, "y");
        assert_eq!(index.claim_holder(&key("b", "a")).unwrap().namespace, "a");
    }

    #[test]
    fn same_identifier_of_another_type_is_no_conflict() {
        let mut index = Index::default();
        index.apply(&calls("a", "voice", 100, "+12125551234", "p"));
        let affected = index.apply(&channel(
            "a",
            "text",
            200,
            DeploymentType::Sms,
            "+12125551234",
            Some("p"),
        ));
        assert!(affected.channels.is_empty());
        assert_eq!(index.claim_holder(&key("a", "text")), None);
    }

    #[test]
    fn deleting_the_holder_hands_the_claim_over() {
        let mut index = Index::default();
        index.apply(&calls("a", "first", 100, "+12125551234", "p"));
        index.apply(&calls("a", "second", 200, "+12125551234", "p"));
        index.apply(&calls("b", "third", 300, "+12125551234", "q"));
        let affected = index.delete(&key("a", "first"));
        assert_eq!(affected.channels, keys(&[("a", "second"), ("b", "third")]));
        assert_eq!(affected.phone_configurations, keys(&[("a", "p")]));
        assert_eq!(index.claim_holder(&key("a", "second")), None);
        assert_eq!(
            index.claim_holder(&key("b", "third")).unwrap().name,
            "second"
        );
    }

    #[test]
    fn only_a_change_of_holder_affects_the_others_in_a_claim() {
        let mut index = Index::default();
        index.apply(&calls("a", "holder", 100, "+12125551234", "p"));
        index.apply(&calls("a", "second", 200, "+12125551234", "p"));
        // A newer channel queues behind the holder: the others still name the same holder.
        let affected = index.apply(&calls("a", "third", 300, "+12125551234", "p"));
        assert!(affected.channels.is_empty());
        // A waiting channel leaves: likewise.
        let affected = index.delete(&key("a", "second"));
        assert!(affected.channels.is_empty());
        assert_eq!(
            index.claim_holder(&key("a", "third")).unwrap().name,
            "holder"
        );
        // An older channel arrives: it is the new holder, and everyone else must say so.
        let affected = index.apply(&calls("a", "oldest", 50, "+12125551234", "p"));
        assert_eq!(affected.channels, keys(&[("a", "holder"), ("a", "third")]));
        assert_eq!(
            index.claim_holder(&key("a", "third")).unwrap().name,
            "oldest"
        );
    }

    #[test]
    fn changing_an_identifier_moves_the_claim() {
        let mut index = Index::default();
        index.apply(&web("a", "holder", 100, "https://example.com"));
        index.apply(&web("a", "waiting", 200, "https://example.com"));
        index.apply(&web("a", "other", 50, "https://other.example"));
        let affected = index.apply(&web("a", "holder", 100, "https://other.example"));
        // "other" keeps its claim: a newer channel behind it changes nothing it reports.
        assert_eq!(affected.channels, keys(&[("a", "waiting")]));
        assert_eq!(index.claim_holder(&key("a", "waiting")), None);
        assert_eq!(
            index.claim_holder(&key("a", "holder")).unwrap().name,
            "other"
        );
    }

    #[test]
    fn invalid_channels_claim_nothing() {
        let mut index = Index::default();
        index.apply(&calls("a", "bad", 100, "+99912345678", "p"));
        index.apply(&calls("a", "good", 200, "+99912345678", "p"));
        assert_eq!(index.claim_holder(&key("a", "good")), None);
        assert_eq!(index.claim_holder(&key("a", "bad")), None);
        // Both still reference the PhoneConfiguration.
        assert_eq!(index.bound_channels(&key("a", "p")), 2);
    }

    #[test]
    fn references_follow_changes() {
        let mut index = Index::default();
        let affected = index.apply(&calls("a", "c1", 100, "+12125551234", "p"));
        assert_eq!(affected.phone_configurations, keys(&[("a", "p")]));
        index.apply(&calls("a", "c2", 100, "+12125551235", "p"));
        index.apply(&calls("b", "c3", 100, "+12125551236", "p"));
        assert_eq!(index.bound_channels(&key("a", "p")), 2);
        assert_eq!(index.bound_channels(&key("b", "p")), 1);
        assert_eq!(
            index
                .channels_referencing(&key("a", "p"))
                .cloned()
                .collect::<BTreeSet<_>>(),
            keys(&[("a", "c1"), ("a", "c2")])
        );
        let affected = index.apply(&calls("a", "c1", 100, "+12125551234", "q"));
        assert_eq!(
            affected.phone_configurations,
            keys(&[("a", "p"), ("a", "q")])
        );
        assert_eq!(index.bound_channels(&key("a", "p")), 1);
        assert_eq!(index.bound_channels(&key("a", "q")), 1);
        // A WEB channel references nothing.
        assert_eq!(
            index
                .apply(&web("a", "w", 1, "https://example.com"))
                .phone_configurations,
            BTreeSet::new()
        );
    }

    #[test]
    fn unchanged_apply_affects_nothing() {
        let mut index = Index::default();
        let c = calls("a", "c", 100, "+12125551234", "p");
        index.apply(&c);
        index.apply(&calls("a", "d", 200, "+12125551234", "p"));
        assert_eq!(index.apply(&c), Affected::default());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Apply {
            ns: usize,
            name: usize,
            created: i64,
            number: usize,
            phone: usize,
        },
        Delete {
            ns: usize,
            name: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..2usize, 0..5usize, 0..4i64, 0..3usize, 0..2usize).prop_map(
                |(ns, name, created, number, phone)| Op::Apply {
                    ns,
                    name,
                    created,
                    number,
                    phone
                }
            ),
            (0..2usize, 0..5usize).prop_map(|(ns, name)| Op::Delete { ns, name }),
        ]
    }

    proptest! {
        /// After any sequence of changes, the index answers what a full scan of
        /// the current channels would.
        #[test]
        fn index_agrees_with_a_full_scan(ops in prop::collection::vec(op(), 1..40)) {
            let numbers = ["+12125551234", "+12125551235", "+99912345678"];
            let mut index = Index::default();
            let mut live: BTreeMap<ObjectKey, (i64, usize, usize)> = BTreeMap::new();
            for op in ops {
                let holders_before: BTreeMap<ObjectKey, Option<ClaimHolder>> =
                    live.keys().map(|k| (k.clone(), index.claim_holder(k))).collect();
                let (changed, affected) = match op {
                    Op::Apply { ns, name, created, number, phone } => {
                        let k = key(&format!("ns{ns}"), &format!("c{name}"));
                        // creationTimestamp never changes for a live object.
                        let created = live.get(&k).map_or(created, |e| e.0);
                        let affected = index.apply(&calls(&k.namespace, &k.name, created, numbers[number], &format!("p{phone}")));
                        live.insert(k.clone(), (created, number, phone));
                        (k, affected)
                    }
                    Op::Delete { ns, name } => {
                        let k = key(&format!("ns{ns}"), &format!("c{name}"));
                        let affected = index.delete(&k);
                        live.remove(&k);
                        (k, affected)
                    }
                };
                // Every other channel whose claim holder changed is among the affected.
                for (k, before) in &holders_before {
                    if *k != changed && live.contains_key(k) && index.claim_holder(k) != *before {
                        prop_assert!(affected.channels.contains(k), "{k} has a new claim holder but was not affected");
                    }
                }
            }
            prop_assert_eq!(index.len(), live.len());
            for (k, (created, number, _)) in &live {
                let expected = if *number == 2 {
                    None
                } else {
                    live.iter()
                        .filter(|(_, (_, n, _))| n == number)
                        .min_by_key(|(other, (c, _, _))| (*c, (*other).clone()))
                        .map(|(holder, _)| holder.clone())
                        .filter(|holder| holder != k)
                };
                prop_assert_eq!(index.claim_holder(k).map(|h| key(&h.namespace, &h.name)), expected, "holder of {} (created {})", k, created);
            }
            for ns in 0..2 {
                for phone in 0..2 {
                    let pc = key(&format!("ns{ns}"), &format!("p{phone}"));
                    let count = live.iter().filter(|(k, (_, _, p))| k.namespace == pc.namespace && *p == phone).count();
                    prop_assert_eq!(index.bound_channels(&pc), count);
                }
            }
        }
    }
}
