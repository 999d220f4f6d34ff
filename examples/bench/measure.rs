//! One size measured: the floor (a plain client), then the operator on the
//! same workload; and the table and summary lines they make.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use crate::{
    cluster::{ControlPlane, namespace},
    converge::{apply_converged, converged, phones_converged},
    operator::Operator,
    workload::{create_all, workload},
};

pub struct Measured {
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
pub async fn measure_floor(env: &ControlPlane, n: usize) -> Result<Duration, String> {
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
pub async fn measure_operator(
    env: &ControlPlane,
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

pub fn print_table(results: &[Measured]) {
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
