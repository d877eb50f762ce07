//! The `kar` binary: parses the command line and runs the subcommand.

use clap::Parser;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = kar_runtime::cli::Cli::parse();
    match kar_runtime::cli::dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kar: {e:#}");
            ExitCode::FAILURE
        }
    }
}
