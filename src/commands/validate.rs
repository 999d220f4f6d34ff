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
    core::printable,
    core::validation::{
        ValidChannel, host_mixes_scripts, validate_channel, validate_phone_configuration,
    },
};

/// One YAML document of an input.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file it came from (`-` for standard input).
    pub source: String,
    /// Its position in the file, from 1.
    pub index: usize,
    /// Its position in the `items` of a `List` document, from 0.
    pub item: Option<usize>,
    pub value: Value,
}

/// An input that could not be read or parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub source: String,
    pub error: String,
}

/// The default of `--max-file-size`: no manifest file of a real repository
/// comes near it, and it bounds what one file can cost.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// What `load` may read.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest file (or standard input) read, in bytes.
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Reads every document of the given files, directories (recursively, their
/// `.yaml`, `.yml` and `.json` files) and `-` (standard input).
///
/// It reads only what it was given: only regular files (never a device, a
/// FIFO or a socket), none larger than `limits.max_file_bytes`, and in a
/// directory walk a symbolic link only when it resolves to a regular file
/// inside the directory named on the command line (a link to a directory
/// is never followed, a link leading outside is refused). A file named on
/// the command line is read through its links, as the user named it, but
/// must be a regular file too. An error never quotes anything from outside
/// the files read.
pub fn load(paths: &[PathBuf]) -> (Vec<Document>, Vec<Unreadable>) {
    load_with(paths, Limits::default())
}

/// [`load`] with explicit limits.
pub fn load_with(paths: &[PathBuf], limits: Limits) -> (Vec<Document>, Vec<Unreadable>) {
    let mut documents = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            match read_capped(std::io::stdin().lock(), limits.max_file_bytes) {
                Ok(text) => parse_into("-", &text, &mut documents, &mut unreadable),
                Err(error) => unreadable.push(Unreadable {
                    source: "-".into(),
                    error: format!("cannot read standard input: {error}"),
                }),
            }
            continue;
        }
        let mut files = Vec::new();
        collect_named(path, &mut files, &mut unreadable);
        for file in files {
            let source = file.display().to_string();
            match read_regular_file(&file, limits.max_file_bytes) {
                Ok(text) => parse_into(&source, &text, &mut documents, &mut unreadable),
                Err(error) => unreadable.push(Unreadable {
                    source,
                    error: format!("cannot read: {error}"),
                }),
            }
        }
    }
    (documents, unreadable)
}

/// Why a file was not read; never quotes the file.
#[derive(Debug)]
enum ReadError {
    NotRegular,
    TooLarge(u64),
    NotUtf8,
    Io(std::io::ErrorKind),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRegular => write!(
                f,
                "not a regular file (a device, FIFO, socket or directory is never read)"
            ),
            Self::TooLarge(max) => write!(
                f,
                "larger than {max} bytes (raise the limit with --max-file-size)"
            ),
            Self::NotUtf8 => write!(f, "not UTF-8 text"),
            Self::Io(kind) => write!(f, "{}", io_kind_text(*kind)),
        }
    }
}

/// An I/O error's kind in words (an `io::Error`'s own text may carry a path
/// or more).
fn io_kind_text(kind: std::io::ErrorKind) -> String {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound => "no such file or directory".into(),
        K::PermissionDenied => "permission denied".into(),
        other => other.to_string(),
    }
}

/// Reads at most `max` bytes of UTF-8 text; more is an error, not a cut.
fn read_capped(reader: impl Read, max: u64) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io(e.kind()))?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge(max));
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8)
}

/// Opens `path` only if it is a regular file (checked before opening, so
/// that a FIFO cannot block, and again on the open file), then reads it
/// capped.
fn read_regular_file(path: &Path, max: u64) -> Result<String, ReadError> {
    let before = std::fs::metadata(path).map_err(|e| ReadError::Io(e.kind()))?;
    if !before.is_file() {
        return Err(ReadError::NotRegular);
    }
    if before.len() > max {
        return Err(ReadError::TooLarge(max));
    }
    let file = std::fs::File::open(path).map_err(|e| ReadError::Io(e.kind()))?;
    let opened = file.metadata().map_err(|e| ReadError::Io(e.kind()))?;
    if !opened.is_file() {
        return Err(ReadError::NotRegular);
    }
    read_capped(file, max)
}

