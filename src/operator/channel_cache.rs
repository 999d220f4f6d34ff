//! What the operator keeps of each DeploymentChannel between watch events:
//! only what reconciles read, in a compact form. Pure: no I/O.
//!
//! A reconcile reads a channel's name, namespace, uid, generation and spec,
//! and of its status only two things: whether the status it computes differs
//! from the stored one, and when each condition last changed (to keep
//! `lastTransitionTime`). So the cache keeps a digest of the stored status
//! and the transition time of each condition this operator writes, not the
//! conditions with their messages; metadata is reduced to the fields read.

use std::{
    hash::{BuildHasher, DefaultHasher, Hash, Hasher},
    mem,
    sync::Arc,
};

use hashbrown::{HashTable, hash_table};
use parking_lot::RwLock;
use uuid::Uuid;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;

use crate::{
    core::api::{
        DeploymentChannel, DeploymentChannelSpec, DeploymentChannelStatus, find_condition,
    },
    core::desired_status::{condition, reason},
    core::index::ObjectKey,
};

/// A fingerprint of a status: equal statuses have equal digests, and two
/// different statuses the same digest only by a 64-bit hash collision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Digest(u64);

impl Digest {
    /// The digest of a status, from its JSON form: what is compared is
    /// what the API server stores.
    pub fn of<S: Serialize>(status: &S) -> Self {
        let mut hasher = DefaultHasher::new();
        match serde_json::to_vec(status) {
            Ok(bytes) => bytes.hash(&mut hasher),
            // Statuses always serialize; should one not, it differs from every other.
            Err(error) => error.to_string().hash(&mut hasher),
        }
        Self(hasher.finish())
    }
}

/// The condition types whose transition times are kept, in a fixed order.
const KEPT: [&str; 4] = [
    condition::READY,
    condition::VALID,
    condition::PHONE_CONFIGURATION_RESOLVED,
    condition::STALLED,
];

/// A condition's status as far as transitions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Truth {
    True,
    False,
    /// `Unknown`, or anything else another writer put there.
    Other,
}

impl Truth {
    fn of(status: &str) -> Self {
        match status {
            "True" => Truth::True,
            "False" => Truth::False,
            _ => Truth::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Truth::True => "True",
            Truth::False => "False",
            Truth::Other => "Unknown",
        }
    }
}

/// The stored status as reconciles need it.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusSummary {
    digest: Digest,
    /// For each of [`KEPT`]: its status and `lastTransitionTime`, when present.
    transitions: [Option<(Truth, Time)>; 4],
}

impl StatusSummary {
    pub fn of(status: &DeploymentChannelStatus) -> Self {
        Self {
            digest: Digest::of(status),
            transitions: KEPT.map(|type_| {
                find_condition(&status.conditions, type_)
                    .map(|c| (Truth::of(&c.status), c.last_transition_time.clone()))
            }),
        }
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The stored status reduced to what the status computation reads of
    /// a previous status: each condition's type, status and
    /// `lastTransitionTime` (no reason, message or generation).
    pub fn previous(&self) -> DeploymentChannelStatus {
        DeploymentChannelStatus {
            observed_generation: None,
            conditions: KEPT
                .iter()
                .zip(&self.transitions)
                .filter_map(|(type_, kept)| {
                    let (truth, time) = kept.as_ref()?;
                    Some(Condition {
                        type_: (*type_).to_string(),
                        status: truth.as_str().to_string(),
                        last_transition_time: time.clone(),
                        message: String::new(),
                        reason: String::new(),
                        observed_generation: None,
                    })
                })
                .collect(),
            phone_configuration: None,
        }
    }
}

/// A channel's Ready condition as the `channels` metric labels it:
/// (status, reason).
pub type ReadyLabel = (&'static str, &'static str);

/// Reasons a Ready condition can carry; any other (a status not written
/// by this operator) is counted as `Other`, so the label stays bounded.
const READY_REASONS: [&str; 8] = [
    reason::READY,
    reason::INVALID_SPEC,
    reason::IDENTIFIER_CONFLICT,
    reason::PHONE_CONFIGURATION_NOT_FOUND,
    reason::PHONE_CONFIGURATION_NOT_READY,
    reason::CAPABILITY_MISSING,
    reason::PHONE_NUMBER_MISMATCH,
    "Other",
];

/// The label of a stored status's Ready condition.
pub fn ready_label(status: Option<&DeploymentChannelStatus>) -> ReadyLabel {
    let Some(ready) = status.and_then(|s| find_condition(&s.conditions, condition::READY)) else {
        return ("Unknown", "NoStatus");
    };
    let status = match ready.status.as_str() {
        "True" => "True",
        "False" => "False",
        _ => "Unknown",
    };
    let reason = READY_REASONS
        .into_iter()
        .find(|r| *r == ready.reason)
        .unwrap_or("Other");
    (status, reason)
}

/// A uid. The API server's are UUIDs, kept as their 16 bytes; any other
/// text is kept as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uid {
    Uuid(Uuid),
    Text(Box<str>),
}

