//! Watching a namespace until the workload has converged: every channel
//! with its expected status, every PhoneConfiguration with its bound
//! channels.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use deploymentchannel_operator::core::api::{DeploymentChannel, PhoneConfiguration};
use futures::StreamExt;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};

use crate::workload::{Expected, Workload, create_all};

/// Creates `work` (as the operator's client would) and watches until every
/// channel of it has its expected status; returns when.
pub async fn apply_converged(
    client: &Client,
    ns: &str,
    work: &Workload,
) -> Result<Instant, String> {
    let expected: HashMap<String, Expected> = work
        .channels
        .iter()
        .chain(&work.losers)
        .map(|(c, e)| (c["metadata"]["name"].as_str().unwrap().to_string(), *e))
        .collect();
    let seen = converged(client, ns, work, |name, current, ready| {
        current
            && ready.is_some_and(|(status, reason)| {
                expected
                    .get(name)
                    .is_some_and(|e| e.matches(status, reason))
            })
    });
    let ((), seen) = futures::future::try_join(create_all(client, ns, work, false), seen).await?;
    Ok(seen)
}

/// Watches the namespace until every channel of the workload satisfies
/// `done(name, at current generation, Some((ready status, reason)))`; returns when.
pub async fn converged(
    client: &Client,
    ns: &str,
    work: &Workload,
    done: impl Fn(&str, bool, Option<(&str, &str)>) -> bool,
) -> Result<Instant, String> {
    let total = work.channels.len() + work.losers.len();
    let api: Api<DeploymentChannel> = Api::namespaced(client.clone(), ns);
    let mut finished: HashMap<String, bool> = HashMap::new();
    let mut count = 0;
    let mut events = std::pin::pin!(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    let deadline = Instant::now() + Duration::from_secs(1800);
    while let Some(event) = tokio::time::timeout_at(deadline.into(), events.next())
        .await
        .map_err(|_| "not converged in 30 minutes".to_string())?
    {
        let Ok(channel) = event else { continue };
        let name = channel.metadata.name.clone().unwrap_or_default();
        let status = channel.status.as_ref();
        let current = status.is_some_and(|s| s.observed_generation == channel.metadata.generation);
        let ready = status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (c.status.as_str(), c.reason.as_str()));
        let now_done = done(&name, current, ready);
        let was_done = finished.insert(name, now_done).unwrap_or(false);
        match (was_done, now_done) {
            (false, true) => count += 1,
            (true, false) => count -= 1,
            _ => {}
        }
        if count == total {
            return Ok(Instant::now());
        }
    }
    Err("the watch ended".into())
}

/// Waits until every PhoneConfiguration reports its bound channels at its current generation.
pub async fn phones_converged(client: &Client, ns: &str, work: &Workload) -> Result<(), String> {
    let mut bound: HashMap<String, i32> = HashMap::new();
    for (channel, _) in work.channels.iter().chain(&work.losers) {
        if let Some(pc) = channel["spec"]["configuration"]["phoneConfigurationId"].as_str() {
            *bound.entry(pc.to_string()).or_default() += 1;
        }
    }
    let api: Api<PhoneConfiguration> = Api::namespaced(client.clone(), ns);
    for _ in 0..1200 {
        let list = api
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let done = list.items.iter().all(|pc| {
            let name = pc.metadata.name.as_deref().unwrap_or_default();
            pc.status.as_ref().is_some_and(|s| {
                s.observed_generation == pc.metadata.generation
                    && s.bound_channels == bound.get(name).copied().unwrap_or(0)
            })
        });
        if done && list.items.len() == work.phones.len() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err("PhoneConfigurations did not converge in 10 minutes".into())
}
