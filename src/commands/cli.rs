//! Command-line interface: `run`, `validate`, `status` and `crd`, and the
//! `kubectl interactions` plugin, which is `status` alone.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    commands::crdgen, commands::status::StatusArgs, commands::validate,
    operator::lifecycle::RunArgs,
};

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
    /// Install the CRDs and run the controllers against the current kube context or, when
    /// none is reachable, a throwaway local control plane (from KUBEBUILDER_ASSETS, else
    /// built from the pinned Go modules in tests/control-plane).
    Dev(RunArgs),
    /// Check manifest files as the API server and the controller would, without a cluster.
    Validate(ValidateArgs),
    /// Explain why channels are or are not ready, and what to do next (reads only).
    Status(StatusArgs),
    /// Print both CRDs as multi-document YAML, ready for `kubectl apply -f -`.
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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

    /// The largest file read, in bytes (suffixes Ki, Mi, Gi, K, M, G); a
    /// larger file is refused as unreadable.
    #[arg(long, value_name = "SIZE", default_value = "16Mi", value_parser = parse_size)]
    pub max_file_size: u64,
}

/// A size in bytes: `1048576`, `512Ki`, `16Mi`, `1G`.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size in bytes (for example 16Mi)"))?;
    let factor: u64 = match unit {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use Ki, Mi, Gi, K, M or G)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a usable size"))
}

/// How `validate` prints its verdict.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `file:document: kind/name: field: message`, one problem per line.
    Text,
    /// One JSON object with every problem.
    Json,
}

/// Runs `validate`, writing the verdict to `out` and unreadable inputs and
/// the summary to `err`; returns the exit code.
pub fn validate(
    args: &ValidateArgs,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> u8 {
    let (documents, unreadable) = validate::load_with(
        &args.paths,
        validate::Limits {
            max_file_bytes: args.max_file_size,
        },
    );
    let report = validate::check(
        &documents,
        validate::Options {
            allow_missing_references: args.allow_missing_references,
        },
    );
    let written = match args.output {
        OutputFormat::Text => report.write_text(out),
        OutputFormat::Json => report.write_json(&unreadable, out),
    };
    let _ = report.write_summary(&unreadable, err);
    report.exit_code(&unreadable, written.is_ok())
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
        Command::Run(args) => crate::operator::lifecycle::main(args),
        Command::Dev(args) => crate::commands::dev::main(args),
        Command::Status(args) => return crate::commands::status::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `kubectl interactions`: the kubectl plugin, found by kubectl as the
/// `kubectl-interactions` binary on PATH.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-interactions",
    bin_name = "kubectl interactions",
    version
)]
/// Inspect DeploymentChannels and PhoneConfigurations.
pub struct PluginCli {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Explain why channels are or are not ready, and what to do next (reads only).
    Status(StatusArgs),
}

