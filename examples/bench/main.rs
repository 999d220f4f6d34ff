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
//! `-- --faults [N...]` (`make bench FAULTS=1`): steady-state faults
//! instead. N channels converged, then the API server restarted, the
//! operator's connections cut, and its lists refused for 20 s; it prints
//! the LIST requests, reconciles, status writes, relists and `/readyz`
//! failures each cost.
//! `-- --failover [N...]` (`make bench FAILOVER=1`): failover instead. Two
//! replicas with leader election converge N; the leader is killed (SIGKILL);
//! it prints how long until the standby holds the Lease and until a channel
//! created after the kill is Ready, what the new leader writes for the
//! unchanged objects, and the standby's peak memory.
//!
//! Floor: the same objects created by a plain client at the same
//! concurrency, each channel's status then written once by that client,
//! observed the same way (a watch until every channel has its status).

mod churn;
mod cluster;
mod converge;
mod failover;
mod faults;
mod measure;
mod operator;
mod workload;

use std::time::Duration;

use clap::Parser;

use cluster::{ControlPlane, SKIP_REASON};

/// Requests in flight at once, for the bench client and the operator alike.
const CONCURRENCY: usize = 16;

/// How fast the operator converges, how many requests it makes and how
/// much memory it holds, for N channels, against the API server's floor.
#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    /// Churn instead: create and delete the workload this many times.
    #[arg(long, value_name = "ROUNDS", value_parser = clap::value_parser!(u64).range(1..))]
    churn: Option<u64>,
    /// Steady-state faults instead: restart, cut watches, refused lists.
    #[arg(long, conflicts_with = "churn")]
    faults: bool,
    /// Failover instead: two replicas, the leader killed once N converged.
    #[arg(long, conflicts_with_all = ["churn", "faults"])]
    failover: bool,
    /// How long the converged operator is watched for writes, in seconds.
    #[arg(long, env = "BENCH_IDLE_SECONDS", default_value_t = 60)]
    idle_seconds: u64,
    /// The numbers of channels to measure.
    #[arg(value_name = "N", default_values_t = [100, 1000, 10_000])]
    sizes: Vec<usize>,
}

fn main() {
    let args = Args::parse();
    let idle = Duration::from_secs(args.idle_seconds);
    let mut results = Vec::new();
    for n in args.sizes {
        if args.faults {
            match on_fresh_control_plane(async |env| {
                println!("bench: faults N={n} on {}", env.describe().await);
                faults::run(env, n).await
            }) {
                Ok(costs) => faults::print(n, &costs),
                Err(e) => {
                    eprintln!("bench: faults N={n}: {e}");
                    std::process::exit(1);
                }
            }
            continue;
        }
        if let Some(rounds) = args.churn {
            let rounds = on_fresh_control_plane(async |env| {
                println!("bench: churn N={n} on {}", env.describe().await);
                churn::run(env, n, rounds as usize).await
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
        if args.failover {
            match on_fresh_control_plane(async |env| {
                println!("bench: failover N={n} on {}", env.describe().await);
                failover::run(env, n).await
            }) {
                Ok(result) => failover::print(&result),
                Err(e) => {
                    eprintln!("bench: failover N={n}: {e}");
                    std::process::exit(1);
                }
            }
            continue;
        }
        // The floor and the operator each get a control plane of their own,
        // so that neither runs on storage holding the other's objects.
        let measured = on_fresh_control_plane(async |env| {
            println!("bench: N={n} floor on {}", env.describe().await);
            measure::measure_floor(env, n).await
        })
        .and_then(|floor| {
            on_fresh_control_plane(async |env| {
                println!("bench: N={n} operator on {}", env.describe().await);
                measure::measure_operator(env, n, floor, idle).await
            })
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
        measure::print_table(&results);
    }
}

/// Runs `phase` on a control plane started for it (with CRDs installed) and
/// stops that control plane afterwards; exits when there is none to use.
/// With `USE_EXISTING_CLUSTER=true` every phase runs on the same cluster.
fn on_fresh_control_plane<T>(
    phase: impl AsyncFnOnce(&mut ControlPlane) -> Result<T, String>,
) -> Result<T, String> {
    let mut env = match ControlPlane::start() {
        Ok(Some(env)) => env,
        Ok(None) => {
            println!("{SKIP_REASON}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("bench: cannot start the control plane: {e}");
            std::process::exit(1);
        }
    };
    let result = ControlPlane::run(async {
        env.install_crds().await?;
        phase(&mut env).await
    });
    // Stop the control plane before anyone exits: `exit` runs no destructors.
    drop(env);
    result
}
