//! The `run` command: logging, the HTTP endpoints, leader election and
//! graceful shutdown around the controllers.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

mod log_lines;
mod options;

use log_lines::SafeLines;
pub use options::{LogFormat, RunArgs};

use crate::{
    operator::controller::{self, Settings},
    operator::leader_election::{Elector, Leadership},
    operator::lease_fence::{FenceLayer, LeaseFence},
    operator::metrics::Metrics,
    operator::metrics::access::{KubeReviewer, MetricsAuth},
    operator::metrics::api_requests::ApiMetricsLayer,
    operator::replica_readiness::ReplicaReadiness,
    operator::request_timeout::RequestTimeoutLayer,
    operator::servers,
    operator::tls,
};
use axum_server::tls_rustls::RustlsConfig;

/// Field manager of the leader-election Lease, followed by the replica's
/// identity: server-side apply detects two replicas locking the Lease at
/// once only when their field managers differ.
const LEASE_FIELD_MANAGER: &str = "deploymentchannel-operator-lease";

/// This replica's field manager of the Lease (at most 128 bytes, as the API server requires).
fn lease_field_manager(identity: &str) -> String {
    let mut manager = format!("{LEASE_FIELD_MANAGER}-{identity}");
    while manager.len() > 128 {
        manager.pop();
    }
    manager
}

/// Runs the operator until SIGTERM or SIGINT.
pub fn main(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format, &args.log_level)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args))
}

/// Sets up `tracing` output; a bad filter is an error naming the option.
pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| {
        format!("--log-level (LOG_LEVEL) {level:?} is not a valid level or filter")
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => builder
            .with_writer(SafeLines::human(std::io::stdout))
            .init(),
        LogFormat::Json => builder
            .with_writer(SafeLines::json(std::io::stdout))
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    Ok(())
}

/// A shutdown request that any number of tasks can wait for.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A shutdown triggered by SIGTERM or SIGINT.
    pub fn on_signals() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received: shutting down"),
                _ = tokio::signal::ctrl_c() => info!("SIGINT received: shutting down"),
            }
            let _ = tx.send(true);
        });
        Ok(Self(rx))
    }

    /// A shutdown triggered by `trigger` completing.
    #[cfg(test)]
    pub fn on(trigger: impl Future<Output = ()> + Send + 'static) -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            trigger.await;
            let _ = tx.send(true);
        });
        Self(rx)
    }

    /// Completes once shutdown is requested.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|requested| *requested).await;
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = kube::Config::infer().await.context(
        "cannot configure a client from the kube context (or the in-cluster service account)",
    )?;
    let shutdown = Shutdown::on_signals()?;
    run_with(config, args, shutdown).await
}

/// Runs the operator against the cluster of `config` until `shutdown`.
pub async fn run_with(
    config: kube::Config,
    args: RunArgs,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let timing = args.lease_timing()?;
    let metrics = Arc::new(Metrics::default());
    // With leader election, every write while this replica does not surely
    // hold the Lease is refused before it leaves the process.
    let fence = args
        .leader_election
        .then(|| Arc::new(LeaseFence::new(timing.write_window())));
    // /metrics token reviews have a client (and connections) of their own,
    // so that a flood of them cannot delay the Lease renewals.
    let timeout = RequestTimeoutLayer(args.api_request_timeout);
    let review_client = kube::client::ClientBuilder::try_from(config.clone())
        .context("cannot build a Kubernetes client")?
        .with_layer(&timeout)
        .with_layer(&ApiMetricsLayer(metrics.clone()))
        .build();
    let client = kube::client::ClientBuilder::try_from(config)
        .context("cannot build a Kubernetes client")?
        .with_layer(&timeout)
        .with_layer(&ApiMetricsLayer(metrics.clone()))
        .with_layer(&FenceLayer {
            fence: fence.clone(),
        })
        .build();
    tokio::spawn(warn_if_unsupported(client.clone()));
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(crate::operator::identity::generate);
    let readiness = Arc::new(ReplicaReadiness::new(metrics.caches_synced.clone()));
    let servers = start_servers(
        &args,
        &identity,
        review_client,
        metrics.clone(),
        readiness.clone(),
        &shutdown,
    )
    .await?;
    // CRDs installed and permissions granted before anything else.
    let needed = crate::operator::preflight::needed(
        args.namespace.as_deref(),
        args.leader_election
            .then(|| lease_namespace(&args))
            .as_deref(),
    );
    let startable = tokio::select! {
        _ = crate::operator::preflight::wait_until_ready(&client, &needed, &metrics) => true,
        _ = shutdown.requested() => false,
    };
    readiness.set_requirements_met(startable);
    let controllers = Controllers {
        client,
        settings: Settings {
            namespace: args.namespace.clone(),
            concurrency: args.concurrency,
            instance: Some(identity.clone()),
            bound_channels_refresh: Duration::from_secs(args.bound_channels_refresh_seconds),
        },
        metrics,
        readiness,
        grace: Duration::from_secs(args.shutdown_timeout_seconds),
    };
    match fence {
        _ if !startable => {}
        Some(fence) => {
            let namespace = lease_namespace(&args);
            let elector = Elector::new(
                Api::namespaced(controllers.client.clone(), &namespace),
                &args.lease_name,
                &identity,
                timing,
                lease_field_manager(&identity),
            );
            let (leading, stopped) = (watch::Sender::new(false), watch::Sender::new(false));
            let leadership = Leadership::following(&leading);
            let mut done = stopped.subscribe();
            // Every replica watches and caches from the start; only the
            // leader reconciles. The Lease is released once the last
            // reconcile finished.
            tokio::join!(
                async {
                    controllers.run_until(&shutdown, leadership).await;
                    stopped.send_replace(true);
                },
                elector.run(leading, fence, controllers.metrics.clone(), async move {
                    let _ = done.wait_for(|stopped| *stopped).await;
                }),
            );
        }
        None => controllers.run_until(&shutdown, Leadership::always()).await,
    }
    for server in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "HTTP server failed"),
            Err(e) => warn!(error = %e, "HTTP server task failed"),
        }
    }
    info!("stopped");
    Ok(())
}

