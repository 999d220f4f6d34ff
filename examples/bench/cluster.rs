//! The control plane each phase runs on, found as the end-to-end suite
//! finds one: `USE_EXISTING_CLUSTER=true` uses the current kube context,
//! else `KUBEBUILDER_ASSETS` names the binaries of a local control plane
//! started here (and stopped on drop), else there is none.

use std::path::{Path, PathBuf};

use deploymentchannel_operator::commands::{
    crdgen,
    local_cluster::{LocalCluster, config_from, describe, install_crds, supported_server_version},
};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client, api::PostParams};
use serde_json::json;

/// Why the benchmark cannot run here.
pub const SKIP_REASON: &str = "benchmark skipped: set KUBEBUILDER_ASSETS to a directory holding kube-apiserver and etcd (see CONTRIBUTING.md), or USE_EXISTING_CLUSTER=true to use the current kube context";

/// A control plane and how to reach it.
pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    /// The API server's version, as it reports it (`v1.36.2`).
    pub server_version: String,
    /// The local control plane, when one was started: stopped when dropped.
    local: Option<LocalCluster>,
}

impl ControlPlane {
    /// Finds or starts a control plane; `Ok(None)` when there is none to use.
    pub fn start() -> Result<Option<Self>, String> {
        let (kubeconfig, local) = if std::env::var("USE_EXISTING_CLUSTER")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        {
            let kubeconfig = std::env::var_os("KUBECONFIG")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config")))
                .ok_or("USE_EXISTING_CLUSTER=true but neither KUBECONFIG nor HOME is set")?;
            (kubeconfig, None)
        } else if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS") {
            let local = runtime().block_on(LocalCluster::start(Path::new(&assets)))?;
            (local.kubeconfig().to_path_buf(), Some(local))
        } else {
            return Ok(None);
        };
        let mut control_plane = Self {
            kubeconfig,
            server_version: String::new(),
            local,
        };
        control_plane.server_version = control_plane
            .block_on(async { supported_server_version(&control_plane.client().await).await })?;
        Ok(Some(control_plane))
    }

    /// What a phase runs on, in one line: the API server's and etcd's
    /// versions, and whether the operator's lists are streamed or paged.
    /// Needs the CRDs installed.
    pub async fn describe(&self) -> String {
        let etcd = self.local.as_ref().map(LocalCluster::etcd_version);
        describe(&self.client().await, &self.server_version, etcd).await
    }

    /// The local control plane, when one was started here.
    pub fn local(&mut self) -> Option<&mut LocalCluster> {
        self.local.as_mut()
    }

    /// A new client (each runtime needs its own).
    pub async fn client(&self) -> Client {
        let config = config_from(&self.kubeconfig)
            .await
            .expect("usable kubeconfig");
        Client::try_from(config).expect("client")
    }

    /// Runs a future on a fresh runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        Self::run(f)
    }

    /// Runs a future on a fresh runtime (one that may borrow the control plane mutably).
    pub fn run<F: std::future::Future>(f: F) -> F::Output {
        runtime().block_on(f)
    }

    /// Installs the CRDs generated from the types (the same as `crds/`) and
    /// waits until they are established.
    pub async fn install_crds(&self) -> Result<(), String> {
        install_crds(&self.client().await, &crdgen::crds(), "bench").await
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub async fn namespace(client: &Client, name: &str) -> Result<String, String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|e| format!("namespace {name}: {e}"))?;
    Ok(name.to_string())
}
