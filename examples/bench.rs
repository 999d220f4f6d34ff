//! Benchmark: how fast the operator converges, how many requests it makes
//! and how much memory it holds, for N channels, against the cost floor of
//! the API server itself.
//!
//! `cargo run --release --features e2e --example bench -- [N...]` (default
//! 100 1000 10000), with a control plane found as the e2e suite finds one
//! (`KUBEBUILDER_ASSETS` or `USE_EXISTING_CLUSTER=true`). When control
//! planes are started here, the floor and the operator of each size each get
//! a fresh one. `BENCH_IDLE_SECONDS` (default 60) sets how long the
//! converged operator is watched for writes.
//!
//! Workload for N: N/10 PhoneConfigurations, N/2 CALLS and SMS channels
//! spread over them, the rest WEB and MOBILE. A PhoneConfiguration holds one
//! number, so of the five phone channels per PhoneConfiguration one CALLS and
//! one SMS channel hold the number and the others report IdentifierConflict;
//! 2% of the WEB and MOBILE channels are invalid (layer-3 validation).
//!
//! `-- --churn ROUNDS [N...]` (`make bench CHURN=ROUNDS`): churn instead.
//! Next to N/10 resident WEB channels, each round creates the workload for N
//! under new names, waits until it converged, deletes it, and waits until
//! every per-object table is back at the live count; it prints the tables'
//! sizes and the operator's RSS per round.
//!
//! Floor: the same objects created by a plain client at the same
//! concurrency, each channel's status then written once by that client,
//! observed the same way (a watch until every channel has its status).

// The end-to-end suite's harness, of which the benchmark uses a part.
#[allow(dead_code)]
#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use deploymentchannel_operator::core::api::{DeploymentChannel, PhoneConfiguration};
use futures::{StreamExt, TryStreamExt, stream};
use harness::{SKIP_REASON, TestEnv, api_requests, http_get, is_write, metric_value};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};

/// Requests in flight at once, for the bench client and the operator alike.
const CONCURRENCY: usize = 16;

/// What one channel should end up as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Ready,
    Conflict,
    Invalid,
}

impl Expected {
    fn matches(self, ready: &str, reason: &str) -> bool {
        match self {
            Expected::Ready => ready == "True",
            Expected::Conflict => reason == "IdentifierConflict",
            Expected::Invalid => reason == "InvalidSpec",
        }
    }
}

struct Workload {
    phones: Vec<Value>,
    /// Created first: PhoneConfigurations' holders, WEB, MOBILE, invalid ones.
    channels: Vec<(Value, Expected)>,
    /// Created after the first wave, so that they lose their claims.
    losers: Vec<(Value, Expected)>,
}

fn channel(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel", "metadata": {"name": name}, "spec": spec})
}