impl Uid {
    pub fn new(text: &str) -> Self {
        match Uuid::try_parse(text) {
            // Only when it reads back the same (lower case, dashes where a UUID has them).
            Ok(uuid) if uuid.hyphenated().to_string() == text => Uid::Uuid(uuid),
            _ => Uid::Text(text.into()),
        }
    }
}

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uid::Uuid(uuid) => uuid.hyphenated().fmt(f),
            Uid::Text(text) => f.write_str(text),
        }
    }
}

/// One DeploymentChannel as the cache keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedChannel {
    pub key: ObjectKey,
    pub uid: Option<Uid>,
    pub resource_version: Box<str>,
    pub generation: Option<i64>,
    pub spec: DeploymentChannelSpec,
    pub status: Option<StatusSummary>,
    /// The stored status's Ready condition, as the `channels` metric counts it.
    pub ready: ReadyLabel,
}

impl CachedChannel {
    /// The cached form of a channel; `None` without a name.
    pub fn of(channel: &DeploymentChannel) -> Option<Self> {
        Some(Self::with_key(ObjectKey::of(channel)?, channel))
    }

    /// The cached form of a channel whose key is known already (shared, not copied).
    pub fn with_key(key: ObjectKey, channel: &DeploymentChannel) -> Self {
        let meta = &channel.metadata;
        Self {
            key,
            uid: meta.uid.as_deref().map(Uid::new),
            resource_version: meta.resource_version.as_deref().unwrap_or_default().into(),
            generation: meta.generation,
            spec: channel.spec.clone(),
            status: channel.status.as_ref().map(StatusSummary::of),
            ready: ready_label(channel.status.as_ref()),
        }
    }
}

/// Every cached channel, shared by the ingest (which writes it) and the
/// reconciles (which read it). A table of entries found by their own key,
/// so the key is held once.
#[derive(Clone, Debug, Default)]
pub struct ChannelCache(Arc<RwLock<Entries>>);

#[derive(Default)]
struct Entries {
    table: HashTable<Arc<CachedChannel>>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.table.iter()).finish()
    }
}

impl Entries {
    fn find(&self, key: &ObjectKey) -> Option<&Arc<CachedChannel>> {
        self.table
            .find(self.hasher.hash_one(key), |entry| entry.key == *key)
    }
}

impl ChannelCache {
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<CachedChannel>> {
        self.0.read().find(key).cloned()
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.0.read().find(key).is_some()
    }

    /// Adds a channel, or replaces the one with its key; returns that one.
    pub fn insert(&self, channel: CachedChannel) -> Option<Arc<CachedChannel>> {
        let mut entries = self.0.write();
        let Entries { table, hasher } = &mut *entries;
        let hash = hasher.hash_one(&channel.key);
        match table.entry(
            hash,
            |entry| entry.key == channel.key,
            |entry| hasher.hash_one(&entry.key),
        ) {
            hash_table::Entry::Occupied(mut old) => {
                Some(mem::replace(old.get_mut(), Arc::new(channel)))
            }
            hash_table::Entry::Vacant(slot) => {
                slot.insert(Arc::new(channel));
                None
            }
        }
    }

