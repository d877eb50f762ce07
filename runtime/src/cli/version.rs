//! `kar version`: this binary's version, and the runtime it can reach (if
//! any; an unreachable runtime is reported, not an error).

use super::remote::connect;
use clap::Args;
use kar_client::{DEFAULT_RUNTIME_ADDR, RUNTIME_ADDR_ENV};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `kar version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// The runtime to look for (host:port or http://host:port).
    #[arg(long, env = RUNTIME_ADDR_ENV, default_value = DEFAULT_RUNTIME_ADDR)]
    pub runtime: String,
    /// How long to wait for the runtime to answer.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Prints the version, then whether a runtime answers at `--runtime`.
pub async fn run(args: VersionArgs) -> anyhow::Result<ExitCode> {
    println!("kar {}", env!("CARGO_PKG_VERSION"));
    println!("runtime: {}", probe(&args).await);
    Ok(ExitCode::SUCCESS)
}

async fn probe(args: &VersionArgs) -> String {
    let client = match connect(&args.runtime, args.timeout).await {
        Ok(client) => client.with_timeout(args.timeout),
        Err(e) => return format!("not reachable ({e:#})"),
    };
    match client.list_components().await {
        Ok(components) => {
            let s = if components.len() == 1 { "" } else { "s" };
            format!("reachable at {}, {} component{s}", args.runtime, components.len())
        }
        Err(e) => format!("{} answers but not as a KAR runtime ({e})", args.runtime),
    }
}
