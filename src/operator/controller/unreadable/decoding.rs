//! Each stored object of a watch decoded on its own.

use std::sync::Arc;

use foldhash::HashSet;
use futures::{Stream, StreamExt, future};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use tracing::{info, warn};

use super::{
    UnreadableRegistry,
    mailbox::{Mailbox, Notice, Sighting},
};
use crate::{
    core::{
        decoding::{Decodable, Stored, decode},
        index::ObjectKey,
    },
    operator::controller::watch::ListedKeys,
};

/// Decodes each stored object of a watch on its own (`cached` names the
/// objects the cache holds). Readable objects go on
/// as usual; an unreadable one is recorded in `unreadable` and announced on
/// `notices`, and leaves the caches (an `Apply` becomes a `Delete`). Objects
/// that vanished while the watch was down are announced gone when the
/// relist that notices it completes.
pub fn decoded<K>(
    events: impl Stream<Item = watcher::Result<watcher::Event<Stored<K>>>> + Send,
    unreadable: Arc<UnreadableRegistry>,
    cached: impl Fn() -> Vec<ObjectKey> + Send + 'static,
    notices: Mailbox,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Decodable + Clone + Send + Sync + 'static,
{
    let mut listed = ListedKeys::default();
    events.filter_map(move |event| {
        let event = match event {
            Ok(event) => event,
            Err(error) => return future::ready(Some(Err(error))),
        };
        let out = match event {
            watcher::Event::Init => {
                listed.start();
                Some(watcher::Event::Init)
            }
            watcher::Event::InitApply(stored) => {
                let key = ObjectKey::of(&stored);
                if let Some(key) = &key {
                    listed.insert(key.clone());
                }
                match read(stored, key, &unreadable, &notices) {
                    Ok(object) => Some(watcher::Event::InitApply(object)),
                    Err(_) => None,
                }
            }
            watcher::Event::InitDone => {
                // Known before the list: cached, or known to be unreadable.
                let known: HashSet<ObjectKey> =
                    cached().into_iter().chain(unreadable.keys()).collect();
                for key in listed.finish(known) {
                    unreadable.clear(&key);
                    notices.send(key, Notice::Gone);
                }
                Some(watcher::Event::InitDone)
            }
            watcher::Event::Apply(stored) => {
                let key = ObjectKey::of(&stored);
                match read(stored, key, &unreadable, &notices) {
                    Ok(object) => Some(watcher::Event::Apply(object)),
                    Err(metadata) => Some(watcher::Event::Delete(K::placeholder(*metadata))),
                }
            }
            watcher::Event::Delete(stored) => {
                if let Some(key) = ObjectKey::of(&stored) {
                    unreadable.clear(&key);
                    notices.send(key, Notice::Gone);
                }
                let object = decode(stored).unwrap_or_else(|(_, s)| K::placeholder(s.metadata));
                Some(watcher::Event::Delete(object))
            }
        };
        future::ready(out.map(Ok))
    })
}

/// Decodes one object, recording and announcing whether it can be read.
fn read<K: Decodable>(
    stored: Stored<K>,
    key: Option<ObjectKey>,
    unreadable: &UnreadableRegistry,
    notices: &Mailbox,
) -> Result<K, Box<ObjectMeta>> {
    let kind = unreadable.kind().as_str();
    match decode(stored) {
        Ok(object) => {
            if let Some(key) = key
                && unreadable.clear(&key)
            {
                info!(kind, object = %key, "object can be read again");
                notices.send(key, Notice::Readable);
            }
            Ok(object)
        }
        Err((problem, stored)) => {
            let metadata = Box::new(stored.metadata.clone());
            if let Some(key) = key {
                if unreadable.problem(&key).as_ref() != Some(&problem) {
                    warn!(kind, object = %key, %problem, "cannot read object: skipping it until it is fixed");
                }
                unreadable.set(key.clone(), problem.clone());
                notices.send(
                    key,
                    Notice::Unreadable(Box::new(Sighting::of(problem, stored))),
                );
            }
            Err(metadata)
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        core::api::DeploymentChannel,
        operator::{channel_cache::ChannelCache, controller::Kind, metrics::Metrics},
    };

    fn stored(name: &str, spec: Value) -> Stored<DeploymentChannel> {
        serde_json::from_value(json!({
            "apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"}, "spec": spec}))
        .unwrap()
    }

    fn good(name: &str) -> Stored<DeploymentChannel> {
        stored(
            name,
            json!({"deploymentType": "WEB", "channelIdentifier": "https://a.example.com", "configuration": {}}),
        )
    }

    fn bad(name: &str) -> Stored<DeploymentChannel> {
        stored(
            name,
            json!({"deploymentType": "FAX", "channelIdentifier": "x", "configuration": {}}),
        )
    }

    /// What `decoded` passes on: (event, name) pairs.
    fn names(events: &[watcher::Event<DeploymentChannel>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                watcher::Event::Init => "Init".into(),
                watcher::Event::InitDone => "InitDone".into(),
                watcher::Event::InitApply(c) => {
                    format!("InitApply {}", c.metadata.name.as_deref().unwrap())
                }
                watcher::Event::Apply(c) => {
                    format!("Apply {}", c.metadata.name.as_deref().unwrap())
                }
                watcher::Event::Delete(c) => {
                    format!("Delete {}", c.metadata.name.as_deref().unwrap())
                }
            })
            .collect()
    }

    /// The notices left, by object name.
    async fn notices(mailbox: &Mailbox) -> Vec<String> {
        if mailbox.is_empty() {
            return Vec::new();
        }
        let mut seen: Vec<String> = mailbox
            .take()
            .await
            .into_iter()
            .map(|(key, pending)| {
                let forget = if pending.forget { " (forget)" } else { "" };
                match pending.notice {
                    Notice::Unreadable(sighting) => {
                        format!("Unreadable {}{forget}: {}", key.name, sighting.problem)
                    }
                    Notice::Readable => format!("Readable {}{forget}", key.name),
                    Notice::Gone => format!("Gone {}", key.name),
                    Notice::Retry => format!("Retry {}{forget}", key.name),
                }
            })
            .collect();
        seen.sort();
        seen
    }

    async fn run(
        events: Vec<watcher::Event<Stored<DeploymentChannel>>>,
        unreadable: &Arc<UnreadableRegistry>,
        cache: ChannelCache,
        tx: Mailbox,
    ) -> Vec<watcher::Event<DeploymentChannel>> {
        decoded(
            stream::iter(events.into_iter().map(Ok)),
            unreadable.clone(),
            move || cache.keys(),
            tx.clone(),
        )
        .map(|e| e.unwrap())
        .collect()
        .await
    }

    #[tokio::test]
    async fn an_unreadable_object_never_stops_a_list_or_a_watch() {
        let metrics = Arc::new(Metrics::default());
        let unreadable = Arc::new(UnreadableRegistry::new(
            Kind::DeploymentChannel,
            metrics.clone(),
        ));
        let cache = ChannelCache::default();
        let tx = Mailbox::default();
        let out = run(
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(good("a")),
                watcher::Event::InitApply(bad("b")),
                watcher::Event::InitApply(good("c")),
                watcher::Event::InitDone,
                watcher::Event::Apply(bad("a")),
            ],
            &unreadable,
            cache.clone(),
            tx.clone(),
        )
        .await;
        assert_eq!(
            names(&out),
            ["Init", "InitApply a", "InitApply c", "InitDone", "Delete a"]
        );
        let fax = r#"spec.deploymentType: Unsupported value: "FAX": supported values: "CALLS", "SMS", "WEB", "MOBILE""#;
        assert_eq!(
            notices(&tx).await,
            [
                format!("Unreadable a: {fax}"),
                format!("Unreadable b: {fax}")
            ]
        );
        assert_eq!(unreadable.len(), 2);
        assert_eq!(
            unreadable
                .problem(&ObjectKey::new("ns", "b"))
                .unwrap()
                .field,
            "spec.deploymentType"
        );
        assert!(metrics.render().contains(
            "deploymentchannel_operator_unreadable_objects{kind=\"DeploymentChannel\"} 2"
        ));

        // Fixed, and deleted while the watch was down (the relist misses it).
        let out = run(
            vec![
                watcher::Event::Apply(good("a")),
                watcher::Event::Init,
                watcher::Event::InitApply(good("a")),
                watcher::Event::InitDone,
            ],
            &unreadable,
            cache,
            tx.clone(),
        )
        .await;
        assert_eq!(names(&out), ["Apply a", "Init", "InitApply a", "InitDone"]);
        assert_eq!(notices(&tx).await, ["Gone b", "Readable a"]);
        assert!(unreadable.is_empty());
        assert!(metrics.render().contains(
            "deploymentchannel_operator_unreadable_objects{kind=\"DeploymentChannel\"} 0"
        ));
    }

    #[tokio::test]
    async fn a_deleted_object_is_gone_readable_or_not() {
        let unreadable = Arc::new(UnreadableRegistry::new(
            Kind::DeploymentChannel,
            Arc::new(Metrics::default()),
        ));
        let cache = ChannelCache::default();
        let tx = Mailbox::default();
        let out = run(
            vec![
                watcher::Event::Apply(bad("b")),
                watcher::Event::Delete(bad("b")),
                watcher::Event::Delete(good("a")),
            ],
            &unreadable,
            cache,
            tx.clone(),
        )
        .await;
        assert_eq!(names(&out), ["Delete b", "Delete b", "Delete a"]);
        // b's sighting is replaced: one entry per object.
        assert_eq!(notices(&tx).await, ["Gone a", "Gone b"]);
        assert!(unreadable.is_empty());
    }
}
