//! Offline check of manifest files, for a GitOps repository's pull-request
//! checks: every DeploymentChannel and PhoneConfiguration is judged as the
//! API server (schema and CEL rules) and then the controller (semantic
//! validation, references between the files, identifier conflicts among
//! them) would judge it, with the same code.

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use serde_json::Value;

use crate::{
    core::admission::AdmissionChecker,
    core::api::{DeploymentChannel, PhoneConfiguration},
    core::desired_status::{condition, desired_channel_status, reason},
    core::field_error::{FieldError, FieldErrorType},
    core::index::{Index, ObjectKey},
    core::validation::{ValidChannel, validate_channel, validate_phone_configuration},
};

/// One YAML document of an input.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file it came from (`-` for standard input).
    pub source: String,
    /// Its position in the file, from 1.
    pub index: usize,
    pub value: Value,
}

/// An input that could not be read or parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub source: String,
    pub error: String,
}

/// Reads every document of the given files, directories (recursively, their
/// `.yaml`, `.yml` and `.json` files) and `-` (standard input).
pub fn load(paths: &[PathBuf]) -> (Vec<Document>, Vec<Unreadable>) {
    let mut documents = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => parse_into("-", &text, &mut documents, &mut unreadable),
                Err(e) => unreadable.push(Unreadable {
                    source: "-".into(),
                    error: format!("cannot read standard input: {e}"),
                }),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(error) = collect_files(path, true, &mut files) {
            unreadable.push(Unreadable {
                source: path.display().to_string(),
                error,
            });
        }
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => parse_into(
                    &file.display().to_string(),
                    &text,
                    &mut documents,
                    &mut unreadable,
                ),
                Err(e) => unreadable.push(Unreadable {
                    source: file.display().to_string(),
                    error: format!("cannot read: {e}"),
                }),
            }
        }
    }
    (documents, unreadable)
}

fn collect_files(path: &Path, named: bool, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if metadata.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot read directory: {e}"))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            collect_files(&entry, false, files)?;
        }
    } else if named
        || matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
    {
        // A file named on the command line is read whatever its extension.
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// Splits a YAML (or JSON) text into its documents.
pub fn parse_into(
    source: &str,
    text: &str,
    documents: &mut Vec<Document>,
    unreadable: &mut Vec<Unreadable>,
) {
    match serde_saphyr::from_multiple::<Value>(text) {
        Ok(values) => documents.extend(
            values
                .into_iter()
                .enumerate()
                .filter(|(_, value)| !value.is_null())
                .map(|(i, value)| Document {
                    source: source.to_string(),
                    index: i + 1,
                    value,
                }),
        ),
        Err(e) => unreadable.push(Unreadable {
            source: source.to_string(),
            error: format!("cannot parse YAML: {e}"),
        }),
    }
}

/// One problem with one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub document: usize,
    pub kind: String,
    pub name: String,
    pub field: String,
    /// The kind of problem, as in the API server's Status causes.
    pub reason: FieldErrorType,
    /// What is wrong, worded as `kubectl apply` words it after the field.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}/{}: {}: {}",
            self.file, self.document, self.kind, self.name, self.field, self.message
        )
    }
}

/// The verdict on a set of documents.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// DeploymentChannels and PhoneConfigurations checked.
    pub checked: usize,
    /// Documents of other kinds, not checked.
    pub skipped: usize,
    pub problems: Vec<Problem>,
}

/// Exit codes of `validate`.
pub mod exit {
    /// Every object is valid.
    pub const VALID: u8 = 0;
    /// At least one object is invalid.
    pub const INVALID: u8 = 1;
    /// An input could not be read or parsed.
    pub const UNREADABLE: u8 = 2;
}

impl Report {
    /// One line per problem: `file:document: kind/name: field: message`.
    pub fn write_text(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.problems
            .iter()
            .try_for_each(|problem| writeln!(out, "{problem}"))
    }

    /// One JSON object with the verdict, every problem and every unreadable input.
    pub fn write_json(
        &self,
        unreadable: &[Unreadable],
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        let unreadable: Vec<_> = unreadable
            .iter()
            .map(|u| serde_json::json!({"file": u.source, "error": u.error}))
            .collect();
        let json = serde_json::json!({
            "valid": self.problems.is_empty() && unreadable.is_empty(),
            "checked": self.checked,
            "skipped": self.skipped,
            "problems": self.problems,
            "unreadable": unreadable,
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json).expect("a report serializes to JSON")
        )
    }

    /// The unreadable inputs, then one line of counts.
    pub fn write_summary(
        &self,
        unreadable: &[Unreadable],
        err: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        for u in unreadable {
            writeln!(err, "{}: {}", u.source, u.error)?;
        }
        writeln!(
            err,
            "{} objects checked, {} other documents skipped, {} problems",
            self.checked,
            self.skipped,
            self.problems.len()
        )
    }

    /// The exit code for this verdict, given whether it could be written.
    pub fn exit_code(&self, unreadable: &[Unreadable], written: bool) -> u8 {
        if !written || !unreadable.is_empty() {
            exit::UNREADABLE
        } else if self.problems.is_empty() {
            exit::VALID
        } else {
            exit::INVALID
        }
    }
}

/// How strict the check is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Accept CALLS and SMS channels whose PhoneConfiguration is not among
    /// the documents (it may be managed elsewhere).
    pub allow_missing_references: bool,
}

const API_VERSION: &str = "interactions.dev/v1alpha1";

/// The time of the statuses `validate` computes: it reports no timestamps.
const NO_TIME: Time = Time(jiff::Timestamp::UNIX_EPOCH);

