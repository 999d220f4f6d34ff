//! The kubectl plugin: `kubectl interactions status ...` runs this binary
//! once it is on PATH.

fn main() -> std::process::ExitCode {
    deploymentchannel_operator::commands::cli::plugin_main()
}
