//! HTTP endpoints for the kubelet and Prometheus, on two servers: the
//! probes `/healthz` (the process is alive) and `/readyz` (caches synced, or
//! standing by for the lease) in plain HTTP, and `/metrics` in HTTPS behind
//! [`metrics_auth`](crate::metrics_auth) (or plain and open for local development).

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use crate::{
    metrics::Metrics,
    metrics_auth::{self, MetricsAuth},
};

/// What the endpoints read.
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// Whether replicas elect a leader (a standby is ready without caches).
    pub leader_election: bool,
}

impl HttpState {
    /// Ready when the caches hold a full list; with leader election, a
    /// replica standing by for the lease is ready too. Never while CRDs or
    /// permissions are missing.
    pub fn ready(&self) -> bool {
        let synced = self.metrics.caches_synced.get() == 1;
        let leading = self.metrics.leader.get() == 1;
        let startable = self.metrics.missing_requirements.get() == 0;
        startable && (synced || (self.leader_election && !leading))
    }
}

/// The probe routes.
pub fn probe_router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// The `/metrics` route, open to anyone when `auth` is `None`.
pub fn metrics_router(metrics: Arc<Metrics>, auth: Option<Arc<MetricsAuth>>) -> Router {
    let router = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics);
    match auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(
            auth,
            metrics_auth::require_access,
        )),
        None => router,
    }
}

/// Serves `router` in plain HTTP until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `router` in HTTPS until `shutdown` completes.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    router: Router,
    tls: axum_server::tls_rustls::RustlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(router.into_make_service())
        .await
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

async fn readyz(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    if state.ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(state: &Arc<HttpState>, path: &str) -> (StatusCode, String) {
        let router = probe_router(state.clone()).merge(metrics_router(state.metrics.clone(), None));
        let response = router
            .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_caches_and_leadership() {
        let state = Arc::new(HttpState {
            metrics: Arc::new(Metrics::default()),
            leader_election: false,
        });
        assert_eq!(get(&state, "/healthz").await, (StatusCode::OK, "ok".into()));
        assert_eq!(
            get(&state, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.metrics.caches_synced.set(1);
        assert_eq!(get(&state, "/readyz").await.0, StatusCode::OK);

        let elected = Arc::new(HttpState {
            metrics: Arc::new(Metrics::default()),
            leader_election: true,
        });
        // Standing by: ready.
        assert_eq!(get(&elected, "/readyz").await.0, StatusCode::OK);
        // Leading with caches still listing: not ready.
        elected.metrics.leader.set(1);
        assert_eq!(
            get(&elected, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        elected.metrics.caches_synced.set(1);
        assert_eq!(get(&elected, "/readyz").await.0, StatusCode::OK);
        // CRDs or permissions missing: never ready, leading or not.
        elected.metrics.missing_requirements.set(2);
        assert_eq!(
            get(&elected, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        elected.metrics.leader.set(0);
        assert_eq!(
            get(&elected, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn open_metrics_are_served_in_the_exposition_format() {
        let state = Arc::new(HttpState {
            metrics: Arc::new(Metrics::default()),
            leader_election: true,
        });
        state.metrics.leader.set(1);
        let (status, body) = get(&state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.lines()
                .any(|l| l == "deploymentchannel_operator_leader 1"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));
    }
}
