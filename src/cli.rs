//! Command-line interface: `run`, `validate` and `crd`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{crdgen, manifests};

/// Kubernetes operator for DeploymentChannel and PhoneConfiguration resources.
#[derive(Parser, Debug)]
#[command(name = "deploymentchannel-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controllers against the current kube context (in-cluster config in a pod).
    Run(RunArgs),
    /// Install the CRDs and run the controllers against the current kube context or,
    /// when none is reachable and KUBEBUILDER_ASSETS is set, a throwaway local control plane.
    Dev(RunArgs),
    /// Check manifest files as the API server and the controller would, without a cluster.
    Validate(ValidateArgs),
    /// Print both CRDs as multi-document YAML, ready for `kubectl apply -f -`.
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Options of `run`; each has an environment-variable twin.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of the plain HTTP server for the probes, /healthz and /readyz.
    #[arg(long, env = "PROBE_ADDRESS", default_value = "0.0.0.0:8081")]
    pub probe_address: SocketAddr,

    /// Address of the HTTPS server for /metrics.
    #[arg(long, env = "METRICS_ADDRESS", default_value = "0.0.0.0:8443")]
    pub metrics_address: SocketAddr,

    /// Directory holding the metrics server's certificate (`tls.crt`) and key
    /// (`tls.key`), reloaded when they change (default: a self-signed certificate made at start).
    #[arg(long, env = "METRICS_CERT_DIR", value_name = "DIR")]
    pub metrics_cert_dir: Option<PathBuf>,

    /// Serve /metrics in plain HTTP to anyone who can connect, without
    /// authentication or authorization: for local development only.
    #[arg(long, env = "INSECURE_METRICS", conflicts_with = "metrics_cert_dir")]
    pub insecure_metrics: bool,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log level or filter directives (for example `info` or `info,kube=debug`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Elect a leader among replicas with a Lease; only the leader reconciles.
    #[arg(long, env = "LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "deploymentchannel-operator")]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a leader holds the Lease without renewing it; a standby takes over after this.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(5..=300))]
    pub lease_duration_seconds: u64,

    /// This replica's identity in the Lease and on Events (default: the pod name, else the
    /// host name plus a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Reconciles of one kind that run at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,

    /// Seconds to let in-flight reconciles finish on SIGTERM or SIGINT.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 10)]
    pub shutdown_timeout_seconds: u64,
}

/// How log lines are written.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Options of `validate`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct ValidateArgs {
    /// YAML or JSON files, directories (searched recursively) or `-` for standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Accept CALLS and SMS channels whose PhoneConfiguration is not among the files.
    #[arg(long)]
    pub allow_missing_references: bool,
}

/// How `validate` prints its verdict.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `file:document: kind/name: field: message`, one problem per line.
    Text,
    /// One JSON object with every problem.
    Json,
}

/// Exit codes of `validate`.
pub mod exit {
    /// Every object is valid.
    pub const VALID: u8 = 0;
    /// At least one object is invalid.
    pub const INVALID: u8 = 1;
    /// An input could not be read or parsed.
    pub const UNREADABLE: u8 = 2;
}

/// Runs `validate`, writing the verdict to `out` and unreadable inputs to `err`.
pub fn validate(
    args: &ValidateArgs,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> u8 {
    let (documents, unreadable) = manifests::load(&args.paths);
    let report = manifests::check(
        &documents,
        manifests::Options {
            allow_missing_references: args.allow_missing_references,
        },
    );
    let written = match args.output {
        OutputFormat::Text => report
            .problems
            .iter()
            .try_for_each(|p| writeln!(out, "{p}")),
        OutputFormat::Json => {
            let unreadable: Vec<_> = unreadable
                .iter()
                .map(|u| serde_json::json!({"file": u.source, "error": u.error}))
                .collect();
            let json = serde_json::json!({
                "valid": report.problems.is_empty() && unreadable.is_empty(),
                "checked": report.checked,
                "skipped": report.skipped,
                "problems": report.problems,
                "unreadable": unreadable,
            });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&json).expect("JSON")
            )
        }
    };
    for u in &unreadable {
        let _ = writeln!(err, "{}: {}", u.source, u.error);
    }
    let _ = writeln!(
        err,
        "{} objects checked, {} other documents skipped, {} problems",
        report.checked,
        report.skipped,
        report.problems.len()
    );
    if written.is_err() || !unreadable.is_empty() {
        exit::UNREADABLE
    } else if report.problems.is_empty() {
        exit::VALID
    } else {
        exit::INVALID
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { dir } => write_crds(dir),
        Command::Validate(args) => {
            return ExitCode::from(validate(
                &args,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            ));
        }
        Command::Run(args) => crate::runtime::main(args),
        Command::Dev(args) => crate::dev::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_crds(dir: Option<PathBuf>) -> anyhow::Result<()> {
    match dir {
        None => print!("{}", crdgen::all_to_yaml()),
        Some(dir) => {
            for crd in crdgen::crds() {
                let path = dir.join(crdgen::file_name(&crd));
                std::fs::write(&path, crdgen::to_yaml(&crd))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
