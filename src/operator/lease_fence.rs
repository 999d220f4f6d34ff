//! Writes only while the Lease is surely this replica's. A leader that was
//! paused, starved or cut off cannot tell that its Lease expired and a
//! standby took over; it can tell how long ago it last renewed. The fence
//! records each successful write of the Lease (from the moment the request
//! was sent), and from `valid_for` after the last one it refuses every write
//! the operator would send, so nothing is written after a standby may have
//! taken over, even by a reconcile that wakes up first.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use tower::{BoxError, Layer, Service};

/// The last renewal and how long it holds.
pub struct LeaseFence {
    valid_for: Duration,
    renewed: watch::Sender<Option<Instant>>,
}

/// A write refused because the Lease may have passed to another replica.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused locally: the leader-election Lease was not renewed in time and may belong to another replica"
)]
pub struct Fenced;

impl LeaseFence {
    /// A fence for a Lease of `duration` that a holder renews `grace`
    /// before it expires: it holds for `duration - grace / 2` after each
    /// renewal, after the renewal was due and before a standby may take over.
    pub fn new(duration: Duration, grace: Duration) -> Self {
        Self {
            valid_for: duration.saturating_sub(grace / 2),
            renewed: watch::Sender::new(None),
        }
    }

    /// Records a successful write of the Lease sent at `at`.
    pub fn renewed(&self, at: Instant) {
        self.renewed.send_if_modified(|last| {
            if last.is_none_or(|last| last < at) {
                *last = Some(at);
                true
            } else {
                false
            }
        });
    }

    /// Until when writes are allowed; `None` before the first renewal.
    pub fn deadline(&self) -> Option<Instant> {
        self.renewed.borrow().map(|at| at + self.valid_for)
    }

    /// Whether writes are allowed at `now`.
    pub fn holds(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now < deadline)
    }

    /// Completes once the fence has closed after holding (the Lease was not renewed in time).
    pub async fn expired(&self) {
        let mut renewals = self.renewed.subscribe();
        loop {
            let Some(deadline) = self.deadline() else {
                let _ = renewals.changed().await;
                continue;
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = renewals.changed() => {}
            }
        }
    }
}

/// Resources whose writes are not the operator's work: the Lease itself
/// and the reviews that authorize `/metrics` scrapes.
const UNFENCED: [&str; 4] = [
    "leases",
    "tokenreviews",
    "subjectaccessreviews",
    "selfsubjectaccessreviews",
];

/// A client layer that records renewals of the Lease at `lease_path` and
/// refuses other writes once the fence has closed. Without a fence (no
/// leader election) it passes everything.
#[derive(Clone)]
pub struct FenceLayer {
    pub fence: Option<Arc<LeaseFence>>,
    /// `/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}`.
    pub lease_path: String,
}

impl<S> Layer<S> for FenceLayer {
    type Service = FenceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FenceService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`FenceLayer`].
#[derive(Clone)]
pub struct FenceService<S> {
    inner: S,
    layer: FenceLayer,
}

impl<S, B, R> Service<::http::Request<B>> for FenceService<S>
where
    S: Service<::http::Request<B>, Response = ::http::Response<R>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: ::http::Request<B>) -> Self::Future {
        let Some(fence) = self.layer.fence.clone() else {
            let response = self.inner.call(request);
            return Box::pin(async move { response.await.map_err(Into::into) });
        };
        let write = !matches!(request.method().as_str(), "GET" | "HEAD" | "OPTIONS");
        let sent = Instant::now();
        if write && request.uri().path() == self.layer.lease_path {
            let response = self.inner.call(request);
            return Box::pin(async move {
                let response = response.await.map_err(Into::into)?;
                if response.status().is_success() {
                    fence.renewed(sent);
                }
                Ok(response)
            });
        }
        let (_, resource) = crate::operator::metrics::api_requests::classify(&request);
        let kind = resource.split('/').next().unwrap_or_default();
        if write && !UNFENCED.contains(&kind) && !fence.holds(sent) {
            return Box::pin(async { Err(Box::new(Fenced) as BoxError) });
        }
        let response = self.inner.call(request);
        Box::pin(async move { response.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/op";

    fn request(method: &str, path: &str) -> http::Request<()> {
        http::Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    }

    fn service(
        fence: &Arc<LeaseFence>,
        code: u16,
    ) -> impl Service<http::Request<()>, Response = http::Response<()>, Error = BoxError> + Clone
    {
        FenceLayer {
            fence: Some(fence.clone()),
            lease_path: LEASE.into(),
        }
        .layer(tower::service_fn(move |_: http::Request<()>| async move {
            Ok::<_, Infallible>(http::Response::builder().status(code).body(()).unwrap())
        }))
    }

    #[test]
    fn the_fence_holds_until_before_a_standby_may_take_over() {
        let fence = LeaseFence::new(Duration::from_secs(15), Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(!fence.holds(t0), "closed before the first renewal");
        fence.renewed(t0);
        assert_eq!(fence.deadline(), Some(t0 + Duration::from_millis(12_500)));
        assert!(fence.holds(t0 + Duration::from_secs(12)));
        assert!(!fence.holds(t0 + Duration::from_millis(12_500)));
        // An older renewal answered late does not move the deadline back.
        fence.renewed(t0 + Duration::from_secs(10));
        fence.renewed(t0 + Duration::from_secs(1));
        assert_eq!(fence.deadline(), Some(t0 + Duration::from_millis(22_500)));
    }

    #[tokio::test]
    async fn writes_pass_only_while_the_fence_holds() {
        let fence = Arc::new(LeaseFence::new(
            Duration::from_secs(15),
            Duration::from_secs(5),
        ));
        let status = "/apis/interactions.dev/v1alpha1/namespaces/a/deploymentchannels/c/status";
        let refused = |r: Result<http::Response<()>, BoxError>| {
            r.is_err_and(|e| e.downcast_ref::<Fenced>().is_some())
        };
        // Before the Lease is held: reads and reviews pass, writes do not.
        let svc = service(&fence, 200);
        assert!(svc.clone().oneshot(request("GET", status)).await.is_ok());
        assert!(
            svc.clone()
                .oneshot(request(
                    "POST",
                    "/apis/authentication.k8s.io/v1/tokenreviews"
                ))
                .await
                .is_ok()
        );
        assert!(refused(svc.clone().oneshot(request("PATCH", status)).await));
        // A refused Lease write is no renewal.
        let conflict = service(&fence, 409);
        let _ = conflict.oneshot(request("PATCH", LEASE)).await;
        assert_eq!(fence.deadline(), None);
        // A successful one is.
        svc.clone().oneshot(request("PATCH", LEASE)).await.unwrap();
        assert!(fence.deadline().is_some());
        assert!(svc.clone().oneshot(request("PATCH", status)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_completes_when_renewals_stop() {
        let fence = Arc::new(LeaseFence::new(
            Duration::from_secs(5),
            Duration::from_secs(2),
        ));
        fence.renewed(Instant::now());
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.expired().await }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiting.is_finished());
        fence.renewed(Instant::now());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiting.is_finished(), "the renewal moved the deadline");
        tokio::time::sleep(Duration::from_secs(2)).await;
        waiting.await.unwrap();
        assert!(!fence.holds(Instant::now()));
    }
}