/// The workload for N; every name starts with `prefix`.
fn workload(n: usize, prefix: &str) -> Workload {
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let churn_rounds = match args.iter().position(|a| a == "--churn") {
        Some(i) => match args.get(i + 1).and_then(|r| r.parse::<usize>().ok()) {
            Some(rounds) if rounds > 0 => Some(rounds),
            _ => {
                eprintln!("bench: --churn needs a number of rounds, for example --churn 5");
                std::process::exit(2);
            }
        },
        None => None,
    };
    let sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            churn_rounds.is_none() || args.get(i.wrapping_sub(1)).is_none_or(|a| a != "--churn")
        })
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000, 10_000]
    } else {
        sizes
    };
    let idle = Duration::from_secs(
        std::env::var("BENCH_IDLE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let mut results = Vec::new();
    for n in sizes {
        if let Some(rounds) = churn_rounds {
            let rounds = on_fresh_control_plane(async |env| {
                eprintln!("bench: churn N={n} on API server {}", env.server_version);
                churn::run(env, n, rounds).await
            });
            match rounds {
                Ok(rounds) => churn::print(n, &rounds),
                Err(e) => {
                    eprintln!("bench: churn N={n}: {e}");
                    std::process::exit(1);
                }
            }
            continue;
        }
        // The floor and the operator each get a control plane of their own,
        // so that neither runs on storage holding the other's objects.
        let measured = on_fresh_control_plane(async |env| {
            eprintln!("bench: N={n} on API server {}", env.server_version);
            measure_floor(env, n).await
        })
        .and_then(|floor| {
            on_fresh_control_plane(async |env| measure_operator(env, n, floor, idle).await)
        });
        match measured {
            Ok(result) => results.push(result),
            Err(e) => {
                eprintln!("bench: N={n}: {e}");
                std::process::exit(1);
            }
        }
    }
    if !results.is_empty() {
        print_table(&results);
    }
}

/// Runs `phase` on a control plane started for it (with CRDs installed) and
/// stops that control plane afterwards; exits when there is none to use.
/// With `USE_EXISTING_CLUSTER=true` every phase runs on the same cluster.
fn on_fresh_control_plane<T>(
    phase: impl AsyncFnOnce(&TestEnv) -> Result<T, String>,
) -> Result<T, String> {
    let env = match TestEnv::start() {
        Ok(Some(env)) => env,
        Ok(None) => {
            println!("{}", SKIP_REASON.replace("e2e tests", "benchmark"));
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("bench: cannot start the control plane: {e}");
            std::process::exit(1);
        }
    };
    let result = env.block_on(async {
        env.install_crds().await?;
        phase(&env).await
    });
    // Stop the control plane before anyone exits: `exit` runs no destructors.
    drop(env);
    result
}

struct Measured {
    n: usize,
    floor: Duration,
    converged: Duration,
    status_writes: f64,
    phone_status_writes: f64,
    requests: BTreeMap<String, f64>,
    idle_writes: f64,
    restart_writes: f64,
    peak_rss_mib: f64,
    /// Operator CPU (user and system) from its start until every object
    /// had its final status, per channel.
    cpu_ms_per_channel: f64,
    /// A second operator process on the converged namespace: start to `/readyz`.
    cold_start: Duration,
    /// Its peak RSS once ready (the first list), and once every object was reconciled.
    list_peak_rss_mib: f64,
    restart_peak_rss_mib: f64,
}

/// The floor: a plain client creates everything and writes each channel's
/// status once; returns how long until every channel had it.
async fn measure_floor(env: &TestEnv, n: usize) -> Result<Duration, String> {
    let client = env.client().await;
    let work = workload(n, "");
    let floor_ns = namespace(&client, &format!("floor-{n}")).await?;
    let started = Instant::now();
    let seen = converged(&client, &floor_ns, &work, |_, current, ready| {
        current && ready.is_some()
    });
    let ((), seen) =
        futures::future::try_join(create_all(&client, &floor_ns, &work, true), seen).await?;
    let floor = seen.duration_since(started);
    eprintln!("bench: N={n}: floor {floor:?}");
    Ok(floor)
}

/// The operator on the same workload, against `floor`.
async fn measure_operator(
    env: &TestEnv,
    n: usize,
    floor: Duration,
    idle: Duration,
) -> Result<Measured, String> {
    let client = env.client().await;
    let work = workload(n, "");
    let channel_count = work.channels.len() + work.losers.len();

    // The operator, as its own process, watching its own namespace.
    let ns = namespace(&client, &format!("bench-{n}")).await?;
    let mut operator = Operator::start(env, &ns)?;
    operator.wait_ready().await?;
    let started = Instant::now();
    let converged_at = apply_converged(&client, &ns, &work)
        .await?
        .duration_since(started);
    eprintln!(
        "bench: N={n}: operator converged in {converged_at:?}, using {:.1} s of CPU",
        operator.cpu_seconds()
    );
    // Idle starts once the PhoneConfigurations have their final status too.
    phones_converged(&client, &ns, &work).await?;
    // Let the operator see its own last writes come back: it keeps a record
    // of each channel write until its watch event arrives.
    let objects = (channel_count + work.phones.len()) as f64;
    operator
        .wait_metric_at_most("table_entries", "table=\"channel_status_writes\"", 0.0)
        .await?;
    // Every PhoneConfiguration started without a status, so each was written
    // at least once; the operator counts a write when the API server's answer
    // is in, which can come after the watch showed the new status.
    operator
        .wait_metric(
            "reconciles_total",
            "kind=\"PhoneConfiguration\",result=\"written\"",
            work.phones.len() as f64,
        )
        .await?;
    let cpu_ms_per_channel = operator.cpu_seconds() * 1000.0 / channel_count as f64;
    let status_writes = operator
        .metric(
            "reconciles_total",
            "kind=\"DeploymentChannel\",result=\"written\"",
        )
        .await;
    let phone_status_writes = operator
        .metric(
            "reconciles_total",
            "kind=\"PhoneConfiguration\",result=\"written\"",
        )
        .await;
    let requests = operator.requests_by_verb().await;

    let before = operator.writes().await;
    tokio::time::sleep(idle).await;
    let idle_writes = operator.writes().await - before;
    let peak_rss_mib = operator.peak_rss_mib();

    operator.stop()?;
    // Cold start over a full namespace: process start to /readyz, and the
    // peak memory of that first list and of reconciling every object.
    let cold = Instant::now();
    let mut restarted = Operator::start(env, &ns)?;
    restarted.wait_ready().await?;
    let cold_start = cold.elapsed();
    let list_peak_rss_mib = restarted.peak_rss_mib();
    restarted
        .wait_metric("reconciles_total", "result=\"unchanged\"", objects)
        .await?;
    let restart_writes = restarted.writes().await;
    let restart_peak_rss_mib = restarted.peak_rss_mib();
    restarted.stop()?;
    Ok(Measured {
        n,
        floor,
        converged: converged_at,
        status_writes: status_writes / channel_count as f64,
        phone_status_writes: phone_status_writes / work.phones.len() as f64,
        requests,
        idle_writes,
        restart_writes,
        peak_rss_mib,
        cpu_ms_per_channel,
        cold_start,
        list_peak_rss_mib,
        restart_peak_rss_mib,
    })
}

/// Creates `work` (as the operator's client would) and watches until every
/// channel of it has its expected status; returns when.
async fn apply_converged(client: &Client, ns: &str, work: &Workload) -> Result<Instant, String> {
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

async fn namespace(client: &Client, name: &str) -> Result<String, String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|e| format!("namespace {name}: {e}"))?;
    Ok(name.to_string())
}

