//! `kar state get|set|delete`: reads and writes an actor's state directly,
//! without going through the actor (no component needs to be running).

use super::remote::{JsonFormat, RuntimeArgs, client_error, json_arg};
use anyhow::bail;
use clap::{Args, Subcommand};
use kar_client::{JsonMap, StateClient};
use serde_json::{Value, json};
use std::process::ExitCode;

/// Arguments of `kar state`.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// What to do with the state.
    #[command(subcommand)]
    pub command: StateCommand,
}

/// The `kar state` subcommands.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print the whole state (`{"entries":…,"submaps":…}`), an entry, a
    /// submap, or an entry of a submap; exit 1 if it does not exist.
    Get {
        /// The actor and the entry.
        #[command(flatten)]
        target: Target,
        /// How to print the value.
        #[arg(short, long, value_enum, default_value_t)]
        output: JsonFormat,
        /// Where the runtime is.
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Write an entry, or an entry of a submap: `KEY [SUBKEY] JSON` (a value
    /// that is not valid JSON is stored as a string).
    Set {
        /// The actor type.
        #[arg(value_name = "TYPE")]
        actor_type: String,
        /// The actor id.
        id: String,
        /// The entry.
        key: String,
        /// The value, or the entry of the submap KEY when a value follows.
        #[arg(value_name = "SUBKEY|JSON", allow_negative_numbers = true)]
        subkey_or_value: String,
        /// The value of the submap entry.
        #[arg(value_name = "JSON", allow_negative_numbers = true)]
        value: Option<String>,
        /// Where the runtime is.
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Delete the whole state, an entry (a whole submap), or an entry of a
    /// submap, and print how many entries were deleted.
    Delete {
        /// The actor and the entry.
        #[command(flatten)]
        target: Target,
        /// Where the runtime is.
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
}

/// An actor, and optionally one entry of its state.
#[derive(Debug, Args)]
pub struct Target {
    /// The actor type.
    #[arg(value_name = "TYPE")]
    pub actor_type: String,
    /// The actor id.
    pub id: String,
    /// The entry (or submap); all of the state when omitted.
    pub key: Option<String>,
    /// The entry of the submap KEY.
    pub subkey: Option<String>,
}

impl Target {
    fn describe(&self) -> String {
        let actor = format!("{}/{}", self.actor_type, self.id);
        match (&self.key, &self.subkey) {
            (Some(key), Some(subkey)) => format!("{actor} has no entry {subkey:?} in submap {key:?}"),
            (Some(key), None) => format!("{actor} has no state entry {key:?}"),
            _ => format!("{actor} has no state"),
        }
    }
}

/// Runs `kar state`.
pub async fn run(args: StateArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StateCommand::Get { target, output, runtime } => {
            let state = runtime.connect().await?.state(&target.actor_type, &target.id);
            let value = get(&state, &target).await.map_err(client_error)?;
            let Some(value) = value else { bail!("{}", target.describe()) };
            output.print(&value)?;
        }
        StateCommand::Set { actor_type, id, key, subkey_or_value, value, runtime } => {
            let state = runtime.connect().await?.state(&actor_type, &id);
            let created = match value {
                None => state.set(&key, json_arg(&subkey_or_value)).await,
                Some(value) => state.set_sub(&key, &subkey_or_value, json_arg(&value)).await,
            }
            .map_err(client_error)?;
            println!("{}", if created { "created" } else { "updated" });
        }
        StateCommand::Delete { target, runtime } => {
            let state = runtime.connect().await?.state(&target.actor_type, &target.id);
            let deleted = delete(&state, &target).await.map_err(client_error)?;
            println!("deleted {deleted} {}", if deleted == 1 { "entry" } else { "entries" });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn get(state: &StateClient, target: &Target) -> kar_client::Result<Option<Value>> {
    match (&target.key, &target.subkey) {
        (None, _) => {
            let all = state.get_all().await?;
            Ok(Some(json!({ "entries": all.entries, "submaps": all.submaps })))
        }
        (Some(key), Some(subkey)) => state.get_sub(key, subkey).await,
        (Some(key), None) => match state.get(key).await? {
            Some(value) => Ok(Some(value)),
            // A key that names a submap prints the submap.
            None => Ok(non_empty(state.submap(key).await?)),
        },
    }
}

fn non_empty(submap: JsonMap) -> Option<Value> {
    (!submap.is_empty()).then(|| Value::Object(submap.into_iter().collect()))
}

async fn delete(state: &StateClient, target: &Target) -> kar_client::Result<u32> {
    match (&target.key, &target.subkey) {
        (None, _) => state.delete_all().await,
        (Some(key), Some(subkey)) => Ok(u32::from(state.delete_sub(key, subkey).await?)),
        (Some(key), None) => {
            let entry = u32::from(state.delete(key).await?);
            Ok(entry + state.clear_submap(key).await?)
        }
    }
}
