//! The workload for N channels, what each should end up as, and creating
//! it as a client would (the floor also writes each status itself).

use std::collections::HashMap;

use deploymentchannel_operator::{
    core::api::{DeploymentChannel, DeploymentChannelStatus, PhoneConfiguration},
    core::desired_status::{desired_channel_status, phone_configuration_status},
    core::index::{Index, ObjectKey},
    core::validation::{validate_channel, validate_phone_configuration},
    operator::controller::now,
};
use futures::{StreamExt, TryStreamExt, stream};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::CONCURRENCY;

/// What one channel should end up as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Ready,
    Conflict,
    Invalid,
}

impl Expected {
    pub fn matches(self, ready: &str, reason: &str) -> bool {
        match self {
            Expected::Ready => ready == "True",
            Expected::Conflict => reason == "IdentifierConflict",
            Expected::Invalid => reason == "InvalidSpec",
        }
    }
}

pub struct Workload {
    pub phones: Vec<Value>,
    /// Created first: PhoneConfigurations' holders, WEB, MOBILE, invalid ones.
    pub channels: Vec<(Value, Expected)>,
    /// Created after the first wave, so that they lose their claims.
    pub losers: Vec<(Value, Expected)>,
}

pub fn channel(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel", "metadata": {"name": name}, "spec": spec})
}

/// The workload for N; every name starts with `prefix`.
pub fn workload(n: usize, prefix: &str) -> Workload {
    let phone_count = (n / 10).max(1);
    let mut phones = Vec::new();
    for p in 0..phone_count {
        // +1 212 exchange 200-999, line 0000-9999: valid NANP numbers.
        let number = format!("+1212{}{:04}", 200 + p / 10_000, p % 10_000);
        phones.push(json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "PhoneConfiguration",
            "metadata": {"name": format!("{prefix}pc-{p:05}")},
            "spec": {"phoneNumber": number, "provider": "bench", "capabilities": ["VOICE", "SMS"]}}));
    }
    let mut channels = Vec::new();
    let mut losers = Vec::new();
    for i in 0..n / 2 {
        let p = i % phone_count;
        let round = i / phone_count;
        let ty = if round.is_multiple_of(2) {
            "CALLS"
        } else {
            "SMS"
        };
        let number = phones[p]["spec"]["phoneNumber"].clone();
        let object = channel(
            &format!("{prefix}pc-{p:05}-{}-{round}", ty.to_lowercase()),
            json!({"deploymentType": ty, "channelIdentifier": number, "configuration": {"phoneConfigurationId": format!("{prefix}pc-{p:05}")}}),
        );
        if round < 2 {
            channels.push((object, Expected::Ready));
        } else {
            losers.push((object, Expected::Conflict));
        }
    }
    for i in 0..n - n / 2 {
        let invalid = i % 50 == 49;
        let (name, spec) = if i.is_multiple_of(2) {
            // '<' passes the admission pattern but is no valid host for the URL parser.
            let host = if invalid {
                format!("bad<host-{i}.example.com")
            } else {
                format!("site-{i}.example.com")
            };
            (
                format!("{prefix}web-{i:05}"),
                json!({"deploymentType": "WEB", "channelIdentifier": format!("https://{host}"), "configuration": {}}),
            )
        } else {
            // An Android package segment may not start with a digit: admission accepts it, the controller does not.
            let app = if invalid {
                format!("com.example.{i}app")
            } else {
                format!("com.example.app{i}")
            };
            (
                format!("{prefix}app-{i:05}"),
                json!({"deploymentType": "MOBILE", "channelIdentifier": app,
                "configuration": {"packageName": app, "platform": "ANDROID"}}),
            )
        };
        channels.push((
            channel(&name, spec),
            if invalid {
                Expected::Invalid
            } else {
                Expected::Ready
            },
        ));
    }
    Workload {
        phones,
        channels,
        losers,
    }
}

