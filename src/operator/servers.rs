//! HTTP endpoints for the kubelet and Prometheus, on two servers: the
//! probes `/healthz` (the process is alive) and `/readyz` (caches synced, on
//! a standby too) in plain HTTP, and `/metrics` in HTTPS behind
//! [`access`](crate::operator::metrics::access) (or plain and open for local development).

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use crate::{
    operator::metrics::Metrics,
    operator::metrics::access::{self, MetricsAuth},
    operator::replica_readiness::ReplicaReadiness,
};

/// The probe routes.
pub fn probe_router(readiness: Arc<ReplicaReadiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

/// The `/metrics` route, open to anyone when `auth` is `None`.
pub fn metrics_router(metrics: Arc<Metrics>, auth: Option<Arc<MetricsAuth>>) -> Router {
    let router = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics);
    match auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(
            auth,
            access::require_access,
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

async fn readyz(State(readiness): State<Arc<ReplicaReadiness>>) -> impl IntoResponse {
    if readiness.is_ready() {
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

    /// The probe and (unprotected) metrics routes of one replica.
    struct Replica {
        metrics: Arc<Metrics>,
        readiness: Arc<ReplicaReadiness>,
    }

    async fn get(state: &Replica, path: &str) -> (StatusCode, String) {
        let router = probe_router(state.readiness.clone())
            .merge(metrics_router(state.metrics.clone(), None));
        let response = router
            .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn state() -> Replica {
        let metrics = Arc::new(Metrics::default());
        let readiness = Arc::new(ReplicaReadiness::new(metrics.caches_synced.clone()));
        readiness.set_requirements_met(true);
        Replica { readiness, metrics }
    }

    #[tokio::test]
    async fn readyz_answers_what_the_readiness_says() {
        let state = state();
        assert_eq!(get(&state, "/healthz").await, (StatusCode::OK, "ok".into()));
        assert_eq!(
            get(&state, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.readiness.channels_listed();
        state.readiness.phone_configurations_listed();
        assert_eq!(get(&state, "/readyz").await.0, StatusCode::OK);
        state.readiness.caches_lost();
        assert_eq!(
            get(&state, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn open_metrics_are_served_in_the_exposition_format() {
        let state = state();
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
