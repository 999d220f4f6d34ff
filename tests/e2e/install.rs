//! The install manifests: `kubectl apply -k deploy/` creates everything,
//! the operator's RBAC allows exactly what it does, and the operator running
//! as its ServiceAccount converges the samples in `deploy/samples/`.

use std::{
    collections::BTreeSet,
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use deploymentchannel_operator::core::api::DeploymentChannel;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Secret, Service},
};
use kube::{Api, Client, api::ListParams};
use serde_json::Value;

use crate::{
    scenarios,
    support::{Ctx, Operator, Scenario},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![
        kubectl_apply_k_installs_everything,
        kubectl_apply_k_installs_each_component,
        one_value_sets_the_base_of_every_runbook_link,
        rbac_allows_exactly_what_the_operator_needs,
        operator_as_its_service_account_converges_the_samples,
    ]
}

/// The kustomization that installs the operator.
const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
/// One channel of each type and the PhoneConfiguration they need.
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/samples");
/// Where the operator runs.
pub const NAMESPACE: &str = "deploymentchannel-system";
/// The operator's name: its ServiceAccount, Deployment and ClusterRole.
pub const NAME: &str = "deploymentchannel-operator";
/// The user the operator's pods authenticate as.
const SERVICE_ACCOUNT_USER: &str =
    "system:serviceaccount:deploymentchannel-system:deploymentchannel-operator";

/// What `deploy/` renders to: (kind, namespace, name).
fn expected_objects() -> BTreeSet<(String, String, String)> {
    [
        ("Namespace", "", NAMESPACE),
        (
            "CustomResourceDefinition",
            "",
            "deploymentchannels.interactions.dev",
        ),
        (
            "CustomResourceDefinition",
            "",
            "phoneconfigurations.interactions.dev",
        ),
        ("ServiceAccount", NAMESPACE, NAME),
        ("ClusterRole", "", NAME),
        ("ClusterRoleBinding", "", NAME),
        (
            "Role",
            NAMESPACE,
            "deploymentchannel-operator-leader-election",
        ),
        (
            "RoleBinding",
            NAMESPACE,
            "deploymentchannel-operator-leader-election",
        ),
        (
            "FlowSchema",
            "",
            "deploymentchannel-operator-leader-election",
        ),
        ("ClusterRole", "", "deploymentchannel-operator-metrics-auth"),
        (
            "ClusterRoleBinding",
            "",
            "deploymentchannel-operator-metrics-auth",
        ),
        (
            "ClusterRole",
            "",
            "deploymentchannel-operator-metrics-reader",
        ),
        ("Deployment", NAMESPACE, NAME),
        ("PodDisruptionBudget", NAMESPACE, NAME),
        ("Service", NAMESPACE, "deploymentchannel-operator-metrics"),
    ]
    .into_iter()
    .map(|(k, ns, n)| (k.to_string(), ns.to_string(), n.to_string()))
    .collect()
}

