//! What every scenario shares: its namespace, a client, polling with
//! deadlines, and cleanup of what it created.

use std::{future::Future, panic::AssertUnwindSafe, pin::Pin, sync::Arc, time::Duration};

use deploymentchannel_operator::core::api::{DeploymentChannel, PhoneConfiguration};
use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use libtest_mimic::Failed;
use serde_json::{Value, json};

use crate::harness::TestEnv;

type ScenarioFn = fn(Ctx) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// One named scenario.
pub struct Scenario {
    pub name: &'static str,
    pub run: ScenarioFn,
}

/// Declares scenarios from `async fn name(ctx: Ctx)` functions.
#[macro_export]
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        vec![$($crate::support::Scenario { name: stringify!($name), run: |ctx| Box::pin($name(ctx)) }),*]
    };
}

/// What a scenario works with.
#[derive(Clone)]
pub struct Ctx {
    pub env: Arc<TestEnv>,
    pub client: Client,
    pub ns: String,
}

impl Ctx {
    pub fn channels(&self) -> Api<DeploymentChannel> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn phones(&self) -> Api<PhoneConfiguration> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Server-side apply of a manifest (as `kubectl apply --server-side`).
    pub async fn apply(&self, manifest: &Value) -> Result<(), kube::Error> {
        let name = manifest["metadata"]["name"]
            .as_str()
            .expect("manifest has a name");
        let params = PatchParams::apply("e2e-user").force();
        match manifest["kind"].as_str() {
            Some("DeploymentChannel") => self
                .channels()
                .patch(name, &params, &Patch::Apply(manifest))
                .await
                .map(drop),
            Some("PhoneConfiguration") => self
                .phones()
                .patch(name, &params, &Patch::Apply(manifest))
                .await
                .map(drop),
            other => panic!("unexpected kind {other:?}"),
        }
    }

    /// Applies and panics with the API server's answer when refused.
    pub async fn must_apply(&self, manifest: &Value) {
        if let Err(e) = self.apply(manifest).await {
            panic!("applying {} was refused: {e}", manifest["metadata"]["name"]);
        }
    }

    /// Polls `check` until it returns `Some`, or panics after `timeout`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A DeploymentChannel manifest.
pub fn channel(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel", "metadata": {"name": name}, "spec": spec})
}

/// A WEB DeploymentChannel manifest for `url`.
pub fn web(name: &str, url: &str) -> Value {
    channel(
        name,
        json!({"deploymentType": "WEB", "channelIdentifier": url, "configuration": {}}),
    )
}

/// A PhoneConfiguration manifest.
pub fn phone(name: &str, number: &str, capabilities: &[&str]) -> Value {
    json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "PhoneConfiguration", "metadata": {"name": name},
           "spec": {"phoneNumber": number, "provider": "test-provider", "capabilities": capabilities}})
}

/// Runs one scenario in a fresh namespace, then deletes what it created, also
/// when it panicked. A bare control plane has no namespace controller, so the
/// namespace itself is left behind.
pub fn run(env: &Arc<TestEnv>, scenario: &Scenario) -> Result<(), Failed> {
    let env = env.clone();
    let run = scenario.run;
    let ns = format!(
        "{}-{}",
        scenario
            .name
            .replace('_', "-")
            .chars()
            .take(40)
            .collect::<String>(),
        suffix()
    );
    env.clone().block_on(async move {
        let client = env.client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|e| Failed::from(format!("cannot create namespace {ns}: {e}")))?;
        let ctx = Ctx { env, client, ns };
        let outcome = AssertUnwindSafe(run(ctx.clone())).catch_unwind().await;
        cleanup(&ctx).await;
        outcome.map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "scenario panicked".into());
            Failed::from(message)
        })
    })
}

async fn cleanup(ctx: &Ctx) {
    let _ = ctx
        .channels()
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let _ = ctx
        .phones()
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
}

fn suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:x}{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The operator's controllers, in-process, watching one namespace, with a
/// client that counts its requests.
pub struct Operator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    pub requests: crate::counting::RequestCounts,
    pub metrics: Arc<deploymentchannel_operator::operator::metrics::Metrics>,
}

