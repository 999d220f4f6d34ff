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
mod tests;
