//! `kar tell`: enqueues an actor method without waiting for it to run, and
//! prints the request id.

use super::remote::{RuntimeArgs, client_error, json_arg};
use clap::Args;
use std::process::ExitCode;

/// Arguments of `kar tell`.
#[derive(Debug, Args)]
pub struct TellArgs {
    /// The actor type.
    #[arg(value_name = "TYPE")]
    pub actor_type: String,
    /// The actor id.
    pub id: String,
    /// The method.
    pub method: String,
    /// The arguments, each JSON or else taken as a string; sent as an array.
    #[arg(value_name = "ARG", allow_negative_numbers = true)]
    pub args: Vec<String>,
    /// An idempotency key: repeating the tell with it enqueues it once.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Where the runtime is.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs `kar tell`.
pub async fn run(args: TellArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.runtime.connect().await?;
    if let Some(request_id) = &args.request_id {
        client = client.with_request_id(request_id);
    }
    let call_args = args.args.iter().map(|arg| json_arg(arg)).collect();
    let request_id = client
        .actor(&args.actor_type, &args.id)
        .tell(&args.method, serde_json::Value::Array(call_args))
        .await
        .map_err(client_error)?;
    println!("{request_id}");
    Ok(ExitCode::SUCCESS)
}
