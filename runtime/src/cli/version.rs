//! `kar version`: this binary's version.

use clap::Args;
use std::process::ExitCode;

/// Arguments of `kar version`.
#[derive(Debug, Args)]
pub struct VersionArgs {}

/// Prints the version.
pub async fn run(_args: VersionArgs) -> anyhow::Result<ExitCode> {
    println!("kar {}", env!("CARGO_PKG_VERSION"));
    Ok(ExitCode::SUCCESS)
}
