//! `kar openapi`: prints the OpenAPI document of the JSON gateway, or writes
//! it to a file (`runtime/openapi.json` in the repository is written this
//! way, and a test fails if it drifts from the code).

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kar openapi`.
#[derive(Debug, Args)]
pub struct OpenapiArgs {
    /// Write the document to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs `kar openapi`.
pub async fn run(args: OpenapiArgs) -> anyhow::Result<ExitCode> {
    let text = crate::gateway::openapi::document_text()?;
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
