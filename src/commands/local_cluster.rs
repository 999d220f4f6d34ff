//! A throwaway Kubernetes control plane on loopback, started from the
//! binaries in `KUBEBUILDER_ASSETS` the way controller-runtime's envtest
//! starts one: etcd and kube-apiserver on free ports, with temporary data,
//! certificates and a token, all removed when it is dropped.
//!
//! `make run` uses it when no kube context is reachable, and the end-to-end
//! suite and the benchmark run against it.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use tempfile::TempDir;
use tracing::instrument::WithSubscriber;

use crate::operator::compatibility;

/// The environment variable that names the directory of the binaries.
pub const ASSETS_VARIABLE: &str = "KUBEBUILDER_ASSETS";

/// etcd and kube-apiserver, killed and their data removed on drop.
pub struct LocalCluster {
    etcd: Child,
    apiserver: Child,
    /// How kube-apiserver was started, to start it again.
    apiserver_command: (PathBuf, Vec<std::ffi::OsString>),
    kubeconfig: PathBuf,
    minor: u32,
    /// What `etcd --version` reports (`3.6.16`).
    etcd_version: String,
    dir: TempDir,
}

impl LocalCluster {
    /// Starts etcd and kube-apiserver from `assets` and waits until the API
    /// server is ready.
    pub async fn start(assets: &Path) -> Result<Self, String> {
        let apiserver_bin = assets.join("kube-apiserver");
        if !apiserver_bin.exists() {
            return Err(format!(
                "{ASSETS_VARIABLE}={} holds no kube-apiserver",
                assets.display()
            ));
        }
        let etcd_bin = Some(assets.join("etcd"))
            .filter(|p| p.exists())
            .or_else(|| find_on_path("etcd"))
            .ok_or_else(|| {
                format!(
                    "{ASSETS_VARIABLE}={} holds no etcd (nor is one on PATH)",
                    assets.display()
                )
            })?;
        let minor = binary_minor(&apiserver_bin)?;
        let etcd_version = etcd_version(&etcd_bin)?;
        let dir = tempfile::Builder::new()
            .prefix("deploymentchannel-cluster-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let log = |name: &str| {
            std::fs::File::create(dir.path().join(name))
                .map_err(|e| format!("cannot create {name}: {e}"))
        };

        let (client_port, peer_port) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Command::new(&etcd_bin)
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &etcd_url])
            .args(["--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(log("etcd.log")?)
            .stderr(log("etcd.log")?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", etcd_bin.display()))?;

        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).map_err(|e| format!("cannot write {name}: {e}"))?;
            Ok::<_, String>(path)
        };
        let key_file = write("sa.key", key.serialize_pem())?;
        let public_key_file = write("sa.pub", key.public_key_pem())?;
        let token = format!("admin-{}-{}", std::process::id(), client_port);
        let token_file = write(
            "tokens.csv",
            format!("{token},cluster-admin,cluster-admin,system:masters\n"),
        )?;
        let port = free_port()?;
        let mut apiserver = Command::new(&apiserver_bin);
        apiserver
            .args(["--etcd-servers", &etcd_url])
            .args(["--bind-address", "127.0.0.1"])
            .args(["--advertise-address", "127.0.0.1"])
            .args(["--secure-port", &port.to_string()])
            .arg("--cert-dir")
            .arg(dir.path().join("certs"))
            .arg("--token-auth-file")
            .arg(&token_file)
            .args(["--authorization-mode", "RBAC"])
            .args([
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            ])
            .arg("--service-account-key-file")
            .arg(&public_key_file)
            .arg("--service-account-signing-key-file")
            .arg(&key_file)
            .args(["--service-cluster-ip-range", "10.0.0.0/24"])
            .args(["--enable-priority-and-fairness=false"]);
        let apiserver_command = (
            apiserver_bin.clone(),
            apiserver.get_args().map(ToOwned::to_owned).collect(),
        );
        let apiserver = apiserver
            .stdout(log("kube-apiserver.log")?)
            .stderr(log("kube-apiserver.log")?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", apiserver_bin.display()))?;

        // kube-apiserver writes its self-signed certificate and CA there at start.
        let ca = dir.path().join("certs").join("apiserver.crt");
        let kubeconfig = write("kubeconfig", kubeconfig_yaml(port, &ca, &token))?;
        let mut cluster = Self {
            etcd,
            apiserver,
            apiserver_command,
            kubeconfig,
            minor,
            etcd_version,
            dir,
        };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// The kubeconfig file that reaches this cluster as an administrator.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The minor version of the API server (36 for 1.36).
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// The version of etcd (`3.6.16`).
    pub fn etcd_version(&self) -> &str {
        &self.etcd_version
    }

    /// A client configuration for this cluster.
    pub async fn config(&self) -> Result<Config, String> {
        config_from(&self.kubeconfig).await
    }

    /// The process id of kube-apiserver: SIGSTOP and SIGCONT to it freeze
    /// the API (connections stay open, nothing is answered) and thaw it.
    pub fn apiserver_pid(&self) -> u32 {
        self.apiserver.id()
    }

    /// Stops kube-apiserver (etcd keeps running): an API server outage.
    pub fn stop_apiserver(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
    }

    /// Starts kube-apiserver again, on the same port and etcd, with the
    /// same certificates, and waits until it is ready: it comes back with
    /// a fresh watch cache.
    pub async fn start_apiserver(&mut self) -> Result<(), String> {
        let (bin, args) = &self.apiserver_command;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("kube-apiserver.log"))
            .map_err(|e| format!("cannot open kube-apiserver.log: {e}"))?;
        self.apiserver = Command::new(bin)
            .args(args)
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.apiserver.try_wait() {
                return Err(format!(
                    "kube-apiserver exited ({status}):\n{}",
                    self.log_tail("kube-apiserver.log")
                ));
            }
            if let Ok(Some(status)) = self.etcd.try_wait() {
                return Err(format!(
                    "etcd exited ({status}):\n{}",
                    self.log_tail("etcd.log")
                ));
            }
            // Refused connections and 500s are expected while it starts:
            // keep the client's error logs out of the way.
            let ready = self
                .ready()
                .with_subscriber(tracing::subscriber::NoSubscriber::default())
                .await;
            if ready.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver not ready within 90s:\n{}",
                    self.log_tail("kube-apiserver.log")
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn ready(&self) -> Option<()> {
        let client = Client::try_from(self.config().await.ok()?).ok()?;
        let request = http::Request::get("/readyz").body(Vec::new()).ok()?;
        let body = client.request_text(request).await.ok()?;
        (body.trim() == "ok").then_some(())
    }

    /// The last lines of one of the servers' logs.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client configuration from a kubeconfig file.
pub async fn config_from(kubeconfig: &Path) -> Result<Config, String> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("cannot read {}: {e}", kubeconfig.display()))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("unusable kubeconfig: {e}"))
}

