//! The generated CRDs on a real API server: accepted, not pruned, defaulted,
//! and refusing bad manifests at apply time with messages naming the field.

use std::time::Duration;

use serde_json::{Value, json};

use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
};

use crate::{
    scenarios,
    support::{Ctx, Scenario, channel},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![
        documented_examples_are_accepted_unpruned_and_defaulted,
        bad_manifests_are_refused_naming_the_field,
        deployment_type_cannot_change,
        kubectl_explain_describes_every_spec_field,
        kubectl_apply_refuses_a_bad_manifest,
    ]
}

/// The pages whose examples users copy: README.md and every page of docs/.
fn documentation_pages() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    pages.extend(crate::markdown::docs_pages());
    pages
}

/// The DeploymentChannel and PhoneConfiguration documents of the YAML
/// blocks of README.md and docs/*.md.
fn documented_manifests() -> Vec<Value> {
    let mut manifests = Vec::new();
    for page in documentation_pages() {
        let text = std::fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", page.display()));
        manifests.extend(crate::markdown::yaml_manifests(&text));
    }
    manifests
}

async fn documented_examples_are_accepted_unpruned_and_defaulted(ctx: Ctx) {
    let manifests = documented_manifests();
    let kinds: Vec<&str> = manifests
        .iter()
        .filter_map(|m| m["spec"]["deploymentType"].as_str())
        .collect();
    for kind in ["CALLS", "SMS", "WEB", "MOBILE"] {
        assert!(
            kinds.contains(&kind),
            "the documentation has no {kind} example"
        );
    }
    // The front page's own example is among them.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    assert!(
        crate::markdown::yaml_manifests(&readme)
            .iter()
            .any(|m| m["kind"] == "DeploymentChannel"),
        "README.md shows no DeploymentChannel"
    );
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

/// One case of `tests/data/refusals.yaml`.
#[derive(serde::Deserialize)]
struct Refusal {
    case: String,
    object: Value,
    refused: Vec<ExpectedCause>,
}

/// A cause as the table gives it: the message of the newest servers (and of
/// `validate`), and the wording of older servers where it differs.
#[derive(serde::Deserialize)]
struct ExpectedCause {
    field: String,
    reason: String,
    message: String,
    /// Older servers' wording, by the first version that changed it
    /// (`"1.35"`: what servers before 1.35 print).
    #[serde(default)]
    before: std::collections::BTreeMap<String, String>,
}

impl ExpectedCause {
    /// The cause a server of minor version `minor` returns: the wording of
    /// the first change it predates, else the newest.
    fn as_served_by(&self, minor: u32) -> Cause {
        let message = self
            .before
            .iter()
            .map(|(version, message)| (minor_of(version), message))
            .filter(|(changed_in, _)| minor < *changed_in)
            .min_by_key(|(changed_in, _)| *changed_in)
            .map_or(&self.message, |(_, message)| message);
        Cause {
            field: self.field.clone(),
            reason: self.reason.clone(),
            message: message.clone(),
        }
    }

    /// The problem `validate` reports, whatever the server's version.
    fn as_validate_reports(&self) -> Cause {
        self.as_served_by(u32::MAX)
    }
}

/// A Status cause, or a `validate` problem: the same three fields.
#[derive(serde::Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cause {
    field: String,
    reason: String,
    message: String,
}

/// 35 for `"1.35"`.
fn minor_of(version: &str) -> u32 {
    version
        .strip_prefix("1.")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("refusals.yaml: {version:?} is not a 1.x version"))
}

/// The first minor version whose CEL refusals quote the value, not its type.
const CEL_QUOTES_VALUES_FROM: u32 = 35;

/// Every manifest of the refusal table is refused with exactly the causes
/// the table holds, and `validate` reports exactly those problems.
async fn bad_manifests_are_refused_naming_the_field(ctx: Ctx) {
    let refusals: Vec<Refusal> =
        serde_saphyr::from_str(include_str!("../data/refusals.yaml")).expect("refusals.yaml");
    let dir = tempfile::tempdir().unwrap();
    for refusal in refusals {
        let mut object = refusal.object.clone();
        object["metadata"]["namespace"] = json!(ctx.ns);
        let kind = object["kind"].as_str().unwrap().to_string();
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("interactions.dev", "v1alpha1", &kind),
            &format!("{}s", kind.to_lowercase()),
        );
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ctx.ns, &resource);
        let dynamic: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        let mut expected: Vec<Cause> = refusal
            .refused
            .iter()
            .map(|c| c.as_served_by(ctx.env.minor()))
            .collect();
        expected.sort();
        let mut expected_problems: Vec<Cause> = refusal
            .refused
            .iter()
            .map(ExpectedCause::as_validate_reports)
            .collect();
        expected_problems.sort();
        let mut causes: Vec<Cause> = match api.create(&PostParams::default(), &dynamic).await {
            Ok(_) => panic!("{}: the API server accepted it", refusal.case),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{}: {status:?}", refusal.case);
                let details = status.details.expect("a 422 has details");
                details
                    .causes
                    .into_iter()
                    .map(|c| Cause {
                        field: c.field,
                        reason: c.reason,
                        message: c.message,
                    })
                    .collect()
            }
            Err(e) => panic!("{}: unexpected error {e}", refusal.case),
        };
        causes.sort();
        assert_eq!(
            causes, expected,
            "{}: the API server's causes",
            refusal.case
        );

        let file = dir.path().join("manifest.json");
        std::fs::write(&file, serde_json::to_vec(&object).unwrap()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_deploymentchannel-operator"))
            .args(["validate", "--output", "json", "--allow-missing-references"])
            .arg(&file)
            .output()
            .expect("validate runs");
        assert_eq!(out.status.code(), Some(1), "{}: validate", refusal.case);
        let report: Value = serde_json::from_slice(&out.stdout).expect("validate prints JSON");
        let mut problems: Vec<Cause> =
            serde_json::from_value(report["problems"].clone()).expect("problems");
        problems.sort();
        assert_eq!(problems, expected_problems, "{}: validate", refusal.case);
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
            let causes: Vec<(String, String, String)> = status
                .details
                .expect("a 422 has details")
                .causes
                .into_iter()
                .map(|c| (c.field, c.reason, c.message))
                .collect();
            // Servers before 1.35 name the field's type instead of its value.
            let value = if ctx.env.minor() < CEL_QUOTES_VALUES_FROM {
                "string"
            } else {
                "MOBILE"
            };
            assert_eq!(
                causes,
                [(
                    "spec.deploymentType".to_string(),
                    "FieldValueInvalid".to_string(),
                    format!(
                        "Invalid value: \"{value}\": is immutable: a channel is 1:1 with its type, create a new DeploymentChannel instead"
                    )
                )]
            );
        }
        other => panic!("changing deploymentType was not refused: {other:?}"),
    }
}

async fn kubectl_explain_describes_every_spec_field(ctx: Ctx) {
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
                        let out = ctx.env.kubectl(&["explain", &field], None);
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
    let out = ctx.env.kubectl(&["apply", "-f", "-"], Some(&manifest));
    assert!(
        !out.status.success(),
        "kubectl apply accepted a CALLS channel without phoneConfigurationId"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "The DeploymentChannel \"no-phone\" is invalid: spec.configuration.phoneConfigurationId: Required value: required when deploymentType is CALLS or SMS: set it to the name of a PhoneConfiguration in this namespace\n"
    );
}
