//! `kar unsubscribe`: ends a subscription.

use super::remote::{RuntimeArgs, client_error};
use clap::Args;
use std::process::ExitCode;

/// Arguments of `kar unsubscribe`.
#[derive(Debug, Args)]
pub struct UnsubscribeArgs {
    /// The subscription id.
    pub subscription_id: String,
    /// Where the runtime is.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs `kar unsubscribe`; prints `unsubscribed`, or `no such subscription`.
pub async fn run(args: UnsubscribeArgs) -> anyhow::Result<ExitCode> {
    let client = args.runtime.connect().await?;
    let deleted = client.unsubscribe(&args.subscription_id).await.map_err(client_error)?;
    println!("{}", if deleted { "unsubscribed" } else { "no such subscription" });
    Ok(ExitCode::SUCCESS)
}
