//! The `signet` command line. `anyhow` is used here, at the binary's edge, and errors become exit
//! codes: 0 success, 1 verification failed or the server refused, 2 usage, configuration or I/O.
// Doc comments on arguments are clap's `--help` text, plain text for a terminal, not Markdown.
#![allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]
pub mod bench;
pub mod dev;
pub mod keys;
pub mod log;
pub mod manifest;
pub mod progress;
pub mod receipt;
pub mod serve;
pub mod sessions;
pub mod sign;
pub mod trust;
pub mod verify;
pub mod witness;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Signing daemon for ML model provenance.
#[derive(Debug, Parser)]
#[command(name = "signet", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SIGNET_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve {
        /// Configuration file.
        #[arg(long, default_value = "config/signet.toml")]
        config: PathBuf,
    },
    /// Check a configuration file and list every problem in it.
    CheckConfig {
        /// Configuration file.
        #[arg(long, default_value = "config/signet.toml")]
        config: PathBuf,
    },
    /// A self-contained local daemon for trying signet out (development only).
    Dev(dev::DevArgs),
    /// Write a model's manifest (per-file SHA-256 and sizes, provenance) as canonical JSON.
    Manifest(manifest::ManifestArgs),
    /// Sign a model in CI: manifest, session, signatures, log receipt.
    Sign(sign::SignArgs),
    /// Verify a signed model at deployment: files, signatures, log inclusion, signer identity.
    Verify(verify::VerifyArgs),
    /// Fetch and check the log's trust root (key versions proven in the log) for verifiers.
    Trust(trust::TrustArgs),
    /// Inspect keys.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Re-prove a receipt against the log's latest checkpoint.
    Receipt {
        /// What to do.
        #[command(subcommand)]
        command: receipt::ReceiptCommand,
    },
    /// A C2SP tlog-witness: cosigns a log's checkpoints that are consistent with what it saw.
    Witness {
        #[command(subcommand)]
        command: witness::WitnessCommand,
    },
    /// End live signing sessions (an administrator).
    Sessions {
        /// What to do.
        #[command(subcommand)]
        command: sessions::SessionsCommand,
    },
    /// Measure: a closed-loop load generator (signet, Vault Transit) and the raw PKCS#11 floor.
    Bench {
        /// What to measure.
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Check the tamper-evident log from outside.
    Log {
        /// What to do.
        #[command(subcommand)]
        command: log::LogCommand,
    },
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// 1 or 2.
    pub code: u8,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl Failure {
    /// Verification failed or the server refused: exit 1.
    pub fn refused(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 1,
            error: error.into(),
        }
    }

    /// The same failure, saying what was being done.
    pub fn context_msg(self, doing: &str) -> Self {
        Failure {
            code: self.code,
            error: self.error.context(doing.to_string()),
        }
    }

    /// Usage, configuration or I/O error: exit 2.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 2,
            error: error.into(),
        }
    }
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let outcome = match cli.command {
        Command::Serve { config } => serve::run(&config),
        Command::CheckConfig { config } => serve::check(&config),
        Command::Dev(args) => dev::run(args),
        Command::Manifest(args) => manifest::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Trust(args) => trust::run(args),
        Command::Keys { command } => keys::run(command),
        Command::Log { command } => log::run(command),
        Command::Sessions { command } => sessions::run(command),
        Command::Witness { command } => witness::run(command),
        Command::Receipt { command } => receipt::run(command),
        Command::Bench { command } => bench::run(command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // The first line says what failed; the chain follows.
            eprintln!("signet: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGNET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// A server error as an exit code: unreachable or unreadable is I/O (2), a refusal or a bad
/// answer is 1.
pub fn client_failure(error: crate::client::ClientError) -> Failure {
    if error.is_io() {
        Failure::usage(error)
    } else {
        Failure::refused(error)
    }
}

/// A multi-threaded tokio runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot start the async runtime: {e}")))
}
