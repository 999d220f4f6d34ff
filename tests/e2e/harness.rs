//! A real control plane for the end-to-end tests and the benchmark, found the
//! way controller-runtime's envtest finds one:
//!
//! - `USE_EXISTING_CLUSTER=true`: the current kube context;
//! - else `KUBEBUILDER_ASSETS`: a directory holding `kube-apiserver` and
//!   `etcd` (and optionally `kubectl`), started here on free loopback ports
//!   with temporary data and certificate directories, and stopped on drop;
//! - else nothing, and the caller skips with the reason.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use deploymentchannel_operator::commands::local_cluster::{
    LocalCluster, config_from, describe, find_on_path, install_crds, supported_server_version,
};
use kube::{Api, Client, Config};

/// Where the tests run.
pub struct TestEnv {
    /// kubeconfig for clients and kubectl.
    pub kubeconfig: PathBuf,
    /// kubectl: from `KUBEBUILDER_ASSETS`, else from `PATH`.
    pub kubectl: PathBuf,
    /// The API server's version, as it reports it (`v1.36.2`).
    pub server_version: String,
    /// etcd's version, when this harness started etcd (`3.6.16`).
    pub etcd_version: Option<String>,
    /// The local control plane, when one was started: stopped when dropped.
    _control_plane: Option<LocalCluster>,
}

/// The suite checks what users see through kubectl, so it needs one.
const NO_KUBECTL: &str = "the e2e suite needs kubectl: put it in KUBEBUILDER_ASSETS or on PATH";

/// Why the e2e tests cannot run here.
pub const SKIP_REASON: &str = "e2e tests skipped: set KUBEBUILDER_ASSETS to a directory holding kube-apiserver and etcd (see CONTRIBUTING.md), or USE_EXISTING_CLUSTER=true to use the current kube context";

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
                kubectl: find_on_path("kubectl").ok_or(NO_KUBECTL)?,
                server_version: String::new(),
                etcd_version: None,
                _control_plane: None,
            };
            env.server_version =
                env.block_on(async { supported_server_version(&env.client().await).await })?;
            return Ok(Some(env));
        }
        let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from) else {
            return Ok(None);
        };
        let kubectl = Some(assets.join("kubectl"))
            .filter(|p| p.exists())
            .or_else(|| find_on_path("kubectl"))
            .ok_or(NO_KUBECTL)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let control_plane = runtime.block_on(LocalCluster::start(&assets))?;
        let mut env = Self {
            kubeconfig: control_plane.kubeconfig().to_path_buf(),
            kubectl,
            server_version: String::new(),
            etcd_version: Some(control_plane.etcd_version().to_string()),
            _control_plane: Some(control_plane),
        };
        env.server_version =
            runtime.block_on(async { supported_server_version(&env.client().await).await })?;
        Ok(Some(env))
    }

    /// The client configuration for this environment.
    pub async fn config(&self) -> Config {
        config_from(&self.kubeconfig)
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

    /// Installs the committed CRDs from `crds/` and waits until they are established.
    pub async fn install_crds(&self) -> Result<(), String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .flatten()
            // crds/kustomization.yaml lists the CRDs for `kubectl apply -k`; it is not one.
            .filter(|f| f.file_name() != "kustomization.yaml")
            .collect();
        files.sort_by_key(|f| f.path());
        let mut crds = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file.path()).map_err(|e| e.to_string())?;
            crds.push(serde_saphyr::from_str(&text).map_err(|e| e.to_string())?);
        }
        install_crds(&self.client().await, &crds, "e2e").await
    }

    /// Runs kubectl against this environment.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
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
        child.wait_with_output().expect("kubectl runs")
    }
}

impl TestEnv {
    /// The API server's minor version (36 for `v1.36.3`): where servers
    /// word a refusal differently, the expectation depends on it.
    pub fn minor(&self) -> u32 {
        self.server_version
            .trim_start_matches('v')
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(u32::MAX)
    }

    /// What the suite runs on, in one line: the API server's and etcd's
    /// versions, and whether lists of the operator's kinds are streamed.
    pub async fn describe(&self) -> String {
        let client = self.client().await;
        describe(&client, &self.server_version, self.etcd_version.as_deref()).await
    }
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

/// Whether a request changes something. Creating a review (whether a token
/// is valid, whether an identity may do something) stores nothing.
pub fn is_write(verb: &str, resource: &str) -> bool {
    let review = resource.ends_with("reviews");
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) && !review
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
        .map(|s| s.token)
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
