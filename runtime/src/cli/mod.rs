//! The `kar` command line. Each subcommand lives in its own file; `main.rs`
//! only parses and dispatches.

pub mod bench;
pub mod call;
pub mod get;
pub mod invoke;
pub mod remote;
pub mod run;
pub mod state;
pub mod tell;
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
    /// Call an actor method and print its result.
    Invoke(invoke::InvokeArgs),
    /// Enqueue an actor method and print its request id.
    Tell(tell::TellArgs),
    /// Call a service method and print its result (or enqueue it with `--async`).
    Call(call::CallArgs),
    /// Read and write an actor's state.
    State(state::StateArgs),
    /// List the components or the active actors of the mesh.
    Get(get::GetArgs),
    /// Measure call latency and throughput against a runtime.
    Bench(bench::BenchArgs),
    /// Print the version of this command and of the runtime it can reach.
    Version(version::VersionArgs),
}

/// Runs the parsed command and returns the process exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Invoke(args) => invoke::run(args).await,
        Command::Tell(args) => tell::run(args).await,
        Command::Call(args) => call::run(args).await,
        Command::State(args) => state::run(args).await,
        Command::Get(args) => get::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Version(args) => version::run(args).await,
    }
}
