//! The real binary on a real API server: metrics and probes, two replicas
//! with leader election, failover, and SIGTERM.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::{
    harness::{http_get, metric_value},
    scenarios,
    support::{Ctx, Scenario, web},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![
        binary_serves_metrics_and_probes,
        leader_election_fails_over_and_sigterm_releases_the_lease
    ]
}

/// A lease cadence short enough for scenarios: duration, renew deadline,
/// retry period. The renew deadline stays well above the seconds a loaded
/// two-core runner can starve a renewal while a neighbouring scenario boots
/// a control plane of its own: a scenario that counts one leader's writes
/// must not see leadership move under it.
/// `FAST_LEASE_DURATION` is its first value.
pub const FAST_LEASE: [&str; 6] = [
    "--lease-duration",
    "8s",
    "--lease-renew-deadline",
    "6s",
    "--lease-retry-period",
    "1s",
];
pub const FAST_LEASE_DURATION: std::time::Duration = std::time::Duration::from_secs(8);

/// Leader election in the scenario's namespace as `identity`, with `extra`.
pub fn election<'a>(ctx: &'a Ctx, identity: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--leader-election",
        "--lease-namespace",
        ctx.ns.as_str(),
        "--identity",
        identity,
    ];
    args.extend_from_slice(extra);
    args
}

/// One `deploymentchannel-operator run` process, killed on drop.
pub struct Replica {
    pub child: Child,
    /// Where the probes answer (plain HTTP).
    pub probe_address: SocketAddr,
    /// Where /metrics answers (HTTPS).
    pub metrics_address: SocketAddr,
    /// Whether /metrics is plain HTTP (`--insecure-metrics`).
    insecure_metrics: bool,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A client for `https://{address}` that sends `token` (none when `None`)
/// and trusts `root` (any certificate when `None`).
pub fn https_client(
    address: SocketAddr,
    token: Option<&str>,
    root: Option<Vec<u8>>,
) -> kube::Client {
    let mut config = kube::Config::new(format!("https://{address}").parse().unwrap());
    config.accept_invalid_certs = root.is_none();
    config.root_cert = root.map(|der| vec![der]);
    config.auth_info.token = token.map(|t| t.to_string().into());
    kube::Client::try_from(config).expect("an HTTPS client")
}

/// `GET path` through `client`: (status code, body).
pub async fn https_get(client: &kube::Client, path: &str) -> Option<(u16, String)> {
    use http_body_util::BodyExt;
    let request = http::Request::get(path)
        .body(kube::client::Body::empty())
        .ok()?;
    let response = client.send(request).await.ok()?;
    let code = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((code, String::from_utf8_lossy(&body).into_owned()))
}

impl Replica {
    /// Starts a replica with the admin's kubeconfig and /metrics in plain HTTP.
    pub fn start(ctx: &Ctx, extra: &[&str]) -> Self {
        let mut args = vec!["--insecure-metrics"];
        args.extend_from_slice(extra);
        Self::start_with(ctx, &args, &ctx.env.kubeconfig)
    }

    /// Starts a replica using `kubeconfig`, with `extra` options.
    pub fn start_with(ctx: &Ctx, extra: &[&str], kubeconfig: &std::path::Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let (probe_address, metrics_address) = (free_address(), free_address());
        let log_level: &[&str] = if extra.contains(&"--log-level") {
            &[]
        } else {
            &["--log-level", "info"]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_deploymentchannel-operator"))
            .args([
                "run",
                "--namespace",
                &ctx.ns,
                "--probe-address",
                &probe_address.to_string(),
                "--metrics-address",
                &metrics_address.to_string(),
            ])
            .args(log_level)
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("WATCH_NAMESPACE")
            .env_remove("POD_NAME")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            probe_address,
            metrics_address,
            insecure_metrics: extra.contains(&"--insecure-metrics"),
            log,
            _dir: dir,
        }
    }

