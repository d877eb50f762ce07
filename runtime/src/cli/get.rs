//! `kar get components|actors`: lists what the mesh knows, as a table or as
//! JSON.

use super::remote::{RuntimeArgs, client_error};
use clap::{Args, ValueEnum};
use kar_client::{ActiveActor, Component};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Arguments of `kar get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to list.
    #[arg(value_enum)]
    pub resource: Resource,
    /// Only components hosting, or actors of, this actor type.
    #[arg(long = "type", value_name = "TYPE")]
    pub actor_type: Option<String>,
    /// How to print the list.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ListFormat,
    /// Where the runtime is.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// What `kar get` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Resource {
    /// The components attached to the mesh.
    Components,
    /// The active actor instances.
    Actors,
}

/// How `kar get` prints a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// Aligned columns under a header.
    #[default]
    Table,
    /// A JSON array on one line.
    Json,
    /// An indented JSON array.
    Pretty,
}

/// Runs `kar get`.
pub async fn run(args: GetArgs) -> anyhow::Result<ExitCode> {
    let client = args.runtime.connect().await?;
    let (header, rows, objects): (&[&str], Vec<Vec<String>>, Vec<Value>) = match args.resource {
        Resource::Components => {
            let mut components = client.list_components().await.map_err(client_error)?;
            if let Some(actor_type) = &args.actor_type {
                components.retain(|c| c.actor_types.contains(actor_type));
            }
            components.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
            let header = &["ID", "NAME", "ACTOR TYPES", "SERVICE", "IN FLIGHT"];
            (header, components.iter().map(component_row).collect(), components.iter().map(component_json).collect())
        }
        Resource::Actors => {
            let mut actors = client.list_actors(args.actor_type.as_deref()).await.map_err(client_error)?;
            actors.sort_by_key(|a| a.actor.as_ref().map(|r| (r.r#type.clone(), r.id.clone())));
            let header = &["TYPE", "ID", "COMPONENT"];
            (header, actors.iter().map(actor_row).collect(), actors.iter().map(actor_json).collect())
        }
    };
    match args.output {
        ListFormat::Table => print!("{}", table(header, &rows)),
        ListFormat::Json => println!("{}", serde_json::to_string(&objects)?),
        ListFormat::Pretty => println!("{}", serde_json::to_string_pretty(&objects)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn component_row(c: &Component) -> Vec<String> {
    let or_dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    vec![
        c.id.clone(),
        c.name.clone(),
        or_dash(c.actor_types.join(",")),
        or_dash(c.service.clone()),
        c.in_flight.to_string(),
    ]
}

fn component_json(c: &Component) -> Value {
    let connected_at = c.connected_at.as_ref().map(|t| {
        let since_epoch = Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
        humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + since_epoch).to_string()
    });
    json!({
        "id": c.id,
        "name": c.name,
        "actor_types": c.actor_types,
        "service": c.service,
        "runtime_id": c.runtime_id,
        "connected_at": connected_at,
        "in_flight": c.in_flight,
    })
}

fn actor_row(a: &ActiveActor) -> Vec<String> {
    let (actor_type, id) = a.actor.as_ref().map(|r| (r.r#type.clone(), r.id.clone())).unwrap_or_default();
    vec![actor_type, id, a.component_id.clone()]
}

fn actor_json(a: &ActiveActor) -> Value {
    let (actor_type, id) = a.actor.as_ref().map(|r| (r.r#type.clone(), r.id.clone())).unwrap_or_default();
    json!({ "type": actor_type, "id": id, "component_id": a.component_id })
}

/// Left-aligned columns separated by three spaces, header first.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        padded.join("   ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}
