//! The `run` command: logging, the HTTP endpoints, leader election and
//! graceful shutdown around the controllers.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{error, info, warn};

mod options;

pub use options::{LogFormat, RunArgs};

use crate::{
    operator::controller::{self, Settings},
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
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder
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

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
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
    let metrics = Arc::new(Metrics::default());
    // With leader election, every request after the Lease could not be
    // renewed in time is refused before it leaves the process.
    let fence = args.leader_election.then(|| {
        let duration = args.lease_duration_seconds;
        Arc::new(LeaseFence::new(
            Duration::from_secs(duration),
            Duration::from_secs(lease_grace(duration)),
        ))
    });
    // /metrics token reviews have a client (and connections) of their own,
    // so that a flood of them cannot delay the Lease renewals.
    let review_client = kube::client::ClientBuilder::try_from(config.clone())
        .context("cannot build a Kubernetes client")?
        .with_layer(&ApiMetricsLayer(metrics.clone()))
        .build();
    let client = kube::client::ClientBuilder::try_from(config)
        .context("cannot build a Kubernetes client")?
        .with_layer(&RequestTimeoutLayer::default())
        .with_layer(&ApiMetricsLayer(metrics.clone()))
        .with_layer(&FenceLayer {
            fence: fence.clone(),
            lease_path: format!(
                "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}",
                lease_namespace(&args),
                args.lease_name
            ),
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
    let result = match fence {
        _ if !startable => Ok(()),
        Some(fence) => lead(&controllers, &args, identity, &shutdown, fence).await,
        None => {
            controllers.run_until(&shutdown).await;
            Ok(())
        }
    };
    // On an error, exit at once: the HTTP servers stop with the process.
    result?;
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
    /// Runs the controllers until shutdown; in-flight reconciles get `grace` to finish.
    async fn run_until(&self, shutdown: &Shutdown) {
        let controllers = controller::run(
            self.client.clone(),
            self.settings.clone(),
            self.metrics.clone(),
            self.readiness.clone(),
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

/// Seconds before the Lease expires that its holder renews it.
fn lease_grace(duration: u64) -> u64 {
    (duration / 3).max(2)
}

/// The namespace of the leader-election Lease.
fn lease_namespace(args: &RunArgs) -> String {
    args.lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into())
}

/// Stands by for the Lease, reconciles while holding it, stops reconciling
/// at once when it is lost, and releases it on shutdown. A leader that could
/// not renew the Lease in time (paused, starved, cut off) stops at the
/// fence's deadline, before a standby may take over, and returns an error:
/// the process exits non-zero and restarts as a standby.
async fn lead(
    controllers: &Controllers,
    args: &RunArgs,
    identity: String,
    shutdown: &Shutdown,
    fence: Arc<LeaseFence>,
) -> anyhow::Result<()> {
    let (metrics, readiness) = (&controllers.metrics, &controllers.readiness);
    let namespace = lease_namespace(args);
    let duration = args.lease_duration_seconds;
    let manager = LeaseManagerBuilder::new(controllers.client.clone(), &args.lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(duration)
        .with_grace(lease_grace(duration))
        .with_field_manager(lease_field_manager(&identity))
        .build()
        .await
        .with_context(|| format!("cannot use Lease {namespace}/{}", args.lease_name))?;
    let (mut leading, task) = manager.watch().await;
    info!(lease = %format!("{namespace}/{}", args.lease_name), %identity, "standing by for the lease");
    while !shutdown.is_requested() {
        metrics.leader.set(0);
        readiness.set_standing_by(true);
        tokio::select! {
            _ = shutdown.requested() => break,
            changed = leading.wait_for(|leader| *leader) => if changed.is_err() { break },
        }
        metrics.leader.set(1);
        readiness.set_standing_by(false);
        info!(%identity, "acquired the lease: reconciling");
        tokio::select! {
            _ = controllers.run_until(shutdown) => {}
            lost = leading.wait_for(|leader| !*leader) => {
                // Dropping the controllers cancels their in-flight reconciles.
                readiness.caches_lost();
                if lost.is_err() {
                    break;
                }
                warn!(%identity, "lost the lease: stopped reconciling");
            }
            _ = fence.expired() => {
                // Dropping the controllers cancels their in-flight reconciles;
                // the fence refuses their writes already.
                readiness.caches_lost();
                metrics.leader.set(0);
                error!(%identity, lease_duration_seconds = duration, "could not renew the lease in time: stopped reconciling before another replica may take over; exiting to restart as a standby");
                anyhow::bail!("the leader-election Lease was not renewed in time");
            }
        }
    }
    metrics.leader.set(0);
    readiness.set_standing_by(false);
    // Closing the channel makes the manager release the Lease and stop.
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => info!("released the lease"),
        Ok(Ok(Err(e))) => warn!(error = %e, "could not release the lease; it expires on its own"),
        Ok(Err(e)) => warn!(error = %e, "lease task failed"),
        Err(_) => warn!("releasing the lease timed out; it expires on its own"),
    }
    Ok(())
}
