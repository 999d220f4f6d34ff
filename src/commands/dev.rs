//! The `dev` command behind `make run`: the operator against the current
//! kube context or, when none is reachable, against a throwaway local
//! control plane (from `KUBEBUILDER_ASSETS`, else built from the Go modules
//! pinned under `tests/control-plane/` of the source tree), with the CRDs
//! installed first.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use kube::{Client, Config};
use tracing::info;

use crate::{
    commands::crdgen,
    commands::local_cluster::{self, ASSETS_VARIABLE, LocalCluster},
    operator::lifecycle::{self, RunArgs, Shutdown},
};

/// How long a kube context gets to answer before it counts as unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// Field manager of the CRDs that `dev` installs.
const CRD_FIELD_MANAGER: &str = "deploymentchannel-operator-dev";

/// Runs `dev` until SIGTERM or SIGINT.
pub fn main(args: RunArgs) -> anyhow::Result<()> {
    lifecycle::init_logging(args.log_format, &args.log_level)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals()?;
    // Kept until the operator stops: dropping it stops the local control plane.
    let mut local = None;
    let config = match reachable_context().await {
        Ok((config, context)) => {
            // `dev` installs the CRDs into whatever cluster the context names: say which.
            println!(
                "Installing the CRDs into kube context {context} ({}) and running the operator there",
                config.cluster_url
            );
            config
        }
        Err(why) => {
            let assets = match std::env::var_os(ASSETS_VARIABLE) {
                Some(assets) => PathBuf::from(assets),
                None => built_control_plane().map_err(|e| {
                    anyhow::anyhow!(
                        "no kube context is reachable ({why}) and {ASSETS_VARIABLE} is not set, \
                         and {e}: point kubectl at a cluster, or set {ASSETS_VARIABLE} to a \
                         directory holding kube-apiserver and etcd (docs/configuration.md, \"What dev does first\")"
                    )
                })?,
            };
            info!(reason = %why, assets = %assets.display(), "no kube context is reachable: starting a local control plane");
            let cluster = LocalCluster::start(&assets)
                .await
                .map_err(anyhow::Error::msg)
                .context("cannot start the local control plane")?;
            println!("{}", kubectl_hint(&cluster, &assets));
            let config = cluster.config().await.map_err(anyhow::Error::msg)?;
            local = Some(cluster);
            config
        }
    };
    let client = Client::try_from(config.clone()).context("cannot build a Kubernetes client")?;
    local_cluster::install_crds(&client, &crdgen::crds(), CRD_FIELD_MANAGER)
        .await
        .map_err(anyhow::Error::msg)
        .context("cannot install the CRDs")?;
    info!("CRDs installed");
    let result = lifecycle::run_with(config, args, shutdown).await;
    drop(local);
    result
}

/// The current kube context and its name, if its API server answers.
async fn reachable_context() -> Result<(Config, String), String> {
    let config = Config::infer()
        .await
        .map_err(|_| "no kubeconfig (KUBECONFIG or ~/.kube/config) and not in a pod".to_string())?;
    let context = kube::config::Kubeconfig::read()
        .ok()
        .and_then(|k| k.current_context)
        .unwrap_or_else(|| "(in-cluster)".to_string());
    let client = Client::try_from(config.clone()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(REACH_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok((config, context)),
        Ok(Err(e)) => Err(format!("{}: {e}", config.cluster_url)),
        Err(_) => Err(format!(
            "{} did not answer within {}s",
            config.cluster_url,
            REACH_TIMEOUT.as_secs()
        )),
    }
}

/// The control plane built from the Go modules pinned in the source tree
/// (`tests/control-plane/build`, Kubernetes `$KUBERNETES` or 1.36): the
/// directory holding its binaries.
fn built_control_plane() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control-plane/build");
    if !script.is_file() {
        return Err(format!("there is no {}", script.display()));
    }
    let version = std::env::var("KUBERNETES").unwrap_or_else(|_| "1.36".to_string());
    // The script says what it builds on stderr, which stays the terminal's.
    let out = Command::new(&script)
        .arg(&version)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{} cannot run: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "building the local control plane failed ({})",
            out.status
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The one line that points kubectl, in another shell, at the local cluster.
fn kubectl_hint(cluster: &LocalCluster, assets: &std::path::Path) -> String {
    let mut line = format!(
        "Local control plane (Kubernetes 1.{}) is up; in another shell: export KUBECONFIG={}",
        cluster.minor(),
        cluster.kubeconfig().display()
    );
    // A kubectl of the server's own version, ahead of any other.
    if assets.join("kubectl").is_file() {
        line.push_str(&format!(" PATH={}:$PATH", assets.display()));
    }
    line
}
