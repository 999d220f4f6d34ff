//! A real control plane for the end-to-end tests and the benchmark, found the
//! way controller-runtime's envtest finds one:
//!
//! - `USE_EXISTING_CLUSTER=true`: the current kube context;
//! - else `KUBEBUILDER_ASSETS`: a directory holding `kube-apiserver` and
//!   `etcd` (and optionally `kubectl`), started here on free loopback ports
//!   with temporary data and certificate directories, and stopped on drop;
//! - else nothing, and the caller skips with the reason.

#![allow(dead_code)]

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

/// Where the tests run.
pub struct TestEnv {
    /// kubeconfig for clients and kubectl.
    pub kubeconfig: PathBuf,
    /// kubectl, when one was found.
    pub kubectl: Option<PathBuf>,
    /// Minor version of the API server (24 for 1.24).
    pub server_minor: u32,
    /// The local control plane, when one was started.
    control_plane: Option<ControlPlane>,
}

/// Why the e2e tests cannot run here.
pub const SKIP_REASON: &str = "e2e tests skipped: set KUBEBUILDER_ASSETS to a directory holding kube-apiserver and etcd (see README.md), or USE_EXISTING_CLUSTER=true to use the current kube context";

impl TestEnv {
    /// Finds or starts a control plane; `Ok(None)` when there is none to use.
    pub fn start() -> Result<Option<Self>, String> {
        if std::env::var("USE_EXISTING_CLUSTER").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
            let kubeconfig = std::env::var_os("KUBECONFIG")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config")))
                .ok_or("USE_EXISTING_CLUSTER=true but neither KUBECONFIG nor HOME is set")?;
            let mut env = Self {
                kubeconfig,
                kubectl: find_on_path("kubectl"),
                server_minor: 0,
                control_plane: None,
            };
            env.server_minor = env.block_on(async { server_minor(&env.client().await).await })?;
            return Ok(Some(env));
        }
        let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from) else {
            return Ok(None);
        };
        let control_plane = ControlPlane::start(&assets)?;
        let kubectl = Some(assets.join("kubectl"))
            .filter(|p| p.exists())
            .or_else(|| find_on_path("kubectl"));
        Ok(Some(Self {
            kubeconfig: control_plane.kubeconfig.clone(),
            kubectl,
            server_minor: control_plane.minor,
            control_plane: Some(control_plane),
        }))
    }

    /// The client configuration for this environment.
    pub async fn config(&self) -> Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("readable kubeconfig");
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("usable kubeconfig")
    }

    /// A new client (each test runtime needs its own).
    pub async fn client(&self) -> Client {
        Client::try_from(self.config().await).expect("client")
    }

    /// Runs a future on a fresh runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f)
    }

    /// Installs the CRDs from `crds/` and waits until they are established.
    pub async fn install_crds(&self) -> Result<(), String> {
        let client = self.client().await;
        let crds: Api<CustomResourceDefinition> = Api::all(client);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        let mut names = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .flatten()
            // crds/kustomization.yaml lists the CRDs for `kubectl apply -k`; it is not one.
            .filter(|f| f.file_name() != "kustomization.yaml")
            .collect();
        files.sort_by_key(|f| f.path());
        for file in files {
            let text = std::fs::read_to_string(file.path()).map_err(|e| e.to_string())?;
            let crd: CustomResourceDefinition =
                serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
            let name = crd.metadata.name.clone().unwrap_or_default();
            crds.patch(
                &name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .map_err(|e| format!("the API server refused CRD {name}: {e}"))?;
            names.push(name);
        }
        for name in names {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let crd = crds.get(&name).await.map_err(|e| e.to_string())?;
                let established = crd
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

    /// Runs kubectl against this environment; `None` when there is no kubectl.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Option<std::process::Output> {
        use std::io::Write;
        let kubectl = self.kubectl.as_ref()?;
        let mut child = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write to kubectl");
        }
        drop(input);
        Some(child.wait_with_output().expect("kubectl runs"))
    }
}

async fn server_minor(client: &Client) -> Result<u32, String> {
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| format!("cannot reach the API server: {e}"))?;
    info.minor
        .trim_end_matches('+')
        .parse()
        .map_err(|e| format!("unexpected server minor version {:?}: {e}", info.minor))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// etcd and kube-apiserver started from `KUBEBUILDER_ASSETS`; both are
/// killed and the temporary directory removed on drop, also on panic.
struct ControlPlane {
    etcd: Child,
    apiserver: Child,
    kubeconfig: PathBuf,
    minor: u32,
    dir: TempDir,
}

