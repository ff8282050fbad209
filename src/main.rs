//! The `signet` binary: parses the command line and maps errors to exit codes (0, 1, 2).
fn main() -> std::process::ExitCode {
    signet::cli::main()
}
