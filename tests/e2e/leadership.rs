//! Leadership on a real API server: a freeze shorter than the renew
//! deadline changes nothing, a longer one hands over with one writer at any
//! time, and a killed leader's warm standby takes over without relisting or
//! writing anything for unchanged objects. The freezes stop kube-apiserver
//! (SIGSTOP/SIGCONT) on a control plane of the scenario's own.

use std::{process::Command, time::Duration};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::Value;
use tokio::time::Instant;

use crate::{
    faults::Private,
    harness::{api_requests, is_write},
    runtime::{FAST_LEASE, FAST_LEASE_DURATION, Replica, election},
    scenarios,
    support::{self, Ctx, Scenario},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![
        a_four_second_freeze_across_a_renewal_keeps_the_leader,
        a_freeze_past_the_renew_deadline_hands_over_with_one_writer,
        a_killed_leader_hands_over_to_a_warm_standby,
    ]
}

const LEADER: &str = "deploymentchannel_operator_leader";

fn web(name: &str) -> Value {
    support::web(name, &format!("https://{name}.example.com"))
}

/// The Lease's holder and renew time.
async fn lease(ctx: &Ctx) -> Option<(String, String)> {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let spec = leases
        .get_opt("deploymentchannel-operator")
        .await
        .ok()??
        .spec?;
    Some((
        spec.holder_identity.unwrap_or_default(),
        serde_json::to_string(&spec.renew_time?).ok()?,
    ))
}

async fn wait_holder(ctx: &Ctx, identity: &str, within: Duration) {
    ctx.eventually(&format!("{identity} to hold the lease"), within, || async {
        lease(ctx)
            .await
            .filter(|(holder, _)| holder == identity)
            .map(drop)
    })
    .await;
}

/// Waits until the Lease's renew time changes (a renewal just landed) and
/// answers when that was seen.
async fn next_renewal(ctx: &Ctx) -> Instant {
    let before = lease(ctx).await;
    ctx.eventually("the next renewal", Duration::from_secs(30), || async {
        let now = lease(ctx).await;
        (now.is_some() && now != before).then(Instant::now)
    })
    .await
}

/// Writes the API server took from `replica`, the Lease's aside.
async fn writes(replica: &Replica) -> u64 {
    let (_, text) = replica.get("/metrics").await.unwrap_or_default();
    api_requests(&text)
        .into_iter()
        .filter(|((verb, resource, code), _)| {
            is_write(verb, resource) && resource != "leases" && code.starts_with('2')
        })
        .map(|(_, n)| n)
        .sum()
}

/// Lists and watches (a streaming list is a watch) `replica` sent for `resource`.
async fn lists(replica: &Replica, resource: &str) -> u64 {
    let (_, text) = replica.get("/metrics").await.unwrap_or_default();
    api_requests(&text)
        .into_iter()
        .filter(|((verb, r, _), _)| (verb == "list" || verb == "watch") && r == resource)
        .map(|(_, n)| n)
        .sum()
}

fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

fn running(replica: &mut Replica) -> bool {
    replica.child.try_wait().unwrap().is_none()
}

/// Two replicas with the default cadence (15 s, 10 s, 2 s), `replica-a`
/// leading with a Ready channel, `replica-b` a ready standby.
async fn two_replicas(private: &Private) -> (Replica, Replica) {
    let ctx = &private.ctx;
    let a = private.replica(&election(ctx, "replica-a", &[]));
    wait_holder(ctx, "replica-a", Duration::from_secs(30)).await;
    let b = private.replica(&election(ctx, "replica-b", &[]));
    a.wait_ok(ctx, "/readyz").await;
    b.wait_ok(ctx, "/readyz").await;
    ctx.must_apply(&web("before")).await;
    ctx.wait_ready("before", "True", "Ready").await;
    (a, b)
}

/// Freezes the API server from `offset` after a renewal landed, for `length`.
async fn freeze(private: &Private, offset: Duration, length: Duration) -> Instant {
    let renewed = next_renewal(&private.ctx).await;
    tokio::time::sleep_until(renewed + offset).await;
    let pid = private.cluster.apiserver_pid();
    kill("-STOP", pid);
    tokio::time::sleep(length).await;
    kill("-CONT", pid);
    renewed
}

