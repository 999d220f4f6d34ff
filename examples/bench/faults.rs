//! Steady-state faults: N channels converged, then the API server
//! restarted on the same etcd, the operator's connections to it cut
//! (`ss -K`), and its permissions to list and watch channels withdrawn for
//! a while; for each, what it cost the API server and the operator: lists,
//! reconciles, status writes, relists and `/readyz` failures.

use std::{cell::Cell, path::Path, time::Duration};

use deploymentchannel_operator::commands::local_cluster::config_from;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::{
    cluster::{ControlPlane, namespace},
    converge::{apply_converged, phones_converged},
    operator::Operator,
    workload::workload,
};

/// The operator's identity in this mode: a ServiceAccount, so that its
/// permissions can be withdrawn.
const ACCOUNT: &str = "bench-operator";

/// How long the permissions stay withdrawn.
const REFUSED_FOR: Duration = Duration::from_secs(20);

/// What one fault cost.
pub struct Cost {
    fault: &'static str,
    lists: f64,
    reconciles: f64,
    writes: f64,
    relists: f64,
    readyz_failures: usize,
    readyz_probes: usize,
}

/// The counters a fault moves.
#[derive(Clone, Copy)]
struct Counters {
    lists: f64,
    reconciles: f64,
    writes: f64,
    relists: f64,
    watch_restarts: f64,
}

impl Operator {
    async fn counters(&self) -> Counters {
        let by_verb = self.requests_by_verb().await;
        Counters {
            // Paged lists; a streaming list is a watch, counted in relists.
            lists: by_verb.get("list").copied().unwrap_or_default(),
            reconciles: self.metric("reconciles_total", "").await,
            writes: self.writes().await,
            relists: self.metric("relists_total", "").await,
            watch_restarts: self.metric("watch_restarts_total", "").await,
        }
    }

    /// Waits until both watches noticed a fault, then until nothing moved
    /// (reconciles, watch failures, relists) for five seconds.
    async fn settled_after(&self, before: Counters) -> Result<(), String> {
        for _ in 0..1200 {
            if self.counters().await.watch_restarts >= before.watch_restarts + 2.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let moved = |c: Counters| (c.reconciles, c.watch_restarts, c.relists);
        let mut last = moved(self.counters().await);
        let mut quiet = 0;
        while quiet < 50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = moved(self.counters().await);
            quiet = if now == last { quiet + 1 } else { 0 };
            last = now;
        }
        Ok(())
    }
}

