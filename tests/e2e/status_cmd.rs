//! `status` (and the `kubectl interactions` plugin) on a real API server:
//! one scenario per Ready reason the controller writes, each checking the
//! text and the JSON output of the real binary, plus kubectl's discovery of
//! the plugin and a user who may not read PhoneConfigurations.

use std::{path::Path, process::Command, time::Duration};

use deploymentchannel_operator::{
    operator::controller::{self, Settings},
    operator::metrics::Metrics,
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
    client::Body,
};
use serde_json::{Value, json};

use crate::{
    scenarios,
    support::{Ctx, Operator, Scenario, channel, phone},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![
        status_ready,
        status_phone_configuration_not_found,
        status_phone_configuration_not_ready,
        status_capability_missing,
        status_phone_number_mismatch,
        status_identifier_conflict_in_the_namespace,
        status_identifier_conflict_across_namespaces,
        status_invalid_spec,
        status_plugin_is_found_by_kubectl_and_prints_the_same,
        status_user_without_phone_configuration_rights,
    ]
}

const BIN: &str = env!("CARGO_BIN_EXE_deploymentchannel-operator");
const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-interactions");

fn phone_channel(kind: &str, name: &str, number: &str, phone_configuration: &str) -> Value {
    channel(
        name,
        json!({"deploymentType": kind, "channelIdentifier": number,
               "configuration": {"phoneConfigurationId": phone_configuration}}),
    )
}

fn web(name: &str, url: &str) -> Value {
    channel(
        name,
        json!({"deploymentType": "WEB", "channelIdentifier": url, "configuration": {}}),
    )
}

/// What one run of a binary printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `program args...` off the runtime's threads.
async fn run(program: String, args: Vec<String>, path: Option<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(&program);
        command.args(&args).env_remove("NO_COLOR");
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("the command runs")
}

/// `deploymentchannel-operator status ARGS -n NS --kubeconfig K`.
async fn status(ctx: &Ctx, args: &[&str]) -> Run {
    let mut all: Vec<String> = ["status"]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect();
    if !args.contains(&"-n") && !args.contains(&"-A") {
        all.extend(["-n".to_string(), ctx.ns.clone()]);
    }
    all.extend([
        "--kubeconfig".to_string(),
        ctx.env.kubeconfig.display().to_string(),
    ]);
    run(BIN.to_string(), all, None).await
}