fn identity(object: &Value) -> (String, String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

fn parse_documents(text: &str, source: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(text)
        .unwrap_or_else(|e| panic!("{source} is not valid YAML: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `kubectl kustomize DIR`, parsed.
fn kustomize(ctx: &Ctx, dir: &str) -> Vec<Value> {
    let out = ctx.env.kubectl(&["kustomize", dir], None);
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed: {}",
        stderr(&out)
    );
    parse_documents(&stdout(&out), dir)
}

/// `kubectl apply -k deploy/`: its output.
/// Scenarios run in parallel and all of them may install, so installs take
/// turns (two concurrent first applies would both try to create); a failed
/// apply is retried, since apply is idempotent.
fn kubectl_apply_deploy(ctx: &Ctx) -> String {
    kubectl_apply_k(ctx, DEPLOY)
}

/// `kubectl apply -k DIR`, taking turns and retrying as [`kubectl_apply_deploy`].
fn kubectl_apply_k(ctx: &Ctx, dir: &str) -> String {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _turn = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let mut failures = Vec::new();
    for _ in 0..3 {
        let out = ctx.env.kubectl(&["apply", "-k", dir], None);
        if out.status.success() {
            return stdout(&out);
        }
        failures.push(stderr(&out));
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!(
        "kubectl apply -k {dir} failed 3 times:\n{}",
        failures.join("\n")
    );
}

/// The optional kustomize components.
const COMPONENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/components");

/// `path` relative to `from` (kustomize takes no absolute paths).
fn relative(path: &Path, from: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = path.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// An overlay of `deploy/` with `components`, as users write one, and
/// `files` (name, content) beside its kustomization listed as resources.
fn overlay(components: &[&str], files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().canonicalize().unwrap();
    let components: Vec<String> = components
        .iter()
        .map(|c| format!("  - {}", relative(&Path::new(COMPONENTS).join(c), &overlay)))
        .collect();
    let mut resources = vec![format!("  - {}", relative(Path::new(DEPLOY), &overlay))];
    for (name, content) in files {
        std::fs::write(overlay.join(name), content).unwrap();
        resources.push(format!("  - {name}"));
    }
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{}\ncomponents:\n{}\n",
            resources.join("\n"),
            components.join("\n")
        ),
    )
    .unwrap();
    dir
}

/// `kubectl apply -k` of an overlay of `deploy/` with `components`; the
/// output of every apply.
fn kubectl_apply_overlay(ctx: &Ctx, components: &[&str]) -> String {
    let dir = overlay(components, &[]);
    kubectl_apply_k(ctx, dir.path().to_str().unwrap())
}

/// Installs `deploy/` as users do.
pub async fn install(ctx: &Ctx) {
    kubectl_apply_deploy(ctx);
}

async fn kubectl_apply_k_installs_everything(ctx: Ctx) {
    // What deploy/ renders to: every object, each with the common labels.
    let rendered = kustomize(&ctx, DEPLOY);
    let objects: BTreeSet<_> = rendered.iter().map(identity).collect();
    assert_eq!(objects.len(), rendered.len(), "an object is rendered twice");
    assert_eq!(objects, expected_objects());
    for object in &rendered {
        for label in ["app.kubernetes.io/name", "app.kubernetes.io/part-of"] {
            assert_eq!(
                object["metadata"]["labels"][label],
                NAME,
                "{:?} has no label {label}",
                identity(object)
            );
        }
    }
    // Least privilege: no wildcard and no Secrets anywhere.
    for object in rendered
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("ClusterRole" | "Role")))
    {
        for rule in object["rules"].as_array().expect("rules") {
            let fields: &[&str] = if rule["nonResourceURLs"].is_array() {
                &["nonResourceURLs", "verbs"]
            } else {
                &["apiGroups", "resources", "verbs"]
            };
            for &field in fields {
                let values: Vec<&str> = rule[field]
                    .as_array()
                    .unwrap_or_else(|| panic!("a rule without {field}"))
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                assert!(
                    !values.contains(&"*") && !values.contains(&"secrets"),
                    "{:?} grants {field} {values:?}",
                    identity(object)
                );
            }
        }
    }

    // The samples render too: one channel of each type, no namespace.
    let samples = kustomize(&ctx, SAMPLES);
    let types: BTreeSet<&str> = samples
        .iter()
        .filter(|o| o["kind"] == "DeploymentChannel")
        .filter_map(|o| o["spec"]["deploymentType"].as_str())
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["CALLS", "MOBILE", "SMS", "WEB"]),
        "the samples hold one channel of each type"
    );
    assert!(
        samples.iter().all(|o| o["metadata"]["namespace"].is_null()),
        "the samples name no namespace"
    );

    // Install: every object is created (or already there from another scenario).
    let output = kubectl_apply_deploy(&ctx);
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        objects.len(),
        "kubectl apply -k said:\n{output}"
    );
    for (kind, _, name) in &objects {
        // e.g. "deployment.apps/deploymentchannel-operator created"
        let resource = kind.to_lowercase();
        assert!(
            lines.iter().any(|l| {
                let Some((object, action)) = l.split_once(' ') else {
                    return false;
                };
                let Some((type_, object_name)) = object.split_once('/') else {
                    return false;
                };
                type_.split('.').next() == Some(resource.as_str())
                    && object_name == name
                    && matches!(action.trim(), "created" | "configured" | "unchanged")
            }),
            "kubectl apply -k does not report {kind} {name}:\n{output}"
        );
    }
    for (kind, namespace, name) in &objects {
        let target = format!("{kind}/{name}");
        let mut args = vec!["get", target.as_str(), "-o", "name"];
        if !namespace.is_empty() {
            args.extend(["-n", namespace.as_str()]);
        }
        let out = ctx.env.kubectl(&args, None);
        assert!(
            out.status.success(),
            "{kind} {name} was not created: {}",
            stderr(&out)
        );
    }
    // Applying again changes nothing. kubectl always sends a PodDisruptionBudget's
    // selector (its patch strategy is `replace`) and so says "configured":
    // the stored object must still be the same version.
    let budgets = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
        ctx.client.clone(),
        NAMESPACE,
    );
    let budget_version = budgets.get(NAME).await.unwrap().metadata.resource_version;
    let again = kubectl_apply_deploy(&ctx);
    assert!(
        again
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.ends_with(" unchanged")
                || l == format!("poddisruptionbudget.policy/{NAME} configured")),
        "a second kubectl apply -k changed something:\n{again}"
    );
    assert_eq!(
        budgets.get(NAME).await.unwrap().metadata.resource_version,
        budget_version,
        "a second kubectl apply -k changed the PodDisruptionBudget"
    );

    // The API server stored the Deployment and Service as written.
    let deployment = Api::<Deployment>::namespaced(ctx.client.clone(), NAMESPACE)
        .get(NAME)
        .await
        .expect("the Deployment");
    let spec = deployment.spec.expect("a Deployment spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(NAME));
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let container = &pod.containers[0];
    assert_eq!(
        container.args.as_deref(),
        Some(&["run".to_string(), "--leader-election".to_string()][..])
    );
    let env: BTreeSet<&str> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    for name in ["POD_NAME", "POD_NAMESPACE", "LEASE_NAMESPACE", "LOG_FORMAT"] {
        assert!(env.contains(name), "the container has no {name}: {env:?}");
    }
    let security = container
        .security_context
        .as_ref()
        .expect("securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    for (probe, path) in [
        (&container.liveness_probe, "/healthz"),
        (&container.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("no HTTP probe on {path}"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.scheme.as_deref().unwrap_or("HTTP"), "HTTP");
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("probes".into())
        );
    }
    let ports: BTreeSet<(String, i32)> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from([("https-metrics".into(), 8443), ("probes".into(), 8081)])
    );
    // The two replicas spread over nodes.
    let spread = pod.topology_spread_constraints.clone().unwrap_or_default();
    assert!(
        spread
            .iter()
            .any(|c| c.topology_key == "kubernetes.io/hostname" && c.max_skew == 1),
        "{spread:?}"
    );
    let budget = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
        ctx.client.clone(),
        NAMESPACE,
    )
    .get(NAME)
    .await
    .expect("the PodDisruptionBudget")
    .spec
    .expect("its spec");
    assert_eq!(
        budget.min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(
        budget.selector.and_then(|s| s.match_labels),
        spec.selector.match_labels.clone()
    );
    let service = Api::<Service>::namespaced(ctx.client.clone(), NAMESPACE)
        .get("deploymentchannel-operator-metrics")
        .await
        .expect("the metrics Service");
    let service_spec = service.spec.unwrap_or_default();
    let service_ports: Vec<(String, i32)> = service_spec
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.port))
        .collect();
    assert_eq!(service_ports, vec![("https-metrics".to_string(), 8443)]);
    let selector = service_spec.selector.unwrap_or_default();
    let pod_labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the Service selects {selector:?}, the pods are labelled {pod_labels:?}"
    );
}