impl ControlPlane {
    fn start(assets: &Path) -> Result<Self, String> {
        let apiserver_bin = assets.join("kube-apiserver");
        let etcd_bin = Some(assets.join("etcd"))
            .filter(|p| p.exists())
            .or_else(|| find_on_path("etcd"));
        if !apiserver_bin.exists() {
            return Err(format!(
                "KUBEBUILDER_ASSETS={} holds no kube-apiserver",
                assets.display()
            ));
        }
        let etcd_bin = etcd_bin
            .ok_or_else(|| format!("KUBEBUILDER_ASSETS={} holds no etcd", assets.display()))?;
        let minor = apiserver_minor(&apiserver_bin)?;
        let dir = tempfile::Builder::new()
            .prefix("dchan-e2e-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let log =
            |name: &str| std::fs::File::create(dir.path().join(name)).map_err(|e| e.to_string());

        let (client_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Command::new(&etcd_bin)
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(log("etcd.log")?)
            .stderr(log("etcd.log")?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", etcd_bin.display()))?;

        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let key_file = dir.path().join("sa.key");
        std::fs::write(&key_file, key.serialize_pem()).map_err(|e| e.to_string())?;
        let public_key_file = dir.path().join("sa.pub");
        std::fs::write(&public_key_file, key.public_key_pem()).map_err(|e| e.to_string())?;
        let token = format!("e2e-{}", std::process::id());
        let token_file = dir.path().join("tokens.csv");
        std::fs::write(
            &token_file,
            format!("{token},e2e-admin,e2e-admin,system:masters\n"),
        )
        .map_err(|e| e.to_string())?;
        let port = free_port();
        let mut command = Command::new(&apiserver_bin);
        command
            .args(["--etcd-servers", &etcd_url])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
            ])
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
            .args(["--enable-priority-and-fairness=false"])
            .stdout(log("kube-apiserver.log")?)
            .stderr(log("kube-apiserver.log")?);
        if minor < 25 {
            // CEL validation of CRDs is beta and on by default from 1.25; newer
            // servers refuse the retired gate.
            command.args([
                "--feature-gates",
                "CustomResourceValidationExpressions=true",
            ]);
        }
        let apiserver = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", apiserver_bin.display()))?;

        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(port, &token)).map_err(|e| e.to_string())?;
        let mut plane = Self {
            etcd,
            apiserver,
            kubeconfig,
            minor,
            dir,
        };
        plane.wait_ready()?;
        Ok(plane)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let kubeconfig = self.kubeconfig.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
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
            let ready = runtime.block_on(async {
                let kubeconfig = Kubeconfig::read_from(&kubeconfig).ok()?;
                let config =
                    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await
                        .ok()?;
                let client = Client::try_from(config).ok()?;
                let request = http::Request::get("/readyz").body(Vec::new()).ok()?;
                client.request_text(request).await.ok()
            });
            if ready.is_some_and(|body| body.trim() == "ok") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver not ready within 90s:\n{}",
                    self.log_tail("kube-apiserver.log")
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn apiserver_minor(bin: &Path) -> Result<u32, String> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    // "Kubernetes v1.24.0"
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .last()
        .and_then(|v| v.trim_start_matches('v').split('.').nth(1))
        .and_then(|m| m.parse().ok())
        .filter(|m| *m > 0)
        .ok_or_else(|| format!("cannot tell the version of {} from {text:?}", bin.display()))
}

fn kubeconfig_yaml(port: u16, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:{port}
    insecure-skip-tls-verify: true
users:
- name: e2e
  user:
    token: {token}
contexts:
- name: e2e
  context:
    cluster: e2e
    user: e2e
current-context: e2e
"
    )
}

/// `GET path` over plain HTTP/1.0 on loopback: (status code, body).
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, response.split_once("\r\n\r\n")?.1.to_string()))
}

/// The sum of a metric's samples in Prometheus text whose labels contain
/// `labels` (every sample when it is empty).
pub fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, n| sum + n)
}

/// The operator's `api_requests_total` samples in Prometheus text, by
/// (verb, resource, code).
pub fn api_requests(text: &str) -> std::collections::BTreeMap<(String, String, String), u64> {
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or_default()
            .to_string()
    };
    text.lines()
        .filter(|l| l.starts_with("deploymentchannel_operator_api_requests_total{"))
        .filter_map(|l| {
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((
                (label(l, "verb"), label(l, "resource"), label(l, "code")),
                count,
            ))
        })
        .collect()
}

/// Whether a request verb changes something.
pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// A token of ServiceAccount `namespace/name`, created first when missing,
/// from the TokenRequest API (the API server signs it with the key the
/// control plane is started with): an identity of its own for a test.
pub async fn service_account_token(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<String, String> {
    use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount};
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    if accounts
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        let account = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("a ServiceAccount");
        accounts
            .create(&kube::api::PostParams::default(), &account)
            .await
            .map_err(|e| format!("cannot create ServiceAccount {namespace}/{name}: {e}"))?;
    }
    let request: TokenRequest = serde_json::from_value(
        serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 3600}}),
    )
    .expect("a TokenRequest");
    let issued = accounts
        .create_token_request(name, &kube::api::PostParams::default(), &request)
        .await
        .map_err(|e| format!("cannot get a token for {namespace}/{name}: {e}"))?;
    issued
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("the TokenRequest for {namespace}/{name} returned no token"))
}

impl TestEnv {
    /// Writes a kubeconfig for this environment's API server that
    /// authenticates with `token` instead of the admin's credentials.
    pub fn kubeconfig_with_token(&self, token: &str, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(&self.kubeconfig).map_err(|e| e.to_string())?;
        let mut config: serde_json::Value =
            serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
        let context = config["current-context"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let user = config["contexts"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == context.as_str()))
            .map(|c| c["context"]["user"].clone())
            .ok_or("the kubeconfig has no current context")?;
        for entry in config["users"].as_array_mut().into_iter().flatten() {
            if entry["name"] == user {
                entry["user"] = serde_json::json!({"token": token});
            }
        }
        // JSON is YAML: kubeconfig readers take it as it is.
        std::fs::write(path, config.to_string()).map_err(|e| e.to_string())
    }
}
