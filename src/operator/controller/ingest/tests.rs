//! The one mechanism for apply, delete and relist, on the index: after any
//! sequence of watch events, the tables hold exactly what one built from the
//! final cache would.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use proptest::prelude::*;

use super::*;
use crate::core::api::{ChannelConfiguration, DeploymentChannelSpec, DeploymentType};

/// The index alone, as a table.
#[derive(Default)]
struct IndexTable(Index);

impl Table<DeploymentChannel> for IndexTable {
    type Changes = Affected;
    fn apply(&mut self, channel: &DeploymentChannel) -> Affected {
        self.0.apply(channel)
    }
    fn delete(&mut self, key: &ObjectKey) -> Affected {
        self.0.delete(key)
    }
    fn keys(&self) -> Vec<ObjectKey> {
        self.0.keys().cloned().collect()
    }
}

fn calls(name: &str, created: i64, number: &str, phone: &str) -> DeploymentChannel {
    DeploymentChannel {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            creation_timestamp: Some(Time(jiff::Timestamp::from_second(created).unwrap())),
            ..Default::default()
        },
        spec: DeploymentChannelSpec {
            deployment_type: DeploymentType::Calls,
            channel_name: None,
            recording_enabled: true,
            channel_identifier: number.into(),
            configuration: ChannelConfiguration {
                phone_configuration_id: Some(phone.into()),
                ..Default::default()
            },
        },
        status: None,
    }
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("ns", name)
}

#[test]
fn a_relist_forgets_what_it_did_not_list_and_reports_it_when_complete() {
    let mut table = IndexTable::default();
    let mut feed = TableFeed::default();
    feed.on(
        &watcher::Event::Apply(calls("gone", 100, "+12125551234", "p")),
        &mut table,
    );
    feed.on(
        &watcher::Event::Apply(calls("kept", 200, "+12125551234", "p")),
        &mut table,
    );
    assert!(feed.on(&watcher::Event::Init, &mut table) == Affected::default());
    let during = feed.on(
        &watcher::Event::InitApply(calls("kept", 200, "+12125551234", "p")),
        &mut table,
    );
    assert_eq!(
        during,
        Affected::default(),
        "held until the list is complete"
    );
    let affected = feed.on(&watcher::Event::<DeploymentChannel>::InitDone, &mut table);
    assert_eq!(affected.channels, BTreeSet::from([key("kept")]));
    assert_eq!(affected.phone_configurations, BTreeSet::from([key("p")]));
    assert_eq!(table.keys(), vec![key("kept")]);
    assert_eq!(table.0.claim_holder(&key("kept")), None);
}

#[test]
fn a_delete_event_drops_the_entry() {
    let mut table = IndexTable::default();
    let mut feed = TableFeed::default();
    let channel = calls("a", 1, "+12125551234", "p");
    feed.on(&watcher::Event::Apply(channel.clone()), &mut table);
    let affected = feed.on(&watcher::Event::Delete(channel), &mut table);
    assert_eq!(affected.phone_configurations, BTreeSet::from([key("p")]));
    assert!(table.0.is_empty());
    assert_eq!(table.0.bound_channels(&key("p")), 0);
}

#[derive(Clone, Debug)]
enum Op {
    Apply {
        name: usize,
        number: usize,
    },
    Delete {
        name: usize,
    },
    /// A relist that lists the live channels whose bit is set in `keep`
    /// (the others were deleted while the watch was down).
    TableFeed {
        keep: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6usize, 0..3usize).prop_map(|(name, number)| Op::Apply { name, number }),
        (0..6usize).prop_map(|name| Op::Delete { name }),
        any::<u8>().prop_map(|keep| Op::TableFeed { keep }),
    ]
}

proptest! {
    #[test]
    fn the_index_equals_one_built_from_the_final_cache(ops in prop::collection::vec(op(), 1..60)) {
        let numbers = ["+12125551234", "+12125551235", "+99912345678"];
        let mut table = IndexTable::default();
        let mut feed = TableFeed::default();
        // The cache: what the watch says exists now.
        let mut cache: BTreeMap<String, DeploymentChannel> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Apply { name, number } => {
                    let name = format!("c{name}");
                    let created = cache.get(&name).map_or(name.len() as i64 * 7 % 5, |c| {
                        c.metadata.creation_timestamp.as_ref().unwrap().0.as_second()
                    });
                    let channel = calls(&name, created, numbers[number], "p");
                    feed.on(&watcher::Event::Apply(channel.clone()), &mut table);
                    cache.insert(name, channel);
                }
                Op::Delete { name } => {
                    if let Some(channel) = cache.remove(&format!("c{name}")) {
                        feed.on(&watcher::Event::Delete(channel), &mut table);
                    }
                }
                Op::TableFeed { keep } => {
                    cache = cache
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| keep & (1 << (i % 8)) != 0)
                        .map(|(_, entry)| entry)
                        .collect();
                    feed.on(&watcher::Event::Init, &mut table);
                    for channel in cache.values() {
                        feed.on(&watcher::Event::InitApply(channel.clone()), &mut table);
                    }
                    feed.on(&watcher::Event::<DeploymentChannel>::InitDone, &mut table);
                }
            }
        }
        let mut expected = IndexTable::default();
        for channel in cache.values() {
            expected.apply(channel);
        }
        let mut keys = table.keys();
        keys.sort();
        let mut expected_keys = expected.keys();
        expected_keys.sort();
        prop_assert_eq!(&keys, &expected_keys);
        for key in &keys {
            prop_assert_eq!(table.0.claim_holder(key), expected.0.claim_holder(key));
        }
        prop_assert_eq!(table.0.bound_channels(&key("p")), cache.len());
    }
}
