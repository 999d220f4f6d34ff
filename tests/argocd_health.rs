//! The Argo CD health checks shipped in `deploy/argocd/argocd-cm-health.yaml`
//! report Healthy, Progressing and Degraded from the conditions the operator
//! writes, the way Argo CD runs them: the object as the global `obj`, the
//! script's return value a table with `status` and `message`.

use std::path::Path;

use mlua::Lua;
use serde_json::{Value, json};

const KINDS: [&str; 2] = ["DeploymentChannel", "PhoneConfiguration"];

/// The health script of `kind`, from the shipped ConfigMap.
fn script(kind: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd/argocd-cm-health.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let config_map: Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    assert_eq!(config_map["kind"], "ConfigMap");
    assert_eq!(config_map["metadata"]["name"], "argocd-cm");
    assert_eq!(config_map["metadata"]["namespace"], "argocd");
    let key = format!("resource.customizations.health.interactions.dev_{kind}");
    config_map["data"][&key]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no data key {key}", path.display()))
        .to_string()
}

/// A JSON value as Argo CD hands it to Lua: objects and arrays become
/// tables (arrays 1-based), null becomes nil.
fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<mlua::Value> {
    Ok(match value {
        Value::Null => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => mlua::Value::Integer(i),
            None => mlua::Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => mlua::Value::String(lua.create_string(s)?),
        Value::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
        Value::Object(fields) => {
            let table = lua.create_table_with_capacity(0, fields.len())?;
            for (key, item) in fields {
                table.raw_set(key.as_str(), to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
    })
}

/// Runs `kind`'s health check on `object`: (status, message).
fn health(kind: &str, object: &Value) -> (String, String) {
    let lua = Lua::new();
    lua.globals()
        .set("obj", to_lua(&lua, object).expect("object converts to Lua"))
        .expect("set obj");
    let hs: mlua::Table = lua
        .load(script(kind))
        .set_name(format!("health.interactions.dev_{kind}"))
        .call(())
        .unwrap_or_else(|e| panic!("the {kind} health script fails on {object}: {e}"));
    let status: String = hs.get("status").expect("hs.status is a string");
    let message: String = hs.get("message").expect("hs.message is a string");
    assert!(
        [
            "Healthy",
            "Progressing",
            "Degraded",
            "Suspended",
            "Missing",
            "Unknown"
        ]
        .contains(&status.as_str()),
        "{status} is not an Argo CD health status"
    );
    (status, message)
}

fn object(kind: &str, generation: i64, status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "interactions.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "example", "namespace": "default", "generation": generation},
        "spec": {},
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
        "observedGeneration": generation,
    })
}

fn ready_true(generation: i64) -> Value {
    condition("Ready", "True", "Ready", "the channel is ready", generation)
}

#[test]
fn the_config_map_holds_a_check_for_each_kind() {
    for kind in KINDS {
        assert!(script(kind).contains("return hs"), "{kind}");
    }
}

#[test]
fn ready_at_the_current_generation_is_healthy() {
    for kind in KINDS {
        let status = json!({
            "observedGeneration": 3,
            "conditions": [ready_true(3), condition("Valid", "True", "Valid", "the spec is valid", 3)],
        });
        let (status, message) = health(kind, &object(kind, 3, Some(status)));
        assert_eq!(status, "Healthy", "{kind}: {message}");
        assert_eq!(message, "the channel is ready", "{kind}");
    }
}

#[test]
fn ready_conditions_without_observed_generation_are_read_from_the_status() {
    for kind in KINDS {
        let mut ready = ready_true(2);
        ready.as_object_mut().unwrap().remove("observedGeneration");
        let status = json!({"observedGeneration": 2, "conditions": [ready]});
        let (status, message) = health(kind, &object(kind, 2, Some(status)));
        assert_eq!(status, "Healthy", "{kind}: {message}");
    }
}

#[test]
fn ready_for_an_older_generation_is_progressing() {
    for kind in KINDS {
        // The status describes generation 2; the spec changed since.
        let status = json!({"observedGeneration": 2, "conditions": [ready_true(2)]});
        let (status, message) = health(kind, &object(kind, 3, Some(status)));
        assert_eq!(status, "Progressing", "{kind}: {message}");
        assert_eq!(
            message, "Waiting for the operator to observe generation 3",
            "{kind}"
        );

        // The status is current but its Ready condition is not.
        let status = json!({"observedGeneration": 3, "conditions": [ready_true(2)]});
        let (status, message) = health(kind, &object(kind, 3, Some(status)));
        assert_eq!(status, "Progressing", "{kind}: {message}");
    }
}

#[test]
fn stalled_is_degraded_with_its_message() {
    for kind in KINDS {
        let invalid = "spec.channelIdentifier: +1212 is not a valid phone number";
        let status = json!({
            "observedGeneration": 1,
            "conditions": [
                condition("Ready", "False", "InvalidSpec", invalid, 1),
                condition("Valid", "False", "InvalidSpec", invalid, 1),
                condition("Stalled", "True", "InvalidSpec", invalid, 1),
            ],
        });
        let (status, message) = health(kind, &object(kind, 1, Some(status)));
        assert_eq!(status, "Degraded", "{kind}");
        assert_eq!(message, invalid, "{kind}");
    }
}

#[test]
fn stalled_for_an_older_generation_is_progressing() {
    for kind in KINDS {
        // The spec was fixed; the operator has not looked at it yet.
        let status = json!({
            "observedGeneration": 1,
            "conditions": [
                condition("Ready", "False", "InvalidSpec", "bad", 1),
                condition("Stalled", "True", "InvalidSpec", "bad", 1),
            ],
        });
        let (status, message) = health(kind, &object(kind, 2, Some(status)));
        assert_eq!(status, "Progressing", "{kind}: {message}");
    }
}

#[test]
fn not_ready_is_progressing_with_the_reason() {
    for kind in KINDS {
        let status = json!({
            "observedGeneration": 1,
            "conditions": [
                condition(
                    "Ready",
                    "False",
                    "PhoneConfigurationNotFound",
                    "PhoneConfiguration phone-xyz789 does not exist in namespace default",
                    1,
                ),
                condition("Stalled", "False", "Valid", "", 1),
            ],
        });
        let (status, message) = health(kind, &object(kind, 1, Some(status)));
        assert_eq!(status, "Progressing", "{kind}");
        assert_eq!(
            message,
            "PhoneConfigurationNotFound: PhoneConfiguration phone-xyz789 does not exist in namespace default",
            "{kind}"
        );
    }
}

#[test]
fn unknown_ready_is_progressing() {
    for kind in KINDS {
        let status = json!({
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "Unknown", "reason": "Reconciling"}],
        });
        let (status, message) = health(kind, &object(kind, 1, Some(status)));
        assert_eq!(status, "Progressing", "{kind}");
        assert_eq!(message, "Reconciling", "{kind}");
    }
}

#[test]
fn no_status_is_progressing() {
    for kind in KINDS {
        let waiting = "Waiting for the operator to report status";
        for status in [
            None,
            Some(json!({})),
            Some(json!({"observedGeneration": 1})),
        ] {
            let (health, message) = health(kind, &object(kind, 1, status.clone()));
            assert_eq!(health, "Progressing", "{kind} with status {status:?}");
            assert_eq!(message, waiting, "{kind} with status {status:?}");
        }
        let (health, message) = health(kind, &object(kind, 1, Some(Value::Null)));
        assert_eq!(
            (health.as_str(), message.as_str()),
            ("Progressing", waiting)
        );
    }
}
