use super::*;

fn documents(text: &str) -> Vec<Document> {
    let mut documents = Vec::new();
    let mut unreadable = Vec::new();
    parse_into("channels.yaml", text, &mut documents, &mut unreadable);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    documents
}

fn problems(text: &str) -> Vec<String> {
    check(&documents(text), Options::default())
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

const PHONE: &str = "apiVersion: interactions.dev/v1alpha1
kind: PhoneConfiguration
metadata: {name: phone-xyz789}
spec: {phoneNumber: '+12125551234', provider: twilio, capabilities: [VOICE]}
";

const CALLS: &str = "apiVersion: interactions.dev/v1alpha1
kind: DeploymentChannel
metadata: {name: chan-abc123}
spec:
  deploymentType: CALLS
  channelIdentifier: '+12125551234'
  configuration: {phoneConfigurationId: phone-xyz789}
";

#[test]
fn valid_documents_have_no_problems_and_other_kinds_are_skipped() {
    let text = format!(
        "{PHONE}---\n{CALLS}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n"
    );
    let report = check(&documents(&text), Options::default());
    assert_eq!(report.problems, vec![]);
    assert_eq!((report.checked, report.skipped), (2, 1));
}

#[test]
fn admission_problems_name_file_document_object_and_field() {
    let text = format!(
        "{PHONE}---\napiVersion: interactions.dev/v1alpha1
kind: DeploymentChannel
metadata: {{name: web}}
spec: {{deploymentType: WEB, channelIdentifier: 'ftp://example.com', configuration: {{phoneConfigurationId: p}}}}
"
    );
    assert_eq!(
        problems(&text),
        vec![
            "channels.yaml:2: DeploymentChannel/web: spec.channelIdentifier: Invalid value: \"ftp://example.com\" is not an absolute http:// or https:// URL with a host and no user-info, which WEB channels need (for example https://example.com)",
            "channels.yaml:2: DeploymentChannel/web: spec.configuration.phoneConfigurationId: Forbidden: only allowed when deploymentType is CALLS or SMS",
        ]
    );
}

#[test]
fn semantic_problems_come_from_the_controller_validation() {
    let text = CALLS.replace("+12125551234", "+99912345678");
    let found = problems(&format!(
        "{}---\n{text}",
        PHONE.replace("+12125551234", "+99912345678")
    ));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0]
            .starts_with("channels.yaml:1: PhoneConfiguration/phone-xyz789: spec.phoneNumber: "),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with(
            "channels.yaml:2: DeploymentChannel/chan-abc123: spec.channelIdentifier: "
        ),
        "{found:#?}"
    );
}

#[test]
fn references_must_resolve_among_the_documents() {
    let found = problems(CALLS);
    assert_eq!(
        found,
        vec![
            "channels.yaml:1: DeploymentChannel/chan-abc123: spec.configuration.phoneConfigurationId: PhoneConfigurationNotFound: PhoneConfiguration \"phone-xyz789\" does not exist in the same namespace"
        ]
    );
    let relaxed = check(
        &documents(CALLS),
        Options {
            allow_missing_references: true,
        },
    );
    assert!(relaxed.problems.is_empty());
    // A PhoneConfiguration in another namespace does not count.
    let elsewhere = PHONE.replace(
        "metadata: {name: phone-xyz789}",
        "metadata: {name: phone-xyz789, namespace: other}",
    );
    assert_eq!(problems(&format!("{elsewhere}---\n{CALLS}")).len(), 1);
    // Capability and number mismatches, as the controller reports them.
    let sms_only = PHONE.replace("[VOICE]", "[SMS]");
    let found = problems(&format!("{sms_only}---\n{CALLS}"));
    assert!(
        found[0].contains(
            "CapabilityMissing: PhoneConfiguration \"phone-xyz789\" lacks the VOICE capability"
        ),
        "{found:#?}"
    );
}

#[test]
fn identifier_conflicts_among_the_documents() {
    let second = CALLS.replace("chan-abc123", "chan-zzz");
    let found = problems(&format!("{PHONE}---\n{CALLS}---\n{second}"));
    assert_eq!(
        found,
        vec![
            "channels.yaml:3: DeploymentChannel/chan-zzz: spec.channelIdentifier: IdentifierConflict: CALLS +12125551234 is also claimed by DeploymentChannel \"chan-abc123\" (channels.yaml:2)"
        ]
    );
}

#[test]
fn names_and_versions_are_checked() {
    let found = problems(&CALLS.replace("chan-abc123", "chan_abc123"));
    assert!(found[0].starts_with("channels.yaml:1: DeploymentChannel/chan_abc123: metadata.name: Invalid value: \"chan_abc123\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"), "{found:#?}");
    let found = problems(&CALLS.replace("v1alpha1", "v1"));
    assert_eq!(
        found,
        vec![
            "channels.yaml:1: DeploymentChannel/chan-abc123: apiVersion: Unsupported value: \"interactions.dev/v1\": supported values: \"interactions.dev/v1alpha1\""
        ]
    );
}

#[test]
fn unparsable_yaml_is_unreadable() {
    let mut documents = Vec::new();
    let mut unreadable = Vec::new();
    parse_into(
        "bad.yaml",
        "kind: [unclosed\n",
        &mut documents,
        &mut unreadable,
    );
    assert_eq!(unreadable.len(), 1);
    assert!(unreadable[0].error.starts_with("cannot parse YAML"));
}

#[test]
fn load_reads_directories_recursively_and_reports_missing_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), PHONE).unwrap();
    std::fs::write(dir.path().join("nested/b.yml"), CALLS).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    let (documents, unreadable) =
        load(&[dir.path().to_path_buf(), dir.path().join("missing.yaml")]);
    assert_eq!(documents.len(), 2);
    assert!(documents[1].source.ends_with("nested/b.yml"));
    assert_eq!(unreadable.len(), 1);
    assert!(unreadable[0].source.ends_with("missing.yaml"));
}

#[test]
fn the_first_listed_channel_holds_a_contested_identifier() {
    let earlier = CALLS.replace("chan-abc123", "zz-first");
    let later = CALLS.replace("chan-abc123", "aa-second");
    let found = problems(&format!("{PHONE}---\n{earlier}---\n{later}"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("channels.yaml:3: DeploymentChannel/aa-second: spec.channelIdentifier: IdentifierConflict"), "{found:#?}");
}