    /// `GET path` over plain HTTP: /metrics (with `--insecure-metrics`) or a probe.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        if path == "/metrics" {
            assert!(self.insecure_metrics, "/metrics is HTTPS: use https_get");
            http_get(self.metrics_address, path).await
        } else {
            http_get(self.probe_address, path).await
        }
    }

    /// The value of a metric, summed over the samples whose labels contain `labels`.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, body) = self.get("/metrics").await.unwrap_or_default();
        metric_value(&body, name, labels)
    }

    /// Waits until `path` answers 200.
    pub async fn wait_ok(&self, ctx: &Ctx, path: &str) {
        ctx.eventually(
            &format!("{} on {}", path, self.probe_address),
            Duration::from_secs(30),
            || async { self.get(path).await.filter(|(code, _)| *code == 200) },
        )
        .await;
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn binary_serves_metrics_and_probes(ctx: Ctx) {
    let replica = Replica::start(&ctx, &[]);
    replica.wait_ok(&ctx, "/healthz").await;
    // Ready once the caches have synced.
    replica.wait_ok(&ctx, "/readyz").await;
    assert_eq!(
        replica
            .metric("deploymentchannel_operator_caches_synced", "")
            .await,
        1.0
    );
    let before = replica
        .metric(
            "deploymentchannel_operator_reconciles_total",
            "kind=\"DeploymentChannel\"",
        )
        .await;
    for i in 0..3 {
        ctx.must_apply(&web(
            &format!("site-{i}"),
            &format!("https://site-{i}.example.com"),
        ))
        .await;
    }
    for i in 0..3 {
        ctx.wait_ready(&format!("site-{i}"), "True", "Ready").await;
    }
    ctx.eventually(
        "the metrics to count the channels",
        Duration::from_secs(30),
        || async {
            let ready = replica
                .metric("deploymentchannel_operator_channels", "ready=\"True\"")
                .await;
            let writes = replica
                .metric(
                    "deploymentchannel_operator_reconciles_total",
                    "kind=\"DeploymentChannel\",result=\"written\"",
                )
                .await;
            (ready == 3.0 && writes == 3.0).then_some(())
        },
    )
    .await;
    let after = replica
        .metric(
            "deploymentchannel_operator_reconciles_total",
            "kind=\"DeploymentChannel\"",
        )
        .await;
    assert!(
        after >= before + 3.0,
        "reconciles went from {before} to {after}"
    );
    assert_eq!(
        replica
            .metric(
                "deploymentchannel_operator_cached_objects",
                "kind=\"DeploymentChannel\""
            )
            .await,
        3.0
    );
    let (_, text) = replica.get("/metrics").await.unwrap();
    assert!(
        text.contains("deploymentchannel_operator_reconcile_duration_seconds_bucket"),
        "{text}"
    );
    // No log line per unchanged reconcile at info level.
    let logs = replica.logs();
    assert!(!logs.contains("status unchanged"), "{logs}");
}

async fn leader_election_fails_over_and_sigterm_releases_the_lease(ctx: Ctx) {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let holder = || async {
        leases
            .get_opt("deploymentchannel-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
            .filter(|h| !h.is_empty())
    };
    let a = Replica::start(&ctx, &election(&ctx, "replica-a", &FAST_LEASE));
    ctx.eventually(
        "replica-a to hold the lease",
        Duration::from_secs(30),
        || async { (holder().await.as_deref() == Some("replica-a")).then_some(()) },
    )
    .await;
    let b = Replica::start(&ctx, &election(&ctx, "replica-b", &FAST_LEASE));
    // The leader once synced, the standby at once.
    a.wait_ok(&ctx, "/readyz").await;
    b.wait_ok(&ctx, "/readyz").await;
    assert_eq!(a.metric("deploymentchannel_operator_leader", "").await, 1.0);
    assert_eq!(b.metric("deploymentchannel_operator_leader", "").await, 0.0);

    for i in 0..3 {
        ctx.must_apply(&web(
            &format!("before-{i}"),
            &format!("https://before-{i}.example.com"),
        ))
        .await;
    }
    for i in 0..3 {
        ctx.wait_ready(&format!("before-{i}"), "True", "Ready")
            .await;
    }
    let a_writes = a
        .metric(
            "deploymentchannel_operator_reconciles_total",
            "result=\"written\"",
        )
        .await;
    let logs = || format!("replica-a:\n{}\nreplica-b:\n{}", a.logs(), b.logs());
    assert!(
        a_writes >= 3.0,
        "the leader wrote {a_writes} statuses; {}",
        logs()
    );
    assert_eq!(
        b.metric(
            "deploymentchannel_operator_reconciles_total",
            "result=\"written\""
        )
        .await,
        0.0,
        "the standby wrote; {}",
        logs()
    );
    assert_eq!(
        b.metric("deploymentchannel_operator_reconciles_total", "")
            .await,
        0.0,
        "the standby reconciled; {}",
        logs()
    );

    // Kill the leader without a chance to release the lease: the standby takes over once it expires.
    drop(a);
    ctx.must_apply(&web("after-failover", "https://after.example.com"))
        .await;
    ctx.wait_ready("after-failover", "True", "Ready").await;
    assert_eq!(holder().await.as_deref(), Some("replica-b"));
    assert_eq!(b.metric("deploymentchannel_operator_leader", "").await, 1.0);
    assert!(
        b.metric(
            "deploymentchannel_operator_reconciles_total",
            "result=\"written\""
        )
        .await
            >= 1.0
    );

    // SIGTERM: exit 0 within a few seconds, lease released.
    let mut b = b;
    b.signal("-TERM");
    let status = ctx
        .eventually(
            "replica-b to exit after SIGTERM",
            Duration::from_secs(15),
            || {
                let status = b.child.try_wait().unwrap();
                async move { status }
            },
        )
        .await;
    assert!(
        status.success(),
        "exit status {status}; logs:\n{}",
        b.logs()
    );
    assert_eq!(holder().await, None, "the lease was not released");
    let logs = b.logs();
    assert!(logs.contains("released the lease"), "{logs}");
}
