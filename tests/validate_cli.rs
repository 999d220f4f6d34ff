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

/// Runs `validate` on a temporary tree; the environment carries a secret
/// that must never reach the output.
fn validate_tree(dir: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deploymentchannel-operator"))
        .arg("validate")
        .arg(dir)
        .args(extra)
        .env("FAKE_SECRET_TOKEN", "ghs_s3cr3tvalue")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("validate did not finish within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

const GOOD_PHONE: &str = "apiVersion: interactions.dev/v1alpha1
kind: PhoneConfiguration
metadata: {name: phone}
spec: {phoneNumber: '+12125551234', provider: twilio, capabilities: [VOICE]}
";

#[cfg(unix)]
#[test]
fn symlinks_in_a_tree_never_leak_what_they_point_to() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.yaml");
    std::fs::write(&secret, "token: [ghs_outside_secret\nkey: AKIA_OUTSIDE\n").unwrap();
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("a.yaml"), GOOD_PHONE).unwrap();
    symlink(&secret, tree.path().join("outside.yaml")).unwrap();
    symlink("/proc/self/environ", tree.path().join("environ.yaml")).unwrap();
    symlink("/dev/zero", tree.path().join("zero.yaml")).unwrap();
    symlink("/etc", tree.path().join("etc.yaml")).unwrap();
    symlink(
        tree.path().join("nowhere"),
        tree.path().join("dangling.yaml"),
    )
    .unwrap();
    // A link to a regular file inside the tree is read.
    symlink(tree.path().join("a.yaml"), tree.path().join("inside.yml")).unwrap();
    let (code, output) = validate_tree(tree.path(), &[]);
    assert_eq!(code, Some(2), "{output}");
    for leak in [
        "ghs_",
        "AKIA",
        "FAKE_SECRET",
        "PATH=",
        "secret.yaml",
        "/proc",
    ] {
        assert!(!output.contains(leak), "{leak} leaked: {output}");
    }
    assert!(
        output.contains("outside.yaml: not read: a symbolic link that leads outside"),
        "{output}"
    );
    assert!(output.contains("zero.yaml: not read"), "{output}");
    assert!(output.contains("2 objects checked"), "{output}");
}

#[cfg(unix)]
#[test]
fn special_files_are_never_opened_and_big_files_are_refused() {
    let tree = tempfile::tempdir().unwrap();
    let fifo = tree.path().join("pipe.yaml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(
        tree.path().join("big.yaml"),
        format!("{GOOD_PHONE}# {}\n", "x".repeat(4096)),
    )
    .unwrap();
    let (code, output) = validate_tree(tree.path(), &["--max-file-size", "2Ki"]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("pipe.yaml: not read: not a regular file"),
        "{output}"
    );
    assert!(
        output.contains(
            "big.yaml: cannot read: larger than 2048 bytes (raise the limit with --max-file-size)"
        ),
        "{output}"
    );
    // Named on the command line, a device is refused too.
    let (code, output) = validate_tree(std::path::Path::new("/dev/zero"), &[]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("not a regular file"), "{output}");
}

#[test]
fn a_parse_error_names_the_position_and_quotes_nothing() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(
        tree.path().join("bad.yaml"),
        "FAKE_SECRET_TOKEN=ghs_value\0PATH=/usr/bin\0HOME: [\"ghs_x\"\n  : -\n",
    )
    .unwrap();
    let (code, output) = validate_tree(tree.path(), &[]);
    assert_eq!(code, Some(2), "{output}");
    assert!(!output.contains("ghs_"), "{output}");
    assert!(!output.contains("/usr/bin"), "{output}");
    assert!(output.contains("bad.yaml: cannot parse YAML"), "{output}");
}

#[test]
fn printed_names_fields_and_file_names_cannot_drive_the_terminal() {
    let tree = tempfile::tempdir().unwrap();
    let name = "evil\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}\u{9b}2J\u{202e}.yaml";
    std::fs::write(
        tree.path().join(name),
        "apiVersion: interactions.dev/v1alpha1
kind: DeploymentChannel
metadata: {name: \"a\\e[31m\\u202Eb\\x9b\"}
spec:
  deploymentType: WEB
  channelIdentifier: \"https://example.com/\\e]52;c;aGk=\\a\"
  \"x\\e[2Jy\\u2066\": 1
",
    )
    .unwrap();
    for format in ["text", "json"] {
        let (code, output) = validate_tree(tree.path(), &["-o", format]);
        assert_eq!(code, Some(1), "{output}");
        let bad: Vec<char> = output
            .chars()
            .filter(|c| {
                (c.is_control() && *c != '\n')
                    || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            })
            .collect();
        assert!(bad.is_empty(), "{format}: {bad:?} in {output:?}");
        if format == "text" {
            assert!(output.contains("evil\\u{1b}]52;c;"), "{output}");
        }
    }
}

#[test]
fn list_items_are_validated_and_many_documents_are_read() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(
        tree.path().join("list.yaml"),
        format!(
            "apiVersion: v1
kind: List
items:
- apiVersion: interactions.dev/v1alpha1
  kind: DeploymentChannel
  metadata: {{name: sms}}
  spec: {{deploymentType: SMS, channelIdentifier: '2125551234', configuration: {{phoneConfigurationId: phone}}}}
- {}",
            GOOD_PHONE.replace('\n', "\n  ")
        ),
    )
    .unwrap();
    let (code, output) = validate_tree(tree.path(), &[]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(
            "list.yaml:1:items[0]: DeploymentChannel/sms: spec.channelIdentifier: Invalid value"
        ),
        "{output}"
    );
    // A repository file with thousands of documents is read whole.
    let many: String = (0..1500)
        .map(|i| GOOD_PHONE.replace("name: phone", &format!("name: phone-{i}")) + "---\n")
        .collect();
    std::fs::write(tree.path().join("list.yaml"), many).unwrap();
    let (code, output) = validate_tree(tree.path(), &[]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("1500 objects checked"), "{output}");
}
