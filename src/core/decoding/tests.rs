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
    let problem = phone_problem(json!({"phoneNumber": 12125550100u64, "capabilities": ["SMS"]}));
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
