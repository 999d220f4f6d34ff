//! The generated CRDs on a real API server: accepted, not pruned, defaulted,
//! and refusing bad manifests at apply time with messages naming the field.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    scenarios,
    support::{Ctx, Scenario, channel, phone},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![
        readme_examples_are_accepted_unpruned_and_defaulted,
        bad_manifests_are_refused_naming_the_field,
        deployment_type_cannot_change,
        kubectl_explain_describes_every_spec_field,
        kubectl_apply_refuses_a_bad_manifest,
    ]
}

/// The DeploymentChannel and PhoneConfiguration documents of README.md's YAML blocks.
pub fn readme_manifests() -> Vec<Value> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut manifests = Vec::new();
    for block in readme.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        for doc in block.split("\n---\n") {
            let Ok(value) = serde_saphyr::from_str::<Value>(doc) else {
                continue;
            };
            if matches!(
                value["kind"].as_str(),
                Some("DeploymentChannel" | "PhoneConfiguration")
            ) {
                manifests.push(value);
            }
        }
    }
    manifests
}

async fn readme_examples_are_accepted_unpruned_and_defaulted(ctx: Ctx) {
    let manifests = readme_manifests();
    let kinds: Vec<&str> = manifests
        .iter()
        .filter_map(|m| m["spec"]["deploymentType"].as_str())
        .collect();
    for kind in ["CALLS", "SMS", "WEB", "MOBILE"] {
        assert!(kinds.contains(&kind), "README.md has no {kind} example");
    }
    for manifest in &manifests {
        let mut manifest = manifest.clone();
        manifest["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
        ctx.must_apply(&manifest).await;
        let name = manifest["metadata"]["name"].as_str().unwrap();
        let stored = match manifest["kind"].as_str() {
            Some("DeploymentChannel") => {
                serde_json::to_value(ctx.channels().get(name).await.unwrap()).unwrap()
            }
            _ => serde_json::to_value(ctx.phones().get(name).await.unwrap()).unwrap(),
        };
        let mut expected = manifest["spec"].clone();
        if manifest["kind"] == "DeploymentChannel" && expected.get("recordingEnabled").is_none() {
            expected["recordingEnabled"] = json!(true);
        }
        assert_eq!(
            stored["spec"], expected,
            "{name} was stored with a different spec (pruned or not defaulted)"
        );
    }
}

async fn bad_manifests_are_refused_naming_the_field(ctx: Ctx) {
    let calls = |config: Value, id: &str| {
        channel(
            "bad",
            json!({"deploymentType": "CALLS", "channelIdentifier": id, "configuration": config}),
        )
    };
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "CALLS without phoneConfigurationId",
            calls(json!({}), "+12125551234"),
            &[
                "spec.configuration.phoneConfigurationId",
                "is required when deploymentType is CALLS or SMS",
            ],
        ),
        (
            "CALLS identifier without +",
            calls(json!({"phoneConfigurationId": "p"}), "2125551234"),
            &["spec.channelIdentifier", "E.164"],
        ),
        (
            "WEB with phoneConfigurationId",
            channel(
                "bad",
                json!({"deploymentType": "WEB", "channelIdentifier": "https://example.com", "configuration": {"phoneConfigurationId": "p"}}),
            ),
            &[
                "spec.configuration.phoneConfigurationId",
                "only allowed when deploymentType is CALLS or SMS",
            ],
        ),
        (
            "WEB on ftp://",
            channel(
                "bad",
                json!({"deploymentType": "WEB", "channelIdentifier": "ftp://example.com", "configuration": {}}),
            ),
            &["spec.channelIdentifier", "http:// or https:// URL"],
        ),
        (
            "MOBILE without platform",
            channel(
                "bad",
                json!({"deploymentType": "MOBILE", "channelIdentifier": "com.example.app", "configuration": {"packageName": "com.example.app"}}),
            ),
            &[
                "spec.configuration.platform",
                "is required when deploymentType is MOBILE",
            ],
        ),
        (
            "unknown deploymentType",
            channel(
                "bad",
                json!({"deploymentType": "FAX", "channelIdentifier": "+12125551234", "configuration": {}}),
            ),
            &["spec.deploymentType", "FAX"],
        ),
        (
            "underscore in phoneConfigurationId",
            calls(
                json!({"phoneConfigurationId": "phone_xyz789"}),
                "+12125551234",
            ),
            &[
                "spec.configuration.phoneConfigurationId",
                "underscores are not allowed",
            ],
        ),
        (
            "PhoneConfiguration without capabilities",
            phone("bad", "+12125551234", &[]),
            &["spec.capabilities"],
        ),
    ];
    for (what, manifest, needles) in cases {
        match ctx.apply(&manifest).await {
            Ok(()) => panic!("{what}: the API server accepted it"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{what}: {status:?}");
                for needle in needles {
                    assert!(
                        status.message.contains(needle),
                        "{what}: message {:?} does not mention {needle:?}",
                        status.message
                    );
                }
            }
            Err(e) => panic!("{what}: unexpected error {e}"),
        }
    }
}

