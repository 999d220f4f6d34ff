//! The `dev` command behind `make run`: the operator against the current
//! kube context or, when none is reachable and `KUBEBUILDER_ASSETS` is set,
//! against a throwaway local control plane, with the CRDs installed first.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
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
        Ok(config) => config,
        Err(why) => {
            let Some(assets) = std::env::var_os(ASSETS_VARIABLE).map(PathBuf::from) else {
                bail!(
                    "no kube context is reachable ({why}) and {ASSETS_VARIABLE} is not set: \
                     point kubectl at a cluster, or set {ASSETS_VARIABLE} to a directory holding \
                     kube-apiserver and etcd (README.md, \"Quick start\")"
                );
            };
            info!(reason = %why, "no kube context is reachable: starting a local control plane from {ASSETS_VARIABLE}");
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

/// The current kube context, if its API server answers.
async fn reachable_context() -> Result<Config, String> {
    let config = Config::infer()
        .await
        .map_err(|_| "no kubeconfig (KUBECONFIG or ~/.kube/config) and not in a pod".to_string())?;
    let client = Client::try_from(config.clone()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(REACH_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(config),
        Ok(Err(e)) => Err(format!("{}: {e}", config.cluster_url)),
        Err(_) => Err(format!(
            "{} did not answer within {}s",
            config.cluster_url,
            REACH_TIMEOUT.as_secs()
        )),
    }
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
