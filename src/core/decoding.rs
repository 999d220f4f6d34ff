//! Reading stored objects one at a time. The API server can hold objects
//! the Rust types cannot read: written under an older or newer CRD, restored
//! from a backup, created before the validation rules were installed. Such
//! an object must not fail the list or watch that carries every other object,
//! so the watches receive [`Stored`] objects (metadata plus undecoded JSON)
//! and each is decoded on its own: the unreadable ones become a
//! [`FieldError`] naming the field, in the API server's words. Pure: no I/O.

use std::{borrow::Cow, collections::BTreeMap, marker::PhantomData};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor},
};
use serde_json::{Map, Value};

use crate::{
    core::api::{
        ChannelConfiguration, DeploymentChannel, DeploymentChannelSpec, DeploymentType,
        PhoneConfiguration, PhoneConfigurationSpec,
    },
    core::field_error::FieldError,
};

/// An object of kind `K` as the API server stores it: its metadata (which
/// the API server itself validates, so it always reads) and the rest as JSON.
/// `managedFields`, often most of an object's bytes and never read from a
/// watch, is skipped while parsing, so it is never allocated.
#[derive(Serialize)]
#[serde(bound = "")]
pub struct Stored<K> {
    pub metadata: ObjectMeta,
    /// `apiVersion`, `kind`, `spec`, `status`, undecoded.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
    #[serde(skip)]
    kind: PhantomData<fn() -> K>,
}

/// Read field by field: `metadata` through [`without_managed_fields`], every
/// other field straight into the map. (A derived `#[serde(flatten)]` would
/// buffer the whole object once more before building the map.)
impl<'de, K> Deserialize<'de> for Stored<K> {
    fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
        struct Fields<K>(PhantomData<fn() -> K>);
        impl<'de, K> Visitor<'de> for Fields<K> {
            type Value = Stored<K>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Stored<K>, A::Error> {
                let mut metadata = None;
                let mut rest = Map::new();
                while let Some(name) = fields.next_key::<String>()? {
                    if name == "metadata" {
                        if metadata.is_some() {
                            return Err(de::Error::duplicate_field("metadata"));
                        }
                        metadata = Some(fields.next_value_seed(LeanMetadata)?);
                    } else {
                        rest.insert(name, fields.next_value()?);
                    }
                }
                let metadata = metadata.ok_or_else(|| de::Error::missing_field("metadata"))?;
                Ok(Stored::new(metadata, rest))
            }
        }
        input.deserialize_map(Fields(PhantomData))
    }
}

/// [`without_managed_fields`] as a seed for a map's value.
struct LeanMetadata;

impl<'de> DeserializeSeed<'de> for LeanMetadata {
    type Value = ObjectMeta;
    fn deserialize<D: Deserializer<'de>>(self, input: D) -> Result<ObjectMeta, D::Error> {
        without_managed_fields(input)
    }
}

/// Reads `metadata`, skipping `managedFields`.
fn without_managed_fields<'de, D: Deserializer<'de>>(input: D) -> Result<ObjectMeta, D::Error> {
    /// ObjectMeta's fields but `managedFields`, which serde skips unread.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Lean {
        annotations: Option<BTreeMap<String, String>>,
        creation_timestamp: Option<Time>,
        deletion_grace_period_seconds: Option<i64>,
        deletion_timestamp: Option<Time>,
        finalizers: Option<Vec<String>>,
        generate_name: Option<String>,
        generation: Option<i64>,
        labels: Option<BTreeMap<String, String>>,
        name: Option<String>,
        namespace: Option<String>,
        owner_references: Option<Vec<OwnerReference>>,
        resource_version: Option<String>,
        self_link: Option<String>,
        uid: Option<String>,
    }
    let lean = Lean::deserialize(input)?;
    Ok(ObjectMeta {
        annotations: lean.annotations,
        creation_timestamp: lean.creation_timestamp,
        deletion_grace_period_seconds: lean.deletion_grace_period_seconds,
        deletion_timestamp: lean.deletion_timestamp,
        finalizers: lean.finalizers,
        generate_name: lean.generate_name,
        generation: lean.generation,
        labels: lean.labels,
        managed_fields: None,
        name: lean.name,
        namespace: lean.namespace,
        owner_references: lean.owner_references,
        resource_version: lean.resource_version,
        self_link: lean.self_link,
        uid: lean.uid,
    })
}

impl<K> Stored<K> {
    /// A stored object from its metadata and the rest of its fields.
    pub fn new(metadata: ObjectMeta, rest: Map<String, Value>) -> Self {
        Self {
            metadata,
            rest,
            kind: PhantomData,
        }
    }
}

impl<K> Clone for Stored<K> {
    fn clone(&self) -> Self {
        Self::new(self.metadata.clone(), self.rest.clone())
    }
}