async fn kubectl_apply_k_installs_each_component(ctx: Ctx) {
    // As on a cluster that runs the Prometheus operator and cert-manager:
    // their CRDs first.
    for crds in [
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/monitoring/prometheus_operator_crds.yaml"
        ),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/cert_manager_crds.yaml"
        ),
    ] {
        let out = ctx.env.kubectl(&["apply", "-f", crds], None);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = ctx.env.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "-f",
                crds,
                "--timeout=30s",
            ],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }

    let expected: [(&str, &[(&str, &str)]); 5] = [
        ("network-policy", &[("networkpolicy", NAME)]),
        (
            "metrics-certificate",
            &[
                ("issuer", "deploymentchannel-operator-selfsigned"),
                ("certificate", "deploymentchannel-operator-metrics-ca"),
                ("issuer", "deploymentchannel-operator-metrics-ca"),
                ("certificate", "deploymentchannel-operator-metrics"),
            ],
        ),
        ("metrics-certificate,monitoring,monitoring-verified", &[]),
        (
            "monitoring",
            &[
                ("servicemonitor", NAME),
                ("prometheusrule", NAME),
                ("configmap", "deploymentchannel-operator-dashboard"),
            ],
        ),
        ("network-policy,monitoring", &[]),
    ];
    for (components, objects) in expected {
        let list: Vec<&str> = components.split(',').collect();
        // A component that patches the Deployment is applied as a server
        // dry run: the API server checks every object, and the Deployment
        // other scenarios install stays as they left it.
        let dry_run = list.contains(&"metrics-certificate");
        let output = if dry_run {
            let dir = overlay(&list, &[]);
            let out = ctx.env.kubectl(
                &[
                    "apply",
                    "-k",
                    dir.path().to_str().unwrap(),
                    "--dry-run=server",
                ],
                None,
            );
            assert!(out.status.success(), "{components}: {}", stderr(&out));
            stdout(&out)
        } else {
            kubectl_apply_overlay(&ctx, &list)
        };
        for (kind, name) in objects {
            assert!(
                output.lines().any(|l| l.starts_with(&format!("{kind}."))
                    && l.contains(&format!("/{name} "))
                    || l.starts_with(&format!("{kind}/{name} "))),
                "kubectl apply -k with {components} does not report {kind} {name}:\n{output}"
            );
            if dry_run {
                continue;
            }
            let target = format!("{kind}/{name}");
            let out = ctx
                .env
                .kubectl(&["get", &target, "-n", NAMESPACE, "-o", "json"], None);
            assert!(out.status.success(), "{target}: {}", stderr(&out));
            let object: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(
                object["metadata"]["labels"]["app.kubernetes.io/name"], NAME,
                "{target} has no app.kubernetes.io/name label"
            );
        }
    }
    let out = ctx.env.kubectl(
        &[
            "get",
            "configmap/deploymentchannel-operator-dashboard",
            "-n",
            NAMESPACE,
            "-o",
            "json",
        ],
        None,
    );
    let dashboard: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");

    // The issued certificate is what the operator serves, and what the
    // verifying ServiceMonitor trusts and names; every object is labelled.
    let dir = overlay(
        &["metrics-certificate", "monitoring", "monitoring-verified"],
        &[],
    );
    let rendered = kustomize(&ctx, dir.path().to_str().unwrap());
    for object in &rendered {
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/name"],
            NAME,
            "{:?} has no app.kubernetes.io/name label",
            identity(object)
        );
    }
    let get = |target: &str| -> Value {
        let (kind, name) = target.split_once('/').unwrap();
        rendered
            .iter()
            .find(|o| {
                o["kind"]
                    .as_str()
                    .is_some_and(|k| k.eq_ignore_ascii_case(kind))
                    && o["metadata"]["name"] == name
            })
            .unwrap_or_else(|| panic!("{target} is not rendered"))
            .clone()
    };
    let certificate = get("certificate/deploymentchannel-operator-metrics");
    let secret = certificate["spec"]["secretName"]
        .as_str()
        .expect("a secretName");
    let deployment = get(&format!("deployment/{NAME}"));
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["secret"]["secretName"] == secret),
        "the Deployment does not mount Secret {secret}: {pod}"
    );
    let env = &pod["containers"][0]["env"];
    assert!(
        env.as_array()
            .into_iter()
            .flatten()
            .any(|e| e["name"] == "METRICS_CERT_DIR"),
        "no METRICS_CERT_DIR: {env}"
    );
    let monitor = get(&format!("servicemonitor/{NAME}"));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["tlsConfig"]["ca"]["secret"]["name"], secret);
    assert!(
        endpoint["tlsConfig"]["insecureSkipVerify"].is_null(),
        "{endpoint}"
    );
    assert!(endpoint["bearerTokenFile"].is_null(), "{endpoint}");
    assert_eq!(endpoint["authorization"]["type"], "Bearer");
    let dns = certificate["spec"]["dnsNames"]
        .as_array()
        .expect("dnsNames");
    assert!(
        dns.iter()
            .any(|n| *n == endpoint["tlsConfig"]["serverName"]),
        "the certificate's names {dns:?} do not include the scrape's serverName"
    );
    let json = dashboard["data"]["deploymentchannel-operator.json"]
        .as_str()
        .expect("the dashboard JSON");
    let json: Value = serde_json::from_str(json).expect("valid JSON");
    assert_eq!(json["uid"], "deploymentchannel-operator");
}

