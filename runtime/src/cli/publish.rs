//! `kar publish`: appends an event to a topic and prints its offset.

use super::remote::{RuntimeArgs, client_error, json_arg};
use clap::Args;
use std::process::ExitCode;

/// Arguments of `kar publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The topic, which must exist (`kar topics create`).
    pub topic: String,
    /// The event: JSON, or else taken as a string.
    #[arg(value_name = "JSON", allow_negative_numbers = true)]
    pub event: String,
    /// Where the runtime is.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs `kar publish`.
pub async fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let client = args.runtime.connect().await?;
    let offset = client.publish(&args.topic, json_arg(&args.event)).await.map_err(client_error)?;
    println!("{offset}");
    Ok(ExitCode::SUCCESS)
}
