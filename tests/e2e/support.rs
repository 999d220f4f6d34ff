//! What every scenario shares: its namespace, a client, polling with
//! deadlines, and cleanup of what it created.

use std::{future::Future, panic::AssertUnwindSafe, pin::Pin, sync::Arc, time::Duration};

use deploymentchannel_operator::api::{DeploymentChannel, PhoneConfiguration};
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
