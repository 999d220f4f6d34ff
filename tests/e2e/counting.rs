//! A client layer that counts the API requests an operator makes, by verb
//! and resource, so tests and the benchmark can assert on writes, and the
//! requests the API server refused with 403 Forbidden.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use tower::{Layer, Service};

/// Requests seen, by (verb, resource), e.g. ("patch", "deploymentchannels/status"),
/// and those of them answered 403 Forbidden.
#[derive(Clone, Default)]
pub struct RequestCounts(
    Arc<Mutex<BTreeMap<(String, String), u64>>>,
    Arc<Mutex<BTreeMap<(String, String), u64>>>,
);

impl RequestCounts {
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().unwrap().clone()
    }

    /// Requests that change something (create, update, patch, delete).
    pub fn writes(&self) -> u64 {
        self.matching(|verb, _| matches!(verb, "create" | "update" | "patch" | "delete"))
    }

    /// Status writes to either kind.
    pub fn status_writes(&self) -> u64 {
        self.matching(|verb, resource| {
            matches!(verb, "update" | "patch") && resource.ends_with("/status")
        })
    }

    pub fn matching(&self, f: impl Fn(&str, &str) -> bool) -> u64 {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|((v, r), _)| f(v, r))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests answered 403 Forbidden.
    pub fn forbidden(&self) -> u64 {
        self.1.lock().unwrap().values().sum()
    }

    /// Requests answered 403 Forbidden, by (verb, resource).
    pub fn forbidden_snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.1.lock().unwrap().clone()
    }

    fn record_forbidden(&self, key: (String, String)) {
        *self.1.lock().unwrap().entry(key).or_default() += 1;
    }

    fn record<B>(&self, request: &http::Request<B>) -> (String, String) {
        let uri = request.uri();
        let query = uri.query().unwrap_or_default();
        let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
        // .../namespaces/{ns}/{resource}[/{name}[/{subresource}]] or .../{resource}[/{name}]
        let (resource, named) = match segments.iter().rposition(|s| *s == "namespaces") {
            Some(i) if segments.len() > i + 2 => {
                (segments[i + 2..].to_vec(), segments.len() > i + 3)
            }
            _ => (segments.last().into_iter().copied().collect(), false),
        };
        let resource = match resource.as_slice() {
            [kind, _name, sub] => format!("{kind}/{sub}"),
            [kind, ..] => kind.to_string(),
            [] => String::new(),
        };
        let verb = match request.method().as_str() {
            "GET" if query.contains("watch=true") || query.contains("watch=1") => "watch",
            "GET" if named => "get",
            "GET" => "list",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            other => other,
        };
        let key = (verb.to_string(), resource);
        *self.0.lock().unwrap().entry(key.clone()).or_default() += 1;
        key
    }
}

impl<S> Layer<S> for RequestCounts {
    type Service = Counting<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counting {
            inner,
            counts: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Counting<S> {
    inner: S,
    counts: RequestCounts,
}

impl<S, B, R> Service<http::Request<B>> for Counting<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let key = self.counts.record(&request);
        let counts = self.counts.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            if let Ok(response) = &response
                && response.status() == http::StatusCode::FORBIDDEN
            {
                counts.record_forbidden(key);
            }
            response
        })
    }
}
