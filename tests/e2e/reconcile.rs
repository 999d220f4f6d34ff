//! The operator on a real API server: readiness, references, healing,
//! conflicts, Events, and no writes once converged or after a restart.

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};

use crate::{
    scenarios,
    support::{Ctx, Operator, Scenario, channel, condition, phone, web},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![
        web_and_mobile_channels_become_ready,
        calls_channel_waits_for_its_phone_configuration,
        phone_configuration_fixes_heal_channels,
        semantically_invalid_channel_is_stalled,
        identifier_conflict_hands_over_on_delete,
        converged_operator_writes_nothing_even_after_restart,
    ]
}

fn mobile(name: &str, app: &str) -> Value {
    channel(
        name,
        json!({"deploymentType": "MOBILE", "channelIdentifier": app,
                         "configuration": {"packageName": app, "platform": "IOS"}}),
    )
}

fn calls(name: &str, number: &str, phone_configuration: &str) -> Value {
    channel(
        name,
        json!({"deploymentType": "CALLS", "channelIdentifier": number,
                         "configuration": {"phoneConfigurationId": phone_configuration}}),
    )
}

fn sms(name: &str, number: &str, phone_configuration: &str) -> Value {
    channel(
        name,
        json!({"deploymentType": "SMS", "channelIdentifier": number,
                         "configuration": {"phoneConfigurationId": phone_configuration}}),
    )
}

async fn web_and_mobile_channels_become_ready(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    let started = Instant::now();
    ctx.must_apply(&web("site", "https://example.com")).await;
    ctx.must_apply(&mobile("app", "com.example.app")).await;
    for name in ["site", "app"] {
        let ready = ctx.wait_ready(name, "True", "Ready").await;
        let status = ready.status.as_ref().unwrap();
        assert_eq!(status.observed_generation, ready.metadata.generation);
        assert_eq!(condition(&ready, "Valid").unwrap().status, "True");
        assert!(condition(&ready, "Stalled").is_none());
        assert!(condition(&ready, "PhoneConfigurationResolved").is_none());
    }
    println!(
        "WEB and MOBILE channels Ready {:?} after apply",
        started.elapsed()
    );
    // kubectl wait reads the same condition.
    let out = ctx.env.kubectl(
        &[
            "wait",
            "-n",
            &ctx.ns,
            "--for=condition=Ready",
            "--timeout=30s",
            "dchan/site",
            "dchan/app",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "kubectl wait failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // kubectl get shows the columns.
    let out = ctx.env.kubectl(&["get", "dchan", "-n", &ctx.ns], None);
    let text = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "TYPE", "IDENTIFIER", "READY", "REASON", "AGE"],
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("site")
            && l.contains("WEB")
            && l.contains("https://example.com")
            && l.contains("True")),
        "{text}"
    );
    operator.stop().await;
}

async fn calls_channel_waits_for_its_phone_configuration(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&calls("support", "+12125551234", "phone-xyz789"))
        .await;
    let waiting = ctx
        .wait_ready("support", "False", "PhoneConfigurationNotFound")
        .await;
    assert!(
        condition(&waiting, "Stalled").is_none(),
        "a missing PhoneConfiguration must not stall the channel"
    );
    assert_eq!(
        condition(&waiting, "PhoneConfigurationResolved")
            .unwrap()
            .reason,
        "PhoneConfigurationNotFound"
    );
    assert!(
        condition(&waiting, "Ready")
            .unwrap()
            .message
            .contains("phone-xyz789")
    );
    let generation = waiting.metadata.generation;

    ctx.must_apply(&phone("phone-xyz789", "+12125551234", &["VOICE"]))
        .await;
    let ready = ctx.wait_ready("support", "True", "Ready").await;
    assert_eq!(
        ready.metadata.generation, generation,
        "the channel's spec was not touched"
    );
    let reference = ready
        .status
        .as_ref()
        .unwrap()
        .phone_configuration
        .clone()
        .expect("status.phoneConfiguration");
    let pc = ctx.phones().get("phone-xyz789").await.unwrap();
    assert_eq!(reference.name, "phone-xyz789");
    assert_eq!(Some(reference.uid), pc.metadata.uid);
    assert_eq!(reference.phone_number, "+12125551234");
    let bound = ctx
        .eventually("boundChannels=1", Duration::from_secs(30), || async {
            let pc = ctx.phones().get("phone-xyz789").await.ok()?;
            let status = pc.status?;
            (status.bound_channels == 1 && status.observed_generation == pc.metadata.generation)
                .then_some(status)
        })
        .await;
    assert!(
        bound
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    // Deleting the PhoneConfiguration sends the channel back to waiting.
    ctx.phones()
        .delete("phone-xyz789", &DeleteParams::default())
        .await
        .unwrap();
    ctx.wait_ready("support", "False", "PhoneConfigurationNotFound")
        .await;
    operator.stop().await;
}