/// Creates the PhoneConfigurations and channels (losers last) at the bench
/// concurrency; with `write_status`, also writes each channel's status, as
/// the floor's stand-in for the operator.
async fn create_all(
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
                retry(|| phones.patch(name, &params, &apply))
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
                    let created = retry(|| channels.patch(name, &params, &apply)).await.map_err(|e| format!("{name}: {e}"))?;
                    if let Some(status) = statuses.get(name) {
                        let mut status = status.clone();
                        status.observed_generation = created.metadata.generation;
                        status.conditions.iter_mut().for_each(|c| c.observed_generation = created.metadata.generation);
                        let status = json!({"apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel", "status": status});
                        let floor = PatchParams::apply("bench-floor").force();
                        let apply = Patch::Apply(&status);
                        retry(|| channels.patch_status(name, &floor, &apply))
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
        let time = deploymentchannel_operator::operator::controller::now();
        stream::iter(created_phones.iter().map(Ok))
            .try_for_each_concurrent(CONCURRENCY, |pc| {
                let phones = phones.clone();
                let name = pc.metadata.name.clone().unwrap_or_default();
                let validation = deploymentchannel_operator::core::validation::validate_phone_configuration(&pc.spec);
                let status = deploymentchannel_operator::core::desired_status::phone_configuration_status(
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
                    retry(|| phones.patch_status(&name, &floor, &apply)).await.map(drop).map_err(|e| format!("{name} status: {e}"))
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
) -> HashMap<String, deploymentchannel_operator::core::api::DeploymentChannelStatus> {
    use deploymentchannel_operator::{
        core::desired_status::desired_channel_status,
        core::index::{Index, ObjectKey},
        core::validation::validate_channel,
    };
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

/// Retries a request the API server refused with 422 although every object
/// here passes admission: some servers' CEL evaluation (1.24) races under
/// concurrent requests and fails valid objects now and then.
async fn retry<T, F, Fut>(mut request: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        match request().await {
            Err(kube::Error::Api(status))
                if status.message.contains("internal error") && attempt < 5 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// Watches the namespace until every channel of the workload satisfies
/// `done(name, at current generation, Some((ready status, reason)))`; returns when.
async fn converged(
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
async fn phones_converged(client: &Client, ns: &str, work: &Workload) -> Result<(), String> {
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

/// The operator binary, run as its own process so its memory is its own.
struct Operator {
    child: Child,
    probe_address: SocketAddr,
    metrics_address: SocketAddr,
}

impl Operator {
    fn start(env: &TestEnv, ns: &str) -> Result<Self, String> {
        let free_address = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())
        };
        let (probe_address, metrics_address) = (free_address()?, free_address()?);
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("deploymentchannel-operator")))
            .filter(|p| p.exists())
            .ok_or(
                "build the operator first: cargo build --release --bin deploymentchannel-operator",
            )?;
        let child = Command::new(binary)
            .args([
                "run",
                "--namespace",
                ns,
                "--probe-address",
                &probe_address.to_string(),
                "--metrics-address",
                &metrics_address.to_string(),
                // The benchmark measures reconciling, not scrape authentication.
                "--insecure-metrics",
                "--log-level",
                "warn",
            ])
            .args(["--concurrency", &CONCURRENCY.to_string()])
            .env("KUBECONFIG", &env.kubeconfig)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the operator: {e}"))?;
        Ok(Self {
            child,
            probe_address,
            metrics_address,
        })
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let address = if path == "/metrics" {
            self.metrics_address
        } else {
            self.probe_address
        };
        http_get(address, path).await
    }

    /// Waits up to ten minutes: a cold start lists the whole namespace.
    async fn wait_ready(&self) -> Result<(), String> {
        for _ in 0..6000 {
            if self
                .get("/readyz")
                .await
                .is_some_and(|(code, _)| code == 200)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the operator did not become ready in 10 minutes".into())
    }

    async fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, body) = self.get("/metrics").await.unwrap_or_default();
        metric_value(&body, &format!("deploymentchannel_operator_{name}"), labels)
    }

    async fn wait_metric(&self, name: &str, labels: &str, at_least: f64) -> Result<(), String> {
        for _ in 0..1200 {
            if self.metric(name, labels).await >= at_least {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "{name}{{{labels}}} did not reach {at_least} in 120s"
        ))
    }

    async fn wait_metric_at_most(
        &self,
        name: &str,
        labels: &str,
        at_most: f64,
    ) -> Result<(), String> {
        for _ in 0..1200 {
            if self.metric(name, labels).await <= at_most {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "{name}{{{labels}}} did not come down to {at_most} in 120s"
        ))
    }

    /// Requests by verb (writes by verb and resource).
    async fn requests_by_verb(&self) -> BTreeMap<String, f64> {
        let (_, body) = self.get("/metrics").await.unwrap_or_default();
        let mut by_verb = BTreeMap::new();
        for ((verb, _, _), count) in api_requests(&body) {
            *by_verb.entry(verb).or_default() += count as f64;
        }
        by_verb
    }

    /// Every request that changes something.
    async fn writes(&self) -> f64 {
        let (_, body) = self.get("/metrics").await.unwrap_or_default();
        api_requests(&body)
            .iter()
            .filter(|((verb, resource, _), _)| is_write(verb, resource))
            // A fold from 0.0: an empty f64 sum is -0.0.
            .fold(0.0, |sum, (_, n)| sum + *n as f64)
    }

    /// CPU seconds (user and system) the operator has used.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name: utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
        });
        ticks / 100.0
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    fn stop(&mut self) -> Result<(), String> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the operator exited with {status}"))
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn print_table(results: &[Measured]) {
    println!();
    println!(
        "| N | floor (s) | operator (s) | operator/floor | status writes/channel | status writes/PhoneConfiguration | requests by verb | idle writes | restart writes | peak RSS (MiB) | operator CPU (ms/channel) | cold start to /readyz (s) | peak RSS after the cold start's list / reconciles (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let verbs: Vec<String> = r.requests.iter().map(|(v, n)| format!("{v} {n}")).collect();
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.3} | {:.2} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.1} / {:.1} |",
            r.n,
            r.floor.as_secs_f64(),
            r.converged.as_secs_f64(),
            r.converged.as_secs_f64() / r.floor.as_secs_f64(),
            r.status_writes,
            r.phone_status_writes,
            verbs.join(", "),
            r.idle_writes,
            r.restart_writes,
            r.peak_rss_mib,
            r.cpu_ms_per_channel,
            r.cold_start.as_secs_f64(),
            r.list_peak_rss_mib,
            r.restart_peak_rss_mib
        );
    }
    println!();
    for r in results {
        println!(
            "summary n={} convergence_ratio={:.3} status_writes_per_channel={:.3} idle_writes={} restart_writes={} peak_rss_mib={:.1} cold_start_s={:.2} cold_start_peak_rss_mib={:.1} cpu_ms_per_channel={:.3}",
            r.n,
            r.converged.as_secs_f64() / r.floor.as_secs_f64(),
            r.status_writes,
            r.idle_writes,
            r.restart_writes,
            r.peak_rss_mib,
            r.cold_start.as_secs_f64(),
            r.restart_peak_rss_mib,
            r.cpu_ms_per_channel
        );
    }
}

