use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use deploymentchannel_operator::crdgen;

/// Kubernetes operator for DeploymentChannel and PhoneConfiguration resources.
#[derive(Parser, Debug)]
#[command(name = "deploymentchannel-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print both CRDs as multi-document YAML, ready for `kubectl apply -f -`.
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { dir: None } => print!("{}", crdgen::all_to_yaml()),
        Command::Crd { dir: Some(dir) } => {
            for crd in crdgen::crds() {
                let path = dir.join(crdgen::file_name(&crd));
                std::fs::write(&path, crdgen::to_yaml(&crd))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
