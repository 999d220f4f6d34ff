//! Writes only while the Lease is surely this replica's. A leader that was
//! paused, starved or cut off cannot tell that its Lease expired and a
//! standby took over; it can tell how long ago it last renewed. The elector
//! records each confirmed renewal (from the moment its request was sent),
//! and from `valid_for` (the write window, shorter than the lease duration)
//! after the last one the fence refuses every write the operator
//! would send, so nothing is written after a standby may have taken over,
//! even by a reconcile that wakes up first. The elector closes it at once
//! when the term ends for any other reason.

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
    /// A fence that holds for `valid_for` after each renewal: the write
    /// window, which ends before a standby may take over.
    pub fn new(valid_for: Duration) -> Self {
        Self {
            valid_for,
            renewed: watch::Sender::new(None),
        }
    }

    /// Closes the fence: the term ended.
    pub fn close(&self) {
        self.renewed.send_replace(None);
    }

    /// Records a confirmed renewal of the Lease sent at `at`.
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
}

/// Resources whose writes are not the operator's work: the Lease itself
/// and the reviews that authorize `/metrics` scrapes.
const UNFENCED: [&str; 4] = [
    "leases",
    "tokenreviews",
    "subjectaccessreviews",
    "selfsubjectaccessreviews",
];

/// A client layer that refuses the operator's writes while the fence is
/// closed. Without a fence (no leader election) it passes everything.
#[derive(Clone)]
pub struct FenceLayer {
    pub fence: Option<Arc<LeaseFence>>,
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
    ) -> impl Service<http::Request<()>, Response = http::Response<()>, Error = BoxError> + Clone
    {
        FenceLayer {
            fence: Some(fence.clone()),
        }
        .layer(tower::service_fn(move |_: http::Request<()>| async move {
            Ok::<_, Infallible>(http::Response::builder().status(200).body(()).unwrap())
        }))
    }

    #[test]
    fn the_fence_holds_for_the_renew_deadline_after_the_last_renewal() {
        let fence = LeaseFence::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(!fence.holds(t0), "closed before the first renewal");
        fence.renewed(t0);
        assert_eq!(fence.deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(fence.holds(t0 + Duration::from_millis(9_999)));
        assert!(!fence.holds(t0 + Duration::from_secs(10)));
        // An older renewal answered late does not move the deadline back.
        fence.renewed(t0 + Duration::from_secs(4));
        fence.renewed(t0 + Duration::from_secs(1));
        assert_eq!(fence.deadline(), Some(t0 + Duration::from_secs(14)));
        // The end of a term closes it at once.
        fence.close();
        assert!(!fence.holds(t0 + Duration::from_secs(5)));
        assert_eq!(fence.deadline(), None);
    }

    #[tokio::test]
    async fn writes_pass_only_while_the_fence_holds() {
        let fence = Arc::new(LeaseFence::new(Duration::from_secs(10)));
        let status = "/apis/interactions.dev/v1alpha1/namespaces/a/deploymentchannels/c/status";
        let refused = |r: Result<http::Response<()>, BoxError>| {
            r.is_err_and(|e| e.downcast_ref::<Fenced>().is_some())
        };
        // Before the Lease is held: reads, reviews and the Lease pass, writes do not.
        let svc = service(&fence);
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
        // A write of the Lease passes and is no renewal: the elector confirms those.
        svc.clone().oneshot(request("PATCH", LEASE)).await.unwrap();
        assert_eq!(fence.deadline(), None);
        fence.renewed(Instant::now());
        assert!(svc.clone().oneshot(request("PATCH", status)).await.is_ok());
        fence.close();
        assert!(refused(svc.clone().oneshot(request("PATCH", status)).await));
    }
}