/// Churn: objects come and go; what the operator keeps per object must go with them.
mod churn {
    use std::collections::BTreeMap;

    use kube::api::{DeleteParams, ListParams};

    use super::*;

    const ROUND_LABEL: &str = "bench.interactions.dev/round";

    pub struct Round {
        number: usize,
        converged: Duration,
        /// `table_entries` by table once the round's objects converged.
        at_peak: BTreeMap<String, f64>,
        /// `table_entries` by table once they were deleted.
        after: BTreeMap<String, f64>,
        /// Whether every table came back to the live count.
        back: bool,
        rss_mib: f64,
        peak_rss_mib: f64,
    }

    pub async fn run(env: &TestEnv, n: usize, rounds: usize) -> Result<Vec<Round>, String> {
        let client = env.client().await;
        let ns = namespace(&client, &format!("churn-{n}")).await?;
        let mut operator = Operator::start(env, &ns)?;
        operator.wait_ready().await?;

        // Resident channels that stay through every round: the live count.
        let resident = (n / 10).max(1);
        let resident_work = Workload {
            phones: Vec::new(),
            channels: (0..resident)
                .map(|i| {
                    let object = channel(
                        &format!("resident-{i:05}"),
                        json!({"deploymentType": "WEB", "channelIdentifier": format!("https://resident-{i}.example.com"), "configuration": {}}),
                    );
                    (object, Expected::Ready)
                })
                .collect(),
            losers: Vec::new(),
        };
        apply_converged(&client, &ns, &resident_work).await?;

        let mut results = Vec::new();
        for number in 1..=rounds {
            let mut work = workload(n, &format!("r{number}-"));
            for (object, _) in work.channels.iter_mut().chain(work.losers.iter_mut()) {
                object["metadata"]["labels"] = json!({ROUND_LABEL: number.to_string()});
            }
            for object in &mut work.phones {
                object["metadata"]["labels"] = json!({ROUND_LABEL: number.to_string()});
            }
            let started = Instant::now();
            apply_converged(&client, &ns, &work).await?;
            let converged = started.elapsed();
            phones_converged(&client, &ns, &work).await?;
            let at_peak = operator.tables().await;

            let selector = ListParams::default().labels(&format!("{ROUND_LABEL}={number}"));
            let channels: Api<DeploymentChannel> = Api::namespaced(client.clone(), &ns);
            let phones: Api<PhoneConfiguration> = Api::namespaced(client.clone(), &ns);
            channels
                .delete_collection(&DeleteParams::default(), &selector)
                .await
                .map_err(|e| format!("deleting round {number}'s channels: {e}"))?;
            phones
                .delete_collection(&DeleteParams::default(), &selector)
                .await
                .map_err(|e| format!("deleting round {number}'s PhoneConfigurations: {e}"))?;
            let (after, back) = operator.tables_back_at(resident as f64).await;
            let round = Round {
                number,
                converged,
                at_peak,
                after,
                back,
                rss_mib: operator.rss_mib("VmRSS:"),
                peak_rss_mib: operator.peak_rss_mib(),
            };
            eprintln!(
                "bench: churn N={n} round {number}: converged in {:.2} s, RSS {:.1} MiB after the deletes, peak {:.1} MiB",
                round.converged.as_secs_f64(),
                round.rss_mib,
                round.peak_rss_mib
            );
            results.push(round);
        }
        operator.stop()?;
        Ok(results)
    }

