//! The `kar` command line. Each subcommand lives in its own file; `main.rs`
//! only parses and dispatches.

pub mod run;
pub mod version;

use clap::{Parser, Subcommand};

/// KAR: a runtime for stateful, resilient microservices.
#[derive(Debug, Parser)]
#[command(name = "kar", version, about, propagate_version = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a runtime, and optionally a component as its child.
    Run(run::RunArgs),
    /// Print the version of this command and of the runtime it can reach.
    Version(version::VersionArgs),
}

/// Runs the parsed command and returns the process exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Version(args) => version::run(args).await,
    }
}
