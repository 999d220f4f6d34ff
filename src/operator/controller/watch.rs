//! Watches that resume where they stopped. After a failure (a connection
//! reset, an API server restart) the watch continues from the last
//! resourceVersion it saw, so nothing that did not change is listed or
//! reconciled again; it starts over with a full list only when the API
//! server no longer holds that version (`410 Gone`), when a list failed, or
//! to fall back from streaming lists. A relist marks the cache stale until
//! it is in the cache ([`crate::operator::replica_readiness::ReplicaReadiness::track`]).
//!
//! Failures are retried with exponential backoff and jitter, from 800 ms to
//! 30 s as in client-go, reset only once a list or a watch event came
//! through (a list that keeps failing is not retried every second).
//!
//! A list is a streaming list (a watch that first sends every object, then
//! a bookmark) where the API server offers one: objects arrive one at a
//! time instead of in pages held whole in memory. A server that refuses it
//! (the `WatchList` feature is off by default in 1.30, 1.31 and 1.33) gets
//! paged lists from then on, and so does one whose storage cannot serve
//! streaming lists (etcd 3.4 lacks the progress requests they need).

use std::{pin::Pin, sync::Arc, time::Duration};

use foldhash::{HashSet, HashSetExt};
use futures::{Stream, StreamExt};
use kube::{
    Api, Resource,
    runtime::watcher::{self, InitialListStrategy},
};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::Kind;
use crate::{
    core::index::ObjectKey,
    operator::metrics::{Metrics, RelistLabels},
};

/// The first wait after a failure, doubled after each further one.
const BACKOFF_FIRST: Duration = Duration::from_millis(800);
/// The longest wait between two attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// How long to wait after the `failures`-th failure in a row (from 1):
/// 800 ms doubling up to 30 s, scaled by a factor between 1 and 1.5
/// (`jitter` from 0 to 1), then capped.
pub(super) fn watch_backoff(failures: u32, jitter: f64) -> Duration {
    let base = BACKOFF_FIRST * (1u32 << failures.saturating_sub(1).min(6));
    base.mul_f64(1.0 + 0.5 * jitter.clamp(0.0, 1.0))
        .min(BACKOFF_CAP)
}

/// Why the next list starts: what went wrong last, while a list was due
/// or under way (`listing`) or while watching.
fn cause(error: &watcher::Error, listing: bool) -> &'static str {
    match error {
        watcher::Error::WatchError(status) if status.code == 410 => "expired",
        _ if listing => "list_failed",
        _ => "watch_failed",
    }
}

type Watch<K> = Pin<Box<dyn Stream<Item = watcher::Result<watcher::Event<K>>> + Send>>;

/// Where a [`resuming`] watch stands between two events.
struct State<K> {
    watch: Option<Watch<K>>,
    config: watcher::Config,
    /// Failures since the last list or event that came through.
    failures: u32,
    /// A list is due or under way: the watch has no complete list to
    /// resume from (a failure now is a failure to list).
    listing: bool,
    /// Why the next list starts (`initial` before the first).
    next_list: &'static str,
    /// A list has started (was counted) since this watch began.
    listed: bool,
    /// Wait this long before the next attempt.
    wait: Option<Duration>,
}