/// Parses the plugin's command line and runs it.
pub fn plugin_main() -> ExitCode {
    match PluginCli::parse().command {
        PluginCommand::Status(args) => crate::commands::status::main(&args),
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
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{
        commands::validate::exit, operator::leader_election::LeaseTiming,
        operator::lifecycle::LogFormat,
    };
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(
            std::iter::once("deploymentchannel-operator").chain(args.iter().copied()),
        )
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).unwrap().command {
            Command::Run(run) => run,
            other => panic!("{other:?}"),
        }
    }

    /// The environment twins of every `run` option.
    const RUN_ENV: [&str; 17] = [
        "WATCH_NAMESPACE",
        "PROBE_ADDRESS",
        "METRICS_ADDRESS",
        "METRICS_CERT_DIR",
        "INSECURE_METRICS",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "LEADER_ELECTION",
        "LEASE_NAME",
        "LEASE_NAMESPACE",
        "LEASE_DURATION",
        "LEASE_RENEW_DEADLINE",
        "LEASE_RETRY_PERIOD",
        "POD_NAME",
        "CONCURRENCY",
        "BOUND_CHANNELS_REFRESH_SECONDS",
        "SHUTDOWN_TIMEOUT_SECONDS",
    ];

    #[test]
    fn run_defaults() {
        // Environment twins must not leak into this test.
        for var in RUN_ENV {
            assert!(
                std::env::var_os(var).is_none(),
                "{var} is set in the test environment"
            );
        }
        let args = run_args(&["run"]);
        assert_eq!(args.namespace, None);
        assert_eq!(args.probe_address.to_string(), "0.0.0.0:8081");
        assert_eq!(args.metrics_address.to_string(), "0.0.0.0:8443");
        assert_eq!(args.metrics_cert_dir, None);
        assert!(!args.insecure_metrics);
        assert_eq!(args.log_format, LogFormat::Human);
        assert_eq!(args.log_level, "info");
        assert!(!args.leader_election);
        assert_eq!(args.lease_name, "deploymentchannel-operator");
        assert_eq!(
            args.lease_timing().unwrap(),
            LeaseTiming {
                duration: Duration::from_secs(15),
                renew_deadline: Duration::from_secs(10),
                retry_period: Duration::from_secs(2),
            }
        );
        assert_eq!(args.concurrency, 16);
        assert_eq!(args.bound_channels_refresh_seconds, 300);
    }

    #[test]
    fn run_flags() {
        let args = run_args(&[
            "run",
            "--namespace",
            "team-a",
            "--probe-address",
            "127.0.0.1:9090",
            "--metrics-address",
            "127.0.0.1:9443",
            "--metrics-cert-dir",
            "/certs",
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--leader-election",
            "--lease-name",
            "dc",
            "--lease-namespace",
            "ops",
            "--lease-duration",
            "30s",
            "--lease-renew-deadline",
            "20",
            "--lease-retry-period",
            "500ms",
            "--identity",
            "pod-1",
            "--concurrency",
            "4",
            "--bound-channels-refresh-seconds",
            "600",
        ]);
        assert_eq!(args.namespace.as_deref(), Some("team-a"));
        assert_eq!(args.probe_address.port(), 9090);
        assert_eq!(args.metrics_address.port(), 9443);
        assert_eq!(args.metrics_cert_dir, Some(PathBuf::from("/certs")));
        assert!(run_args(&["run", "--insecure-metrics"]).insecure_metrics);
        assert_eq!(args.log_format, LogFormat::Json);
        assert!(args.leader_election);
        assert_eq!(
            (args.lease_name.as_str(), args.lease_namespace.as_deref()),
            ("dc", Some("ops"))
        );
        assert_eq!(
            args.lease_timing().unwrap(),
            LeaseTiming {
                duration: Duration::from_secs(30),
                renew_deadline: Duration::from_secs(20),
                retry_period: Duration::from_millis(500),
            }
        );
        assert_eq!(args.identity.as_deref(), Some("pod-1"));
        assert_eq!(args.concurrency, 4);
        assert_eq!(args.bound_channels_refresh_seconds, 600);
    }

    #[test]
    fn bad_run_flags_are_refused_naming_the_flag() {
        for (args, needle) in [
            (
                &["run", "--bound-channels-refresh-seconds", "0"][..],
                "--bound-channels-refresh-seconds",
            ),
            (&["run", "--probe-address", "8081"][..], "--probe-address"),
            (
                &["run", "--metrics-address", "x:8443"][..],
                "--metrics-address",
            ),
            (
                &["run", "--insecure-metrics", "--metrics-cert-dir", "/certs"][..],
                "--metrics-cert-dir",
            ),
            (&["run", "--log-format", "xml"][..], "--log-format"),
            (&["run", "--lease-duration", "1h1s"][..], "--lease-duration"),
            (
                &["run", "--lease-retry-period", "0s"][..],
                "--lease-retry-period",
            ),
            (&["run", "--concurrency", "0"][..], "--concurrency"),
        ] {
            let error = parse(args).unwrap_err().to_string();
            assert!(error.contains(needle), "{args:?}: {error}");
        }
    }

    #[test]
    fn every_run_option_has_an_environment_twin_in_help() {
        use clap::CommandFactory;
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for var in RUN_ENV {
            assert!(
                help.contains(&format!("[env: {var}=")),
                "{var} missing from:\n{help}"
            );
        }
    }

    #[test]
    fn validate_needs_a_path() {
        assert!(parse(&["validate"]).is_err());
        match parse(&["validate", "a.yaml", "dir", "-", "--output", "json"])
            .unwrap()
            .command
        {
            Command::Validate(args) => {
                assert_eq!(args.paths.len(), 3);
                assert_eq!(args.output, OutputFormat::Json);
            }
            other => panic!("{other:?}"),
        }
    }

    const VALID: &str = "apiVersion: interactions.dev/v1alpha1
