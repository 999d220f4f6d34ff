//! Churn: objects come and go; what the operator keeps per object must go with them.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use deploymentchannel_operator::core::api::{DeploymentChannel, PhoneConfiguration};
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};
use serde_json::json;

use crate::{
    cluster::{ControlPlane, namespace},
    converge::{apply_converged, phones_converged},
    operator::Operator,
    workload::{Expected, Workload, channel, workload},
};

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

pub async fn run(env: &ControlPlane, n: usize, rounds: usize) -> Result<Vec<Round>, String> {
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