/// Runs `status` and returns its standard output, failing on an error.
async fn report(ctx: &Ctx, args: &[&str]) -> String {
    let out = status(ctx, args).await;
    assert_eq!(
        out.code,
        Some(0),
        "status {args:?} failed: {}{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// The JSON report of `status ARGS -o json`.
async fn json_report(ctx: &Ctx, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let text = report(ctx, &all).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `5s`, `2m30s`, `3h`: an age as the text view prints it.
fn is_age(token: &str) -> bool {
    let units: Vec<(String, char)> = {
        let mut parts = Vec::new();
        let mut digits = String::new();
        for c in token.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
            } else {
                parts.push((std::mem::take(&mut digits), c));
            }
        }
        if !digits.is_empty() {
            return false;
        }
        parts
    };
    !units.is_empty()
        && units.len() <= 2
        && units
            .iter()
            .all(|(d, u)| !d.is_empty() && "smhdy".contains(*u))
}

/// The text view with ages as `AGE`, namespaces as `NS` (`NS2`), and runs
/// of spaces as one, so that it can be compared whole.
fn normalize(text: &str, namespaces: &[&str]) -> String {
    let mut names: Vec<(usize, &str)> = namespaces.iter().copied().enumerate().collect();
    names.sort_by_key(|(_, ns)| std::cmp::Reverse(ns.len()));
    text.lines()
        .map(|line| {
            let mut line = line.to_string();
            for (i, ns) in &names {
                let label = if *i == 0 {
                    "NS".to_string()
                } else {
                    format!("NS{}", i + 1)
                };
                line = line.replace(ns, &label);
            }
            line.split_whitespace()
                .map(|t| if is_age(t) { "AGE" } else { t })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `status ARGS` until its normalized text is `expected` (Events and
/// statuses arrive a moment after the condition the scenario waited for).
async fn expect_text(ctx: &Ctx, args: &[&str], namespaces: &[&str], expected: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = report(ctx, args).await;
        if normalize(&text, namespaces) == expected.trim() {
            return text;
        }
        if tokio::time::Instant::now() > deadline {
            assert_eq!(
                normalize(&text, namespaces),
                expected.trim(),
                "status {args:?} printed:\n{text}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn status_ready(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&phone("line", "+12125551234", &["VOICE", "SMS"]))
        .await;
    ctx.must_apply(&phone_channel("SMS", "support-sms", "+12125551234", "line"))
        .await;
    ctx.wait_ready("support-sms", "True", "Ready").await;
    expect_text(
        &ctx,
        &["channel", "support-sms"],
        &[&ctx.ns],
        r#"
DeploymentChannel NS/support-sms
├─ Type SMS
├─ Identifier +12125551234
├─ Ready True (Ready) for AGE
│ the channel is ready
├─ Conditions
│ ├─ Ready True Ready AGE
│ ├─ Valid True Valid AGE
│ │ the spec is valid
│ └─ PhoneConfigurationResolved True Resolved AGE
│ using PhoneConfiguration "line" (+12125551234)
├─ PhoneConfiguration line
│ ├─ Number +12125551234
│ ├─ Provider test-provider
│ ├─ Capabilities VOICE, SMS
│ └─ Ready True (Ready) for AGE
│ the phone configuration is ready
├─ Events none
└─ Next step: nothing to do: the channel is ready
"#,
    )
    .await;
    let json = json_report(&ctx, &["channel", "support-sms"]).await;
    assert_eq!(json["kind"], "DeploymentChannel");
    assert_eq!(json["namespace"], ctx.ns.as_str());
    assert_eq!(json["type"], "SMS");
    assert_eq!(json["ready"]["status"], "True");
    assert_eq!(json["ready"]["reason"], "Ready");
    assert_eq!(json["ready"]["current"], true);
    assert_eq!(json["phoneConfiguration"]["lookup"], "Found");
    assert_eq!(
        json["phoneConfiguration"]["capabilities"],
        json!(["VOICE", "SMS"])
    );
    assert_eq!(json["phoneConfiguration"]["ready"]["status"], "True");
    assert_eq!(json["nextStep"], "nothing to do: the channel is ready");
    operator.stop().await;
}

async fn status_phone_configuration_not_found(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&phone("line", "+12125551234", &["SMS"]))
        .await;
    ctx.must_apply(&phone_channel("SMS", "support-sms", "+12125551234", "line"))
        .await;
    ctx.wait_ready("support-sms", "True", "Ready").await;
    // Losing readiness records a Warning Event, which the report shows.
    ctx.phones()
        .delete("line", &DeleteParams::default())
        .await
        .unwrap();
    ctx.wait_ready("support-sms", "False", "PhoneConfigurationNotFound")
        .await;
    expect_text(
        &ctx,
        &["channel", "support-sms"],
        &[&ctx.ns],
        r#"
DeploymentChannel NS/support-sms
├─ Type SMS
├─ Identifier +12125551234
├─ Ready False (PhoneConfigurationNotFound) for AGE
│ PhoneConfiguration "line" does not exist in namespace "NS"
├─ Conditions
│ ├─ Ready False PhoneConfigurationNotFound AGE
│ ├─ Valid True Valid AGE
│ │ the spec is valid
│ └─ PhoneConfigurationResolved False PhoneConfigurationNotFound AGE
├─ PhoneConfiguration line
│ └─ not found in namespace NS
├─ Events
│ └─ AGE Warning NotReady PhoneConfigurationNotFound: PhoneConfiguration "line" does not exist in namespace "NS"
└─ Next step: create PhoneConfiguration "line" in namespace "NS" with phoneNumber +12125551234 and the SMS capability, or set spec.configuration.phoneConfigurationId to an existing one
"#,
    )
    .await;
    let json = json_report(&ctx, &["channel", "support-sms"]).await;
    assert_eq!(json["ready"]["status"], "False");
    assert_eq!(json["ready"]["reason"], "PhoneConfigurationNotFound");
    assert_eq!(json["phoneConfiguration"]["lookup"], "NotFound");
    assert_eq!(json["events"][0]["type"], "Warning");
    assert_eq!(json["events"][0]["reason"], "NotReady");
    assert_eq!(
        json["nextStep"],
        format!(
            "create PhoneConfiguration \"line\" in namespace {:?} with phoneNumber +12125551234 and the SMS capability, or set spec.configuration.phoneConfigurationId to an existing one",
            ctx.ns
        )
    );
    // An object that does not exist is one clear line and exit code 1.
    let missing = status(&ctx, &["channel", "nope"]).await;
    assert_eq!(missing.code, Some(1));
    assert_eq!(missing.stdout, "");
    assert_eq!(
        missing.stderr,
        format!(
            "error: DeploymentChannel \"nope\" in namespace {:?} does not exist\n",
            ctx.ns
        )
    );
    operator.stop().await;
}

async fn status_phone_configuration_not_ready(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    // E.164 in form, so admission accepts it, but no numbering plan assigns country code 999.
    ctx.must_apply(&phone("line", "+99912345678", &["VOICE"]))
        .await;
    ctx.must_apply(&phone_channel("CALLS", "hotline", "+12125551234", "line"))
        .await;
    ctx.wait_ready("hotline", "False", "PhoneConfigurationNotReady")
        .await;
    expect_text(
        &ctx,
        &["channel", "hotline"],
        &[&ctx.ns],
        r#"
DeploymentChannel NS/hotline
├─ Type CALLS
├─ Identifier +12125551234
├─ Ready False (PhoneConfigurationNotReady) for AGE
│ PhoneConfiguration "line" is not ready: spec.phoneNumber: +99912345678 is not a valid phone number: invalid country code
├─ Conditions
│ ├─ Ready False PhoneConfigurationNotReady AGE
│ ├─ Valid True Valid AGE
│ │ the spec is valid
│ └─ PhoneConfigurationResolved False PhoneConfigurationNotReady AGE
├─ PhoneConfiguration line
│ ├─ Number +99912345678
│ ├─ Provider test-provider
│ ├─ Capabilities VOICE
│ └─ Ready False (InvalidSpec) for AGE
│ spec.phoneNumber: +99912345678 is not a valid phone number: invalid country code
├─ Events none
└─ Next step: fix spec.phoneNumber (+99912345678 is not a valid phone number: invalid country code) of PhoneConfiguration "line"
"#,
    )
    .await;
    let json = json_report(&ctx, &["channel", "hotline"]).await;
    assert_eq!(json["ready"]["reason"], "PhoneConfigurationNotReady");
    assert_eq!(json["phoneConfiguration"]["ready"]["reason"], "InvalidSpec");
    assert_eq!(
        json["nextStep"],
        "fix spec.phoneNumber (+99912345678 is not a valid phone number: invalid country code) of PhoneConfiguration \"line\""
    );
    operator.stop().await;
}

async fn status_capability_missing(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&phone("line", "+12125551234", &["VOICE"]))
        .await;
    ctx.must_apply(&phone_channel("CALLS", "hotline", "+12125551234", "line"))
        .await;
    ctx.must_apply(&phone_channel("SMS", "texts", "+12125551234", "line"))
        .await;
    ctx.wait_ready("hotline", "True", "Ready").await;
    ctx.wait_ready("texts", "False", "CapabilityMissing").await;
    expect_text(
        &ctx,
        &["channel", "texts"],
        &[&ctx.ns],
        r#"
DeploymentChannel NS/texts
├─ Type SMS
├─ Identifier +12125551234
├─ Ready False (CapabilityMissing) for AGE
│ PhoneConfiguration "line" lacks the SMS capability that SMS channels need
├─ Conditions
│ ├─ Ready False CapabilityMissing AGE
│ ├─ Valid True Valid AGE
│ │ the spec is valid
│ └─ PhoneConfigurationResolved False CapabilityMissing AGE
├─ PhoneConfiguration line
│ ├─ Number +12125551234
│ ├─ Provider test-provider
│ ├─ Capabilities VOICE
│ └─ Ready True (Ready) for AGE
│ the phone configuration is ready
├─ Events none
└─ Next step: add the SMS capability to spec.capabilities of PhoneConfiguration "line", or point spec.configuration.phoneConfigurationId at one that has it
"#,
    )
    .await;
    let json = json_report(&ctx, &["channel", "texts"]).await;
    assert_eq!(json["ready"]["reason"], "CapabilityMissing");
    assert_eq!(json["phoneConfiguration"]["capabilities"], json!(["VOICE"]));
    // The PhoneConfiguration's own view lists both channels bound to it.
    expect_text(
        &ctx,
        &["phoneconfiguration", "line"],
        &[&ctx.ns],
        r#"
PhoneConfiguration NS/line
├─ Number +12125551234
├─ Provider test-provider
├─ Capabilities VOICE
├─ Ready True (Ready) for AGE
│ the phone configuration is ready
├─ Conditions
│ ├─ Ready True Ready AGE
│ └─ Valid True Valid AGE
│ the spec is valid
├─ Bound channels (2)
│ ├─ hotline CALLS +12125551234 True Ready
│ └─ texts SMS +12125551234 False CapabilityMissing
│ PhoneConfiguration "line" lacks the SMS capability that SMS channels need
└─ Next step: the PhoneConfiguration is ready; 1 bound channel is not: see its reason above
"#,
    )
    .await;
    let json = json_report(&ctx, &["phoneconfiguration", "line"]).await;
    assert_eq!(json["kind"], "PhoneConfiguration");
    assert_eq!(json["boundChannels"][1]["name"], "texts");
    assert_eq!(
        json["boundChannels"][1]["ready"]["reason"],
        "CapabilityMissing"
    );
    operator.stop().await;
}

async fn status_phone_number_mismatch(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&phone("line", "+12125559999", &["VOICE"]))
        .await;
    ctx.must_apply(&phone_channel("CALLS", "hotline", "+12125551234", "line"))
        .await;
    ctx.wait_ready("hotline", "False", "PhoneNumberMismatch")
        .await;
    expect_text(
        &ctx,
        &["channel", "hotline"],
        &[&ctx.ns],
        r#"
DeploymentChannel NS/hotline
├─ Type CALLS
├─ Identifier +12125551234
├─ Ready False (PhoneNumberMismatch) for AGE
│ PhoneConfiguration "line" has phone number +12125559999, but spec.channelIdentifier is +12125551234
├─ Conditions
│ ├─ Ready False PhoneNumberMismatch AGE
│ ├─ Valid True Valid AGE
│ │ the spec is valid
│ └─ PhoneConfigurationResolved False PhoneNumberMismatch AGE
├─ PhoneConfiguration line
│ ├─ Number +12125559999
│ ├─ Provider test-provider
│ ├─ Capabilities VOICE
│ └─ Ready True (Ready) for AGE
│ the phone configuration is ready
├─ Events none
└─ Next step: change spec.phoneNumber of PhoneConfiguration "line" to +12125551234, or this channel's spec.channelIdentifier to +12125559999
"#,
    )
    .await;
    let json = json_report(&ctx, &["channel", "hotline"]).await;
    assert_eq!(json["ready"]["reason"], "PhoneNumberMismatch");
    assert_eq!(json["phoneConfiguration"]["phoneNumber"], "+12125559999");
    operator.stop().await;
}

async fn status_identifier_conflict_in_the_namespace(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&web("site", "https://Example.com/")).await;
    ctx.wait_ready("site", "True", "Ready").await;
    ctx.must_apply(&web("site-copy", "https://example.com"))
        .await;
    ctx.wait_ready("site-copy", "False", "IdentifierConflict")
        .await;
    expect_text(
        &ctx,
        &["channel", "site-copy"],
        &[&ctx.ns],
        r#"
DeploymentChannel NS/site-copy
├─ Type WEB
├─ Identifier https://example.com
├─ Ready False (IdentifierConflict) for AGE
│ WEB channelIdentifier https://example.com is already claimed by DeploymentChannel "site", which is older; this channel becomes ready when that one is deleted or changed
├─ Conditions
│ ├─ Ready False IdentifierConflict AGE
│ └─ Valid True Valid AGE
│ the spec is valid
├─ Conflict WEB https://example.com is held by DeploymentChannel site in this namespace
├─ Events none
└─ Next step: delete DeploymentChannel "site" or change its spec.channelIdentifier, or give this channel another identifier; it becomes ready by itself once "site" lets go
"#,
    )
    .await;
    let json = json_report(&ctx, &["channel", "site-copy"]).await;
    assert_eq!(json["ready"]["reason"], "IdentifierConflict");
    assert_eq!(
        json["conflict"],
        json!({"identifier": "https://example.com", "holder": {"namespace": ctx.ns, "name": "site"}, "heldInAnotherNamespace": false})
    );
    // The holder's view names who waits for its identifier.
    let holder = json_report(&ctx, &["channel", "site"]).await;
    assert_eq!(
        holder["waiting"],
        json!([{"namespace": ctx.ns, "name": "site-copy"}])
    );
    operator.stop().await;
}

/// Adds `labelSelector=SELECTOR` to every list and watch of the operator's
/// kinds, so that an operator watching all namespaces sees only this
/// scenario's objects and leaves the other scenarios' alone.
fn only_labelled(selector: String) -> impl Fn(http::Request<Body>) -> http::Request<Body> + Clone {
    move |mut request| {
        let uri = request.uri().clone();
        let path = uri.path();
        if path.ends_with("/deploymentchannels") || path.ends_with("/phoneconfigurations") {
            let query = match uri.query() {
                Some(q) => format!("{q}&labelSelector={selector}"),
                None => format!("labelSelector={selector}"),
            };
            *request.uri_mut() = format!("{path}?{query}").parse().expect("a URI");
        }
        request
    }
}

fn labelled(mut manifest: Value, label: &str) -> Value {
    manifest["metadata"]["labels"] = json!({"status-e2e": label});
    manifest
}

async fn status_identifier_conflict_across_namespaces(ctx: Ctx) {
    // Two namespaces, one operator watching all of them (as in production),
    // restricted by label to this scenario's objects.
    let other = format!("{}-b", ctx.ns);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": other}})).unwrap(),
        )
        .await
        .expect("a second namespace");
    let label = ctx.ns.clone();
    let client = kube::client::ClientBuilder::try_from(ctx.env.config().await)
        .expect("client")
        .with_layer(&tower::util::MapRequestLayer::new(only_labelled(format!(
            "status-e2e%3D{label}"
        ))))
        .build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = std::sync::Arc::new(Metrics::default());
    let readiness = std::sync::Arc::new(
        deploymentchannel_operator::operator::replica_readiness::ReplicaReadiness::new(
            metrics.caches_synced.clone(),
        ),
    );
    let operator = tokio::spawn(controller::run(
        client,
        Settings::default(),
        metrics,
        readiness,
        async move {
            let _ = stopped.await;
        },
    ));
    let other_channels: Api<deploymentchannel_operator::core::api::DeploymentChannel> =
        Api::namespaced(ctx.client.clone(), &other);
    let app = |name: &str| {
        labelled(
            channel(
                name,
                json!({"deploymentType": "MOBILE", "channelIdentifier": "com.example.app",
                       "configuration": {"packageName": "com.example.app", "platform": "ANDROID"}}),
            ),
            &label,
        )
    };
    ctx.must_apply(&app("app")).await;
    ctx.wait_ready("app", "True", "Ready").await;
    other_channels
        .patch(
            "app",
            &kube::api::PatchParams::apply("e2e-user").force(),
            &kube::api::Patch::Apply(&app("app")),
        )
        .await
        .expect("the second channel is accepted");
    let in_other = Ctx {
        ns: other.clone(),
        ..ctx.clone()
    };
    in_other
        .wait_ready("app", "False", "IdentifierConflict")
        .await;
    expect_text(
        &in_other,
        &["channel", "app"],
        &[&ctx.ns, &other],
        r#"
DeploymentChannel NS2/app
├─ Type MOBILE
├─ Identifier com.example.app
├─ Ready False (IdentifierConflict) for AGE
│ MOBILE channelIdentifier com.example.app is already claimed by a DeploymentChannel in another namespace, which is older; this channel becomes ready when that one is deleted or changed
├─ Conditions
│ ├─ Ready False IdentifierConflict AGE
│ └─ Valid True Valid AGE
│ the spec is valid
├─ Conflict MOBILE com.example.app is held by a DeploymentChannel in another namespace
├─ Events none
└─ Next step: the holder is a DeploymentChannel in another namespace: ask its owners to delete or change it, or give this channel another spec.channelIdentifier
"#,
    )
    .await;
    let json = json_report(&in_other, &["channel", "app"]).await;
    assert_eq!(json["ready"]["reason"], "IdentifierConflict");
    assert_eq!(
        json["conflict"],
        json!({"identifier": "com.example.app", "holder": null, "heldInAnotherNamespace": true})
    );
    let _ = other_channels
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator)
        .await
        .expect("the operator stops within 30s")
        .expect("the operator task does not panic");
}

async fn status_invalid_spec(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    // E.164 in form, so admission accepts it, but no numbering plan assigns country code 999.
    ctx.must_apply(&phone_channel("CALLS", "nowhere", "+99912345678", "line"))
        .await;
    ctx.wait_ready("nowhere", "False", "InvalidSpec").await;
    expect_text(
        &ctx,
        &["channel", "nowhere"],
        &[&ctx.ns],
        r#"
DeploymentChannel NS/nowhere
├─ Type CALLS
├─ Identifier +99912345678
├─ Ready False (InvalidSpec) for AGE
│ spec.channelIdentifier: +99912345678 is not a valid phone number: invalid country code
├─ Conditions
│ ├─ Ready False InvalidSpec AGE
│ ├─ Valid False InvalidSpec AGE
│ └─ Stalled True InvalidSpec AGE
├─ PhoneConfiguration line
│ └─ not found in namespace NS
├─ Events none
└─ Next step: fix spec.channelIdentifier (+99912345678 is not a valid phone number: invalid country code), then apply the channel again
"#,
    )
    .await;
    let json = json_report(&ctx, &["channel", "nowhere"]).await;
    assert_eq!(json["ready"]["reason"], "InvalidSpec");
    assert_eq!(json["conditions"][2]["type"], "Stalled");
    assert_eq!(
        json["nextStep"],
        "fix spec.channelIdentifier (+99912345678 is not a valid phone number: invalid country code), then apply the channel again"
    );
    operator.stop().await;
}

/// PATH with the directory of the built plugin first.
fn path_with_plugin() -> String {
    let dir = Path::new(PLUGIN).parent().expect("the plugin's directory");
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths)
        .expect("a PATH")
        .into_string()
        .expect("a UTF-8 PATH")
}