kind: DeploymentChannel
metadata: {name: site}
spec: {deploymentType: WEB, channelIdentifier: 'https://example.com', configuration: {}}
";

    fn run_validate(files: &[(&str, &str)], extra: &[&str]) -> (u8, String, String) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let mut paths: Vec<std::path::PathBuf> = files
            .iter()
            .map(|(name, _)| dir.path().join(name))
            .collect();
        paths.extend(extra.iter().map(|p| dir.path().join(p)));
        let args = ValidateArgs {
            paths,
            output: OutputFormat::Text,
            allow_missing_references: false,
            max_file_size: crate::commands::validate::DEFAULT_MAX_FILE_BYTES,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = validate(&args, &mut out, &mut err);
        let strip = |bytes: Vec<u8>| {
            String::from_utf8(bytes)
                .unwrap()
                .replace(&format!("{}/", dir.path().display()), "")
        };
        (code, strip(out), strip(err))
    }

    #[test]
    fn validate_exit_codes_and_output() {
        let (code, out, err) = run_validate(&[("ok.yaml", VALID)], &[]);
        assert_eq!((code, out.as_str()), (exit::VALID, ""));
        assert_eq!(
            err,
            "1 objects checked, 0 other documents skipped, 0 problems\n"
        );

        let invalid = VALID.replace("https://example.com", "ftp://example.com");
        let (code, out, _) = run_validate(&[("ok.yaml", VALID), ("bad.yaml", &invalid)], &[]);
        assert_eq!(code, exit::INVALID);
        assert_eq!(
            out,
            "bad.yaml:1: DeploymentChannel/site: spec.channelIdentifier: Invalid value: \"ftp://example.com\" is not an absolute http:// or https:// URL with a host and no user-info, which WEB channels need (for example https://example.com)\n"
        );

        let (code, _, err) = run_validate(&[("ok.yaml", VALID)], &["missing.yaml"]);
        assert_eq!(code, exit::UNREADABLE);
        assert!(err.starts_with("missing.yaml: cannot read: "), "{err}");
        let (code, _, err) = run_validate(&[("broken.yaml", "a: [b\n")], &[]);
        assert_eq!(code, exit::UNREADABLE);
        assert!(err.starts_with("broken.yaml: cannot parse YAML"), "{err}");
    }

    #[test]
    fn validate_json_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, VALID.replace("WEB", "CALLS")).unwrap();
        let args = ValidateArgs {
            paths: vec![path],
            output: OutputFormat::Json,
            allow_missing_references: false,
            max_file_size: crate::commands::validate::DEFAULT_MAX_FILE_BYTES,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(validate(&args, &mut out, &mut err), exit::INVALID);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["valid"], false);
        assert_eq!(json["checked"], 1);
        let fields: Vec<&str> = json["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.channelIdentifier",
                "spec.configuration.phoneConfigurationId"
            ]
        );
        assert_eq!(json["problems"][0]["kind"], "DeploymentChannel");
        assert_eq!(json["problems"][0]["name"], "site");
        assert_eq!(json["problems"][0]["document"], 1);
    }

    #[test]
    fn a_lease_cadence_out_of_order_is_refused_in_one_line() {
        for flags in [
            &["--lease-renew-deadline", "15s"][..],
            &["--lease-retry-period", "10s"][..],
            &["--lease-duration", "5s"][..],
        ] {
            let args = run_args(&[&["run"][..], flags].concat());
            let error = args.lease_timing().unwrap_err().to_string();
            assert!(!error.contains('\n'), "{error}");
            for flag in [
                "--lease-retry-period",
                "--lease-renew-deadline",
                "--lease-duration",
            ] {
                assert!(error.contains(flag), "{flags:?}: {error}");
            }
        }
    }

    #[tokio::test]
    async fn probes_and_metrics_need_different_addresses() {
        let args = run_args(&[
            "run",
            "--probe-address",
            "127.0.0.1:18443",
            "--metrics-address",
            "127.0.0.1:18443",
        ]);
        let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        let shutdown = crate::operator::lifecycle::Shutdown::on(std::future::ready(()));
        let error = crate::operator::lifecycle::run_with(config, args, shutdown)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--probe-address") && error.contains("--metrics-address"),
            "{error}"
        );
    }
}
