//! `certrotate`: the command.
//!
//! - `certrotate run`: keeps a certificate fresh through the Kubernetes CSR API for a program
//!   that reads it from files, and tells that program (a command to run, a signal to send).
//! - `certrotate serve`: the embedded CSR API server as a process, with kubeconfigs written
//!   for kubectl and other clients.
//! - `certrotate status DIR`: what is on disk in the kubelet layout, and what is wrong with it.
//!
//! Built with feature `cli`. Exit codes are listed in `--help` and in the README.

#![forbid(unsafe_code)]

mod config;
mod files;
mod hooks;
mod metrics;
mod run;
mod serve;
mod signals;
mod status;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// A boxed error with its cause chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Keeps TLS certificates fresh through the Kubernetes CSR API (certificates.k8s.io/v1).
///
/// Exit codes: 0 done (or stopped by SIGTERM/SIGINT); 1 failed at run time (no valid
/// certificate, a server that could not start, problems found by `status`); 2 bad usage or
/// configuration; 3 `run --once` put a valid certificate in place but a hook failed.
#[derive(Parser, Debug)]
#[command(
    name = "certrotate",
    version,
    propagate_version = true,
    args_override_self = true
)]
struct Cli {
    /// Format of the log lines on stderr. The level comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Keep a certificate fresh: request it through the CSR API, store it in the kubelet's
    /// layout, write plain files, and run hooks on each rotation.
    Run(Box<run::RunArgs>),
    /// Run the embedded CSR API server (kube-apiserver plus a signer, for CSRs only).
    Serve(Box<serve::ServeArgs>),
    /// Show the certificate stored in DIR (kubelet layout) and any problem with it.
    Status(status::StatusArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// `2026-11-30T23:00:00.000Z INFO  target] message`.
    Text,
    /// One JSON object per line: `ts`, `level`, `target`, `msg`.
    Json,
}

/// How a command ended, mapped to the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad flags or configuration (exit 2).
    Usage(BoxError),
    /// A failure at run time (exit 1).
    Failed(BoxError),
    /// `run --once`: the certificate is in place, a hook failed (exit 3).
    HookFailed(String),
    /// `status`: problems were found and printed (exit 1, nothing more to print).
    Problems,
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Failed(_) | Failure::Problems => 1,
            Failure::HookFailed(_) => 3,
        }
    }
}

/// `Failure::Usage` from anything that converts to an error.
pub fn usage(e: impl Into<BoxError>) -> Failure {
    Failure::Usage(e.into())
}

/// `Failure::Failed` from anything that converts to an error.
pub fn failed(e: impl Into<BoxError>) -> Failure {
    Failure::Failed(e.into())
}

fn init_logging(format: LogFormat) {
    // RUST_LOG first, then the library's directives, which keep credentials out of the log
    // whatever RUST_LOG says (they turn nothing on).
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.parse_filters(certrotate::LOG_FILTER_DIRECTIVES);
    match format {
        LogFormat::Text => {
            builder.format_timestamp_millis();
        }
        LogFormat::Json => {
            builder.format(|buf, record| {
                let line = serde_json::json!({
                    "ts": buf.timestamp_millis().to_string(),
                    "level": record.level().as_str(),
                    "target": record.target(),
                    "msg": record.args().to_string(),
                });
                writeln!(buf, "{line}")
            });
        }
    }
    builder.init();
}

fn main() -> ExitCode {
    let argv = match config::expand(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("certrotate: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(argv);
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run::main(*args),
        Command::Serve(args) => serve::main(*args),
        Command::Status(args) => status::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            match &failure {
                Failure::Usage(e) | Failure::Failed(e) => {
                    eprintln!("certrotate: {e}");
                    let mut source = e.source();
                    while let Some(s) = source {
                        eprintln!("  caused by: {s}");
                        source = s.source();
                    }
                }
                Failure::HookFailed(what) => eprintln!("certrotate: {what}"),
                Failure::Problems => {}
            }
            ExitCode::from(failure.code())
        }
    }
}
