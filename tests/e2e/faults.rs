//! The operator keeps working when the cluster misbehaves: unreadable
//! objects, identities on one host, a paused leader, an API server outage,
//! missing CRDs or permissions, and churn. Scenarios that change the cluster
//! as a whole (replace a CRD, stop the API server, run without CRDs) get a
//! control plane of their own, so the other scenarios run on undisturbed.

use std::time::Duration;

use deploymentchannel_operator::{
    commands::crdgen,
    commands::local_cluster::{LocalCluster, install_crds},
};
use k8s_openapi::{
    api::{coordination::v1::Lease, core::v1::Namespace, events::v1::Event},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::{
    harness::service_account_token,
    runtime::{FAST_LEASE, Replica, election},
    scenarios,
    support::{Ctx, Operator, Scenario, bind_role, channel, condition, phone, web},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![
        unreadable_objects_are_reported_and_never_stop_the_others,
        api_server_restart_resumes_watches_and_reconciles_nothing_unchanged,
        cut_connections_resume_watches_and_reconcile_nothing_unchanged,
        a_refused_list_is_retried_with_backoff,
        operator_started_before_the_crds_waits_and_recovers,
        operator_missing_a_verb_names_it_and_recovers,
        two_replicas_without_identity_elect_one_leader,
        paused_leader_writes_nothing_after_losing_the_lease,
        deleted_objects_leave_no_per_object_entries,
        a_managed_fields_reset_leaves_no_stale_condition,
    ]
}

/// A control plane of the scenario's own, with the scenario's namespace.
pub struct Private {
    pub cluster: LocalCluster,
    pub ctx: Ctx,
}

impl Private {
    /// `None` (the scenario is skipped) without `KUBEBUILDER_ASSETS`.
    pub async fn start(ctx: &Ctx, with_crds: bool) -> Option<Self> {
        let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS") else {
            println!("skipped: needs KUBEBUILDER_ASSETS for a control plane of its own");
            return None;
        };
        let cluster = LocalCluster::start(std::path::Path::new(&assets))
            .await
            .expect("a private control plane starts");
        let client = Client::try_from(cluster.config().await.unwrap()).unwrap();
        if with_crds {
            install_crds(&client, &crdgen::crds(), "e2e").await.unwrap();
        }
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ctx.ns}})).unwrap(),
            )
            .await
            .unwrap();
        let ctx = Ctx {
            env: ctx.env.clone(),
            client,
            ns: ctx.ns.clone(),
        };
        Some(Self { cluster, ctx })
    }

    pub fn replica(&self, extra: &[&str]) -> Replica {
        let mut args = vec!["--insecure-metrics"];
        args.extend_from_slice(extra);
        Replica::start_with(&self.ctx, &args, self.cluster.kubeconfig())
    }

    /// Replaces a CRD with one whose spec takes anything (the API server then
    /// stores what the types cannot read), or restores the real one.
    async fn set_crd(&self, kind: &str, permissive: bool) {
        let crd = crdgen::crds()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap();
        let crd = if permissive {
            let mut value = serde_json::to_value(&crd).unwrap();
            let schema = &mut value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            schema["properties"]["spec"] =
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
            schema.as_object_mut().unwrap().remove("required");
            schema
                .as_object_mut()
                .unwrap()
                .remove("x-kubernetes-validations");
            serde_json::from_value::<CustomResourceDefinition>(value).unwrap()
        } else {
            crd
        };
        install_crds(&self.ctx.client, &[crd], "e2e").await.unwrap();
    }

    /// Creates an object the real CRD refuses, under the permissive one
    /// (retried while the API server switches schemas).
    async fn create_raw(&self, plural: &str, object: Value) {
        let ctx = &self.ctx;
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            ctx.client.clone(),
            &ctx.ns,
            &kube::discovery::ApiResource {
                group: "interactions.dev".into(),
                version: "v1alpha1".into(),
                api_version: "interactions.dev/v1alpha1".into(),
                kind: object["kind"].as_str().unwrap().into(),
                plural: plural.into(),
            },
        );
        let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
        ctx.eventually(
            &format!("the API server to store {name}"),
            Duration::from_secs(30),
            || async { api.create(&PostParams::default(), &object).await.ok() },
        )
        .await;
    }

    /// Warning Events about `name` with reason InvalidSpec.
    async fn invalid_spec_events(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.ctx.client.clone(), &self.ctx.ns);
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.reason.as_deref() == Some("InvalidSpec")
                    && e.type_.as_deref() == Some("Warning")
            })
            .collect()
    }

    /// Waits for the one Warning Event about `name`, naming `field`.
    async fn wait_event(&self, name: &str, field: &str) -> Event {
        self.ctx
            .eventually(
                &format!("an InvalidSpec Event on {name} naming {field}"),
                Duration::from_secs(30),
                || async {
                    self.invalid_spec_events(name)
                        .await
                        .into_iter()
                        .find(|e| e.note.as_deref().unwrap_or_default().contains(field))
                },
            )
            .await
    }
}

