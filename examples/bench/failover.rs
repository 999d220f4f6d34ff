//! Failover: N channels converged with two replicas, the leader killed
//! (SIGKILL, the Lease is not released), then how long until the standby
//! holds the Lease, how long until a channel created after the kill is
//! Ready, what the new leader writes for the N unchanged objects, and the
//! standby's peak memory.

use std::time::{Duration, Instant};

use deploymentchannel_operator::core::api::DeploymentChannel;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client, api::PostParams};
use serde_json::json;

use crate::{
    cluster::{ControlPlane, namespace},
    converge::{apply_converged, phones_converged},
    operator::Operator,
    workload::{channel, workload},
};

const LEASE: &str = "deploymentchannel-operator";

pub struct Failover {
    n: usize,
    /// From the kill until the standby holds the Lease.
    lease_taken: Duration,
    /// From the kill until a channel created just after it is Ready.
    new_channel_ready: Duration,
    /// What the new leader wrote besides the new channel's status.
    writes_for_unchanged: f64,
    /// The new leader's reconciles of the objects that did not change.
    reconciled: f64,
    standby_peak_rss_mib: f64,
}

/// A replica electing itself through the Lease in `ns` as `identity`.
fn replica(env: &ControlPlane, ns: &str, identity: &str) -> Result<Operator, String> {
    Operator::start_with(
        ns,
        &env.kubeconfig,
        &[
            "--leader-election",
            "--lease-namespace",
            ns,
            "--identity",
            identity,
        ],
    )
}

async fn holder(client: &Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases.get_opt(LEASE).await.ok()??.spec?.holder_identity
}

/// Polls `check` every 50 ms for up to ten minutes; answers when it held.
async fn until<F: Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> Result<Instant, String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if check().await {
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{what}: not within 10 minutes"))
}

pub async fn run(env: &ControlPlane, n: usize) -> Result<Failover, String> {
    let client = env.client().await;
    let ns = namespace(&client, &format!("failover-{n}")).await?;
    let mut leader = replica(env, &ns, "bench-a")?;
    until("bench-a to hold the Lease", || async {
        holder(&client, &ns).await.as_deref() == Some("bench-a")
    })
    .await?;
    let standby = replica(env, &ns, "bench-b")?;
    let work = workload(n, "");
    let objects = (work.channels.len() + work.losers.len() + work.phones.len()) as f64;
    apply_converged(&client, &ns, &work).await?;
    phones_converged(&client, &ns, &work).await?;
    standby.wait_ready().await?;
    eprintln!("bench: failover N={n}: converged, killing the leader");

    let _ = leader.child.kill();
    let _ = leader.child.wait();
    let killed = Instant::now();
    let after = channel(
        "after-kill",
        json!({"deploymentType": "WEB", "channelIdentifier": "https://after-kill.example.com", "configuration": {}}),
    );
    let channels: Api<DeploymentChannel> = Api::namespaced(client.clone(), &ns);
    let after = serde_json::from_value(after).map_err(|e| e.to_string())?;
    let (taken, ready) = futures::future::try_join(
        until("bench-b to hold the Lease", || async {
            holder(&client, &ns).await.as_deref() == Some("bench-b")
        }),
        async {
            channels
                .create(&PostParams::default(), &after)
                .await
                .map_err(|e| format!("creating after-kill: {e}"))?;
            until("after-kill to be Ready", || async {
                channels
                    .get_opt("after-kill")
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|c| {
                        c.status.is_some_and(|s| {
                            s.conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                    })
            })
            .await
        },
    )
    .await?;
    // Every object reconciled once from the warm caches, then the writes counted.
    standby
        .wait_metric("reconciles_total", "", objects + 1.0)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reconciled = standby.metric("reconciles_total", "").await - 1.0;
    let writes_for_unchanged = standby.writes().await - 1.0;
    Ok(Failover {
        n,
        lease_taken: taken - killed,
        new_channel_ready: ready - killed,
        writes_for_unchanged,
        reconciled,
        standby_peak_rss_mib: standby.peak_rss_mib(),
    })
}

pub fn print(result: &Failover) {
    println!(
        "| N | Lease taken after the kill | new channel Ready after the kill | writes for unchanged objects | reconciled | standby peak RSS |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {:.1} s | {:.1} s | {} | {} | {:.0} MiB |",
        result.n,
        result.lease_taken.as_secs_f64(),
        result.new_channel_ready.as_secs_f64(),
        result.writes_for_unchanged,
        result.reconciled,
        result.standby_peak_rss_mib,
    );
}