async fn status_plugin_is_found_by_kubectl_and_prints_the_same(ctx: Ctx) {
    let kubectl = ctx.env.kubectl.display().to_string();
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&phone("line", "+12125551234", &["VOICE"]))
        .await;
    ctx.must_apply(&phone_channel("CALLS", "hotline", "+12125551234", "line"))
        .await;
    ctx.must_apply(&phone_channel("SMS", "texts", "+12125551234", "line"))
        .await;
    ctx.must_apply(&web("site", "https://example.com")).await;
    ctx.wait_ready("hotline", "True", "Ready").await;
    ctx.wait_ready("site", "True", "Ready").await;
    ctx.wait_ready("texts", "False", "CapabilityMissing").await;
    // PhoneConfiguration statuses are written a moment after channel changes settle.
    ctx.eventually(
        "PhoneConfiguration line to be Ready",
        Duration::from_secs(30),
        || async {
            let pc = ctx.phones().get("line").await.ok()?;
            let ready = pc
                .status?
                .conditions
                .into_iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(())
        },
    )
    .await;

    let listed = run(
        kubectl.clone(),
        vec!["plugin".into(), "list".into()],
        Some(path_with_plugin()),
    )
    .await;
    assert!(
        listed.stdout.lines().any(|l| l.trim() == PLUGIN),
        "kubectl plugin list does not show {PLUGIN}:\n{}{}",
        listed.stdout,
        listed.stderr
    );

    let kubeconfig = ctx.env.kubeconfig.display().to_string();
    for args in [
        vec!["channel", "texts", "-o", "json"],
        vec!["phoneconfiguration", "line", "-o", "json"],
        vec!["-o", "json"],
        vec!["channel", "texts"],
        vec![],
    ] {
        let mut plugin_args: Vec<String> = ["interactions", "status"]
            .iter()
            .chain(&args)
            .map(|s| s.to_string())
            .collect();
        plugin_args.extend([
            "-n".into(),
            ctx.ns.clone(),
            "--kubeconfig".into(),
            kubeconfig.clone(),
        ]);
        let via_kubectl = run(kubectl.clone(), plugin_args, Some(path_with_plugin())).await;
        assert_eq!(
            via_kubectl.code,
            Some(0),
            "kubectl interactions status {args:?}: {}",
            via_kubectl.stderr
        );
        let direct = report(&ctx, &args).await;
        if args.contains(&"json") {
            assert_eq!(via_kubectl.stdout, direct, "status {args:?}");
        } else {
            // Ages may tick over between the two runs.
            assert_eq!(
                normalize(&via_kubectl.stdout, &[&ctx.ns]),
                normalize(&direct, &[&ctx.ns]),
                "status {args:?}"
            );
        }
    }
    // Not on a terminal: no colour.
    assert!(!report(&ctx, &["channel", "texts"]).await.contains('\x1b'));
    expect_text(
        &ctx,
        &[],
        &[&ctx.ns],
        r#"
Namespace NS: 3 channels, 2 ready, 1 not ready
├─ By type
│ ├─ CALLS 1 1 ready, 0 not ready
│ ├─ SMS 1 0 ready, 1 not ready
│ └─ WEB 1 1 ready, 0 not ready
├─ Not ready, by reason
│ └─ CapabilityMissing (1)
│ └─ texts SMS for AGE PhoneConfiguration "line" lacks the SMS capability that SMS channels need
└─ PhoneConfigurations: 1, 1 ready, 0 not ready
"#,
    )
    .await;
    let summary = json_report(&ctx, &[]).await;
    assert_eq!(summary["namespace"], ctx.ns.as_str());
    assert_eq!(
        summary["channels"],
        json!({"total": 3, "ready": 2, "notReady": 1, "pending": 0})
    );
    assert_eq!(summary["notReady"][0]["reason"], "CapabilityMissing");
    assert_eq!(summary["notReady"][0]["channels"][0]["name"], "texts");
    operator.stop().await;
}

