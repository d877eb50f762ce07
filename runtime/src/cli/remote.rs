//! What every subcommand that talks to a running runtime shares: where the
//! runtime is (`--runtime`, `KAR_RUNTIME_ADDR`), how long to wait
//! (`--timeout`), how JSON arguments are read and results printed, and how a
//! client error becomes one line on stderr.

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use kar_client::{Client, DEFAULT_RUNTIME_ADDR, RUNTIME_ADDR_ENV};
use std::time::Duration;

/// Where the runtime is and how long to wait for it.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// The runtime's gRPC address (host:port or http://host:port).
    #[arg(long, env = RUNTIME_ADDR_ENV, default_value = DEFAULT_RUNTIME_ADDR)]
    pub runtime: String,
    /// How long to wait for the runtime to connect and answer (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl RuntimeArgs {
    /// Connects to the runtime; each request then carries the timeout as its
    /// deadline.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Ok(connect(&self.runtime, self.timeout).await?.with_timeout(self.timeout))
    }
}

/// Connects to the runtime at `addr`, giving up after `timeout`.
pub async fn connect(addr: &str, timeout: Duration) -> anyhow::Result<Client> {
    match tokio::time::timeout(timeout, Client::connect(addr)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(anyhow!("cannot reach the runtime at {addr}: {}", root_cause(&e))),
        Err(_) => {
            Err(anyhow!("cannot reach the runtime at {addr}: no answer within {}", humantime::format_duration(timeout)))
        }
    }
}

/// Turns a client error into one readable line: `CODE: message` for an error
/// status, the innermost cause for a transport failure.
pub fn client_error(e: kar_client::Error) -> anyhow::Error {
    match &e {
        kar_client::Error::Status(_) => anyhow!("{e}"),
        kar_client::Error::Transport(_) => anyhow!("cannot reach the runtime: {}", root_cause(&e)),
        _ => anyhow!("{e}"),
    }
}

/// The innermost error of a chain: for a transport error, the useful part
/// ("tcp connect error: Connection refused") rather than "transport error".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Reads a command-line argument as JSON, or as a string if it is not valid
/// JSON (as KAR's CLI does): `42` is a number, `hello` is `"hello"`.
pub fn json_arg(arg: &str) -> serde_json::Value {
    serde_json::from_str(arg).unwrap_or_else(|_| serde_json::Value::String(arg.to_owned()))
}

/// How a JSON result is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum JsonFormat {
    /// On one line.
    #[default]
    Json,
    /// Indented, over several lines.
    Pretty,
}

impl JsonFormat {
    /// Prints `value` to stdout in this format.
    pub fn print(self, value: &serde_json::Value) -> anyhow::Result<()> {
        let text = match self {
            JsonFormat::Json => serde_json::to_string(value)?,
            JsonFormat::Pretty => serde_json::to_string_pretty(value)?,
        };
        println!("{text}");
        Ok(())
    }
}