    /// Removes a channel; returns it.
    pub fn remove(&self, key: &ObjectKey) -> Option<Arc<CachedChannel>> {
        let mut entries = self.0.write();
        let hash = entries.hasher.hash_one(key);
        let found = entries.table.find_entry(hash, |entry| entry.key == *key);
        found.ok().map(|entry| entry.remove().0)
    }

    pub fn keys(&self) -> Vec<ObjectKey> {
        self.0
            .read()
            .table
            .iter()
            .map(|entry| entry.key.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.read().table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.read().table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{core::desired_status::desired_channel_status, core::validation::validate_channel};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap())
    }

    fn web_channel(identifier: &str) -> DeploymentChannel {
        let mut channel = DeploymentChannel::new(
            "site",
            serde_json::from_value(serde_json::json!({
                "deploymentType": "WEB", "channelIdentifier": identifier, "configuration": {}
            }))
            .unwrap(),
        );
        channel.metadata = ObjectMeta {
            name: Some("site".into()),
            namespace: Some("team-a".into()),
            uid: Some("uid-1".into()),
            resource_version: Some("12".into()),
            generation: Some(3),
            ..Default::default()
        };
        channel
    }

    fn status_of(
        channel: &DeploymentChannel,
        previous: Option<&DeploymentChannelStatus>,
        now: i64,
    ) -> DeploymentChannelStatus {
        desired_channel_status(
            channel.placement(),
            &validate_channel(&channel.spec),
            |_, _| Ok(None::<&crate::core::api::PhoneConfiguration>),
            None,
            previous,
            &at(now),
        )
    }

    #[test]
    fn a_status_read_back_from_json_has_the_digest_it_was_written_with() {
        let channel = web_channel("https://example.com");
        let status = status_of(&channel, None, 100);
        let read_back: DeploymentChannelStatus =
            serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
        assert_eq!(Digest::of(&read_back), Digest::of(&status));
    }

    #[test]
    fn any_change_of_a_condition_changes_the_digest() {
        let channel = web_channel("https://example.com");
        let status = status_of(&channel, None, 100);
        let changes: [fn(&mut Condition); 6] = [
            |c| c.status = "False".into(),
            |c| c.reason = "Other".into(),
            |c| c.message.push('.'),
            |c| c.last_transition_time = Time(jiff::Timestamp::from_second(101).unwrap()),
            |c| c.observed_generation = Some(4),
            |c| c.type_ = "Other".into(),
        ];
        for change in changes {
            let mut changed = status.clone();
            change(&mut changed.conditions[0]);
            assert_ne!(Digest::of(&changed), Digest::of(&status), "{changed:?}");
        }
        let mut fewer = status.clone();
        fewer.conditions.pop();
        assert_ne!(Digest::of(&fewer), Digest::of(&status));
    }

    #[test]
    fn the_previous_status_keeps_transition_times_so_recomputing_changes_nothing() {
        let channel = web_channel("https://example.com");
        let written = status_of(&channel, None, 100);
        let summary = StatusSummary::of(&written);
        // Later, the same facts: the same status, timestamps included.
        let again = status_of(&channel, Some(&summary.previous()), 500);
        assert_eq!(again, written);
        assert_eq!(Digest::of(&again), summary.digest());
    }

    #[test]
    fn a_condition_that_flips_gets_the_new_time_and_the_others_keep_theirs() {
        let valid = web_channel("https://example.com");
        let written = status_of(&valid, None, 100);
        let summary = StatusSummary::of(&written);
        let invalid = web_channel("not a url");
        let next = status_of(&invalid, Some(&summary.previous()), 500);
        let ready = find_condition(&next.conditions, condition::READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, at(500));
        // Valid flipped too; Stalled is new.
        let stalled = find_condition(&next.conditions, condition::STALLED).unwrap();
        assert_eq!(stalled.last_transition_time, at(500));
        // Back to valid: Ready is True since 900, not since 100.
        let back = status_of(&valid, Some(&StatusSummary::of(&next).previous()), 900);
        let ready = find_condition(&back.conditions, condition::READY).unwrap();
        assert_eq!(ready.last_transition_time, at(900));
    }

