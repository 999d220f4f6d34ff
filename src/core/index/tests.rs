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