/// Installs `crds` by server-side apply with `manager` and waits until the
/// API server has established them.
pub async fn install_crds(
    client: &Client,
    crds: &[CustomResourceDefinition],
    manager: &str,
) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(crd),
        )
        .await
        .map_err(|e| format!("the API server refused CRD {name}: {e}"))?;
    }
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stored = api
                .get(&name)
                .await
                .map_err(|e| format!("cannot read CRD {name}: {e}"))?;
            let established = stored
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("CRD {name} not established within 30s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The API server's version as it reports it (`v1.36.3`); an error for a
/// server older than the oldest supported, which the end-to-end suite and
/// the benchmark refuse.
pub async fn supported_server_version(client: &Client) -> Result<String, String> {
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| format!("cannot reach the API server: {e}"))?;
    match compatibility::too_old(&info) {
        Some(problem) => Err(problem),
        None => Ok(info.git_version),
    }
}

/// What a control plane is, in one line: the API server's version, etcd's
/// (when known: an existing cluster's is not), and [`list_mode`].
pub async fn describe(client: &Client, server_version: &str, etcd_version: Option<&str>) -> String {
    let etcd = etcd_version.map_or("etcd of the existing cluster".to_string(), |v| {
        format!("etcd {v}")
    });
    format!(
        "API server {server_version}, {etcd}, {}",
        list_mode(client).await
    )
}

/// Whether the API server streams a list of DeploymentChannels (a watch
/// that sends every object, then a bookmark) or refuses, so that the
/// operator lists in pages: the same two refusals the operator falls back
/// on (the `WatchList` feature off, or storage without progress requests).
/// Needs the CRDs installed.
pub async fn list_mode(client: &Client) -> String {
    let request = http::Request::get(
        "/apis/interactions.dev/v1alpha1/deploymentchannels?watch=true&sendInitialEvents=true\
         &resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
    )
    .body(Vec::new());
    let Ok(request) = request else {
        return "lists of unknown kind (no request)".into();
    };
    match client.request_text(request).await {
        Ok(events) if events.contains("k8s.io/initial-events-end") => "streaming lists".into(),
        Ok(events) if events.contains("RequestWatchProgress") => {
            "paged lists (etcd cannot serve streaming lists)".into()
        }
        Ok(events) => format!("lists of unknown kind (the streaming list answered {events:?})"),
        Err(kube::Error::Api(status)) if status.message.contains("sendInitialEvents") => {
            "paged lists (streaming lists are off: WatchList feature gate)".into()
        }
        Err(e) => format!("lists of unknown kind (the streaming list failed: {e})"),
    }
}

/// A program on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// The minor version a kube-apiserver binary reports (`Kubernetes v1.36.2`).
fn binary_minor(bin: &Path) -> Result<u32, String> {
    reported_version(bin, |text| {
        text.split_whitespace()
            .last()
            .and_then(|v| v.trim_start_matches('v').split('.').nth(1))
            .and_then(|m| m.parse().ok())
            .filter(|m| *m > 0)
    })
}

/// The version an etcd binary reports (`etcd Version: 3.6.16`).
fn etcd_version(bin: &Path) -> Result<String, String> {
    reported_version(bin, |text| {
        text.lines()
            .find_map(|l| l.strip_prefix("etcd Version: "))
            .map(|v| v.trim().to_string())
    })
}

/// What `parse` reads from `bin --version`.
fn reported_version<T>(bin: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<T, String> {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse(&text)
        .ok_or_else(|| format!("cannot tell the version of {} from {text:?}", bin.display()))
}

fn kubeconfig_yaml(port: u16, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: local-admin
  user:
    token: {token}
contexts:
- name: local
  context:
    cluster: local
    user: local-admin
current-context: local
",
        ca = ca.display()
    )
}