/// A watch of `api` that resumes after errors and relists only when it must
/// (see the module). Errors are passed on after the wait before the next
/// attempt is chosen; every list started is counted on `relists` by cause.
pub fn resuming<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let state = State {
        watch: None,
        config,
        failures: 0,
        listing: true,
        next_list: "initial",
        listed: false,
        wait: None,
    };
    futures::stream::unfold(state, move |mut state| {
        let api = api.clone();
        let metrics = metrics.clone();
        async move {
            if let Some(wait) = state.wait.take() {
                tokio::time::sleep(wait).await;
            }
            loop {
                let mut watch = state
                    .watch
                    .take()
                    .unwrap_or_else(|| watcher::watcher(api.clone(), state.config.clone()).boxed());
                let Some(event) = watch.next().await else {
                    // A watcher does not end; should it, start another.
                    continue;
                };
                match &event {
                    Ok(watcher::Event::Init) => {
                        // A list that failed before it started (a refused
                        // streaming list sends no `Init`) is counted by the
                        // one that follows it.
                        metrics
                            .relists
                            .get_or_create(&RelistLabels {
                                kind: kind.as_str(),
                                cause: state.next_list,
                            })
                            .inc();
                        state.listed = true;
                        if state.next_list != "initial" {
                            info!(kind = kind.as_str(), cause = state.next_list, "relisting");
                        }
                    }
                    Ok(watcher::Event::InitApply(_)) => {}
                    Ok(watcher::Event::InitDone) => {
                        state.listing = false;
                        state.failures = 0;
                    }
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                        state.failures = 0;
                    }
                    // Not a failure of the watch: list in pages from now on, at once.
                    Err(error)
                        if state.config.initial_list_strategy
                            == InitialListStrategy::StreamingList
                            && streaming_refused(error) =>
                    {
                        warn!(
                            kind = kind.as_str(),
                            %error,
                            "the API server offers no streaming lists; listing in pages"
                        );
                        state.config.initial_list_strategy = InitialListStrategy::ListWatch;
                        // Refused before any list started (the `WatchList`
                        // feature off), the paged list is still the first.
                        if state.listed {
                            state.next_list = "streaming_fallback";
                        }
                        continue;
                    }
                    Err(error) => {
                        state.next_list = cause(error, state.listing);
                        // After `410 Gone` the watcher lists again.
                        state.listing |= state.next_list == "expired";
                        state.failures = state.failures.saturating_add(1);
                        state.wait = Some(watch_backoff(state.failures, fastrand::f64()));
                    }
                }
                state.watch = Some(watch);
                return Some((event, state));
            }
        }
    })
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
    use k8s_openapi::api::core::v1::ConfigMap;

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

    /// A resuming watch that asks for streaming lists (pages of 500
    /// otherwise), over a mocked API server.
    fn streaming_watch() -> (
        impl futures::Stream<Item = watcher::Result<watcher::Event<DeploymentChannel>>> + Unpin,
        ApiServer,
    ) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<DeploymentChannel> = Api::namespaced(Client::new(service, "ns"), "ns");
        let config = watcher::Config::default().page_size(500).streaming_lists();
        let metrics = Arc::new(Metrics::default());
        (
            resuming(api, config, Kind::DeploymentChannel, metrics).boxed(),
            handle,
        )
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

    /// A watch of ConfigMaps listed in pages, over a mocked API server.
    fn paged_watch() -> (
        impl futures::Stream<Item = watcher::Result<watcher::Event<ConfigMap>>> + Unpin,
        ApiServer,
        Arc<Metrics>,
    ) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<ConfigMap> = Api::namespaced(Client::new(service, "ns"), "ns");
        let metrics = Arc::new(Metrics::default());
        let watch = resuming(
            api,
            watcher::Config::default(),
            Kind::DeploymentChannel,
            metrics.clone(),
        );
        (watch.boxed(), handle, metrics)
    }

    fn relists(metrics: &Metrics, cause: &'static str) -> u64 {
        metrics
            .relists
            .get_or_create(&RelistLabels {
                kind: "DeploymentChannel",
                cause,
            })
            .get()
    }

    /// A watch cut after an event, then refused once (the API server
    /// restarting): it resumes from the event's resourceVersion, no list.
    #[tokio::test(start_paused = true)]
    async fn a_failed_watch_resumes_from_its_resource_version_without_a_list() {
        let (mut watch, mut handle, metrics) = paged_watch();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("a list");
            assert!(!request.uri().to_string().contains("watch=true"));
            respond(
                send,
                200,
                json!({"kind": "ConfigMapList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "7"}, "items": []}),
            );
            let (request, send) = handle.next_request().await.expect("a watch");
            let uri = request.uri().to_string();
            assert!(
                uri.contains("watch=true") && uri.contains("resourceVersion=7"),
                "{uri}"
            );
            let event = json!({"type": "ADDED", "object": {"kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "8"}}});
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(format!("{event}\n").into_bytes()))
                    .unwrap(),
            );
            let (request, send) = handle.next_request().await.expect("a resumed watch");
            let uri = request.uri().to_string();
            assert!(
                uri.contains("watch=true") && uri.contains("resourceVersion=8"),
                "{uri}"
            );
            respond(
                send,
                503,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "ServiceUnavailable", "code": 503, "message": "starting"}),
            );
            let (request, _held) = handle.next_request().await.expect("a resumed watch");
            let uri = request.uri().to_string();
            assert!(
                uri.contains("watch=true") && uri.contains("resourceVersion=8"),
                "{uri}"
            );
        });
        assert!(matches!(watch.next().await, Some(Ok(watcher::Event::Init))));
        assert!(matches!(
            watch.next().await,
            Some(Ok(watcher::Event::InitDone))
        ));
        assert!(matches!(
            watch.next().await,
            Some(Ok(watcher::Event::Apply(_)))
        ));
        assert!(matches!(watch.next().await, Some(Err(_))));
        let resumed = tokio::spawn(async move { watch.next().await.map(|e| e.is_ok()) });
        server.await.unwrap();
        resumed.abort();
        assert_eq!(relists(&metrics, "initial"), 1);
        assert_eq!(relists(&metrics, "watch_failed"), 0);
    }

    /// `410 Gone`: the API server no longer holds the watch's
    /// resourceVersion, so the watch lists again, counted as `expired`.
    #[tokio::test(start_paused = true)]
    async fn an_expired_resource_version_relists() {
        let (mut watch, mut handle, metrics) = paged_watch();
        let list = json!({"kind": "ConfigMapList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "7"}, "items": []});
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.expect("a list");
            respond(send, 200, list.clone());
            let (request, send) = handle.next_request().await.expect("a watch");
            assert!(request.uri().to_string().contains("resourceVersion=7"));
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
                "message": "too old resource version: 7 (9)"}});
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(format!("{gone}\n").into_bytes()))
                    .unwrap(),
            );
            let (request, send) = handle.next_request().await.expect("a list again");
            assert!(!request.uri().to_string().contains("watch=true"));
            respond(send, 200, list);
            handle
        });
        assert!(matches!(watch.next().await, Some(Ok(watcher::Event::Init))));
        assert!(matches!(
            watch.next().await,
            Some(Ok(watcher::Event::InitDone))
        ));
        assert!(matches!(watch.next().await, Some(Err(_))));
        assert!(matches!(watch.next().await, Some(Ok(watcher::Event::Init))));
        assert!(matches!(
            watch.next().await,
            Some(Ok(watcher::Event::InitDone))
        ));
        let _handle = server.await.unwrap();
        assert_eq!(relists(&metrics, "initial"), 1);
        assert_eq!(relists(&metrics, "expired"), 1);
    }

    /// A list refused again and again (403) is retried after waits that
    /// grow from 800 ms to 30 s, not every second.
    #[tokio::test(start_paused = true)]
    async fn a_list_that_keeps_failing_backs_off_up_to_the_cap() {
        let (mut watch, mut handle, metrics) = paged_watch();
        let server = tokio::spawn(async move {
            let mut times = Vec::new();
            for _ in 0..9 {
                let (_, send) = handle.next_request().await.expect("a list");
                times.push(tokio::time::Instant::now());
                respond(
                    send,
                    403,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "Forbidden", "code": 403, "message": "forbidden"}),
                );
            }
            times
        });
        let client = tokio::spawn(async move { while watch.next().await.is_some() {} });
        let times = server.await.unwrap();
        client.abort();
        let waits: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        for (n, wait) in waits.iter().enumerate() {
            let least = (BACKOFF_FIRST * (1 << n.min(6))).min(BACKOFF_CAP);
            assert!(
                least <= *wait && *wait <= BACKOFF_CAP,
                "wait {n}: {wait:?} (all: {waits:?})"
            );
        }
        assert_eq!(*waits.last().unwrap(), BACKOFF_CAP);
        assert_eq!(relists(&metrics, "initial"), 1);
        assert_eq!(relists(&metrics, "list_failed"), 8);
    }
}