async fn phone_configuration_fixes_heal_channels(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&phone("line", "+12125551234", &["SMS"]))
        .await;
    ctx.must_apply(&calls("voice", "+12125551234", "line"))
        .await;
    ctx.must_apply(&sms("text", "+12125551234", "line")).await;
    ctx.wait_ready("text", "True", "Ready").await;
    let missing = ctx.wait_ready("voice", "False", "CapabilityMissing").await;
    assert!(
        condition(&missing, "Ready")
            .unwrap()
            .message
            .contains("VOICE")
    );

    ctx.must_apply(&phone("line", "+12125551234", &["SMS", "VOICE"]))
        .await;
    ctx.wait_ready("voice", "True", "Ready").await;

    ctx.must_apply(&phone("line", "+12125550000", &["SMS", "VOICE"]))
        .await;
    let mismatch = ctx
        .wait_ready("voice", "False", "PhoneNumberMismatch")
        .await;
    assert!(
        condition(&mismatch, "Ready")
            .unwrap()
            .message
            .contains("+12125550000")
    );
    ctx.wait_ready("text", "False", "PhoneNumberMismatch").await;

    ctx.must_apply(&phone("line", "+12125551234", &["SMS", "VOICE"]))
        .await;
    ctx.wait_ready("voice", "True", "Ready").await;
    ctx.wait_ready("text", "True", "Ready").await;

    // Events: one NotReady per lost readiness and one Ready per recovery, none for a first Ready.
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let counted = ctx
        .eventually(
            "the Events of the voice channel",
            Duration::from_secs(30),
            || async {
                let list = events.list(&ListParams::default()).await.ok()?;
                let of = |name: &str, reason: &str| {
                    list.items
                        .iter()
                        .filter(|e| {
                            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                                && e.reason.as_deref() == Some(reason)
                        })
                        // A repeated Event is recorded once, as a series with a count.
                        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                        .sum::<i32>()
                };
                let counts = (
                    of("voice", "NotReady"),
                    of("voice", "Ready"),
                    of("text", "NotReady"),
                    of("text", "Ready"),
                );
                // voice: False → True (Ready), True → False (NotReady), False → True (Ready); text: lost once, recovered once.
                (counts == (1, 2, 1, 1)).then_some(counts)
            },
        )
        .await;
    println!("events (voice NotReady, voice Ready, text NotReady, text Ready): {counted:?}");
    operator.stop().await;
}

async fn semantically_invalid_channel_is_stalled(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    // E.164 in form, so admission accepts it, but no numbering plan assigns country code 999.
    ctx.must_apply(&calls("nowhere", "+99912345678", "line"))
        .await;
    let stalled = ctx.wait_ready("nowhere", "False", "InvalidSpec").await;
    let valid = condition(&stalled, "Valid").unwrap();
    assert_eq!(valid.status, "False");
    assert!(
        valid.message.starts_with("spec.channelIdentifier: "),
        "{}",
        valid.message
    );
    let stalled_condition = condition(&stalled, "Stalled").expect("Stalled condition");
    assert_eq!(stalled_condition.status, "True");
    // Fixing the spec heals it (and clears Stalled).
    ctx.must_apply(&web("nowhere-web", "https://example.com"))
        .await;
    ctx.must_apply(&phone("line", "+12125551234", &["VOICE"]))
        .await;
    ctx.must_apply(&calls("nowhere", "+12125551234", "line"))
        .await;
    let fixed = ctx.wait_ready("nowhere", "True", "Ready").await;
    assert!(condition(&fixed, "Stalled").is_none());
    operator.stop().await;
}