async fn deployment_type_cannot_change(ctx: Ctx) {
    let web = channel(
        "typed",
        json!({"deploymentType": "WEB", "channelIdentifier": "https://example.com", "configuration": {}}),
    );
    ctx.must_apply(&web).await;
    let mobile = channel(
        "typed",
        json!({"deploymentType": "MOBILE", "channelIdentifier": "com.example.app",
                                         "configuration": {"packageName": "com.example.app", "platform": "IOS"}}),
    );
    match ctx.apply(&mobile).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(
                status.message.contains("spec.deploymentType")
                    && status.message.contains("immutable"),
                "{}",
                status.message
            );
        }
        other => panic!("changing deploymentType was not refused: {other:?}"),
    }
}

async fn kubectl_explain_describes_every_spec_field(ctx: Ctx) {
    if ctx.env.kubectl.is_none() {
        println!("no kubectl: skipping the kubectl explain checks");
        return;
    }
    let fields = [
        (
            "deploymentchannel.spec",
            &[
                "deploymentType",
                "channelName",
                "recordingEnabled",
                "channelIdentifier",
                "configuration",
            ][..],
        ),
        (
            "deploymentchannel.spec.configuration",
            &[
                "phoneConfigurationId",
                "communicationType",
                "widgetConfiguration",
                "packageName",
                "platform",
            ][..],
        ),
        (
            "deploymentchannel.spec.configuration.widgetConfiguration",
            &["position", "customTheme"][..],
        ),
        (
            "deploymentchannel.spec.configuration.widgetConfiguration.customTheme",
            &["primaryColor"][..],
        ),
        (
            "phoneconfiguration.spec",
            &["phoneNumber", "provider", "capabilities", "description"][..],
        ),
    ];
    for (path, names) in fields {
        for name in names {
            let field = format!("{path}.{name}");
            // The API server publishes a new CRD's OpenAPI a moment after it is established.
            let text = ctx
                .eventually(
                    &format!("kubectl explain {field}"),
                    Duration::from_secs(30),
                    || async {
                        let out = ctx.env.kubectl(&["explain", &field], None)?;
                        out.status
                            .success()
                            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
                    },
                )
                .await;
            let description = text.split("DESCRIPTION:").nth(1).unwrap_or_default();
            let description = description
                .split("FIELDS:")
                .next()
                .unwrap_or_default()
                .trim();
            assert!(
                !description.is_empty() && !description.contains("<empty>"),
                "kubectl explain {field} has no description:\n{text}"
            );
        }
    }
}

async fn kubectl_apply_refuses_a_bad_manifest(ctx: Ctx) {
    let manifest = format!(
        "apiVersion: interactions.dev/v1alpha1
kind: DeploymentChannel
metadata:
  name: no-phone
  namespace: {}
spec:
  deploymentType: CALLS
  channelIdentifier: \"+12125551234\"
  configuration: {{}}
",
        ctx.ns
    );
    let Some(out) = ctx.env.kubectl(&["apply", "-f", "-"], Some(&manifest)) else {
        println!("no kubectl: skipping the kubectl apply check");
        return;
    };
    assert!(
        !out.status.success(),
        "kubectl apply accepted a CALLS channel without phoneConfigurationId"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.configuration.phoneConfigurationId is required"),
        "kubectl said: {stderr}"
    );
}
