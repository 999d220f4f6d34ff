//! Watches that start over with a full list after any failure. After an API
//! server outage a watch may resume where it stopped or be told `410 Gone`;
//! either way the cache may have missed changes, so the operator relists
//! (and `/readyz` fails from the failure until that list is in the cache:
//! [`crate::operator::replica_readiness::ReplicaReadiness::track`]).
//!
//! A list is a streaming list (a watch that first sends every object, then
//! a bookmark) where the API server offers one: objects arrive one at a
//! time instead of in pages held whole in memory. A server that refuses it
//! (the `WatchList` feature is off by default in 1.30, 1.31 and 1.33) gets
//! paged lists from then on, and so does one whose storage cannot serve
//! streaming lists (etcd 3.4 lacks the progress requests they need).

use std::pin::Pin;

use foldhash::{HashSet, HashSetExt};
use futures::{Stream, StreamExt};
use kube::{
    Api, Resource,
    runtime::watcher::{self, InitialListStrategy},
};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::core::index::ObjectKey;

/// A watch of `api` that relists after every error: the error is passed on
/// (the consumer backs off on it), then a new watcher starts with a list.
pub fn relisting<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    type Watch<K> = Pin<Box<dyn Stream<Item = watcher::Result<watcher::Event<K>>> + Send>>;
    futures::stream::unfold(
        (None::<Watch<K>>, config),
        move |(mut current, mut config)| {
            let api = api.clone();
            async move {
                loop {
                    let mut watch = current
                        .take()
                        .unwrap_or_else(|| watcher::watcher(api.clone(), config.clone()).boxed());
                    let event = watch.next().await?;
                    match &event {
                        Ok(_) => return Some((event, (Some(watch), config))),
                        // Not a failure of the watch: list in pages from now on, at once.
                        Err(error)
                            if config.initial_list_strategy
                                == InitialListStrategy::StreamingList
                                && streaming_refused(error) =>
                        {
                            warn!(
                                kind = %K::kind(&()),
                                %error,
                                "the API server offers no streaming lists; listing in pages"
                            );
                            config.initial_list_strategy = InitialListStrategy::ListWatch;
                        }
                        Err(_) => return Some((event, (None, config))),
                    }
                }
            }
        },
    )
}

/// The keys a relist listed, to find the objects it did not: those deleted
/// while the watch was down. Every consumer of a watch that keeps
/// something per object uses it between `Init` and `InitDone`.
#[derive(Debug, Default)]
pub(super) struct ListedKeys(Option<HashSet<ObjectKey>>);

impl ListedKeys {
    /// A list starts (`Init`).
    pub fn start(&mut self) {
        self.0 = Some(HashSet::new());
    }

    /// The list holds `key` (`InitApply`); nothing outside a list.
    pub fn insert(&mut self, key: ObjectKey) {
        if let Some(listed) = &mut self.0 {
            listed.insert(key);
        }
    }

    /// The list is complete (`InitDone`): of the `known` keys, those it did
    /// not list.
    pub fn finish(&mut self, known: impl IntoIterator<Item = ObjectKey>) -> Vec<ObjectKey> {
        let listed = self.0.take().unwrap_or_default();
        known
            .into_iter()
            .filter(|key| !listed.contains(key))
            .collect()
    }
}

/// Whether the API server refused a streaming list: at the start (the
/// `WatchList` feature is off: "sendInitialEvents is forbidden"), or with an
/// error event in the stream (its storage cannot serve one: "the required
/// storage feature RequestWatchProgress is disabled", as with etcd 3.4).
fn streaming_refused(error: &watcher::Error) -> bool {
    let message = match error {
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) => &status.message,
        watcher::Error::WatchError(status) => &status.message,
        _ => return false,
    };
    message.contains("sendInitialEvents") || message.contains("RequestWatchProgress")
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use http::{Request, Response};
    use kube::{Client, client::Body};
    use serde_json::json;
    use tower_test::mock;

    use super::*;
    use crate::core::api::DeploymentChannel;

    fn respond(send: mock::SendResponse<Response<Body>>, code: u16, body: serde_json::Value) {
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }

    /// Expects a paged list (no watch, pages of 500) and answers it empty.
    async fn answer_paged_list(handle: &mut mock::Handle<Request<Body>, Response<Body>>) {
        let (request, send) = handle.next_request().await.expect("a paged list");
        let uri = request.uri().to_string();
        assert!(!uri.contains("watch=true"), "{uri}");
        assert!(uri.contains("limit=500"), "{uri}");
        respond(
            send,
            200,
            json!({"kind": "DeploymentChannelList",
            "apiVersion": "interactions.dev/v1alpha1",
            "metadata": {"resourceVersion": "7"}, "items": []}),
        );
    }

    type ApiServer = mock::Handle<Request<Body>, Response<Body>>;

    /// A relisting watch that asks for streaming lists (pages of 500
    /// otherwise), over a mocked API server.
    fn streaming_watch() -> (
        impl futures::Stream<Item = watcher::Result<watcher::Event<DeploymentChannel>>> + Unpin,
        ApiServer,
    ) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<DeploymentChannel> = Api::namespaced(Client::new(service, "ns"), "ns");
        let config = watcher::Config::default().page_size(500).streaming_lists();
        (relisting(api, config).boxed(), handle)
    }

    /// A streaming list first; refused, the list is paged.
    #[tokio::test]
    async fn a_refused_streaming_list_falls_back_to_pages() {
        let (mut watch, mut handle) = streaming_watch();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("a streaming list");
            let uri = request.uri().to_string();
            assert!(uri.contains("watch=true"), "{uri}");
            assert!(uri.contains("sendInitialEvents=true"), "{uri}");
            respond(
                send,
                422,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "Invalid", "code": 422,
                "message": "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"}),
            );
            answer_paged_list(&mut handle).await;
            handle
        });
        // No error: the refusal is no failure of the watch.
        assert!(matches!(watch.next().await, Some(Ok(watcher::Event::Init))));
        assert!(matches!(
            watch.next().await,
            Some(Ok(watcher::Event::InitDone))
        ));
        server.await.unwrap();
    }

    /// Storage that cannot serve a streaming list answers with an error event.
    #[tokio::test]
    async fn a_streaming_list_the_storage_cannot_serve_falls_back_to_pages() {
        let (mut watch, mut handle) = streaming_watch();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("a streaming list");
            assert!(request.uri().to_string().contains("sendInitialEvents=true"));
            let event = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                "metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                "message": "a watch stream was requested by the client but the required storage feature RequestWatchProgress is disabled"}});
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(format!("{event}\n").into_bytes()))
                    .unwrap(),
            );
            answer_paged_list(&mut handle).await;
            handle
        });
        // The streaming list had begun; the paged one starts over, without an error.
        assert!(matches!(watch.next().await, Some(Ok(watcher::Event::Init))));
        assert!(matches!(watch.next().await, Some(Ok(watcher::Event::Init))));
        assert!(matches!(
            watch.next().await,
            Some(Ok(watcher::Event::InitDone))
        ));
        server.await.unwrap();
    }
}
