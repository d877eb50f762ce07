//! The `kar` command line. Each subcommand lives in its own file; `main.rs`
//! only parses and dispatches.

pub mod bench;
pub mod call;
pub mod get;
pub mod invoke;
pub mod openapi;
pub mod publish;
pub mod purge;
pub mod reminders;
pub mod remote;
pub mod run;
pub mod state;
pub mod subscribe;
pub mod tell;
pub mod topics;
pub mod unsubscribe;
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
    /// List the components, active actors, subscriptions, reminders or sidecars of the mesh.
    Get(get::GetArgs),
    /// List, schedule and cancel the reminders of actors.
    Reminders(reminders::RemindersArgs),
    /// Publish an event to a topic and print its offset.
    Publish(publish::PublishArgs),
    /// Create and delete topics.
    Topics(topics::TopicsArgs),
    /// Subscribe an actor or service method to a topic.
    Subscribe(subscribe::SubscribeArgs),
    /// End a subscription.
    Unsubscribe(unsubscribe::UnsubscribeArgs),
    /// Print (or write) the OpenAPI document of the JSON API.
    Openapi(openapi::OpenapiArgs),
    /// Delete an application's Kafka topics and Redis keys (a dry run without --yes).
    Purge(purge::PurgeArgs),
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
        Command::Reminders(args) => reminders::run(args).await,
        Command::Publish(args) => publish::run(args).await,
        Command::Topics(args) => topics::run(args).await,
        Command::Subscribe(args) => subscribe::run(args).await,
        Command::Unsubscribe(args) => unsubscribe::run(args).await,
        Command::Openapi(args) => openapi::run(args).await,
        Command::Purge(args) => purge::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Version(args) => version::run(args).await,
    }
}