async fn identifier_conflict_hands_over_on_delete(ctx: Ctx) {
    let operator = Operator::start(&ctx).await;
    ctx.must_apply(&phone("line", "+12125551234", &["VOICE"]))
        .await;
    // Names order the two as creation time does, should both land in the same second.
    ctx.must_apply(&calls("a-older", "+12125551234", "line"))
        .await;
    ctx.wait_ready("a-older", "True", "Ready").await;
    ctx.must_apply(&calls("b-newer", "+12125551234", "line"))
        .await;
    let loser = ctx
        .wait_ready("b-newer", "False", "IdentifierConflict")
        .await;
    assert!(
        condition(&loser, "Ready")
            .unwrap()
            .message
            .contains("\"a-older\"")
    );
    assert!(condition(&loser, "Stalled").is_none());
    // URLs conflict in normal form too.
    ctx.must_apply(&web("site-1", "https://Example.com/")).await;
    ctx.wait_ready("site-1", "True", "Ready").await;
    ctx.must_apply(&web("site-2", "https://example.com")).await;
    ctx.wait_ready("site-2", "False", "IdentifierConflict")
        .await;

    ctx.channels()
        .delete("a-older", &DeleteParams::default())
        .await
        .unwrap();
    ctx.wait_ready("b-newer", "True", "Ready").await;
    ctx.channels()
        .delete("site-1", &DeleteParams::default())
        .await
        .unwrap();
    ctx.wait_ready("site-2", "True", "Ready").await;
    operator.stop().await;
}

async fn converged_operator_writes_nothing_even_after_restart(ctx: Ctx) {
    let manifests = [
        phone("line", "+12125551234", &["VOICE", "SMS"]),
        calls("voice", "+12125551234", "line"),
        sms("text", "+12125551234", "line"),
        web("site", "https://example.com"),
        mobile("app", "com.example.app"),
        calls("voice-dup", "+12125551234", "line"),
        calls("invalid", "+99912345678", "line"),
    ];
    for manifest in &manifests {
        ctx.must_apply(manifest).await;
    }
    let operator = Operator::start(&ctx).await;
    for (name, status, reason) in [
        ("voice", "True", "Ready"),
        ("text", "True", "Ready"),
        ("site", "True", "Ready"),
        ("app", "True", "Ready"),
        ("invalid", "False", "InvalidSpec"),
    ] {
        ctx.wait_ready(name, status, reason).await;
    }
    // "voice-dup" was applied after "voice"; should both share a second, the name decides.
    ctx.wait_ready("voice-dup", "False", "IdentifierConflict")
        .await;
    ctx.eventually("boundChannels=4", Duration::from_secs(30), || async {
        let status = ctx.phones().get("line").await.ok()?.status?;
        (status.bound_channels == 4).then_some(())
    })
    .await;
    // Each channel's write comes back as a watch event, which the operator
    // recognises as its own (no reconcile, no record left); a
    // PhoneConfiguration's own status write starts no reconcile either.
    let objects = manifests.len() as u64;
    ctx.eventually(
        "the operator seeing its own writes",
        Duration::from_secs(30),
        || async {
            (operator.reconciles("written") >= objects
                && operator.table_entries("channel_status_writes") == 0)
                .then_some(())
        },
    )
    .await;
    let writes = operator.requests.status_writes();
    println!(
        "first run: {writes} status writes for {objects} objects; requests {:?}",
        operator.requests.snapshot()
    );
    assert_eq!(
        writes,
        objects,
        "one status write per object: {:?}",
        operator.requests.snapshot()
    );
    assert_eq!(
        operator.requests.writes(),
        objects,
        "only status writes (no Events for first readiness)"
    );
    operator.stop().await;

    // A restarted operator reconciles everything again and writes nothing.
    let restarted = Operator::start(&ctx).await;
    ctx.eventually(
        "the restarted operator reconciling every object",
        Duration::from_secs(30),
        || async { (restarted.reconciles("unchanged") >= objects).then_some(()) },
    )
    .await;
    assert_eq!(
        restarted.requests.writes(),
        0,
        "restart wrote: {:?}",
        restarted.requests.snapshot()
    );
    assert_eq!(restarted.reconciles("written"), 0);
    restarted.stop().await;
}