    #[test]
    fn the_previous_status_has_only_the_kept_types_present() {
        let channel = web_channel("https://example.com");
        let mut written = status_of(&channel, None, 100);
        written.conditions.push(Condition {
            type_: "Reconciling".into(),
            status: "True".into(),
            reason: "ByAnotherTool".into(),
            message: String::new(),
            last_transition_time: at(50),
            observed_generation: None,
        });
        let previous = StatusSummary::of(&written).previous();
        let types: Vec<&str> = previous
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, ["Ready", "Valid"]);
        assert!(
            previous
                .conditions
                .iter()
                .all(|c| c.last_transition_time == at(100))
        );
    }

    #[test]
    fn uuids_are_kept_as_bytes_and_read_back_the_same_and_other_uids_as_text() {
        let uuid = "6f1c2a4e-3b5d-4c7e-9f80-0123456789ab";
        assert!(matches!(Uid::new(uuid), Uid::Uuid(_)));
        assert_eq!(std::mem::size_of::<Uuid>(), 16);
        assert_eq!(Uid::new(uuid).to_string(), uuid);
        for text in [
            "6F1C2A4E-3B5D-4C7E-9F80-0123456789AB",
            "6f1c2a4e3b5d4c7e9f800123456789ab",
            "6f1c2a4e-3b5d-4c7e-9f80-0123456789a",
            "chan-uid",
            "",
        ] {
            assert_eq!(Uid::new(text), Uid::Text(text.into()), "{text}");
            assert_eq!(Uid::new(text).to_string(), text);
        }
    }

    #[test]
    fn the_ready_label_is_bounded() {
        let channel = web_channel("https://example.com");
        let mut status = status_of(&channel, None, 100);
        assert_eq!(ready_label(None), ("Unknown", "NoStatus"));
        assert_eq!(ready_label(Some(&status)), ("True", "Ready"));
        status.conditions[0].status = "Maybe".into();
        status.conditions[0].reason = "SomethingElse".into();
        assert_eq!(ready_label(Some(&status)), ("Unknown", "Other"));
    }

    #[test]
    fn the_cache_holds_one_entry_per_key_the_latest() {
        let cache = ChannelCache::default();
        let mut channel = web_channel("https://example.com");
        assert!(cache.insert(CachedChannel::of(&channel).unwrap()).is_none());
        channel.metadata.resource_version = Some("13".into());
        let replaced = cache.insert(CachedChannel::of(&channel).unwrap());
        assert_eq!(
            replaced.map(|c| c.resource_version.to_string()),
            Some("12".into())
        );
        let key = ObjectKey::new("team-a", "site");
        assert_eq!(cache.len(), 1);
        assert_eq!(&*cache.get(&key).unwrap().resource_version, "13");
        assert_eq!(cache.keys(), std::slice::from_ref(&key));
        assert!(cache.remove(&key).is_some());
        assert!(cache.remove(&key).is_none());
        assert!(cache.is_empty());
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn the_cached_form_keeps_what_reconciles_read() {
        let mut channel = web_channel("https://example.com");
        channel.status = Some(status_of(&channel, None, 100));
        let cached = CachedChannel::of(&channel).unwrap();
        assert_eq!(cached.key, ObjectKey::new("team-a", "site"));
        assert_eq!(cached.uid, Some(Uid::Text("uid-1".into())));
        assert_eq!(&*cached.resource_version, "12");
        assert_eq!(cached.generation, Some(3));
        assert_eq!(cached.spec, channel.spec);
        assert_eq!(
            cached.status.map(|s| s.digest()),
            channel.status.as_ref().map(Digest::of)
        );
    }
}