impl<K> std::fmt::Debug for Stored<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("metadata", &self.metadata)
            .field("rest", &self.rest)
            .finish()
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Stored<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A kind whose stored objects are decoded one at a time.
pub trait Decodable: Resource<DynamicType = ()> + DeserializeOwned + Sized {
    /// An object that carries only `metadata`, standing in for an unreadable
    /// one where the caches need an object (to forget it). Its spec is
    /// never read.
    fn placeholder(metadata: ObjectMeta) -> Self;
}

impl Decodable for DeploymentChannel {
    fn placeholder(metadata: ObjectMeta) -> Self {
        let mut channel = DeploymentChannel::new(
            "",
            DeploymentChannelSpec {
                deployment_type: DeploymentType::Web,
                channel_name: None,
                recording_enabled: true,
                channel_identifier: String::new(),
                configuration: ChannelConfiguration::default(),
            },
        );
        channel.metadata = metadata;
        channel
    }
}

impl Decodable for PhoneConfiguration {
    fn placeholder(metadata: ObjectMeta) -> Self {
        let mut phone = PhoneConfiguration::new(
            "",
            PhoneConfigurationSpec {
                phone_number: String::new(),
                provider: String::new(),
                capabilities: Vec::new(),
                description: None,
            },
        );
        phone.metadata = metadata;
        phone
    }
}

/// Decodes a stored object. A status the operator cannot read is ignored
/// (the operator owns it and writes it again); any other problem makes the
/// object unreadable, and is returned with the object.
#[allow(clippy::result_large_err)]
pub fn decode<K: Decodable>(stored: Stored<K>) -> Result<K, (FieldError, Stored<K>)> {
    let Stored {
        metadata, mut rest, ..
    } = stored;
    // The types require metadata; the real one is put back after reading.
    rest.insert("metadata".into(), Value::Object(Map::new()));
    let mut value = Value::Object(rest);
    let problem = match read::<K>(&value) {
        Ok(mut object) => {
            *object.meta_mut() = metadata;
            return Ok(object);
        }
        Err(problem) => problem,
    };
    if is_status(&problem.field) {
        let status = value
            .as_object_mut()
            .and_then(|fields| fields.remove("status"));
        match read::<K>(&value) {
            Ok(mut object) => {
                *object.meta_mut() = metadata;
                return Ok(object);
            }
            Err(problem) => {
                let Value::Object(mut rest) = value else {
                    unreachable!("built from a map")
                };
                rest.remove("metadata");
                if let Some(status) = status {
                    rest.insert("status".into(), status);
                }
                return Err((problem, Stored::new(metadata, rest)));
            }
        }
    }
    let Value::Object(mut rest) = value else {
        unreachable!("built from a map")
    };
    rest.remove("metadata");
    Err((problem, Stored::new(metadata, rest)))
}

fn is_status(field: &str) -> bool {
    field == "status" || field.starts_with("status.") || field.starts_with("status[")
}

/// Reads everything but the metadata, which the caller already holds.
fn read<K: DeserializeOwned>(value: &Value) -> Result<K, FieldError> {
    serde_path_to_error::deserialize::<_, K>(value).map_err(|error| {
        let segments: Vec<Segment> = error.path().iter().map(Segment::from).collect();
        problem(value, &segments, &error.inner().to_string())
    })
}

/// One step of a path into a JSON document.
#[derive(Clone, Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

impl From<&serde_path_to_error::Segment> for Segment {
    fn from(segment: &serde_path_to_error::Segment) -> Self {
        match segment {
            serde_path_to_error::Segment::Seq { index } => Segment::Index(*index),
            serde_path_to_error::Segment::Map { key } => Segment::Key(key.clone()),
            serde_path_to_error::Segment::Enum { variant } => Segment::Key(variant.clone()),
            serde_path_to_error::Segment::Unknown => Segment::Key("?".into()),
        }
    }
}

/// `spec.capabilities[0]`, as the API server names fields.
fn field_path(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    path
}

fn value_at<'a>(root: &'a Value, segments: &[Segment]) -> Option<&'a Value> {
    segments
        .iter()
        .try_fold(root, |value, segment| match segment {
            Segment::Key(key) => value.get(key),
            Segment::Index(i) => value.get(i),
        })
}

