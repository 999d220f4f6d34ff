fn main() -> std::process::ExitCode {
    deploymentchannel_operator::commands::cli::main()
}