async fn a_four_second_freeze_across_a_renewal_keeps_the_leader(ctx: Ctx) {
    let Some(private) = Private::start(&ctx, true).await else {
        return;
    };
    let (mut a, mut b) = two_replicas(&private).await;
    let ctx = &private.ctx;
    // From 1 s before the next renewal (every 2 s) for 4 s.
    freeze(&private, Duration::from_secs(1), Duration::from_secs(4)).await;
    // The same leader renews again; both processes run on.
    next_renewal(ctx).await;
    assert_eq!(lease(ctx).await.unwrap().0, "replica-a");
    assert!(running(&mut a), "{}", a.logs());
    assert!(running(&mut b), "{}", b.logs());
    assert_eq!(a.metric(LEADER, "").await, 1.0);
    assert_eq!(b.metric(LEADER, "").await, 0.0);
    let logs = a.logs();
    assert!(!logs.contains("could not renew"), "{logs}");
    // Nothing is lost after it: a new channel is made Ready by the same leader.
    let before = writes(&a).await;
    ctx.must_apply(&web("after-freeze")).await;
    ctx.wait_ready("after-freeze", "True", "Ready").await;
    ctx.eventually(
        "the leader's write counted",
        Duration::from_secs(10),
        || async { (writes(&a).await > before).then_some(()) },
    )
    .await;
    assert_eq!(writes(&b).await, 0, "the standby wrote");
}

async fn a_freeze_past_the_renew_deadline_hands_over_with_one_writer(ctx: Ctx) {
    let Some(private) = Private::start(&ctx, true).await else {
        return;
    };
    let (mut a, mut b) = two_replicas(&private).await;
    let ctx = &private.ctx;
    // A freeze of 13 s from just after a renewal: past the renew deadline
    // (counted from the renewal due 2 s later), short of the lease (15 s).
    let watch_roles = async {
        let mut stopped_leading = None;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let (leader_a, leader_b) = (a.metric(LEADER, "").await, b.metric(LEADER, "").await);
            assert!(leader_a + leader_b <= 1.0, "two leaders at once");
            if leader_a == 0.0 && stopped_leading.is_none() {
                stopped_leading = Some(Instant::now());
            }
            if leader_b == 1.0 {
                return stopped_leading;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("replica-b never took over")
    };
    let (renewed, stopped_leading) = tokio::join!(
        freeze(
            &private,
            Duration::from_millis(200),
            Duration::from_secs(13)
        ),
        watch_roles
    );
    let stopped_leading = stopped_leading.expect("replica-a stopped leading first");
    assert!(
        stopped_leading < renewed + Duration::from_secs(15),
        "replica-a stopped {:?} after its last renewal",
        stopped_leading - renewed
    );
    wait_holder(ctx, "replica-b", Duration::from_secs(10)).await;
    let logs = a.logs();
    assert!(logs.contains("could not renew the lease in time"), "{logs}");
    // The old leader stands by with warm caches instead of exiting.
    assert!(running(&mut a), "{logs}");
    assert!(running(&mut b), "{}", b.logs());
    let a_writes = writes(&a).await;
    ctx.must_apply(&web("after-handover")).await;
    ctx.wait_ready("after-handover", "True", "Ready").await;
    assert_eq!(writes(&a).await, a_writes, "the old leader wrote");
    assert_eq!(a.metric(LEADER, "").await, 0.0);
    a.wait_ok(ctx, "/readyz").await;
}

async fn a_killed_leader_hands_over_to_a_warm_standby(ctx: Ctx) {
    let a = Replica::start(&ctx, &election(&ctx, "replica-a", &FAST_LEASE));
    wait_holder(&ctx, "replica-a", Duration::from_secs(30)).await;
    let b = Replica::start(&ctx, &election(&ctx, "replica-b", &FAST_LEASE));
    for i in 0..20 {
        ctx.must_apply(&web(&format!("c-{i}"))).await;
    }
    for i in 0..20 {
        ctx.wait_ready(&format!("c-{i}"), "True", "Ready").await;
    }
    // The standby's caches are warm: ready, listed once, nothing reconciled or written.
    b.wait_ok(&ctx, "/readyz").await;
    assert_eq!(
        b.metric("deploymentchannel_operator_caches_synced", "")
            .await,
        1.0
    );
    let listed = lists(&b, "deploymentchannels").await;
    assert!(listed >= 1, "the standby never listed");
    assert_eq!(
        b.metric("deploymentchannel_operator_reconciles_total", "")
            .await,
        0.0
    );
    assert_eq!(writes(&b).await, 0);

    drop(a); // SIGKILL: the Lease is not released.
    let killed = Instant::now();
    ctx.must_apply(&web("after-kill")).await;
    ctx.wait_ready("after-kill", "True", "Ready").await;
    assert!(
        killed.elapsed() < FAST_LEASE_DURATION + Duration::from_secs(5),
        "Ready {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(lease(&ctx).await.unwrap().0, "replica-b");
    // Every cached channel reconciled once, only the new one written, no relist.
    ctx.eventually(
        "replica-b to reconcile the 21 channels",
        Duration::from_secs(10),
        || async {
            let done = b
                .metric(
                    "deploymentchannel_operator_reconciles_total",
                    "kind=\"DeploymentChannel\"",
                )
                .await;
            (done >= 21.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        b.metric(
            "deploymentchannel_operator_reconciles_total",
            "result=\"written\""
        )
        .await,
        1.0,
        "written besides the new channel"
    );
    assert_eq!(writes(&b).await, 1);
    assert_eq!(lists(&b, "deploymentchannels").await, listed, "relisted");
}