impl Operator {
    /// As [`Operator::start`], with a client built from `config`, for example
    /// one that impersonates the operator's ServiceAccount. `requests` also
    /// counts the requests the API server answered 403 Forbidden.
    pub async fn start_with_config(ctx: &Ctx, config: kube::Config) -> Self {
        use deploymentchannel_operator::{
            operator::controller::{self, Settings},
            operator::metrics::api_requests::ApiMetricsLayer,
            operator::request_timeout::RequestTimeoutLayer,
        };
        let metrics = Arc::new(deploymentchannel_operator::operator::metrics::Metrics::default());
        let requests = crate::counting::RequestCounts(metrics.clone());
        let client = kube::client::ClientBuilder::try_from(config)
            .expect("client")
            .with_layer(&RequestTimeoutLayer::default())
            .with_layer(&ApiMetricsLayer(metrics.clone()))
            .build();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let settings = Settings {
            namespace: Some(ctx.ns.clone()),
            ..Settings::default()
        };
        let readiness = Arc::new(
            deploymentchannel_operator::operator::replica_readiness::ReplicaReadiness::new(
                metrics.caches_synced.clone(),
            ),
        );
        let task = tokio::spawn(controller::run(
            client,
            settings,
            metrics.clone(),
            readiness,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            stop: Some(stop),
            task,
            requests,
            metrics,
        }
    }

    pub async fn start(ctx: &Ctx) -> Self {
        Self::start_with_config(ctx, ctx.env.config().await).await
    }

    /// Stops the controllers and waits until they have stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the operator stops within 30s")
            .expect("the operator task does not panic");
    }

    /// Reconciles finished so far whose result was `result` (written, unchanged, error).
    pub fn reconciles(&self, result: &str) -> u64 {
        let labels = format!("result=\"{result}\"");
        crate::harness::metric_value(
            &self.metrics.render(),
            "deploymentchannel_operator_reconciles_total",
            &labels,
        ) as u64
    }

    /// The size of one of the operator's per-object tables.
    pub fn table_entries(&self, table: &str) -> u64 {
        crate::harness::metric_value(
            &self.metrics.render(),
            "deploymentchannel_operator_table_entries",
            &format!("table=\"{table}\""),
        ) as u64
    }
}

impl Ctx {
    /// Waits until a channel's status satisfies `check`, returning it; on
    /// timeout the panic shows the last status seen.
    pub async fn wait_channel<F>(&self, name: &str, what: &str, check: F) -> DeploymentChannel
    where
        F: Fn(&DeploymentChannel) -> bool,
    {
        let api = self.channels();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let seen = api.get_opt(name).await;
            if let Ok(Some(channel)) = &seen
                && check(channel)
            {
                return channel.clone();
            }
            if tokio::time::Instant::now() > deadline {
                let last = match seen {
                    Ok(Some(c)) => serde_json::to_string_pretty(&serde_json::json!({
                        "status": c.status, "managedFields": c.metadata.managed_fields}))
                    .unwrap_or_default(),
                    other => format!("{other:?}"),
                };
                panic!("timed out after 30s waiting for {name}: {what}; last seen: {last}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a channel's Ready condition has `status` and `reason` at its current generation.
    pub async fn wait_ready(&self, name: &str, status: &str, reason: &str) -> DeploymentChannel {
        self.wait_channel(name, &format!("Ready={status} ({reason})"), |c| {
            let Some(s) = &c.status else { return false };
            s.observed_generation == c.metadata.generation
                && s.conditions
                    .iter()
                    .any(|k| k.type_ == "Ready" && k.status == status && k.reason == reason)
        })
        .await
    }
}

/// A condition of a channel by type.
pub fn condition<'a>(
    channel: &'a DeploymentChannel,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    channel
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Binds the ServiceAccount `account` to a Role of its own name with
/// `rules`, in the scenario's namespace (applied: a second call replaces
/// the rules).
pub async fn bind_role(ctx: &Ctx, account: &str, rules: Value) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::{Patch, PatchParams};
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
      "metadata": {"name": account, "namespace": ctx.ns}, "rules": rules});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": account, "namespace": ctx.ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ctx.ns}]});
    let apply = PatchParams::apply("e2e").force();
    Api::<Role>::namespaced(ctx.client.clone(), &ctx.ns)
        .patch(account, &apply, &Patch::Apply(role))
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(ctx.client.clone(), &ctx.ns)
        .patch(account, &apply, &Patch::Apply(binding))
        .await
        .unwrap();
}
