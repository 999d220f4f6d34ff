//! The `validate` command as a CI pipeline runs it: output and exit codes.

use std::process::{Command, Output, Stdio};

fn validate(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_deploymentchannel-operator"))
        .arg("validate")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn valid_manifests_exit_0_with_no_output() {
    let out = validate(&["tests/data/manifests/base.yaml"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "4 objects checked, 1 other documents skipped, 0 problems\n"
    );
}

#[test]
fn a_directory_prints_exactly_the_invalid_objects_and_exits_1() {
    let out = validate(&["tests/data/manifests"], None);
    assert_eq!(out.status.code(), Some(1));
    let expected = [
        "tests/data/manifests/problems.yaml:1: DeploymentChannel/web-with-phone: spec.configuration.phoneConfigurationId: Forbidden: only allowed when deploymentType is CALLS or SMS",
        "tests/data/manifests/problems.yaml:2: DeploymentChannel/unassigned-number: spec.channelIdentifier: +99912345678 is not a valid phone number: invalid country code",
        "tests/data/manifests/problems.yaml:3: DeploymentChannel/missing-phone: spec.configuration.phoneConfigurationId: PhoneConfigurationNotFound: PhoneConfiguration \"no-such-line\" does not exist in the same namespace",
        "tests/data/manifests/problems.yaml:4: DeploymentChannel/website-copy: spec.channelIdentifier: IdentifierConflict: WEB https://SHOP.example.com/ is also claimed by DeploymentChannel \"website\" (tests/data/manifests/base.yaml:4)",
        "tests/data/manifests/problems.yaml:5: DeploymentChannel/mobile-mismatch: spec.configuration.packageName: Invalid value: \"com.example.other\" must equal spec.channelIdentifier \"com.example.app\" when deploymentType is MOBILE",
        "tests/data/manifests/problems.yaml:6: PhoneConfiguration/no-capabilities: spec.capabilities: Invalid value: 0: spec.capabilities in body should have at least 1 items",
    ];
    assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), expected);
    assert_eq!(
        text(&out.stderr),
        "10 objects checked, 1 other documents skipped, 6 problems\n"
    );
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/manifests/base.yaml"
    ))
    .unwrap();
    let out = validate(&["-"], Some(&manifest));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = validate(
        &["-", "--allow-missing-references"],
        Some(&manifest.replace("support-line", "elsewhere")),
    );
    // The PhoneConfiguration itself is renamed too, so only the references change.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn unreadable_input_exits_2() {
    let out = validate(
        &["tests/data/manifests", "tests/data/no-such-file.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("tests/data/no-such-file.yaml: cannot read: "),
        "{}",
        text(&out.stderr)
    );
    let out = validate(&["-"], Some("kind: [DeploymentChannel\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("-: cannot parse YAML"));
}

#[test]
fn json_output_for_machines() {
    let out = validate(
        &["--output", "json", "tests/data/manifests/problems.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["checked"], 6);
    let names: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "web-with-phone",
            "unassigned-number",
            "missing-phone",
            "mobile-mismatch",
            "no-capabilities"
        ]
    );
}