/// A user who may read channels and Events in the scenario's namespace,
/// but not PhoneConfigurations.
const READER: &str = "status-reader";

async fn status_user_without_phone_configuration_rights(ctx: Ctx) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&phone("line", "+12125551234", &["SMS"]))
        .await;
    ctx.must_apply(&phone_channel("SMS", "texts", "+12125551234", "line"))
        .await;
    ctx.wait_ready("texts", "True", "Ready").await;

    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": READER},
        "rules": [
            {"apiGroups": ["interactions.dev"], "resources": ["deploymentchannels"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}
        ]
    }))
    .unwrap();
    Api::<Role>::namespaced(ctx.client.clone(), &ctx.ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("the Role is created");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": READER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": READER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": READER}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(ctx.client.clone(), &ctx.ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("the RoleBinding is created");

    // The same cluster and credentials, impersonating the reader, in a
    // second context of a kubeconfig of its own.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut config: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&ctx.env.kubeconfig).unwrap()).unwrap();
    let mut user = config["users"][0].clone();
    user["name"] = json!("reader");
    user["user"]["as"] = json!(READER);
    config["users"].as_array_mut().unwrap().push(user);
    let cluster = config["contexts"][0]["context"]["cluster"].clone();
    config["contexts"].as_array_mut().unwrap().push(
        json!({"name": "reader", "context": {"cluster": cluster, "user": "reader", "namespace": ctx.ns}}),
    );
    std::fs::write(&kubeconfig, serde_json::to_string(&config).unwrap()).unwrap();
    let as_reader = |args: &[&str]| {
        let mut all: Vec<String> = ["status"]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect();
        all.extend([
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--context".into(),
            "reader".into(),
        ]);
        run(BIN.to_string(), all, None)
    };

    // RBAC takes a moment to apply.
    ctx.eventually(
        "the reader's Role to take effect",
        Duration::from_secs(30),
        || async { (as_reader(&["-o", "json"]).await.code == Some(0)).then_some(()) },
    )
    .await;

    let channel_view = as_reader(&["channel", "texts"]).await;
    assert_eq!(channel_view.code, Some(0), "{}", channel_view.stderr);
    let forbidden_get = format!(
        "you may not get PhoneConfiguration \"line\" in namespace {:?}: ask for get access to phoneconfigurations.interactions.dev in namespace {:?} (the API server said: phoneconfigurations.interactions.dev \"line\" is forbidden: User \"{READER}\" cannot get resource \"phoneconfigurations\" in API group \"interactions.dev\" in the namespace \"{}\")",
        ctx.ns, ctx.ns, ctx.ns
    );
    assert_eq!(
        normalize(&channel_view.stdout, &[&ctx.ns]),
        normalize(
            format!(
                r#"
DeploymentChannel {ns}/texts
├─ Type SMS
├─ Identifier +12125551234
├─ Ready True (Ready) for 1s
│ the channel is ready
├─ Conditions
│ ├─ Ready True Ready 1s
│ ├─ Valid True Valid 1s
│ │ the spec is valid
│ └─ PhoneConfigurationResolved True Resolved 1s
│ using PhoneConfiguration "line" (+12125551234)
├─ PhoneConfiguration line
│ └─ not readable (see below)
├─ Events none
├─ Not readable
│ └─ {forbidden_get}
└─ Next step: nothing to do: the channel is ready"#,
                ns = ctx.ns
            )
            .trim_start(),
            &[&ctx.ns]
        )
    );

    let pc_view = as_reader(&["phoneconfiguration", "line"]).await;
    assert_eq!(pc_view.code, Some(1));
    assert_eq!(pc_view.stdout, "");
    assert_eq!(pc_view.stderr, format!("error: {forbidden_get}\n"));

    let summary = as_reader(&[]).await;
    assert_eq!(summary.code, Some(0), "{}", summary.stderr);
    assert!(
        summary.stdout.ends_with(&format!(
            "├─ PhoneConfigurations: not readable (see below)\n└─ Not readable\n   └─ you may not list PhoneConfigurations in namespace {ns:?}: ask for list access to phoneconfigurations.interactions.dev in namespace {ns:?} (the API server said: phoneconfigurations.interactions.dev is forbidden: User \"{READER}\" cannot list resource \"phoneconfigurations\" in API group \"interactions.dev\" in the namespace \"{ns}\")\n",
            ns = ctx.ns
        )),
        "{}",
        summary.stdout
    );
    operator.stop().await;
}