/// The ConfigMap docs/install.md tells installers to write to set the
/// runbooks' base URL, as YAML.
fn documented_runbook_base_config() -> (String, String) {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/install.md"))
        .expect("docs/install.md");
    for (doc, value) in crate::markdown::yaml_documents(&page) {
        if value["kind"] == "ConfigMap"
            && value["metadata"]["name"] == "deploymentchannel-operator-runbooks"
        {
            let base = value["data"]["baseURL"]
                .as_str()
                .expect("the documented ConfigMap has data.baseURL")
                .to_string();
            return (doc.to_string(), base);
        }
    }
    panic!("docs/install.md shows no ConfigMap deploymentchannel-operator-runbooks");
}

/// Every alert's (name, runbook_url) in rendered objects.
fn runbook_links(objects: &[Value]) -> Vec<(String, String)> {
    let rules: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "PrometheusRule")
        .collect();
    assert_eq!(rules.len(), 1, "one PrometheusRule is rendered");
    rules[0]["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .filter_map(|r| {
            Some((
                r["alert"].as_str()?.to_string(),
                r["annotations"]["runbook_url"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The alerts link the project's runbooks; an installer who writes the
/// ConfigMap of docs/install.md and adds the runbook-base-url component
/// gets every link on their base, each with its own anchor, and the
/// ConfigMap is not rendered (it would not be applied).
async fn one_value_sets_the_base_of_every_runbook_link(ctx: Ctx) {
    let default_base = format!(
        "{}/blob/main/docs/runbooks.md",
        env!("CARGO_PKG_REPOSITORY")
    );
    let plain = overlay(&["monitoring"], &[]);
    let links = runbook_links(&kustomize(&ctx, plain.path().to_str().unwrap()));
    assert!(links.len() >= 6, "{links:?}");
    for (alert, url) in &links {
        assert_eq!(url, &format!("{default_base}#{}", alert.to_lowercase()));
    }

    let (config, base) = documented_runbook_base_config();
    assert_ne!(base, default_base);
    let set = overlay(
        &["monitoring", "runbook-base-url"],
        &[("runbooks.yaml", config)],
    );
    let rendered = kustomize(&ctx, set.path().to_str().unwrap());
    let links = runbook_links(&rendered);
    assert!(links.len() >= 6, "{links:?}");
    for (alert, url) in &links {
        assert_eq!(url, &format!("{base}#{}", alert.to_lowercase()));
    }
    assert!(
        !rendered
            .iter()
            .any(|o| o["metadata"]["name"] == "deploymentchannel-operator-runbooks"),
        "the ConfigMap holding the base URL is rendered"
    );
    // Without the ConfigMap the component cannot build: the value is required.
    let missing = overlay(&["monitoring", "runbook-base-url"], &[]);
    let out = ctx
        .env
        .kubectl(&["kustomize", missing.path().to_str().unwrap()], None);
    assert!(
        !out.status.success(),
        "runbook-base-url built without the ConfigMap"
    );
}

/// `kubectl auth can-i` as the operator's ServiceAccount: true for yes,
/// false for no.
fn can_i(ctx: &Ctx, args: &[&str]) -> bool {
    let as_user = format!("--as={SERVICE_ACCOUNT_USER}");
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    all.push(&as_user);
    let out = ctx.env.kubectl(&all, None);
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!(
            "kubectl {} failed: {}{}",
            all.join(" "),
            stdout(&out),
            stderr(&out)
        ),
    }
}

async fn rbac_allows_exactly_what_the_operator_needs(ctx: Ctx) {
    install(&ctx).await;
    let ns = ctx.ns.as_str();
    let all = "--all-namespaces";
    let channels = "deploymentchannels.interactions.dev";
    let phones = "phoneconfigurations.interactions.dev";
    let status = "--subresource=status";
    let allowed: Vec<Vec<&str>> = vec![
        vec!["get", channels, all],
        vec!["list", channels, all],
        vec!["watch", channels, all],
        vec!["get", phones, all],
        vec!["list", phones, all],
        vec!["watch", phones, all],
        vec!["patch", channels, status, all],
        vec!["patch", phones, status, all],
        vec!["create", "events.events.k8s.io", "-n", ns],
        vec!["patch", "events.events.k8s.io", "-n", ns],
        // Its own Lease only (resourceNames); `create` cannot be limited by name.
        vec![
            "get",
            "leases.coordination.k8s.io/deploymentchannel-operator",
            "-n",
            NAMESPACE,
        ],
        vec!["create", "leases.coordination.k8s.io", "-n", NAMESPACE],
        vec![
            "patch",
            "leases.coordination.k8s.io/deploymentchannel-operator",
            "-n",
            NAMESPACE,
        ],
        vec!["create", "tokenreviews.authentication.k8s.io"],
        vec!["create", "subjectaccessreviews.authorization.k8s.io"],
    ];
    let denied: Vec<Vec<&str>> = vec![
        vec!["get", "secrets", "-n", NAMESPACE],
        vec!["get", "secrets", "-n", ns],
        vec!["list", "secrets", all],
        vec!["watch", "secrets", all],
        // Status is written by server-side apply patches only.
        vec!["update", channels, status, "-n", ns],
        vec!["update", phones, status, "-n", ns],
        vec!["update", "leases.coordination.k8s.io", "-n", NAMESPACE],
        vec!["get", "leases.coordination.k8s.io/another", "-n", NAMESPACE],
        vec![
            "patch",
            "leases.coordination.k8s.io/another",
            "-n",
            NAMESPACE,
        ],
        // The operator reviews scrapers' tokens; it is no scraper itself.
        vec!["get", "/metrics"],
        vec!["patch", channels, "-n", ns],
        vec!["update", channels, "-n", ns],
        vec!["create", channels, "-n", ns],
        vec!["delete", channels, "-n", ns],
        vec!["deletecollection", channels, "-n", ns],
        vec!["patch", phones, "-n", ns],
        vec!["update", phones, "-n", ns],
        vec!["create", phones, "-n", ns],
        vec!["delete", phones, "-n", ns],
        vec!["delete", "events.events.k8s.io", "-n", ns],
        vec!["list", "events.events.k8s.io", all],
        vec!["update", "leases.coordination.k8s.io", "-n", "default"],
        vec!["get", "leases.coordination.k8s.io", "-n", ns],
        vec!["delete", "leases.coordination.k8s.io", "-n", NAMESPACE],
        vec!["list", "leases.coordination.k8s.io", "-n", NAMESPACE],
        vec!["list", "pods", all],
        vec!["get", "configmaps", "-n", NAMESPACE],
        vec!["update", "customresourcedefinitions.apiextensions.k8s.io"],
        vec!["*", "*", all],
    ];
    // RBAC takes effect shortly after the apply: wait for the first grant.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !can_i(&ctx, &allowed[0]) {
        assert!(
            Instant::now() < deadline,
            "the operator's ClusterRole never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut wrong = Vec::new();
    for (checks, expected) in [(&allowed, true), (&denied, false)] {
        for check in checks {
            let mut answer = can_i(&ctx, check);
            // Grants may still be arriving; a denial never turns into a grant.
            while expected && !answer && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                answer = can_i(&ctx, check);
            }
            if answer != expected {
                wrong.push(format!(
                    "can-i {}: {} (expected {})",
                    check.join(" "),
                    if answer { "yes" } else { "no" },
                    if expected { "yes" } else { "no" }
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the operator's RBAC is not what it needs:\n{}",
        wrong.join("\n")
    );

    // Exactly: everything the ServiceAccount may do, less what any
    // ServiceAccount may do, is the verbs the operator sends.
    let baseline_user = format!("system:serviceaccount:{ns}:baseline");
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(ctx.client.clone(), ns)
        .create(
            &Default::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "baseline"}})).unwrap(),
        )
        .await
        .expect("a baseline ServiceAccount");
    let crud = |resource: &str, verbs: &[&str]| {
        verbs
            .iter()
            .map(|v| (resource.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let cluster_wide: Vec<(String, String)> = [
        crud(channels, &["get", "list", "watch"]),
        crud(phones, &["get", "list", "watch"]),
        crud("deploymentchannels.interactions.dev/status", &["patch"]),
        crud("phoneconfigurations.interactions.dev/status", &["patch"]),
        crud("events.events.k8s.io", &["create", "patch"]),
        crud("tokenreviews.authentication.k8s.io", &["create"]),
        crud("subjectaccessreviews.authorization.k8s.io", &["create"]),
    ]
    .concat();
    let in_own_namespace: Vec<(String, String)> = [
        cluster_wide.clone(),
        crud("leases.coordination.k8s.io", &["get", "create", "patch"]),
    ]
    .concat();
    for (namespace, expected) in [(ns, cluster_wide), (NAMESPACE, in_own_namespace)] {
        let granted = can_i_list(&ctx, SERVICE_ACCOUNT_USER, namespace);
        let baseline = can_i_list(&ctx, &baseline_user, namespace);
        let extra: BTreeSet<_> = granted.difference(&baseline).cloned().collect();
        let expected: BTreeSet<_> = expected.into_iter().collect();
        assert_eq!(
            extra, expected,
            "kubectl auth can-i --list -n {namespace}: the operator holds other verbs than it uses"
        );
    }
}

/// `kubectl auth can-i --list -n NAMESPACE --as USER`, as (resource or
/// non-resource URL, verb) pairs.
fn can_i_list(ctx: &Ctx, user: &str, namespace: &str) -> BTreeSet<(String, String)> {
    let as_user = format!("--as={user}");
    let out = ctx.env.kubectl(
        &["auth", "can-i", "--list", "-n", namespace, &as_user],
        None,
    );
    assert!(
        out.status.success(),
        "kubectl auth can-i --list: {}",
        stderr(&out)
    );
    let mut pairs = BTreeSet::new();
    // Resources   Non-Resource URLs   Resource Names   Verbs
    // events.events.k8s.io   []   []   [create patch]
    for line in stdout(&out).lines().skip(1) {
        let resource = line.split('[').next().unwrap_or_default().trim();
        let lists: Vec<Vec<&str>> = line
            .split('[')
            .skip(1)
            .map(|l| {
                l.split(']')
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect()
            })
            .collect();
        let [urls, _names, verbs] = &lists[..] else {
            panic!("unexpected kubectl auth can-i --list line {line:?}");
        };
        let subjects: Vec<String> = if resource.is_empty() {
            urls.iter().map(|u| u.to_string()).collect()
        } else {
            vec![resource.to_string()]
        };
        for subject in subjects {
            for verb in verbs {
                pairs.insert((subject.clone(), verb.to_string()));
            }
        }
    }
    pairs
}

/// The sample manifests, in the order their kustomization lists them.
fn samples() -> Vec<Value> {
    let dir = Path::new(SAMPLES);
    let kustomization =
        std::fs::read_to_string(dir.join("kustomization.yaml")).expect("samples kustomization");
    let kustomization = parse_documents(&kustomization, "deploy/samples/kustomization.yaml");
    let listed: Vec<String> = kustomization[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .expect("deploy/samples")
        .flatten()
        .filter_map(|f| f.file_name().into_string().ok())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    present.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        sorted, present,
        "deploy/samples/kustomization.yaml lists every sample"
    );
    listed
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(dir.join(file)).expect("readable sample");
            parse_documents(&text, file)
        })
        .collect()
}

async fn operator_as_its_service_account_converges_the_samples(ctx: Ctx) {
    install(&ctx).await;
    let mut config = ctx.env.config().await;
    config.auth_info.impersonate = Some(SERVICE_ACCOUNT_USER.into());
    // Wait until RBAC lets the ServiceAccount read channels, so that the
    // operator's first requests are not refused by a grant still in flight.
    let as_operator = Client::try_from(config.clone()).expect("client");
    ctx.eventually(
        "the operator's ClusterRole to take effect",
        Duration::from_secs(30),
        || async {
            Api::<DeploymentChannel>::namespaced(as_operator.clone(), &ctx.ns)
                .list(&ListParams::default())
                .await
                .ok()
        },
    )
    .await;
    // The client is really the ServiceAccount, not the admin.
    match Api::<Secret>::namespaced(as_operator.clone(), &ctx.ns)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("the ServiceAccount can list Secrets: {other:?}"),
    }

    let operator = Operator::start_with_config(&ctx, config).await;
    let samples = samples();
    for manifest in &samples {
        ctx.must_apply(manifest).await;
    }
    let channels: Vec<&str> = samples
        .iter()
        .filter(|m| m["kind"] == "DeploymentChannel")
        .filter_map(|m| m["metadata"]["name"].as_str())
        .collect();
    assert_eq!(channels.len(), 4, "one sample channel of each type");
    for name in &channels {
        // Fail at once, naming the request, when RBAC refuses the operator.
        ctx.eventually(
            &format!("{name} to have a status"),
            Duration::from_secs(30),
            || async {
                let forbidden = operator.requests.forbidden_snapshot();
                assert!(
                    forbidden.is_empty(),
                    "the API server refused the operator's ServiceAccount: {forbidden:?}"
                );
                ctx.channels().get(name).await.ok()?.status.map(drop)
            },
        )
        .await;
        ctx.wait_ready(name, "True", "Ready").await;
    }
    for phone in samples
        .iter()
        .filter(|m| m["kind"] == "PhoneConfiguration")
        .filter_map(|m| m["metadata"]["name"].as_str())
    {
        let bound = samples
            .iter()
            .filter(|m| m["spec"]["configuration"]["phoneConfigurationId"] == phone)
            .count() as i64;
        ctx.eventually(
            &format!("PhoneConfiguration {phone} Ready with {bound} bound channels"),
            Duration::from_secs(30),
            || async {
                let pc = ctx.phones().get(phone).await.ok()?;
                let status = pc.status?;
                (status.observed_generation == pc.metadata.generation
                    && i64::from(status.bound_channels) == bound
                    && status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True"))
                .then_some(())
            },
        )
        .await;
    }
    assert!(
        operator.requests.status_writes() > 0,
        "the operator wrote status through its own client"
    );
    let forbidden = operator.requests.forbidden_snapshot();
    operator.stop().await;
    assert!(
        forbidden.is_empty(),
        "the API server refused the operator's ServiceAccount: {forbidden:?}"
    );
}