/// Creates the PhoneConfigurations and channels (losers last) at the bench
/// concurrency; with `write_status`, also writes each channel's status, as
/// the floor's stand-in for the operator.
pub async fn create_all(
    client: &Client,
    ns: &str,
    work: &Workload,
    write_status: bool,
) -> Result<(), String> {
    let phones: Api<PhoneConfiguration> = Api::namespaced(client.clone(), ns);
    let channels: Api<DeploymentChannel> = Api::namespaced(client.clone(), ns);
    let params = PatchParams::apply("bench").force();
    let created_phones: Vec<PhoneConfiguration> = stream::iter(work.phones.iter())
        .map(|pc| {
            let phones = phones.clone();
            let params = params.clone();
            async move {
                let name = pc["metadata"]["name"].as_str().unwrap();
                let apply = Patch::Apply(pc);
                phones
                    .patch(name, &params, &apply)
                    .await
                    .map_err(|e| format!("{name}: {e}"))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    // The floor writes the very statuses the operator computes, so both send the same bytes.
    let statuses = if write_status {
        expected_statuses(ns, work, &created_phones)
    } else {
        HashMap::new()
    };
    for wave in [&work.channels, &work.losers] {
        stream::iter(wave.iter().map(Ok))
            .try_for_each_concurrent(CONCURRENCY, |(object, _)| {
                let channels = channels.clone();
                let params = params.clone();
                let statuses = &statuses;
                async move {
                    let name = object["metadata"]["name"].as_str().unwrap();
                    let apply = Patch::Apply(object);
                    let created = channels.patch(name, &params, &apply).await.map_err(|e| format!("{name}: {e}"))?;
                    if let Some(status) = statuses.get(name) {
                        let mut status = status.clone();
                        status.observed_generation = created.metadata.generation;
                        status.conditions.iter_mut().for_each(|c| c.observed_generation = created.metadata.generation);
                        let status = json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel", "status": status});
                        let floor = PatchParams::apply("bench-floor").force();
                        let apply = Patch::Apply(&status);
                        channels.patch_status(name, &floor, &apply)
                            .await
                            .map_err(|e| format!("{name} status: {e}"))?;
                    }
                    Ok::<(), String>(())
                }
            })
            .await?;
    }
    if write_status {
        // And each PhoneConfiguration's status once, as the operator writes it when the burst settles.
        let mut bound: HashMap<&str, usize> = HashMap::new();
        for (channel, _) in work.channels.iter().chain(&work.losers) {
            if let Some(pc) = channel["spec"]["configuration"]["phoneConfigurationId"].as_str() {
                *bound.entry(pc).or_default() += 1;
            }
        }
        let time = now();
        stream::iter(created_phones.iter().map(Ok))
            .try_for_each_concurrent(CONCURRENCY, |pc| {
                let phones = phones.clone();
                let name = pc.metadata.name.clone().unwrap_or_default();
                let validation = validate_phone_configuration(&pc.spec);
                let status = phone_configuration_status(
                    pc.metadata.generation,
                    &validation,
                    bound.get(name.as_str()).copied().unwrap_or(0),
                    None,
                    &time,
                );
                async move {
                    let status = json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "PhoneConfiguration", "status": status});
                    let floor = PatchParams::apply("bench-floor").force();
                    let apply = Patch::Apply(&status);
                    phones.patch_status(&name, &floor, &apply).await.map(drop).map_err(|e| format!("{name} status: {e}"))
                }
            })
            .await?;
    }
    Ok(())
}

/// The status the operator computes for each channel of the workload, with
/// the operator's own pure code (claims go to the first wave, as created).
fn expected_statuses(
    ns: &str,
    work: &Workload,
    phones: &[PhoneConfiguration],
) -> HashMap<String, DeploymentChannelStatus> {
    let channels: Vec<DeploymentChannel> = work
        .channels
        .iter()
        .chain(&work.losers)
        .map(|(object, _)| {
            let mut channel: DeploymentChannel =
                serde_json::from_value(object.clone()).expect("a workload channel");
            channel.metadata.namespace = Some(ns.to_string());
            channel.metadata.generation = Some(1);
            channel
        })
        .collect();
    let index = Index::in_order(&channels);
    let by_name: HashMap<&str, &PhoneConfiguration> = phones
        .iter()
        .map(|p| (p.metadata.name.as_deref().unwrap_or_default(), p))
        .collect();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    channels
        .iter()
        .map(|channel| {
            let name = channel.metadata.name.clone().unwrap_or_default();
            let holder = index.claim_holder(&ObjectKey::new(ns, &name));
            let status = desired_channel_status(
                channel.placement(),
                &validate_channel(&channel.spec),
                |_, name| Ok(by_name.get(name).copied()),
                holder.as_ref(),
                None,
                &now,
            );
            (name, status)
        })
        .collect()
}