/// Whether a directory-walk entry is a manifest file by its name.
fn has_manifest_extension(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// A path named on the command line: a file (read whatever its extension)
/// or a directory, walked.
fn collect_named(path: &Path, files: &mut Vec<PathBuf>, unreadable: &mut Vec<Unreadable>) {
    let refuse = |unreadable: &mut Vec<Unreadable>, error: String| {
        unreadable.push(Unreadable {
            source: path.display().to_string(),
            error,
        })
    };
    match std::fs::metadata(path) {
        Err(e) => refuse(
            unreadable,
            format!("cannot read: {}", io_kind_text(e.kind())),
        ),
        Ok(metadata) if metadata.is_dir() => match std::fs::canonicalize(path) {
            Ok(root) => walk(path, &root, files, unreadable),
            Err(e) => refuse(
                unreadable,
                format!("cannot read: {}", io_kind_text(e.kind())),
            ),
        },
        Ok(_) => files.push(path.to_path_buf()),
    }
}

/// Collects the manifest files under `dir` (inside `root`, canonical),
/// without following a link to a directory or to anything outside `root`.
fn walk(dir: &Path, root: &Path, files: &mut Vec<PathBuf>, unreadable: &mut Vec<Unreadable>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            unreadable.push(Unreadable {
                source: dir.display().to_string(),
                error: format!("cannot read directory: {}", io_kind_text(e.kind())),
            });
            return;
        }
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for entry in entries {
        let Ok(metadata) = std::fs::symlink_metadata(&entry) else {
            continue;
        };
        let kind = metadata.file_type();
        if kind.is_dir() {
            walk(&entry, root, files, unreadable);
            continue;
        }
        if !has_manifest_extension(&entry) {
            continue;
        }
        let refuse = |unreadable: &mut Vec<Unreadable>, error: &str| {
            unreadable.push(Unreadable {
                source: entry.display().to_string(),
                error: error.to_string(),
            })
        };
        if kind.is_symlink() {
            // Followed only to a regular file inside the directory named on
            // the command line; the target is never named in the error.
            match std::fs::canonicalize(&entry) {
                Ok(target) if target.starts_with(root) => match std::fs::metadata(&target) {
                    Ok(m) if m.is_file() => files.push(entry),
                    _ => refuse(
                        unreadable,
                        "not read: a symbolic link to something other than a regular file",
                    ),
                },
                Ok(_) => refuse(
                    unreadable,
                    "not read: a symbolic link that leads outside the directory being checked",
                ),
                Err(_) => refuse(unreadable, "not read: a symbolic link that leads nowhere"),
            }
        } else if kind.is_file() {
            files.push(entry);
        } else {
            refuse(
                unreadable,
                "not read: not a regular file (a device, FIFO or socket is never read)",
            );
        }
    }
}

/// The parser's limits: as many documents and nodes as the file size
/// allows (the size cap bounds the work), aliases bounded as by default.
fn parse_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: usize::MAX,
            max_nodes: 20_000_000,
            max_events: 50_000_000,
        },
        with_snippet: false,
    }
}