/// A channel that passed the per-object checks, kept for the cross-object ones.
struct Checked<'a> {
    document: &'a Document,
    object: DeploymentChannel,
    /// The controller's validation of `object` (it passed).
    validation: Result<ValidChannel, Vec<FieldError>>,
}

/// Judges every document.
pub fn check(documents: &[Document], options: Options) -> Report {
    let mut report = Report::default();
    let mut channels = Vec::new();
    let mut phones: BTreeMap<ObjectKey, PhoneConfiguration> = BTreeMap::new();
    for document in documents {
        let kind = document
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api_version = document
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ours = matches!(kind, "DeploymentChannel" | "PhoneConfiguration");
        if !ours || (!api_version.starts_with("interactions.dev/") && !api_version.is_empty()) {
            report.skipped += 1;
            continue;
        }
        report.checked += 1;
        let name = document
            .value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>");
        let mut problem = |error: &FieldError| {
            report.problems.push(Problem {
                file: document.source.clone(),
                document: document.index,
                kind: kind.to_string(),
                name: name.to_string(),
                field: error.field.clone(),
                reason: error.reason,
                message: error.message.clone(),
            })
        };
        if api_version != API_VERSION {
            problem(&FieldError::not_supported(
                "apiVersion",
                &Value::from(api_version),
                &[Value::from(API_VERSION)],
            ));
            continue;
        }
        let checker = if kind == "DeploymentChannel" {
            AdmissionChecker::deployment_channel()
        } else {
            AdmissionChecker::phone_configuration()
        };
        let errors = checker.check(&document.value, None);
        if !errors.is_empty() {
            errors.iter().for_each(&mut problem);
            continue;
        }
        // Past admission: the controller's semantic validation.
        let key = ObjectKey::new(namespace_of(&document.value), name);
        if kind == "DeploymentChannel" {
            match serde_json::from_value::<DeploymentChannel>(document.value.clone()) {
                Ok(mut channel) => match validate_channel(&channel.spec) {
                    Ok(valid) => channels.push(Checked {
                        // One without a namespace lands in the one it is applied to.
                        object: {
                            channel.metadata.namespace = Some(namespace_of(&document.value));
                            channel
                        },
                        document,
                        validation: Ok(valid),
                    }),
                    Err(errors) => errors.iter().for_each(&mut problem),
                },
                Err(e) => problem(&FieldError::new("spec", format!("cannot be read: {e}"))),
            }
        } else {
            match serde_json::from_value::<PhoneConfiguration>(document.value.clone()) {
                Ok(phone) => {
                    if let Err(errors) = validate_phone_configuration(&phone.spec) {
                        errors.iter().for_each(&mut problem);
                    }
                    phones.insert(key, phone);
                }
                Err(e) => problem(&FieldError::new("spec", format!("cannot be read: {e}"))),
            }
        }
    }
    check_channels_together(&channels, &phones, options, &mut report);
    report
        .problems
        .sort_by_key(|p| (p.file.clone(), p.document));
    report
}

/// References and conflicts, as the controller computes them.
fn check_channels_together(
    channels: &[Checked<'_>],
    phones: &BTreeMap<ObjectKey, PhoneConfiguration>,
    options: Options,
    report: &mut Report,
) {
    // Manifests have no creation time: the first listed claims an
    // identifier, as it would when they are applied in this order.
    let index = Index::in_order(channels.iter().map(|c| &c.object));
    for channel in channels {
        let name = channel.object.metadata.name.clone().unwrap_or_default();
        let namespace = channel
            .object
            .metadata
            .namespace
            .clone()
            .unwrap_or_default();
        let holder = index.claim_holder(&ObjectKey::new(namespace, name.clone()));
        let status = desired_channel_status(
            channel.object.placement(),
            &channel.validation,
            |namespace, name| Ok(phones.get(&ObjectKey::new(namespace, name))),
            holder.as_ref(),
            None,
            &NO_TIME,
        );
        let Some(ready) = status
            .conditions
            .iter()
            .find(|c| c.type_ == condition::READY)
        else {
            continue;
        };
        if ready.status == "True"
            || (ready.reason == reason::PHONE_CONFIGURATION_NOT_FOUND
                && options.allow_missing_references)
        {
            continue;
        }
        let field = if ready.reason == reason::IDENTIFIER_CONFLICT {
            "spec.channelIdentifier"
        } else {
            "spec.configuration.phoneConfigurationId"
        };
        let mut message = format!("{}: {}", ready.reason, ready.message);
        if ready.reason == reason::IDENTIFIER_CONFLICT
            && let Some(holder) = &holder
            && let Some(other) = channels.iter().find(|c| {
                c.object.metadata.name.as_deref() == Some(&holder.name)
                    && namespace_of(&c.document.value) == holder.namespace
            })
        {
            message = format!(
                "{}: {} {} is also claimed by DeploymentChannel {:?} ({}:{})",
                ready.reason,
                channel.object.spec.deployment_type,
                channel.object.spec.channel_identifier,
                holder.name,
                other.document.source,
                other.document.index
            );
        }
        report.problems.push(Problem {
            file: channel.document.source.clone(),
            document: channel.document.index,
            kind: "DeploymentChannel".into(),
            name,
            field: field.into(),
            reason: FieldErrorType::Invalid,
            message,
        });
    }
}

/// The namespace a manifest names; one without lands in the namespace it is
/// applied to, shared by every manifest without one.
fn namespace_of(value: &Value) -> String {
    value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
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
            found[0].starts_with(
                "channels.yaml:1: PhoneConfiguration/phone-xyz789: spec.phoneNumber: "
            ),
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
}