/// Logs the server's version, and a warning when it is older than supported.
async fn warn_if_unsupported(client: Client) {
    match client.apiserver_version().await {
        Ok(info) => match crate::operator::compatibility::too_old(&info) {
            Some(warning) => warn!("{warning}"),
            None => info!(version = %info.git_version, "API server"),
        },
        Err(e) => warn!(error = %e, "cannot read the API server's version"),
    }
}

/// Binds the probe and metrics servers (an error names the flag) and serves
/// them until shutdown.
async fn start_servers(
    args: &RunArgs,
    identity: &str,
    client: Client,
    metrics: Arc<Metrics>,
    readiness: Arc<ReplicaReadiness>,
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<std::io::Result<()>>>> {
    if args.probe_address == args.metrics_address {
        anyhow::bail!(
            "--probe-address and --metrics-address are both {}: give them different ports",
            args.probe_address
        );
    }
    let probe_listener = tokio::net::TcpListener::bind(args.probe_address)
        .await
        .with_context(|| format!("--probe-address {}: cannot listen", args.probe_address))?;
    let metrics_listener = std::net::TcpListener::bind(args.metrics_address)
        .with_context(|| format!("--metrics-address {}: cannot listen", args.metrics_address))?;
    info!(address = %args.probe_address, "serving /healthz and /readyz");
    let mut servers = vec![tokio::spawn(servers::serve(
        probe_listener,
        servers::probe_router(readiness),
        shutdown.requested(),
    ))];
    if args.insecure_metrics {
        warn!(address = %args.metrics_address, "serving /metrics in plain HTTP without authentication (--insecure-metrics)");
        let listener = tokio::net::TcpListener::from_std({
            metrics_listener.set_nonblocking(true)?;
            metrics_listener
        })?;
        servers.push(tokio::spawn(servers::serve(
            listener,
            servers::metrics_router(metrics, None),
            shutdown.requested(),
        )));
        return Ok(servers);
    }
    let server_config = match &args.metrics_cert_dir {
        Some(dir) => tls::from_dir(dir)?,
        None => tls::self_signed(&["localhost".to_string(), identity.to_string()])?,
    };
    let tls_config = RustlsConfig::from_config(server_config);
    if let Some(dir) = &args.metrics_cert_dir {
        tokio::spawn(tls::reload_on_change(
            dir.clone(),
            tls_config.clone(),
            tls::RELOAD_INTERVAL,
            shutdown.requested(),
        ));
    }
    info!(
        address = %args.metrics_address,
        certificate = %args.metrics_cert_dir.as_ref().map_or("self-signed".into(), |d| d.display().to_string()),
        "serving /metrics in HTTPS to tokens allowed to get /metrics"
    );
    let auth = Arc::new(MetricsAuth::new(KubeReviewer(client)));
    servers.push(tokio::spawn(servers::serve_tls(
        metrics_listener,
        servers::metrics_router(metrics, Some(auth)),
        tls_config,
        shutdown.requested(),
    )));
    Ok(servers)
}

/// The controllers and what they run with, for as long as the process lives.
struct Controllers {
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    readiness: Arc<ReplicaReadiness>,
    /// How long in-flight reconciles get to finish on shutdown.
    grace: Duration,
}

impl Controllers {
    /// Runs the controllers until shutdown, reconciling while `leadership`
    /// says so; in-flight reconciles get `grace` to finish.
    async fn run_until(&self, shutdown: &Shutdown, leadership: Leadership) {
        let controllers = controller::run_with_leadership(
            self.client.clone(),
            self.settings.clone(),
            self.metrics.clone(),
            self.readiness.clone(),
            leadership,
            shutdown.requested(),
        );
        let grace = self.grace;
        let deadline = {
            let requested = shutdown.requested();
            async move {
                requested.await;
                tokio::time::sleep(grace).await;
            }
        };
        tokio::select! {
            _ = controllers => {}
            _ = deadline => warn!(?grace, "in-flight reconciles did not finish in time: abandoning them"),
        }
        self.readiness.caches_lost();
    }
}

/// The namespace of the leader-election Lease.
fn lease_namespace(args: &RunArgs) -> String {
    args.lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into())
}
