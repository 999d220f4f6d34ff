//! Counts the operator's requests to the Kubernetes API by verb, resource
//! and response code: what it costs the API server, visible in `/metrics`.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tower::{Layer, Service};

use crate::operator::metrics::{ApiRequestLabels, Metrics};

/// The verb and resource of a request, as the API server's audit log names
/// them: `("patch", "deploymentchannels/status")`, `("watch", "phoneconfigurations")`;
/// a request for a non-resource URL is `("get", "/version")`.
pub fn classify<B>(request: &::http::Request<B>) -> (&'static str, String) {
    let uri = request.uri();
    let query = uri.query().unwrap_or_default();
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/{group}/{version}/..., then [namespaces/{ns}/]{resource}[/{name}[/{subresource}]]
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..).unwrap_or_default(),
        Some(&"apis") => segments.get(3..).unwrap_or_default(),
        _ => {
            let verb = if request.method() == "GET" {
                "get"
            } else {
                "other"
            };
            return (verb, uri.path().to_string());
        }
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named) = match rest {
        [kind, _name, sub, ..] => (format!("{kind}/{sub}"), true),
        [kind, _name] => (kind.to_string(), true),
        [kind] => (kind.to_string(), false),
        // Discovery of an API group version.
        [] => return ("get", uri.path().to_string()),
    };
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match request.method().as_str() {
        "GET" if watch => "watch",
        "GET" if named => "get",
        "GET" => "list",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" if named => "delete",
        "DELETE" => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

/// A client layer recording every request in [`Metrics::api_requests`].
#[derive(Clone)]
pub struct ApiMetricsLayer(pub Arc<Metrics>);

impl<S> Layer<S> for ApiMetricsLayer {
    type Service = ApiMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiMetricsService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// See [`ApiMetricsLayer`].
#[derive(Clone)]
pub struct ApiMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<::http::Request<B>> for ApiMetricsService<S>
where
    S: Service<::http::Request<B>, Response = ::http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ::http::Request<B>) -> Self::Future {
        let (verb, resource) = classify(&request);
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            let code = match &response {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            metrics
                .api_requests
                .get_or_create(&ApiRequestLabels {
                    verb,
                    resource,
                    code,
                })
                .inc();
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str) -> http::Request<()> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
    }

    #[test]
    fn classifies_verbs_and_resources() {
        let base = "/apis/interactions.dev/v1alpha1/namespaces/ns";
        let cases = [
            (
                "GET",
                format!("{base}/deploymentchannels?&limit=500"),
                ("list", "deploymentchannels"),
            ),
            (
                "GET",
                format!("{base}/deploymentchannels?&watch=true&resourceVersion=1"),
                ("watch", "deploymentchannels"),
            ),
            (
                "GET",
                "/apis/interactions.dev/v1alpha1/phoneconfigurations?&watch=true".into(),
                ("watch", "phoneconfigurations"),
            ),
            (
                "GET",
                format!("{base}/deploymentchannels/a"),
                ("get", "deploymentchannels"),
            ),
            (
                "PATCH",
                format!("{base}/deploymentchannels/a/status?&force=true"),
                ("patch", "deploymentchannels/status"),
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/ns/events".into(),
                ("create", "events"),
            ),
            (
                "PATCH",
                "/apis/events.k8s.io/v1/namespaces/ns/events/e1".into(),
                ("patch", "events"),
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l".into(),
                ("update", "leases"),
            ),
            ("GET", "/api/v1/namespaces/ns".into(), ("get", "namespaces")),
            (
                "DELETE",
                format!("{base}/deploymentchannels"),
                ("deletecollection", "deploymentchannels"),
            ),
            ("GET", "/version".into(), ("get", "/version")),
            (
                "GET",
                "/apis/interactions.dev/v1alpha1".into(),
                ("get", "/apis/interactions.dev/v1alpha1"),
            ),
        ];
        for (method, uri, (verb, resource)) in cases {
            assert_eq!(
                classify(&request(method, &uri)),
                (verb, resource.to_string()),
                "{method} {uri}"
            );
        }
    }
}
