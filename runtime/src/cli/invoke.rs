//! `kar invoke`: calls an actor method and prints its JSON result.

use super::remote::{JsonFormat, RuntimeArgs, client_error, json_arg};
use clap::Args;
use std::process::ExitCode;

/// Arguments of `kar invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
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
    /// An idempotency key: repeating the call with it returns the recorded
    /// result instead of running the method again.
    #[arg(long)]
    pub request_id: Option<String>,
    /// How to print the result.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: JsonFormat,
    /// Where the runtime is.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs `kar invoke`.
pub async fn run(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.runtime.connect().await?;
    if let Some(request_id) = &args.request_id {
        client = client.with_request_id(request_id);
    }
    let call_args = args.args.iter().map(|arg| json_arg(arg)).collect();
    let result = client
        .actor(&args.actor_type, &args.id)
        .call(&args.method, serde_json::Value::Array(call_args))
        .await
        .map_err(client_error)?;
    args.output.print(&result)?;
    Ok(ExitCode::SUCCESS)
}