/// A parse error as its position and the parser's words, with anything
/// quoted from the text left out: an error never echoes content.
fn parse_error_text(error: &serde_saphyr::Error) -> String {
    static QUOTED: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let quoted = QUOTED.get_or_init(|| {
        regex::Regex::new(r#""(?:[^"\\]|\\.)*"|'[^']*'|`[^`]*`"#).expect("a valid pattern")
    });
    let message = error.to_string();
    let first_line = message.lines().next().unwrap_or_default();
    let first_line = first_line
        .rsplit_once(" at line ")
        .map_or(first_line, |(words, _)| words);
    let words = quoted.replace_all(first_line, "\"…\"");
    let words: String = words.chars().take(200).collect();
    match error.location() {
        Some(at) => format!(
            "cannot parse YAML at line {}, column {}: {words}",
            at.line(),
            at.column()
        ),
        None => format!("cannot parse YAML: {words}"),
    }
}

/// Splits a YAML (or JSON) text into its documents; a `List` (`kind: List`
/// or any `…List` kind with `items`, as kubectl reads it) is opened into
/// its items.
pub fn parse_into(
    source: &str,
    text: &str,
    documents: &mut Vec<Document>,
    unreadable: &mut Vec<Unreadable>,
) {
    match serde_saphyr::from_multiple_with_options::<Value>(text, parse_options()) {
        Ok(values) => {
            for (i, value) in values.into_iter().enumerate() {
                if value.is_null() {
                    continue;
                }
                let is_list = value
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
                    && value.get("items").is_some_and(Value::is_array);
                if is_list {
                    let Value::Array(items) = value["items"].clone() else {
                        unreachable!("checked above")
                    };
                    documents.extend(items.into_iter().enumerate().map(|(j, value)| Document {
                        source: source.to_string(),
                        index: i + 1,
                        item: Some(j),
                        value,
                    }));
                } else {
                    documents.push(Document {
                        source: source.to_string(),
                        index: i + 1,
                        item: None,
                        value,
                    });
                }
            }
        }
        Err(e) => unreadable.push(Unreadable {
            source: source.to_string(),
            error: parse_error_text(&e),
        }),
    }
}

/// One problem with one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub document: usize,
    /// Its position in the `items` of a `List` document, from 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
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
            "{}: {}/{}: {}: {}",
            position(&self.file, self.document, self.item),
            self.kind,
            self.name,
            self.field,
            self.message
        )
    }
}

/// `file:document`, or `file:document:items[i]` for an item of a `List`.
fn position(file: &str, document: usize, item: Option<usize>) -> String {
    match item {
        Some(item) => format!("{file}:{document}:items[{item}]"),
        None => format!("{file}:{document}"),
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
    /// Things worth a look that are not refusals (a URL host that mixes
    /// scripts, which may imitate another channel's).
    pub warnings: Vec<String>,
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
    /// One line per problem: `file:document: kind/name: field: message`,
    /// with every control, C1, bidi and invisible character escaped (see
    /// [`printable`]): a name, a field or a file name cannot write to the
    /// terminal.
    pub fn write_text(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.problems
            .iter()
            .try_for_each(|problem| writeln!(out, "{}", printable::escape(&problem.to_string())))
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
            "warnings": self.warnings,
        });
        writeln!(
            out,
            "{}",
            printable::json_safe(
                &serde_json::to_string_pretty(&json).expect("a report serializes to JSON")
            )
        )
    }

    /// The unreadable inputs, then one line of counts.
    pub fn write_summary(
        &self,
        unreadable: &[Unreadable],
        err: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        for u in unreadable {
            writeln!(
                err,
                "{}: {}",
                printable::escape(&u.source),
                printable::escape(&u.error)
            )?;
        }
        for warning in &self.warnings {
            writeln!(err, "warning: {}", printable::escape(warning))?;
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
                item: document.item,
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
                    Ok(valid) => {
                        // A host that mixes scripts may imitate another's.
                        if let ValidChannel::Web { url, .. } = &valid
                            && host_mixes_scripts(url)
                        {
                            report.warnings.push(format!(
                                "{}: DeploymentChannel/{name}: spec.channelIdentifier: the host of {:?} mixes scripts (it is {}), which may imitate another site",
                                position(&document.source, document.index, document.item),
                                channel.spec.channel_identifier,
                                url.host_str().unwrap_or_default()
                            ));
                        }
                        channels.push(Checked {
                            // One without a namespace lands in the one it is applied to.
                            object: {
                                channel.metadata.namespace = Some(namespace_of(&document.value));
                                channel
                            },
                            document,
                            validation: Ok(valid),
                        })
                    }
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
        .sort_by_key(|p| (p.file.clone(), p.document, p.item));
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
                "{}: {} {} is also claimed by DeploymentChannel {:?} ({})",
                ready.reason,
                channel.object.spec.deployment_type,
                channel.object.spec.channel_identifier,
                holder.name,
                position(
                    &other.document.source,
                    other.document.index,
                    other.document.item
                )
            );
        }
        report.problems.push(Problem {
            file: channel.document.source.clone(),
            document: channel.document.index,
            item: channel.document.item,
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
