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

/// The limits every connection of both servers is held to: a client that
/// is slow, sends too much, or opens too many connections costs a bounded
/// amount and then is cut off.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; one more is closed as soon as accepted.
    pub max_connections: usize,
    /// The TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request's headers (the first and every later one on the
    /// connection) must arrive within this once the connection waits for
    /// them: this is also the idle timeout of a kept-alive connection.
    pub header_read_timeout: Duration,
    /// A request must be answered within this (a token review included).
    pub request_timeout: Duration,
    /// No connection lives longer than this (Prometheus reconnects).
    pub max_connection_age: Duration,
    /// The connection's read buffer, which bounds the size of a request's
    /// headers (hyper refuses larger with 431).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_connection_age: Duration::from_secs(120),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Serves `router` in plain HTTP until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_limited(listener, router, None, Limits::default(), shutdown).await
}

/// Serves `router` in HTTPS until `shutdown` completes.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    router: Router,
    tls: axum_server::tls_rustls::RustlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    serve_limited(listener, router, Some(tls), Limits::default(), shutdown).await
}

/// Serves `router` (in HTTPS with `tls`) in HTTP/1.1 only, held to
/// `limits`, until `shutdown` completes; then lets the open connections
/// finish their request for a few seconds.
pub async fn serve_limited(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(
        tower::ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(
                |_: tower::BoxError| async { StatusCode::SERVICE_UNAVAILABLE },
            ))
            .timeout(limits.request_timeout),
    );
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait, do not spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Over the cap: closed at once, costing nothing more.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(
                limits.max_connection_age,
                serve_connection(stream, router, tls, limits, stopped),
            )
            .await;
        });
    }
    let _ = stop.send(true);
    // Open connections finish their request, for a few seconds at most.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        connections.acquire_many(limits.max_connections as u32),
    )
    .await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    limits: Limits,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    match tls {
        None => http1(stream, router, limits, stopped).await,
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
            let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream));
            if let Ok(Ok(stream)) = handshake.await {
                http1(stream, router, limits, stopped).await;
            }
        }
    }
}

async fn http1<S>(
    stream: S,
    router: Router,
    limits: Limits,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(64)
        .keep_alive(true);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = async { drop(stopped.wait_for(|stop| *stop).await) } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
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

    /// A probe server on loopback with short limits, and its address.
    async fn running(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = probe_router(state().readiness);
        tokio::spawn(serve_limited(listener, router, None, limits, async {
            let _ = stopped.await;
        }));
        (address, stop)
    }

    fn short() -> Limits {
        Limits {
            max_connections: 8,
            header_read_timeout: Duration::from_millis(500),
            ..Limits::default()
        }
    }

    /// Reads until the server closes the connection (or 5 s pass).
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Option<String> {
        use tokio::io::AsyncReadExt;
        let mut seen = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut seen)).await;
        read.ok()
            .map(|_| String::from_utf8_lossy(&seen).into_owned())
    }

    #[tokio::test]
    async fn a_slow_client_is_cut_off_and_an_idle_one_too() {
        use tokio::io::AsyncWriteExt;
        let (address, _stop) = running(short()).await;
        // Slowloris: headers that never end.
        let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: 1\r\n")
            .await
            .unwrap();
        assert!(
            read_to_close(&mut slow).await.is_some(),
            "a slow client stays connected"
        );
        // Idle: connected, sends nothing.
        let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
        assert!(
            read_to_close(&mut idle).await.is_some(),
            "an idle client stays connected"
        );
        // Kept alive after a request, then idle.
        let mut kept = tokio::net::TcpStream::connect(address).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut kept).await.expect("closed when idle");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn oversized_headers_are_refused() {
        use tokio::io::AsyncWriteExt;
        let (address, _stop) = running(short()).await;
        let mut big = tokio::net::TcpStream::connect(address).await.unwrap();
        let header = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-big: {}\r\n",
            "a".repeat(64 * 1024)
        );
        // The server may close before all is written.
        let _ = big.write_all(header.as_bytes()).await;
        let answer = read_to_close(&mut big).await.expect("closed");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_the_server_still_answers() {
        use tokio::io::AsyncWriteExt;
        let limits = Limits {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let (address, _stop) = running(limits).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(tokio::net::TcpStream::connect(address).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut over = tokio::net::TcpStream::connect(address).await.unwrap();
        let _ = over
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let answer = read_to_close(&mut over).await.unwrap_or_default();
        assert!(!answer.contains("200"), "{answer}");
        // Once the held connections time out, the server answers again.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let mut fresh = tokio::net::TcpStream::connect(address).await.unwrap();
        fresh
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut fresh).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(held);
    }
}
