//! `validate` agrees with the API server and the controller on the same manifests.

use std::{collections::BTreeSet, time::Duration};

use deploymentchannel_operator::commands::validate;

use crate::{
    scenarios,
    support::{Ctx, Operator, Scenario},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![validate_agrees_with_the_api_server_and_the_controller]
}

async fn validate_agrees_with_the_api_server_and_the_controller(ctx: Ctx) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/manifests");
    let (documents, unreadable) = validate::load(&[dir.into()]);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let report = validate::check(&documents, validate::Options::default());
    let invalid: BTreeSet<String> = report
        .problems
        .iter()
        .map(|p| format!("{}/{}", p.kind, p.name))
        .collect();
    assert!(
        !invalid.is_empty() && invalid.len() < report.checked,
        "the data set needs valid and invalid objects"
    );

    let operator = Operator::start(&ctx).await;
    let mut verdicts = Vec::new();
    for document in &documents {
        let kind = document.value["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "DeploymentChannel" | "PhoneConfiguration") {
            continue;
        }
        let name = document.value["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let accepted = match ctx.apply(&document.value).await {
            Ok(()) => true,
            Err(kube::Error::Api(status)) if status.code == 422 => false,
            Err(e) => panic!("{kind}/{name}: {e}"),
        };
        verdicts.push((format!("{kind}/{name}"), accepted));
    }
    for (object, accepted) in verdicts {
        let (kind, name) = object.split_once('/').unwrap();
        let ready = if !accepted {
            false
        } else {
            // The controller's verdict: Ready at the current generation.
            ctx.eventually(
                &format!("a status for {object}"),
                Duration::from_secs(30),
                || async {
                    let (generation, status) = if kind == "DeploymentChannel" {
                        let c = ctx.channels().get(name).await.ok()?;
                        let s = c.status?;
                        (c.metadata.generation, (s.observed_generation, s.conditions))
                    } else {
                        let p = ctx.phones().get(name).await.ok()?;
                        let s = p.status?;
                        (p.metadata.generation, (s.observed_generation, s.conditions))
                    };
                    (status.0 == generation).then(|| {
                        status
                            .1
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
                },
            )
            .await
        };
        let valid = !invalid.contains(&object);
        assert_eq!(
            valid,
            ready,
            "{object}: validate says {}, the cluster says {} ({})",
            if valid { "valid" } else { "invalid" },
            if ready { "Ready" } else { "not Ready" },
            if accepted {
                "accepted"
            } else {
                "refused at admission"
            }
        );
    }
    operator.stop().await;
}
