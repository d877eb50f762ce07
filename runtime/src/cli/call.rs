//! `kar call`: calls a service method and prints its JSON result, or with
//! `--async` enqueues it and prints the request id.

use super::remote::{JsonFormat, RuntimeArgs, client_error, json_arg};
use clap::Args;
use std::process::ExitCode;

/// Arguments of `kar call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The service.
    pub service: String,
    /// The method.
    pub method: String,
    /// The payload: JSON, or else taken as a string (default `null`).
    #[arg(allow_negative_numbers = true)]
    pub json: Option<String>,
    /// Enqueue the call (a tell) and print its request id instead of waiting
    /// for the result.
    #[arg(long = "async")]
    pub tell: bool,
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

/// Runs `kar call`.
pub async fn run(args: CallArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.runtime.connect().await?;
    if let Some(request_id) = &args.request_id {
        client = client.with_request_id(request_id);
    }
    let payload = args.json.as_deref().map_or(serde_json::Value::Null, json_arg);
    if args.tell {
        let request_id = client.tell_service(&args.service, &args.method, payload).await.map_err(client_error)?;
        println!("{request_id}");
    } else {
        let result = client.call_service(&args.service, &args.method, payload).await.map_err(client_error)?;
        args.output.print(&result)?;
    }
    Ok(ExitCode::SUCCESS)
}