    impl Operator {
        /// `table_entries` by table.
        async fn tables(&self) -> BTreeMap<String, f64> {
            let (_, body) = self.get("/metrics").await.unwrap_or_default();
            let prefix = "deploymentchannel_operator_table_entries{table=\"";
            body.lines()
                .filter_map(|line| {
                    let rest = line.strip_prefix(prefix)?;
                    let (table, value) = rest.split_once("\"} ")?;
                    Some((table.to_string(), value.parse().ok()?))
                })
                .collect()
        }

        /// Waits (up to two minutes) until no table holds more entries than
        /// there are live objects of its kind (`live` channels, no
        /// PhoneConfiguration) and the index holds exactly the live
        /// channels; the tables then, and whether they got there.
        async fn tables_back_at(&self, live: f64) -> (BTreeMap<String, f64>, bool) {
            // First the cache: it holds only the live channels.
            for _ in 0..1200 {
                if self.metric("channels", "").await == live {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut tables = self.tables().await;
            if tables.is_empty() {
                // An operator that does not export its tables.
                return (tables, false);
            }
            for _ in 0..1200 {
                let back = tables.get("index_channels") == Some(&live)
                    && tables.iter().all(|(table, entries)| {
                        let live = match table.as_str() {
                            // Keyed by PhoneConfiguration.
                            "phone_configuration_status_writes"
                            | "phone_configuration_generations"
                            | "unreadable_phone_configurations"
                            | "index_references" => 0.0,
                            _ => live,
                        };
                        *entries <= live
                    });
                if back {
                    return (tables, true);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                tables = self.tables().await;
            }
            (tables, false)
        }

        fn rss_mib(&self, field: &str) -> f64 {
            let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
                .unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kib| kib / 1024.0)
        }
    }

    fn entries(tables: &BTreeMap<String, f64>) -> String {
        if tables.is_empty() {
            return "not exported".into();
        }
        tables
            .iter()
            .map(|(table, entries)| format!("{table} {entries}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn print(n: usize, rounds: &[Round]) {
        let resident = (n / 10).max(1);
        println!();
        println!(
            "churn N={n}: {resident} resident channels; each round creates and deletes {} channels and {} PhoneConfigurations",
            n,
            (n / 10).max(1)
        );
        println!();
        println!(
            "| round | converged (s) | per-object entries when converged | per-object entries after the deletes | back at the live count | RSS after the deletes (MiB) | peak RSS (MiB) |"
        );
        println!("|---:|---:|---:|---:|---|---:|---:|");
        for r in rounds {
            let sum = |t: &BTreeMap<String, f64>| t.values().sum::<f64>();
            println!(
                "| {} | {:.2} | {} | {} | {} | {:.1} | {:.1} |",
                r.number,
                r.converged.as_secs_f64(),
                sum(&r.at_peak),
                sum(&r.after),
                if r.back { "yes" } else { "NO" },
                r.rss_mib,
                r.peak_rss_mib
            );
        }
        println!();
        for r in rounds {
            println!("round {} when converged: {}", r.number, entries(&r.at_peak));
            println!(
                "round {} after the deletes: {}",
                r.number,
                entries(&r.after)
            );
        }
        let first = rounds.first().map_or(f64::NAN, |r| r.rss_mib);
        let last = rounds.last().map_or(f64::NAN, |r| r.rss_mib);
        println!();
        println!(
            "summary churn n={n} rounds={} tables_back={} rss_first_mib={first:.1} rss_last_mib={last:.1} peak_rss_mib={:.1}",
            rounds.len(),
            rounds.iter().all(|r| r.back),
            rounds.last().map_or(f64::NAN, |r| r.peak_rss_mib)
        );
    }
}
