//! A deadline on every request to the Kubernetes API but watches (they carry
//! their own: `timeoutSeconds` on the server, the watcher's idle timeout on
//! the client): a request on a connection that stopped answering fails and
//! is retried instead of waiting for TCP to give up, many minutes later.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tower::{BoxError, Layer, Service};

use crate::operator::metrics::api_requests::classify;

/// Longest the API server may take to answer a request other than a watch.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client layer that fails a request (not a watch) the API server has not
/// answered within its timeout.
#[derive(Clone, Copy)]
pub struct RequestTimeoutLayer(pub Duration);

impl Default for RequestTimeoutLayer {
    fn default() -> Self {
        Self(REQUEST_TIMEOUT)
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            timeout: self.0,
        }
    }
}

/// See [`RequestTimeoutLayer`].
#[derive(Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    timeout: Duration,
}

/// A request the API server did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("the API server did not answer within {0:?}")]
pub struct TimedOut(pub Duration);

impl<S, B> Service<::http::Request<B>> for RequestTimeout<S>
where
    S: Service<::http::Request<B>>,
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
        let watch = classify(&request).0 == "watch";
        let timeout = self.timeout;
        let response = self.inner.call(request);
        Box::pin(async move {
            if watch {
                return response.await.map_err(Into::into);
            }
            match tokio::time::timeout(timeout, response).await {
                Ok(answered) => answered.map_err(Into::into),
                Err(_) => Err(TimedOut(timeout).into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;
    use tower::ServiceExt;
    use tower_test::mock;

    use super::*;

    fn request(uri: &str) -> Request<Body> {
        Request::builder().uri(uri).body(Body::empty()).unwrap()
    }

    /// Neither request is answered: the list fails at the timeout, the
    /// watch keeps waiting.
    #[tokio::test(start_paused = true)]
    async fn requests_time_out_and_watches_do_not() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let service = RequestTimeoutLayer(Duration::from_secs(5)).layer(service);
        let base = "/apis/interactions.dev/v1alpha1/namespaces/ns/deploymentchannels";
        let started = tokio::time::Instant::now();
        let list = tokio::spawn(service.clone().oneshot(request(base)));
        let (_list, _unanswered) = handle.next_request().await.expect("the list");
        let error = list.await.unwrap().expect_err("timed out");
        assert!(error.is::<TimedOut>(), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));

        let watch = tokio::spawn(
            service
                .clone()
                .oneshot(request(&format!("{base}?watch=true&resourceVersion=7"))),
        );
        let (_watch, answer) = handle.next_request().await.expect("the watch");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!watch.is_finished(), "a watch has no request timeout");
        answer.send_response(Response::new(Body::empty()));
        assert!(watch.await.unwrap().is_ok());
    }
}
