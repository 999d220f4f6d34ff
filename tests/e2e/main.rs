//! End-to-end tests against a real kube-apiserver (see `harness` for how one
//! is found). Every scenario runs in its own namespace with its own
//! in-process operator watching only that namespace.

mod admission;
mod counting;
mod faults;
mod harness;
mod install;
mod leadership;
#[path = "../markdown/mod.rs"]
mod markdown;
mod metrics_access;
mod reconcile;
mod recovery;
mod relay;
mod retries;
mod runtime;
mod status_cmd;
mod support;
mod validate;

use std::sync::Arc;

use harness::{SKIP_REASON, TestEnv};
use libtest_mimic::{Arguments, Trial};
use support::Scenario;

fn main() {
    let args = Arguments::from_args();
    // Operator logs, for a failing scenario: RUST_LOG=deploymentchannel_operator=debug make e2e
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .init();
    let env = match TestEnv::start() {
        Ok(Some(env)) => env,
        Ok(None) => {
            println!("{SKIP_REASON}");
            return;
        }
        Err(e) => {
            eprintln!("e2e: cannot start the control plane: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = env.block_on(env.install_crds()) {
        eprintln!("e2e: {e}");
        drop(env);
        std::process::exit(1);
    }
    println!("e2e: {}", env.block_on(env.describe()));
    let env = Arc::new(env);
    let scenarios: Vec<Scenario> = [
        admission::scenarios(),
        reconcile::scenarios(),
        recovery::scenarios(),
        retries::scenarios(),
        runtime::scenarios(),
        validate::scenarios(),
        install::scenarios(),
        metrics_access::scenarios(),
        status_cmd::scenarios(),
        faults::scenarios(),
        leadership::scenarios(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let trials = scenarios
        .into_iter()
        .map(|scenario| {
            let env = env.clone();
            Trial::test(scenario.name, move || support::run(&env, &scenario))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop the control plane before exiting: `exit` runs no destructors.
    drop(env);
    conclusion.exit();
}
