fn main() -> std::process::ExitCode {
    deploymentchannel_operator::cli::main()
}
