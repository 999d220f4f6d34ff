//! Failures that hold nothing for good: a request on a connection that
//! stopped answering times out and is retried, and an object whose status
//! writes keep failing has one pending retry, however often it is
//! triggered meanwhile.

use std::{net::SocketAddr, time::Duration};

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::{
    harness::{api_requests, metric_value},
    relay::Relay,
    runtime::Replica,
    scenarios,
    support::{self, Ctx, Operator, Scenario, bind_role, channel, phone},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![
        writes_on_connections_that_stopped_answering_time_out_and_are_retried,
        failing_status_writes_keep_one_pending_retry_per_object,
    ]
}

fn web(name: &str) -> Value {
    support::web(name, &format!("https://{name}.example.com"))
}

/// The operator reaches the API server through a relay whose open
/// connections then stop answering (half-open) while it writes the
/// statuses of 200 channels one at a time: the write in flight fails after
/// `--api-request-timeout` and is retried on a new connection, and every
/// channel becomes Ready.
async fn writes_on_connections_that_stopped_answering_time_out_and_are_retried(ctx: Ctx) {
    let config = ctx.env.config().await;
    let Ok(upstream) = format!(
        "{}:{}",
        config.cluster_url.host().unwrap(),
        config.cluster_url.port_u16().unwrap_or(443)
    )
    .parse::<SocketAddr>() else {
        println!(
            "skipped: the relay needs an API server at an IP address, not {}",
            config.cluster_url
        );
        return;
    };
    let relay = Relay::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    relay.kubeconfig(&ctx.env.kubeconfig, upstream, &kubeconfig);
    let replica = Replica::start_with(
        &ctx,
        &[
            "--insecure-metrics",
            "--concurrency",
            "1",
            "--api-request-timeout",
            "3s",
        ],
        &kubeconfig,
    );
    replica.wait_ok(&ctx, "/readyz").await;
    let count = 200;
    for i in 0..count {
        ctx.must_apply(&web(&format!("c-{i}"))).await;
    }
    let written = || async {
        replica
            .metric(
                "deploymentchannel_operator_reconciles_total",
                "result=\"written\"",
            )
            .await
    };
    // Every channel in the cache (the watch's connection hangs too), and
    // writes under way.
    ctx.eventually(
        "the channels cached and some statuses written",
        Duration::from_secs(60),
        || async {
            let cached = replica
                .metric(
                    "deploymentchannel_operator_cached_objects",
                    "kind=\"DeploymentChannel\"",
                )
                .await;
            (cached == f64::from(count) && written().await >= 1.0).then_some(())
        },
    )
    .await;
    let before = written().await;
    relay.hang_open_connections();
    for i in 0..count {
        ctx.wait_ready(&format!("c-{i}"), "True", "Ready").await;
    }
    let logs = replica.logs();
    assert!(
        before < f64::from(count),
        "every status was written before the connections hung; logs:\n{logs}"
    );
    assert!(
        logs.contains("the API server did not answer within 3s"),
        "no request timed out; logs:\n{logs}"
    );
}

/// The operator may not write channel statuses; the PhoneConfiguration that
/// channel `support` references changes again and again, each change
/// triggering `support` while it waits for its retry: it never waits for
/// more than one, and once allowed its status is written.
async fn failing_status_writes_keep_one_pending_retry_per_object(ctx: Ctx) {
    let account = "no-channel-status";
    grant(&ctx, account, false).await;
    let mut config = ctx.env.config().await;
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{}:{account}", ctx.ns));
    let operator = Operator::start_with_config(&ctx, config).await;
    ctx.must_apply(&phone("line", "+12125551234", &["VOICE"]))
        .await;
    ctx.must_apply(&channel(
        "support",
        json!({"deploymentType": "CALLS", "channelIdentifier": "+12125551234",
               "configuration": {"phoneConfigurationId": "line"}}),
    ))
    .await;
    let refused = || {
        api_requests(&operator.metrics.render())
            .into_iter()
            .filter(|((verb, resource, code), _)| {
                verb == "patch" && resource == "deploymentchannels/status" && code == "403"
            })
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let pending = || {
        metric_value(
            &operator.metrics.render(),
            "deploymentchannel_operator_pending_retries",
            "kind=\"DeploymentChannel\"",
        )
    };
    ctx.eventually(
        "a refused status write",
        Duration::from_secs(30),
        || async { (refused() >= 1).then_some(()) },
    )
    .await;
    for i in 0..20 {
        let capabilities: &[&str] = if i % 2 == 0 {
            &["VOICE", "SMS"]
        } else {
            &["VOICE"]
        };
        ctx.must_apply(&phone("line", "+12125551234", capabilities))
            .await;
        assert!(
            pending() <= 1.0,
            "{} pending retries for one channel",
            pending()
        );
        // Paces the edits; nothing is timed.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Triggered again and again, refused each time, and still one retry.
    ctx.eventually(
        "the last trigger's refusal",
        Duration::from_secs(30),
        || async { (refused() >= 5 && pending() == 1.0).then_some(()) },
    )
    .await;

    // Allowed: a change of the channel runs it at once (the pending retry
    // may be minutes away after so many failures). Until the API server's
    // authorizer sees the new Role, the run may still be refused.
    grant(&ctx, account, true).await;
    let mut nudges = 0u32;
    let channels = ctx.channels();
    ctx.eventually("support to be Ready", Duration::from_secs(60), || {
        nudges += 1;
        let nudge = json!({"metadata": {"annotations": {"nudge": nudges.to_string()}}});
        let channels = channels.clone();
        async move {
            channels
                .patch("support", &PatchParams::default(), &Patch::Merge(&nudge))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let support = channels.get("support").await.ok()?;
            let ready = support
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status == "True").then_some(())
        }
    })
    .await;
    ctx.eventually("no retry pending", Duration::from_secs(30), || async {
        (pending() == 0.0).then_some(())
    })
    .await;
    operator.stop().await;
}

/// Lets the ServiceAccount `account` do what the operator does, except
/// write channel statuses unless `channel_status`.
async fn grant(ctx: &Ctx, account: &str, channel_status: bool) {
    let statuses: &[&str] = if channel_status {
        &["deploymentchannels/status", "phoneconfigurations/status"]
    } else {
        &["phoneconfigurations/status"]
    };
    let rules = json!([
        {"apiGroups": ["interactions.dev"], "resources": ["deploymentchannels", "phoneconfigurations"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["interactions.dev"], "resources": statuses, "verbs": ["patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}]);
    bind_role(ctx, account, rules).await;
}