/// Words a decoding error as the API server words the same problem.
fn problem(root: &Value, segments: &[Segment], message: &str) -> FieldError {
    if let Some(field) = between(message, "missing field `", "`") {
        let mut path = segments.to_vec();
        path.push(Segment::Key(field.to_string()));
        return FieldError::required(field_path(&path), "");
    }
    let field = field_path(segments);
    let field = if field.is_empty() {
        "<root>".to_string()
    } else {
        field
    };
    let value = value_at(root, segments);
    if let (Some(value), Some(expected)) = (value, message.strip_prefix("unknown variant ")) {
        // "`A`, expected `B` or `C`" / "…, expected one of `B`, `C`, `D`"
        let allowed: Vec<Value> = expected
            .split_once("expected ")
            .map(|(_, list)| list)
            .unwrap_or_default()
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|v| Value::String(v.to_string()))
            .collect();
        return FieldError::not_supported(field, value, &allowed);
    }
    if let (Some(value), Some(rest)) = (value, message.strip_prefix("invalid type: "))
        && let Some((_, expected)) = rest.rsplit_once(", expected ")
        && let Some(expected) = json_type_of(expected)
    {
        return FieldError::type_invalid(&field, expected, value);
    }
    FieldError::invalid(field, value, message)
}

/// The JSON type serde means by "expected …".
fn json_type_of(expected: &str) -> Option<&'static str> {
    let expected = expected.trim();
    let is = |prefixes: &[&str]| prefixes.iter().any(|p| expected.starts_with(p));
    if is(&[
        "a string",
        "string",
        "a borrowed string",
        "enum ",
        "variant identifier",
    ]) {
        Some("string")
    } else if is(&["struct ", "a map", "map"]) {
        Some("object")
    } else if is(&["a sequence", "sequence", "a vec"]) {
        Some("array")
    } else if is(&["a boolean", "bool"]) {
        Some("boolean")
    } else if is(&[
        "i8",
        "i16",
        "i32",
        "i64",
        "u8",
        "u16",
        "u32",
        "u64",
        "an integer",
    ]) {
        Some("integer")
    } else if is(&["f32", "f64", "a number"]) {
        Some("number")
    } else {
        None
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(start)?;
    Some(&rest[..rest.find(end)?])
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::core::field_error::FieldErrorType;

    fn stored<K>(object: Value) -> Stored<K> {
        serde_json::from_value(object).expect("a stored object")
    }

    fn channel(spec: Value) -> Value {
        json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel",
           "metadata": {"name": "c", "namespace": "ns", "uid": "u-1", "generation": 3}, "spec": spec})
    }

    fn web() -> Value {
        json!({"deploymentType": "WEB", "channelIdentifier": "https://a.example.com", "configuration": {}})
    }

    fn channel_problem(object: Value) -> FieldError {
        match decode::<DeploymentChannel>(stored(object)) {
            Ok(channel) => panic!("decoded {channel:?}"),
            Err((problem, stored)) => {
                assert_eq!(stored.metadata.name.as_deref(), Some("c"), "metadata kept");
                problem
            }
        }
    }

    fn phone_problem(spec: Value) -> FieldError {
        let object = json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "PhoneConfiguration",
                        "metadata": {"name": "p", "namespace": "ns"}, "spec": spec});
        match decode::<PhoneConfiguration>(stored(object)) {
            Ok(phone) => panic!("decoded {phone:?}"),
            Err((problem, _)) => problem,
        }
    }

    #[test]
    fn a_readable_object_keeps_its_metadata() {
        let channel = decode::<DeploymentChannel>(stored(channel(web()))).unwrap();
        assert_eq!(channel.metadata.name.as_deref(), Some("c"));
        assert_eq!(channel.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(channel.metadata.generation, Some(3));
        assert_eq!(channel.spec.channel_identifier, "https://a.example.com");
    }

    #[test]
    fn managed_fields_are_skipped_and_the_rest_of_the_metadata_is_kept() {
        let mut object = channel(web());
        object["metadata"] = json!({
            "name": "c", "namespace": "ns", "uid": "u-1", "generation": 3, "resourceVersion": "42",
            "creationTimestamp": "2026-01-02T03:04:05Z", "deletionTimestamp": "2026-01-03T03:04:05Z",
            "deletionGracePeriodSeconds": 30, "generateName": "c-", "selfLink": "/x",
            "labels": {"team": "a"}, "annotations": {"note": "n"}, "finalizers": ["f"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u-2"}],
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:spec": {"f:channelIdentifier": {}}}}]
        });
        let expected: ObjectMeta = {
            let mut full = object["metadata"].clone();
            full.as_object_mut().unwrap().remove("managedFields");
            serde_json::from_value(full).unwrap()
        };
        let read: Stored<DeploymentChannel> = stored(object);
        assert_eq!(read.metadata, expected);
        assert!(read.metadata.managed_fields.is_none());
    }

    #[test]
    fn each_problem_names_its_field_in_the_api_servers_words() {
        let mut wrong_enum = web();
        wrong_enum["deploymentType"] = json!("FAX");
        let mut wrong_type = web();
        wrong_type["channelIdentifier"] = json!(5);
        let mut missing = web();
        missing.as_object_mut().unwrap().remove("channelIdentifier");
        let mut not_an_object = web();
        not_an_object["configuration"] = json!("none");
        let mut nested = web();
        nested["configuration"] = json!({"widgetConfiguration": {"position": "middle"}});
        let mut boolean = web();
        boolean["recordingEnabled"] = json!("yes");
        let cases = [
            (
                channel(wrong_enum),
                FieldErrorType::NotSupported,
                r#"spec.deploymentType: Unsupported value: "FAX": supported values: "CALLS", "SMS", "WEB", "MOBILE""#,
            ),
            (
                channel(wrong_type),
                FieldErrorType::TypeInvalid,
                r#"spec.channelIdentifier: Invalid value: "integer": spec.channelIdentifier in body must be of type string: "integer""#,
            ),
            (
                channel(missing),
                FieldErrorType::Required,
                "spec.channelIdentifier: Required value",
            ),
            (
                channel(not_an_object),
                FieldErrorType::TypeInvalid,
                r#"spec.configuration: Invalid value: "string": spec.configuration in body must be of type object: "string""#,
            ),
            (
                channel(nested),
                FieldErrorType::NotSupported,
                r#"spec.configuration.widgetConfiguration.position: Unsupported value: "middle": supported values: "left", "right""#,
            ),
            (
                channel(boolean),
                FieldErrorType::TypeInvalid,
                r#"spec.recordingEnabled: Invalid value: "string": spec.recordingEnabled in body must be of type boolean: "string""#,
            ),
            (
                channel(json!(7)),
                FieldErrorType::TypeInvalid,
                r#"spec: Invalid value: "integer": spec in body must be of type object: "integer""#,
            ),
        ];
        for (object, reason, message) in cases {
            let problem = channel_problem(object);
            assert_eq!(problem.to_string(), message);
            assert_eq!(problem.reason, reason, "{message}");
        }
    }

    #[test]
    fn an_absent_spec_is_a_required_value() {
        let mut object = channel(web());
        object.as_object_mut().unwrap().remove("spec");
        let problem = channel_problem(object);
        assert_eq!(problem.field, "spec");
        assert_eq!(problem.to_string(), "spec: Required value");
    }

    #[test]
    fn phone_configuration_problems_name_list_items() {
        let problem = phone_problem(
            json!({"phoneNumber": "+12125550100", "provider": "p", "capabilities": ["VOICE", "FAX"]}),
        );
        assert_eq!(
            problem.to_string(),
            r#"spec.capabilities[1]: Unsupported value: "FAX": supported values: "VOICE", "SMS""#
        );
        let problem = phone_problem(
            json!({"phoneNumber": "+12125550100", "provider": "p", "capabilities": "VOICE"}),
        );
        assert_eq!(
            problem.to_string(),
            r#"spec.capabilities: Invalid value: "string": spec.capabilities in body must be of type array: "string""#
        );
        let problem =
            phone_problem(json!({"phoneNumber": 12125550100u64, "capabilities": ["SMS"]}));
        assert_eq!(problem.field, "spec.phoneNumber");
    }

    #[test]
    fn an_unreadable_status_is_ignored_not_reported() {
        let mut object = channel(web());
        object["status"] = json!({"conditions": "broken", "observedGeneration": "x"});
        let channel = decode::<DeploymentChannel>(stored(object)).unwrap();
        assert_eq!(channel.status, None);
        assert_eq!(channel.spec.channel_identifier, "https://a.example.com");
    }

    #[test]
    fn a_spec_problem_is_reported_also_with_an_unreadable_status() {
        let mut spec = web();
        spec["deploymentType"] = json!(1);
        let mut object = channel(spec);
        object["status"] = json!({"conditions": "broken"});
        let (problem, stored) = decode::<DeploymentChannel>(stored(object)).unwrap_err();
        assert_eq!(problem.field, "spec.deploymentType");
        assert_eq!(
            stored.rest["status"],
            json!({"conditions": "broken"}),
            "status kept"
        );
    }

    #[test]
    fn a_placeholder_carries_only_the_metadata() {
        let meta = ObjectMeta {
            name: Some("c".into()),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        };
        let channel = DeploymentChannel::placeholder(meta.clone());
        assert_eq!(channel.metadata, meta);
        assert_eq!(channel.status, None);
        assert_eq!(PhoneConfiguration::placeholder(meta.clone()).metadata, meta);
    }

    #[test]
    fn stored_objects_address_their_kinds_resource() {
        assert_eq!(
            Stored::<DeploymentChannel>::url_path(&(), Some("ns")),
            "/apis/interactions.dev/v1alpha1/namespaces/ns/deploymentchannels"
        );
        assert_eq!(
            Stored::<PhoneConfiguration>::kind(&()),
            "PhoneConfiguration"
        );
    }
}
