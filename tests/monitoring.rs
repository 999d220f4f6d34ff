//! The monitoring component (deploy/components/monitoring): the alert rules
//! pass `promtool check rules` and the unit tests in
//! tests/data/monitoring/ (`promtool test rules`), every alert is tested
//! firing and silent and has a summary, a description and a runbook in
//! docs/runbooks.md linked by an absolute URL from one base, the
//! runbook-base-url component replaces that base in every link, and the
//! rules and the dashboard use only metrics the operator exports.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use deploymentchannel_operator::operator::metrics::Metrics;
use serde_json::Value;

mod markdown;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// The PrometheusRule's rule groups.
fn rule_groups() -> Value {
    yaml("deploy/components/monitoring/prometheus_rule.yaml")["spec"].clone()
}

fn alerts() -> Vec<Value> {
    rule_groups()["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .filter(|r| r["alert"].is_string())
        .collect()
}

/// `promtool`: $PROMTOOL, else on PATH.
fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMTOOL") {
        return PathBuf::from(path);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
        .expect(
            "promtool is needed to test the alert rules: install it (Debian and Ubuntu: \
             `apt-get install prometheus`) or set PROMTOOL to its path",
        )
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = tempfile::tempdir().unwrap();
    // promtool reads plain rule files: the PrometheusRule's spec is one (JSON is YAML).
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_string_pretty(&rule_groups()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("prometheus_rule_test.yaml"),
        read("tests/data/monitoring/prometheus_rule_test.yaml"),
    )
    .unwrap();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "prometheus_rule_test.yaml"],
    ] {
        let out = Command::new(promtool())
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_alert_is_tested_firing_and_silent_and_has_a_runbook() {
    let tests = yaml("tests/data/monitoring/prometheus_rule_test.yaml");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    let anchors = runbook_anchors();
    let alerts = alerts();
    assert!(alerts.len() >= 6, "{alerts:?}");
    for alert in alerts {
        let name = alert["alert"].as_str().unwrap();
        let of_alert = || cases.iter().filter(|c| c["alertname"] == name);
        let firing = of_alert()
            .filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
            .count();
        let silent = of_alert()
            .filter(|c| c["exp_alerts"].as_array().is_none_or(|a| a.is_empty()))
            .count();
        assert!(
            firing >= 1 && silent >= 1,
            "{name}: {firing} firing and {silent} silent test cases"
        );
        let annotations = &alert["annotations"];
        for field in ["summary", "description"] {
            assert!(
                annotations[field].as_str().is_some_and(|s| !s.is_empty()),
                "{name} has no {field}"
            );
        }
        assert!(
            annotations["description"]
                .as_str()
                .unwrap()
                .contains("$value"),
            "{name}'s description gives no count"
        );
        let runbook = annotations["runbook_url"].as_str().unwrap_or_default();
        let target = runbook
            .strip_prefix(&format!("{}#", runbook_base()))
            .unwrap_or_else(|| {
                panic!(
                    "{name}: runbook_url {runbook:?} is not {}#ANCHOR",
                    runbook_base()
                )
            });
        assert_eq!(target, name.to_lowercase(), "{name}'s runbook anchor");
        assert!(
            anchors.contains(target),
            "{name}: docs/runbooks.md has no heading for #{target}"
        );
    }
}

/// Where the runbooks are published by default: docs/runbooks.md in the
/// repository that Cargo.toml names.
fn runbook_base() -> String {
    let repository = env!("CARGO_PKG_REPOSITORY");
    assert!(
        repository.starts_with("https://"),
        "Cargo.toml names no https repository: {repository:?}"
    );
    format!("{repository}/blob/main/docs/runbooks.md")
}

/// The anchors of docs/runbooks.md's headings.
fn runbook_anchors() -> BTreeSet<String> {
    markdown::anchors(&read("docs/runbooks.md"))
}

#[test]
fn the_default_runbook_base_is_the_repository_docs() {
    assert_eq!(
        runbook_base(),
        "https://github.com/interaction-platform/deploymentchannel-operator/blob/main/docs/runbooks.md"
    );
    // The rule tests expect the same links as the rules carry.
    let tests = read("tests/data/monitoring/prometheus_rule_test.yaml");
    let linked: BTreeSet<&str> = tests
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .collect();
    let rules: BTreeSet<String> = alerts()
        .iter()
        .map(|a| {
            a["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(!linked.is_empty());
    for url in linked {
        assert!(
            rules.contains(url),
            "the rule tests expect {url}, no rule links it"
        );
    }
}

/// The ConfigMap that an installer writes to set the runbooks' base URL,
/// as docs/install.md shows it.
fn documented_runbook_base_config() -> Value {
    let page = read("docs/install.md");
    markdown::yaml_documents(&page)
        .into_iter()
        .map(|(_, doc)| doc)
        .find(|doc| {
            doc["kind"] == "ConfigMap"
                && doc["metadata"]["name"] == "deploymentchannel-operator-runbooks"
        })
        .expect("docs/install.md shows the ConfigMap deploymentchannel-operator-runbooks")
}

/// The runbook-base-url component replaces the part before `#` of every
/// alert's runbook_url with the one value of the installer's ConfigMap,
/// which kustomize reads but never renders (local-config). Rendering it
/// for real is an end-to-end test (it needs kubectl); this checks that the
/// replacement covers every alert and reads what docs/install.md shows.
#[test]
fn one_value_sets_the_base_of_every_runbook_link() {
    let component = yaml("deploy/components/runbook-base-url/kustomization.yaml");
    assert_eq!(component["kind"], "Component");
    let replacements = component["replacements"].as_array().expect("replacements");
    assert_eq!(replacements.len(), 1, "{replacements:?}");
    let replacement = &replacements[0];

    let config = documented_runbook_base_config();
    let source = &replacement["source"];
    assert_eq!(source["kind"], config["kind"]);
    assert_eq!(source["name"], config["metadata"]["name"]);
    let key = source["fieldPath"]
        .as_str()
        .and_then(|p| p.strip_prefix("data."))
        .expect("the source is a key of the ConfigMap's data");
    let base = config["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("the documented ConfigMap has no data.{key}"));
    assert!(!base.contains('#'), "{base}");
    assert_eq!(
        config["metadata"]["annotations"]["config.kubernetes.io/local-config"], "true",
        "the documented ConfigMap would be applied to the cluster"
    );

    let rule = yaml("deploy/components/monitoring/prometheus_rule.yaml");
    let targets = replacement["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 1, "{targets:?}");
    let target = &targets[0];
    let select = &target["select"];
    assert_eq!(select["kind"], rule["kind"]);
    assert_eq!(select["name"], rule["metadata"]["name"]);
    assert_eq!(
        Some(select["group"].as_str().unwrap_or_default()),
        rule["apiVersion"]
            .as_str()
            .and_then(|v| v.split('/').next())
    );
    assert_eq!(target["options"]["delimiter"], "#");
    assert_eq!(target["options"]["index"], 0);
    let paths: Vec<&str> = target["fieldPaths"]
        .as_array()
        .expect("fieldPaths")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(paths, ["spec.groups.*.rules.*.annotations.runbook_url"]);
    // Every rule of every group is an alert with a runbook: the wildcard
    // path reaches each of them and nothing else.
    for group in rule["spec"]["groups"].as_array().expect("groups") {
        for r in group["rules"].as_array().expect("rules") {
            let url = r["annotations"]["runbook_url"].as_str().unwrap_or_default();
            let (before, anchor) = url.split_once('#').expect("a runbook_url with an anchor");
            assert_eq!(before, runbook_base());
            assert!(!anchor.is_empty() && !anchor.contains('#'), "{url}");
        }
    }
}

/// The series names the operator exports.
fn exported_metrics() -> BTreeSet<String> {
    Metrics::default().series_names().iter().cloned().collect()
}

/// Series Prometheus makes itself for every target.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

/// Keywords and aggregation operators (which may come before `by (...)`).
const PROMQL_WORDS: [&str; 26] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
];

/// The metric names a PromQL expression reads: identifiers outside label
/// matchers, ranges, strings and grouping clauses that call nothing.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Blank out strings, {label matchers} and [ranges].
    let mut plain = String::new();
    let mut closing: Option<char> = None;
    for c in expr.chars() {
        match closing {
            Some(end) if c == end => closing = None,
            Some(_) => {}
            None => match c {
                '"' => closing = Some('"'),
                '{' => closing = Some('}'),
                '[' => closing = Some(']'),
                _ => {
                    plain.push(c);
                    continue;
                }
            },
        }
        plain.push(' ');
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                skip_group = next == Some(&'(');
            } else if !PROMQL_WORDS.contains(&word.as_str()) && next != Some(&'(') {
                names.insert(word);
            }
        } else if c == '(' && skip_group {
            // Label names in by (...), on (...) and the like.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_group = false;
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers, including exponents such as 1e3.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"sum by (kind, reason) (max without (pod) (d) + increase(a_total{job="x", reason=~"b|c"}[5m])) > 3
           and on (instance) (b == 1) or vector(0) unless histogram_quantile(0.99, sum by (le) (rate(c_bucket[$__rate_interval]))) > 1e3"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["a_total".into(), "b".into(), "c_bucket".into(), "d".into()])
    );
}

#[test]
fn rules_and_dashboard_use_only_exported_metrics() {
    let exported = exported_metrics();
    for name in [
        "deploymentchannel_operator_channels",
        "deploymentchannel_operator_watch_restarts_total",
        "deploymentchannel_operator_reconcile_duration_seconds_bucket",
    ] {
        assert!(exported.contains(name), "{name} not in {exported:?}");
    }
    let mut expressions: Vec<(String, String)> = alerts()
        .iter()
        .map(|a| {
            (
                format!("alert {}", a["alert"].as_str().unwrap()),
                a["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dashboard: Value =
        serde_json::from_str(&read("deploy/components/monitoring/dashboard.json"))
            .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            expressions.push((
                format!("panel {:?}", panel["title"].as_str().unwrap_or_default()),
                target["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Channels by readiness and reason",
        "Reconciles by kind and result",
        "Reconcile latency",
        "API requests by code",
        "Leader",
    ] {
        assert!(titles.contains(&wanted), "no panel {wanted:?}: {titles:?}");
    }
    let mut unknown = Vec::new();
    for (place, expr) in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place} reads no metric: {expr}");
        for name in names {
            if !exported.contains(&name) && !PROMETHEUS_SERIES.contains(&name.as_str()) {
                unknown.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics the operator does not export:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_dashboard_is_shipped_as_a_sidecar_configmap() {
    let kustomization = yaml("deploy/components/monitoring/kustomization.yaml");
    let generator = &kustomization["configMapGenerator"][0];
    assert_eq!(generator["options"]["labels"]["grafana_dashboard"], "1");
    assert!(
        generator["files"][0]
            .as_str()
            .is_some_and(|f| f.ends_with("=dashboard.json")),
        "{generator}"
    );
}