/// `/readyz`, polled every 100 ms while `fault` runs and the operator recovers.
async fn measured(
    operator: &Operator,
    name: &'static str,
    fault: impl AsyncFnOnce() -> Result<(), String>,
) -> Result<Cost, String> {
    let before = operator.counters().await;
    let (probes, failures) = (Cell::new(0), Cell::new(0));
    let probing = async {
        loop {
            probes.set(probes.get() + 1);
            if operator
                .get("/readyz")
                .await
                .is_none_or(|(code, _)| code != 200)
            {
                failures.set(failures.get() + 1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let run = async {
        fault().await?;
        operator.settled_after(before).await
    };
    tokio::select! {
        done = run => done?,
        () = probing => {}
    }
    let after = operator.counters().await;
    let cost = Cost {
        fault: name,
        lists: after.lists - before.lists,
        reconciles: after.reconciles - before.reconciles,
        writes: after.writes - before.writes,
        relists: after.relists - before.relists,
        readyz_failures: failures.get(),
        readyz_probes: probes.get(),
    };
    eprintln!(
        "bench: {name}: {} lists, {} reconciles, {} writes, {} relists",
        cost.lists, cost.reconciles, cost.writes, cost.relists
    );
    Ok(cost)
}

pub async fn run(env: &mut ControlPlane, n: usize) -> Result<Vec<Cost>, String> {
    let client = env.client().await;
    let ns = namespace(&client, &format!("faults-{n}")).await?;
    grant(env, &ns, &["get", "list", "watch"]).await?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let kubeconfig = dir.path().join("kubeconfig");
    impersonating(
        &env.kubeconfig,
        &format!("system:serviceaccount:{ns}:{ACCOUNT}"),
        &kubeconfig,
    )?;
    let port = config_from(&env.kubeconfig)
        .await?
        .cluster_url
        .port_u16()
        .ok_or("the API server's URL names no port")?;
    let operator = Operator::start_with(&ns, &kubeconfig, &[])?;
    operator.wait_ready().await?;
    let work = workload(n, "");
    apply_converged(&client, &ns, &work).await?;
    phones_converged(&client, &ns, &work).await?;
    operator.settled_after(operator.counters().await).await?;

    let cut = || {
        let cut = std::process::Command::new("ss")
            .args(["-K", "dst", "127.0.0.1", "dport", "=", &format!(":{port}")])
            .output()
            .map_err(|e| format!("ss: {e}"))?;
        cut.status
            .success()
            .then_some(())
            .ok_or_else(|| format!("ss -K: {cut:?}"))
    };
    let mut costs = Vec::new();
    costs.push(
        measured(&operator, "API server restarted", async || {
            let local = env.local().ok_or("needs a local control plane")?;
            local.stop_apiserver();
            local.start_apiserver().await
        })
        .await?,
    );
    costs.push(measured(&operator, "watches cut", async || cut()).await?);
    costs.push(
        measured(&operator, "lists refused for 20 s", async || {
            grant(env, &ns, &["get"]).await?;
            // The watches, cut, are refused until the grant is back.
            cut()?;
            tokio::time::sleep(REFUSED_FOR).await;
            grant(env, &ns, &["get", "list", "watch"]).await
        })
        .await?,
    );
    Ok(costs)
}

/// Writes a copy of `kubeconfig` whose users impersonate `user`.
fn impersonating(kubeconfig: &Path, user: &str, copy: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(kubeconfig).map_err(|e| e.to_string())?;
    let mut config: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
    for entry in config["users"].as_array_mut().into_iter().flatten() {
        entry["user"]["as"] = json!(user);
    }
    // JSON is YAML: kubeconfig readers take it as it is.
    std::fs::write(copy, config.to_string()).map_err(|e| e.to_string())
}

/// Lets the ServiceAccount do what the operator does in `ns`, with
/// `channel_verbs` on channels (discovery and access reviews it may do as
/// any authenticated user).
async fn grant(env: &ControlPlane, ns: &str, channel_verbs: &[&str]) -> Result<(), String> {
    let client = env.client().await;
    let apply = PatchParams::apply("bench").force();
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
      "metadata": {"name": ACCOUNT, "namespace": ns},
      "rules": [
        {"apiGroups": ["interactions.dev"], "resources": ["deploymentchannels"], "verbs": channel_verbs},
        {"apiGroups": ["interactions.dev"], "resources": ["phoneconfigurations"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["interactions.dev"], "resources": ["deploymentchannels/status", "phoneconfigurations/status"], "verbs": ["patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": ACCOUNT, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": ns}]});
    Api::<Role>::namespaced(client.clone(), ns)
        .patch(ACCOUNT, &apply, &Patch::Apply(role))
        .await
        .map_err(|e| format!("role: {e}"))?;
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .patch(ACCOUNT, &apply, &Patch::Apply(binding))
        .await
        .map_err(|e| format!("role binding: {e}"))?;
    Ok(())
}

pub fn print(n: usize, costs: &[Cost]) {
    println!(
        "\nSteady-state faults at N={n} (counted from the fault until nothing moved for 5 s):\n"
    );
    println!("| fault | lists | reconciles | status writes | relists | /readyz not 200 |");
    println!("|---|---|---|---|---|---|");
    for cost in costs {
        println!(
            "| {} | {} | {} | {} | {} | {} of {} probes |",
            cost.fault,
            cost.lists,
            cost.reconciles,
            cost.writes,
            cost.relists,
            cost.readyz_failures,
            cost.readyz_probes
        );
    }
}
