//! `kar topics create|delete`: manages the topics events are published to.

use super::remote::{RuntimeArgs, client_error};
use clap::{Args, Subcommand};
use std::process::ExitCode;

/// Arguments of `kar topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// What to do with the topic.
    #[command(subcommand)]
    pub command: TopicsCommand,
}

/// The `kar topics` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic; prints `created`, or `already exists`.
    Create {
        /// The topic name: letters, digits, '.', '_' and '-'.
        topic: String,
        /// The number of partitions (events are ordered per partition).
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Where the runtime is.
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Delete a topic with its events and subscriptions; prints `deleted`,
    /// or `no such topic`.
    Delete {
        /// The topic.
        topic: String,
        /// Where the runtime is.
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
}

/// Runs `kar topics`.
pub async fn run(args: TopicsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TopicsCommand::Create { topic, partitions, runtime } => {
            let created = runtime.connect().await?.create_topic(&topic, partitions).await.map_err(client_error)?;
            println!("{}", if created { "created" } else { "already exists" });
        }
        TopicsCommand::Delete { topic, runtime } => {
            let deleted = runtime.connect().await?.delete_topic(&topic).await.map_err(client_error)?;
            println!("{}", if deleted { "deleted" } else { "no such topic" });
        }
    }
    Ok(ExitCode::SUCCESS)
}
