//! The shell's requests and its one-line errors, against a mocked API server.

use clap::Parser;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use super::*;

/// `status ...` as typed after the binary's name.
fn args(line: &str) -> StatusArgs {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        status: StatusArgs,
    }
    Cli::try_parse_from(std::iter::once("status").chain(line.split_whitespace()))
        .expect("valid arguments")
        .status
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message})
}

/// Runs `status` against a server that answers each (method path) with the
/// scripted (code, body), in order, and fails on any other request.
async fn run_against(
    line: &str,
    script: Vec<(&'static str, u16, Value)>,
) -> Result<String, String> {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        for (expected, code, body) in script {
            let (request, send) = handle.next_request().await.expect("a request");
            let seen = format!("{} {}", request.method(), request.uri().path());
            assert_eq!(seen, expected);
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
    });
    let client = Client::new(service, "default");
    let mut out = Vec::new();
    let result = run_with_client(&client, &args(line), &mut out, Palette::plain()).await;
    server.await.expect("every scripted request was made");
    result
        .map(|()| String::from_utf8(out).unwrap())
        .map_err(|e| e.to_string())
}

const CHANNEL: &str =
    "GET /apis/interactions.dev/v1alpha1/namespaces/team-a/deploymentchannels/support";
const DISCOVERY: &str = "GET /apis/interactions.dev/v1alpha1";

#[tokio::test]
async fn missing_crds_are_named_with_how_to_install_them() {
    let error = run_against(
        "channel support -n team-a",
        vec![
            (
                CHANNEL,
                404,
                status_body(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            ),
            (
                DISCOVERY,
                404,
                status_body(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            ),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        "this cluster does not serve deploymentchannels.interactions.dev (interactions.dev/v1alpha1): the CRDs are not installed; install them with `kubectl apply --server-side -k crds/` or `deploymentchannel-operator crd | kubectl apply --server-side -f -`"
    );
}

#[tokio::test]
async fn a_missing_channel_is_named() {
    let error = run_against(
        "channel support -n team-a",
        vec![
            (CHANNEL, 404, status_body(404, "NotFound", "deploymentchannels.interactions.dev \"support\" not found")),
            (
                DISCOVERY,
                200,
                json!({"kind": "APIResourceList", "groupVersion": "interactions.dev/v1alpha1", "resources": [
                    {"name": "deploymentchannels", "singularName": "deploymentchannel", "namespaced": true, "kind": "DeploymentChannel", "verbs": ["get", "list"]},
                    {"name": "phoneconfigurations", "singularName": "phoneconfiguration", "namespaced": true, "kind": "PhoneConfiguration", "verbs": ["get", "list"]}
                ]}),
            ),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        "DeploymentChannel \"support\" in namespace \"team-a\" does not exist"
    );
}

#[tokio::test]
async fn forbidden_reads_say_what_access_is_missing() {
    let message = "phoneconfigurations.interactions.dev \"line\" is forbidden: User \"reader\" cannot get resource \"phoneconfigurations\" in API group \"interactions.dev\" in the namespace \"team-a\"";
    let error = run_against(
        "phoneconfiguration line -n team-a",
        vec![(
            "GET /apis/interactions.dev/v1alpha1/namespaces/team-a/phoneconfigurations/line",
            403,
            status_body(403, "Forbidden", message),
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        format!(
            "you may not get PhoneConfiguration \"line\" in namespace \"team-a\": ask for get access to phoneconfigurations.interactions.dev in namespace \"team-a\" (the API server said: {message})"
        )
    );
    assert!(!error.contains('\n'));
}

#[tokio::test]
async fn summary_without_phone_configuration_rights_still_counts_channels() {
    let out = run_against(
        "-n team-a",
        vec![
            (
                "GET /apis/interactions.dev/v1alpha1/namespaces/team-a/deploymentchannels",
                200,
                json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannelList", "metadata": {}, "items": []}),
            ),
            (
                "GET /apis/interactions.dev/v1alpha1/namespaces/team-a/phoneconfigurations",
                403,
                status_body(403, "Forbidden", "forbidden"),
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        concat!(
            "Namespace team-a: 0 channels, 0 ready, 0 not ready\n",
            "├─ PhoneConfigurations: not readable (see below)\n",
            "└─ Not readable\n",
            "   └─ you may not list PhoneConfigurations in namespace \"team-a\": ask for list access to phoneconfigurations.interactions.dev in namespace \"team-a\" (the API server said: forbidden)\n",
        )
    );
}

#[tokio::test]
async fn all_namespaces_is_only_for_the_summary() {
    let error = run_against("channel support -A", vec![]).await.unwrap_err();
    assert!(
        error.starts_with("--all-namespaces (-A) applies only to the summary"),
        "{error}"
    );
}

#[test]
fn flags_go_before_or_after_the_kind() {
    let before = args("-n team-a -o json --context dev --kubeconfig /k channel support");
    let after = args("channel support -n team-a -o json --context dev --kubeconfig /k");
    assert_eq!(before, after);
    assert_eq!(after.namespace.as_deref(), Some("team-a"));
    assert_eq!(after.output, StatusOutput::Json);
    assert_eq!(
        after.target,
        Some(StatusTarget::Channel {
            name: "support".into()
        })
    );
    assert_eq!(args("dchan support").target, args("channel support").target);
    assert_eq!(
        args("phonecfg line").target,
        Some(StatusTarget::PhoneConfiguration {
            name: "line".into()
        })
    );
}
