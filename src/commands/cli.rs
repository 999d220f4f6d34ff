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
    /// Install the CRDs and run the controllers against the current kube context or,
    /// when none is reachable and KUBEBUILDER_ASSETS is set, a throwaway local control plane.
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
    let (documents, unreadable) = validate::load(&args.paths);
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
mod tests;