/// Ready and Stalled of a stored object, as JSON (it may not decode).
async fn raw_conditions(ctx: &Ctx, plural: &str, name: &str) -> Vec<(String, String, String)> {
    let request = http::Request::get(format!(
        "/apis/interactions.dev/v1alpha1/namespaces/{}/{plural}/{name}",
        ctx.ns
    ))
    .body(Vec::new())
    .unwrap();
    let object: Value = ctx.client.request(request).await.unwrap();
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default().to_string(),
                c["status"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn unreadable_objects_are_reported_and_never_stop_the_others(ctx: Ctx) {
    let Some(private) = Private::start(&ctx, true).await else {
        return;
    };
    let pctx = &private.ctx;
    let fax = r#"spec.deploymentType: Unsupported value: "FAX": supported values: "CALLS", "SMS", "WEB", "MOBILE""#;

    // Before the operator starts: unreadable channels next to readable ones.
    pctx.must_apply(&web("good-before", "https://before.example.com"))
        .await;
    private.set_crd("DeploymentChannel", true).await;
    let mut bad = web("bad-enum", "https://fax.example.com");
    bad["spec"]["deploymentType"] = json!("FAX");
    private.create_raw("deploymentchannels", bad).await;
    let mut bad = web("bad-type", "https://type.example.com");
    bad["spec"]["channelIdentifier"] = json!(5);
    private.create_raw("deploymentchannels", bad).await;
    let mut bad = web("no-spec", "unused");
    bad.as_object_mut().unwrap().remove("spec");
    private.create_raw("deploymentchannels", bad).await;
    // An unreadable channel claiming an identifier holds no claim.
    let mut bad = web("bad-claim", "https://same.example.com");
    bad["spec"]["recordingEnabled"] = json!("yes");
    private.create_raw("deploymentchannels", bad).await;
    private.set_crd("DeploymentChannel", false).await;

    let replica = private.replica(&[]);
    replica.wait_ok(pctx, "/readyz").await;
    pctx.wait_ready("good-before", "True", "Ready").await;
    pctx.must_apply(&web("same-web", "https://same.example.com"))
        .await;
    pctx.wait_ready("same-web", "True", "Ready").await;
    let event = private.wait_event("bad-enum", "spec.deploymentType").await;
    assert_eq!(
        event.note.as_deref(),
        Some(
            format!(
                "cannot read {fax}; the operator skips this DeploymentChannel until it is fixed"
            )
            .as_str()
        )
    );
    private
        .wait_event("bad-type", "spec.channelIdentifier: Invalid value")
        .await;
    private.wait_event("no-spec", "spec: Required value").await;
    private
        .wait_event("bad-claim", "spec.recordingEnabled")
        .await;
    // The API server accepts the status of an object whose unchanged spec
    // no longer passes its schema (CRD validation ratcheting).
    let conditions = pctx
        .eventually(
            "bad-enum's status to say why",
            Duration::from_secs(30),
            || async {
                let c = raw_conditions(pctx, "deploymentchannels", "bad-enum").await;
                (!c.is_empty()).then_some(c)
            },
        )
        .await;
    assert!(
        conditions.contains(&("Ready".into(), "False".into(), fax.into())),
        "{conditions:?}"
    );
    assert!(
        conditions.contains(&("Stalled".into(), "True".into(), fax.into())),
        "{conditions:?}"
    );
    pctx.eventually(
        "the unreadable channels to be counted",
        Duration::from_secs(30),
        || async {
            let n = replica
                .metric(
                    "deploymentchannel_operator_unreadable_objects",
                    "kind=\"DeploymentChannel\"",
                )
                .await;
            (n == 4.0).then_some(())
        },
    )
    .await;

    // While it runs: a new unreadable channel, and new channels converge.
    private.set_crd("DeploymentChannel", true).await;
    let mut bad = web("bad-later", "https://later.example.com");
    bad["spec"]["configuration"] = json!("none");
    private.create_raw("deploymentchannels", bad).await;
    private.set_crd("DeploymentChannel", false).await;
    pctx.must_apply(&web("good-during", "https://during.example.com"))
        .await;
    pctx.wait_ready("good-during", "True", "Ready").await;
    private
        .wait_event("bad-later", "spec.configuration: Invalid value")
        .await;

    // Once per distinct problem: the status write's own watch event, and a
    // relist after a watch failure, bring no second Event.
    pctx.eventually(
        "bad-later's status to be written",
        Duration::from_secs(30),
        || async {
            (!raw_conditions(pctx, "deploymentchannels", "bad-later")
                .await
                .is_empty())
            .then_some(())
        },
    )
    .await;
    pctx.must_apply(&web("after-writes", "https://after.example.com"))
        .await;
    pctx.wait_ready("after-writes", "True", "Ready").await;
    for name in ["bad-enum", "bad-type", "no-spec", "bad-claim", "bad-later"] {
        let events = private.invalid_spec_events(name).await;
        assert_eq!(events.len(), 1, "{name}: {events:?}");
        assert!(events[0].series.is_none(), "{name} was reported again");
    }

    // A PhoneConfiguration that cannot be read.
    private.set_crd("PhoneConfiguration", true).await;
    let mut bad = phone("pc-bad", "+12125551234", &[]);
    bad["spec"]["capabilities"] = json!("VOICE");
    private.create_raw("phoneconfigurations", bad).await;
    private.set_crd("PhoneConfiguration", false).await;
    pctx.must_apply(&channel(
        "calls",
        json!({"deploymentType": "CALLS", "channelIdentifier": "+12125551234",
               "configuration": {"phoneConfigurationId": "pc-bad"}}),
    ))
    .await;
    let calls = pctx
        .wait_ready("calls", "False", "PhoneConfigurationNotReady")
        .await;
    assert_eq!(
        condition(&calls, "Ready").unwrap().message,
        r#"PhoneConfiguration "pc-bad" cannot be read: spec.capabilities: Invalid value: "string": spec.capabilities in body must be of type array: "string""#
    );
    private.wait_event("pc-bad", "spec.capabilities").await;
    pctx.eventually(
        "the unreadable PhoneConfiguration to be counted",
        Duration::from_secs(30),
        || async {
            let n = replica
                .metric(
                    "deploymentchannel_operator_unreadable_objects",
                    "kind=\"PhoneConfiguration\"",
                )
                .await;
            (n == 1.0).then_some(())
        },
    )
    .await;

    // Fixed or deleted: back to normal by itself.
    // A merge patch: server-side apply cannot merge into the stored non-list.
    let fixed = json!({"spec": {"capabilities": ["VOICE"]}});
    pctx.phones()
        .patch("pc-bad", &PatchParams::default(), &Patch::Merge(&fixed))
        .await
        .unwrap();
    pctx.wait_ready("calls", "True", "Ready").await;
    let fixed = json!({"spec": {"deploymentType": "WEB", "channelIdentifier": "https://fixed.example.com", "configuration": {}, "recordingEnabled": true}});
    pctx.channels()
        .patch("bad-type", &PatchParams::default(), &Patch::Merge(&fixed))
        .await
        .unwrap();
    pctx.wait_ready("bad-type", "True", "Ready").await;
    pctx.wait_channel("bad-type", "Ready and no longer Stalled", |c| {
        condition(c, "Ready").is_some_and(|r| r.status == "True")
            && condition(c, "Stalled").is_none()
    })
    .await;
    for name in ["bad-enum", "no-spec", "bad-claim", "bad-later"] {
        pctx.channels()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    pctx.eventually(
        "no unreadable object left",
        Duration::from_secs(30),
        || async {
            let n = replica
                .metric("deploymentchannel_operator_unreadable_objects", "")
                .await;
            (n == 0.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        replica
            .metric("deploymentchannel_operator_caches_synced", "")
            .await,
        1.0
    );
}

/// An update can reset an object's managedFields (`managedFields: [{}]`, or
/// an update the API server cannot track, such as a fix of a spec that did
/// not fit the schema). What the operator applied before then belongs to
/// `before-first-apply`, and an apply alone would leave the Stalled
/// condition of a fixed channel in place for good.
async fn a_managed_fields_reset_leaves_no_stale_condition(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    // '<' passes admission; the operator's URL check refuses it.
    ctx.must_apply(&web("site", "https://bad<host.example.com"))
        .await;
    let stalled = ctx.wait_ready("site", "False", "InvalidSpec").await;
    assert!(condition(&stalled, "Stalled").is_some_and(|c| c.status == "True"));
    let reset = json!({"metadata": {"managedFields": [{}]}});
    ctx.channels()
        .patch("site", &PatchParams::default(), &Patch::Merge(&reset))
        .await
        .unwrap();
    ctx.must_apply(&web("site", "https://fixed.example.com"))
        .await;
    ctx.wait_ready("site", "True", "Ready").await;
    let fixed = ctx
        .wait_channel("site", "no Stalled condition", |c| {
            condition(c, "Stalled").is_none()
        })
        .await;
    let types: Vec<&str> = fixed
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(types, ["Ready", "Valid"]);

    // Another manager's condition on the same status: the reset's manager
    // still owns spec fields, but the repair never removes what someone
    // else owns, on this write or any later one.
    let theirs = json!({
        "apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel",
        "metadata": {"name": "site"},
        "status": {"conditions": [{"type": "Synced", "status": "True", "reason": "Applied",
            "message": "applied by the delivery pipeline",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
    });
    ctx.channels()
        .patch_status(
            "site",
            &PatchParams::apply("delivery-pipeline").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
    ctx.must_apply(&web("site", "https://moved.example.com"))
        .await;
    let moved = ctx
        .wait_channel("site", "the status of generation 3", |c| {
            c.status.as_ref().and_then(|s| s.observed_generation) == Some(3)
        })
        .await;
    assert!(
        condition(&moved, "Synced").is_some_and(|c| c.status == "True"),
        "the other manager's condition was removed: {:?}",
        moved.status
    );
    assert!(condition(&moved, "Stalled").is_none());
    operator.stop().await;
}

/// The API server restarted on the same etcd: the watches resume, or
/// relist when the fresh watch cache no longer serves their version (`410
/// Gone`); either way nothing unchanged is reconciled or written, and
/// `/readyz` stays 200 throughout.
async fn api_server_restart_resumes_watches_and_reconciles_nothing_unchanged(ctx: Ctx) {
    resumes_after(ctx, true, |cluster| {
        Box::pin(async move {
            cluster.stop_apiserver();
            cluster.start_apiserver().await.unwrap();
        })
    })
    .await;
}

/// The operator's TCP connections to the API server reset (`ss -K`), the
/// server itself untouched: the watches resume as after a restart.
async fn cut_connections_resume_watches_and_reconcile_nothing_unchanged(ctx: Ctx) {
    resumes_after(ctx, false, |cluster| {
        Box::pin(async move {
            let config = cluster.config().await.unwrap();
            let port = config.cluster_url.port_u16().expect("a port");
            let cut = std::process::Command::new("ss")
                .args(["-K", "dst", "127.0.0.1", "dport", "=", &format!(":{port}")])
                .output()
                .expect("ss runs");
            assert!(cut.status.success(), "{cut:?}");
        })
    })
    .await;
}

/// 20 channels converged, then `disturb` breaks the operator's watches:
/// they resume (or, when `relist_allowed`, relist after `410 Gone`), only a
/// channel created afterwards is reconciled and written, and `/readyz`
/// answers 200 all along.
async fn resumes_after(
    ctx: Ctx,
    relist_allowed: bool,
    disturb: impl FnOnce(
        &mut LocalCluster,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>,
) {
    let Some(mut private) = Private::start(&ctx, true).await else {
        return;
    };
    let pctx = private.ctx.clone();
    let replica = private.replica(&[]);
    replica.wait_ok(&pctx, "/readyz").await;
    let count = 20;
    for i in 0..count {
        pctx.must_apply(&web(
            &format!("site-{i}"),
            &format!("https://site-{i}.example.com"),
        ))
        .await;
    }
    for i in 0..count {
        pctx.wait_ready(&format!("site-{i}"), "True", "Ready").await;
    }
    let reconciles = "deploymentchannel_operator_reconciles_total";
    let channel = "kind=\"DeploymentChannel\"";
    pctx.eventually(
        "every channel written once",
        Duration::from_secs(10),
        || async {
            (replica.metric(reconciles, "result=\"written\"").await == count as f64).then_some(())
        },
    )
    .await;
    let before = replica.metric(reconciles, channel).await;
    let restarts = "deploymentchannel_operator_watch_restarts_total";
    let restarts_before = replica.metric(restarts, "").await;

    // /readyz, polled all through the disturbance and the recovery.
    let probing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = {
        let probing = probing.clone();
        let address = replica.probe_address;
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while probing.load(std::sync::atomic::Ordering::Relaxed) {
                answers.push(
                    crate::harness::http_get(address, "/readyz")
                        .await
                        .map(|(code, _)| code),
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answers
        })
    };
    disturb(&mut private.cluster).await;
    pctx.eventually(
        "both watches to notice the disturbance",
        Duration::from_secs(60),
        || async { (replica.metric(restarts, "").await >= restarts_before + 2.0).then_some(()) },
    )
    .await;
    pctx.must_apply(&web("after", "https://after.example.com"))
        .await;
    pctx.wait_ready("after", "True", "Ready").await;
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    let answers = probe.await.unwrap();
    assert!(
        answers.iter().all(|a| *a == Some(200)),
        "/readyz answered {answers:?}; relists {}:\n{}",
        replica
            .metric("deploymentchannel_operator_relists_total", "")
            .await,
        replica.logs()
    );
    let mut replica = replica;
    assert!(
        replica.child.try_wait().unwrap().is_none(),
        "the operator exited:\n{}",
        replica.logs()
    );
    // A connection reset resumes; a restarted API server may answer `410
    // Gone` for a version older than its fresh watch cache: a relist, then,
    // but one that reconciles nothing unchanged.
    let relists = "deploymentchannel_operator_relists_total";
    assert_eq!(
        replica.metric(relists, "cause=\"initial\"").await,
        2.0,
        "{}",
        replica.logs()
    );
    let others = replica.metric(relists, "").await - 2.0;
    assert!(
        others == 0.0
            || (relist_allowed && others == replica.metric(relists, "cause=\"expired\"").await),
        "{others} relists after the first lists:\n{}",
        replica.logs()
    );
    // Only the new channel was reconciled, and written once.
    let after = replica.metric(reconciles, channel).await;
    assert!(
        after - before <= 2.0,
        "{before} reconciles before, {after} after:\n{}",
        replica.logs()
    );
    assert_eq!(
        replica.metric(reconciles, "result=\"written\"").await,
        count as f64 + 1.0,
        "{}",
        replica.logs()
    );
}

/// Lets the ServiceAccount `account` do what the operator does, with
/// `channel_verbs` on channels (a Role and its binding, applied).
async fn grant(ctx: &Ctx, account: &str, channel_verbs: &[&str]) {
    let rules = json!([
        {"apiGroups": ["interactions.dev"], "resources": ["deploymentchannels"], "verbs": channel_verbs},
        {"apiGroups": ["interactions.dev"], "resources": ["phoneconfigurations"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["interactions.dev"], "resources": ["deploymentchannels/status", "phoneconfigurations/status"], "verbs": ["patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}]);
    bind_role(ctx, account, rules).await;
}

/// Lists of channels refused (403) for 12 s are retried with growing
/// waits (800 ms doubling, jittered), not every second; once granted the
/// operator lists and converges.
async fn a_refused_list_is_retried_with_backoff(ctx: Ctx) {
    let account = "refused-list";
    grant(&ctx, account, &["get"]).await;
    let user = format!("system:serviceaccount:{}:{account}", ctx.ns);
    ctx.must_apply(&web("site", "https://site.example.com"))
        .await;
    let mut config = ctx.env.config().await;
    config.auth_info.impersonate = Some(user);
    let operator = Operator::start_with_config(&ctx, config).await;
    let refused = || {
        crate::harness::api_requests(&operator.metrics.render())
            .into_iter()
            .filter(|((_, resource, code), _)| resource == "deploymentchannels" && code == "403")
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    ctx.eventually("a refused list", Duration::from_secs(30), || async {
        (refused() >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    // At 0, 0.8–1.2, 2.4–3.6, 5.6–8.4 and 12–18 s: at most 5 attempts
    // (a retry every second would make 13).
    let attempts = refused();
    assert!(
        (3..=5).contains(&attempts),
        "{attempts} refused lists in 12 s"
    );
    grant(&ctx, account, &["get", "list", "watch"]).await;
    ctx.wait_ready("site", "True", "Ready").await;
    let relists = crate::harness::metric_value(
        &operator.metrics.render(),
        "deploymentchannel_operator_relists_total",
        "cause=\"list_failed\"",
    );
    assert!(relists >= 1.0, "{relists} lists after a failed one");
    operator.stop().await;
}

async fn operator_started_before_the_crds_waits_and_recovers(ctx: Ctx) {
    let Some(private) = Private::start(&ctx, false).await else {
        return;
    };
    let pctx = private.ctx.clone();
    let mut replica = private.replica(&[]);
    let line = "CRD deploymentchannels.interactions.dev and phoneconfigurations.interactions.dev not installed: install them with `kubectl apply --server-side -k crds/`";
    pctx.eventually(
        "a log line naming the missing CRDs and the fix",
        Duration::from_secs(30),
        || async { replica.logs().contains(line).then_some(()) },
    )
    .await;
    // Not ready, and still running, through several checks.
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        assert_eq!(replica.get("/readyz").await.unwrap().0, 503);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(replica.child.try_wait().unwrap().is_none(), "it exited");
    install_crds(&pctx.client, &crdgen::crds(), "e2e")
        .await
        .unwrap();
    replica.wait_ok(&pctx, "/readyz").await;
    pctx.must_apply(&web("site", "https://site.example.com"))
        .await;
    pctx.wait_ready("site", "True", "Ready").await;
    let logs = replica.logs();
    assert_eq!(logs.matches(line).count(), 1, "logged once:\n{logs}");
    assert!(logs.contains("starting"), "{logs}");
}

async fn operator_missing_a_verb_names_it_and_recovers(ctx: Ctx) {
    let account = "short-of-a-verb";
    grant(&ctx, account, &["get", "list"]).await;
    let token = service_account_token(&ctx.client, &ctx.ns, account)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    ctx.env.kubeconfig_with_token(&token, &kubeconfig).unwrap();
    let mut replica = Replica::start_with(&ctx, &["--insecure-metrics"], &kubeconfig);
    let line = format!(
        "the operator's credentials may not watch deploymentchannels.interactions.dev in namespace {}: grant it with `kubectl apply -k deploy/`",
        ctx.ns
    );
    ctx.eventually(
        "a log line naming the missing verb and the fix",
        Duration::from_secs(30),
        || async { replica.logs().contains(&line).then_some(()) },
    )
    .await;
    assert_eq!(replica.get("/readyz").await.unwrap().0, 503);
    assert!(replica.child.try_wait().unwrap().is_none(), "it exited");
    grant(&ctx, account, &["get", "list", "watch"]).await;
    replica.wait_ok(&ctx, "/readyz").await;
    ctx.must_apply(&web("site", "https://site.example.com"))
        .await;
    ctx.wait_ready("site", "True", "Ready").await;
    let logs = replica.logs();
    assert_eq!(logs.matches(&line).count(), 1, "logged once:\n{logs}");
}

async fn lease_holder(ctx: &Ctx) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    leases
        .get_opt("deploymentchannel-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn two_replicas_without_identity_elect_one_leader(ctx: Ctx) {
    let args = [
        &["--leader-election", "--lease-namespace", ctx.ns.as_str()][..],
        &FAST_LEASE,
    ]
    .concat();
    let a = Replica::start(&ctx, &args);
    let b = Replica::start(&ctx, &args);
    let holder = ctx
        .eventually("a lease holder", Duration::from_secs(30), || {
            lease_holder(&ctx)
        })
        .await;
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let suffix = holder
        .strip_prefix(&format!("{host}-"))
        .unwrap_or_else(|| panic!("identity {holder:?} is not {host}-<suffix>"));
    assert_eq!(suffix.len(), 8, "{holder}");
    a.wait_ok(&ctx, "/readyz").await;
    b.wait_ok(&ctx, "/readyz").await;
    ctx.must_apply(&web("site", "https://site.example.com"))
        .await;
    ctx.wait_ready("site", "True", "Ready").await;
    // Across several lease renewals, exactly one of them leads.
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let leaders = a.metric("deploymentchannel_operator_leader", "").await
            + b.metric("deploymentchannel_operator_leader", "").await;
        assert_eq!(leaders, 1.0, "leaders at once:\n{}\n{}", a.logs(), b.logs());
        assert_eq!(lease_holder(&ctx).await.as_deref(), Some(holder.as_str()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let writes = a
        .metric(
            "deploymentchannel_operator_reconciles_total",
            "result=\"written\"",
        )
        .await
        + b.metric(
            "deploymentchannel_operator_reconciles_total",
            "result=\"written\"",
        )
        .await;
    assert_eq!(writes, 1.0, "one status written by one leader");
}

async fn paused_leader_writes_nothing_after_losing_the_lease(ctx: Ctx) {
    let extra = [
        &FAST_LEASE[..],
        &[
            "--log-level",
            "info,deploymentchannel_operator::operator::controller=debug",
        ],
    ]
    .concat();
    let mut a = Replica::start(&ctx, &election(&ctx, "replica-a", &extra));
    ctx.eventually(
        "replica-a to hold the lease",
        Duration::from_secs(30),
        || async { (lease_holder(&ctx).await.as_deref() == Some("replica-a")).then_some(()) },
    )
    .await;
    let b = Replica::start(&ctx, &election(&ctx, "replica-b", &extra));
    b.wait_ok(&ctx, "/readyz").await;
    ctx.must_apply(&web("site", "https://site.example.com"))
        .await;
    ctx.wait_ready("site", "True", "Ready").await;
    // The line is logged once the write's response is in, which can be
    // after the status is visible.
    ctx.eventually(
        "replica-a to log its status write",
        Duration::from_secs(30),
        || async { a.logs().contains("status written").then_some(()) },
    )
    .await;

    a.signal("-STOP");
    let paused_log = a.logs().len();
    ctx.eventually(
        "replica-b to take over the lease",
        Duration::from_secs(30),
        || async { (lease_holder(&ctx).await.as_deref() == Some("replica-b")).then_some(()) },
    )
    .await;
    // Work for the paused leader, queued while it sleeps.
    ctx.must_apply(&web("during-pause", "https://during.example.com"))
        .await;
    ctx.wait_ready("during-pause", "True", "Ready").await;
    ctx.must_apply(&web("site", "https://changed.example.com"))
        .await;
    ctx.wait_ready("site", "True", "Ready").await;
    a.signal("-CONT");
    // It stands by again with its caches instead of exiting.
    ctx.eventually(
        "the paused leader to stand by",
        Duration::from_secs(30),
        || async {
            a.logs()[paused_log..]
                .contains("could not renew the lease in time")
                .then_some(())
        },
    )
    .await;
    assert!(a.child.try_wait().unwrap().is_none(), "{}", a.logs());
    let logs = a.logs();
    let after = &logs[paused_log..];
    assert!(
        !after.contains("status written"),
        "wrote after losing the lease:\n{after}"
    );
    assert_eq!(lease_holder(&ctx).await.as_deref(), Some("replica-b"));
    ctx.must_apply(&web("after-resume", "https://after.example.com"))
        .await;
    ctx.wait_ready("after-resume", "True", "Ready").await;
}

async fn deleted_objects_leave_no_per_object_entries(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&phone("pc", "+12125551234", &["VOICE", "SMS"]))
        .await;
    for round in 0..2 {
        for i in 0..20 {
            let name = format!("c-{round}-{i}");
            let object = if i % 2 == 0 {
                channel(
                    &name,
                    json!({"deploymentType": "CALLS", "channelIdentifier": "+12125551234",
                           "configuration": {"phoneConfigurationId": "pc"}}),
                )
            } else {
                web(&name, &format!("https://{name}.example.com"))
            };
            ctx.must_apply(&object).await;
        }
        for i in 0..20 {
            let name = format!("c-{round}-{i}");
            ctx.wait_channel(&name, "a status", |c| c.status.is_some())
                .await;
        }
        for i in 0..20 {
            ctx.channels()
                .delete(&format!("c-{round}-{i}"), &DeleteParams::default())
                .await
                .unwrap();
        }
        ctx.eventually(
            "every per-object table back to the live objects",
            Duration::from_secs(30),
            || async {
                let text = operator.metrics.render();
                let entries = |table: &str| {
                    crate::harness::metric_value(
                        &text,
                        "deploymentchannel_operator_table_entries",
                        &format!("table=\"{table}\""),
                    )
                };
                let channel_tables = [
                    "channel_status_writes",
                    "backoff_counters",
                    "index_channels",
                    "index_claims",
                    "index_references",
                ];
                let settled = channel_tables.iter().all(|t| entries(t) == 0.0)
                    && entries("phone_configuration_generations") == 1.0;
                settled.then_some(())
            },
        )
        .await;
    }
    operator.stop().await;
}
