//! Status that never goes stale: a PhoneConfiguration's status follows its
//! spec while channels churn, and someone else's edit of either kind's
//! status is put right.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::{
    scenarios,
    support::{Ctx, Operator, Scenario, channel, phone},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![
        edited_phone_configuration_gets_its_status_under_channel_churn,
        foreign_status_edits_are_put_right,
        a_status_write_computed_for_a_re_created_object_is_refused,
    ]
}

fn calls(name: &str, number: &str, phone_configuration: &str) -> Value {
    channel(
        name,
        json!({"deploymentType": "CALLS", "channelIdentifier": number,
               "configuration": {"phoneConfigurationId": phone_configuration}}),
    )
}

/// Waits until the PhoneConfiguration's status describes its current spec
/// with `bound` channels.
/// An operator with PhoneConfiguration `line` and its CALLS channel
/// `support` converged: the channel Ready, `line` bound to it.
async fn converged_line(ctx: &Ctx) -> Operator {
    let operator = Operator::start(ctx).await;
    ctx.must_apply(&phone("line", "+12125551234", &["VOICE"]))
        .await;
    ctx.must_apply(&calls("support", "+12125551234", "line"))
        .await;
    ctx.wait_ready("support", "True", "Ready").await;
    wait_phone_status(ctx, "line", 1, Duration::from_secs(30)).await;
    operator
}

async fn wait_phone_status(ctx: &Ctx, name: &str, bound: i64, within: Duration) {
    ctx.eventually(
        &format!("{name}: status at its generation with boundChannels {bound}"),
        within,
        || async {
            let pc = ctx.phones().get(name).await.ok()?;
            let status = pc.status.as_ref()?;
            (status.observed_generation == pc.metadata.generation
                && i64::from(status.bound_channels) == bound)
                .then_some(())
        },
    )
    .await;
}

/// One channel annotated every 300 ms while the PhoneConfiguration it
/// references gets a new spec: the status follows the spec within seconds,
/// not when the churn stops (nor after `--bound-channels-refresh-seconds`).
async fn edited_phone_configuration_gets_its_status_under_channel_churn(ctx: Ctx) {
    let operator = converged_line(&ctx).await;

    let churn = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let patch = json!({"metadata": {"annotations": {"churn": i.to_string()}}});
                let _ = ctx
                    .channels()
                    .patch("support", &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    ctx.eventually(
        "the churn to be under way",
        Duration::from_secs(30),
        || async {
            let support = ctx.channels().get("support").await.ok()?;
            let edits: u64 = support.metadata.annotations?.get("churn")?.parse().ok()?;
            (edits >= 3).then_some(())
        },
    )
    .await;
    ctx.must_apply(&phone("line", "+12125551234", &["VOICE", "SMS"]))
        .await;
    wait_phone_status(&ctx, "line", 1, Duration::from_secs(10)).await;
    // A new reference, too, while the churn goes on.
    ctx.must_apply(&calls("sales", "+12125551234", "line"))
        .await;
    wait_phone_status(&ctx, "line", 2, Duration::from_secs(10)).await;
    churn.abort();
    operator.stop().await;
}

/// `boundChannels` of a PhoneConfiguration and the Ready condition of a
/// channel, edited by someone else through the status subresource, are
/// written back within seconds.
async fn foreign_status_edits_are_put_right(ctx: Ctx) {
    let operator = converged_line(&ctx).await;

    let status = PatchParams::default();
    ctx.phones()
        .patch_status(
            "line",
            &status,
            &Patch::Merge(json!({"status": {"boundChannels": 99}})),
        )
        .await
        .unwrap();
    wait_phone_status(&ctx, "line", 1, Duration::from_secs(10)).await;

    let mut edited = ctx.channels().get_status("support").await.unwrap();
    let conditions = &mut edited.status.as_mut().unwrap().conditions;
    let ready = conditions.iter_mut().find(|c| c.type_ == "Ready").unwrap();
    ready.status = "False".into();
    ready.reason = "Edited".into();
    let conditions = serde_json::to_value(&edited.status.as_ref().unwrap().conditions).unwrap();
    ctx.channels()
        .patch_status(
            "support",
            &status,
            &Patch::Merge(json!({"status": {"conditions": conditions}})),
        )
        .await
        .unwrap();
    ctx.wait_ready("support", "True", "Ready").await;
    operator.stop().await;
}

/// The precondition the operator's status writes carry: an apply to the
/// status of a channel re-created under the same name, holding to the
/// resourceVersion the status was computed from, is refused (409) as the
/// operator expects, and the new object keeps its status. (The status
/// subresource ignores a uid in the body: the resourceVersion is what holds.)
async fn a_status_write_computed_for_a_re_created_object_is_refused(ctx: Ctx) {
    ctx.must_apply(&calls("support", "+12125551234", "line"))
        .await;
    let old = ctx.channels().get("support").await.unwrap();
    ctx.channels()
        .delete("support", &Default::default())
        .await
        .unwrap();
    ctx.must_apply(&calls("support", "+12125551234", "line"))
        .await;
    let patch = json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel",
        "metadata": {"resourceVersion": old.metadata.resource_version},
        "status": {"observedGeneration": 7}});
    let refused = ctx
        .channels()
        .patch_status(
            "support",
            &PatchParams::apply("deploymentchannel-operator").force(),
            &Patch::Apply(&patch),
        )
        .await;
    match refused {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("the write was not refused: {other:?}"),
    }
    let status = ctx.channels().get_status("support").await.unwrap().status;
    assert!(status.is_none_or(|s| s.observed_generation != Some(7)));
}
