//! `kar get components|actors|subscriptions|reminders`: lists what the mesh
//! knows, as a table or as JSON.

use super::remote::{RuntimeArgs, client_error};
use anyhow::bail;
use clap::{Args, ValueEnum};
use kar_client::kar_proto::v1::subscription_target::Target as SubscriptionTarget;
use kar_client::{ActiveActor, Component, Subscription};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Arguments of `kar get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to list.
    #[arg(value_enum)]
    pub resource: Resource,
    /// Only components hosting, actors of, or reminders of this actor type.
    #[arg(long = "type", value_name = "TYPE")]
    pub actor_type: Option<String>,
    /// Only reminders of this actor (of `--type`).
    #[arg(long, requires = "actor_type")]
    pub id: Option<String>,
    /// Only subscriptions of this topic.
    #[arg(long)]
    pub topic: Option<String>,
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
    /// The subscriptions of topics.
    Subscriptions,
    /// The reminders (as `kar reminders list`).
    Reminders,
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
    if args.topic.is_some() && args.resource != Resource::Subscriptions {
        bail!("--topic only applies to `kar get subscriptions`");
    }
    if args.id.is_some() && args.resource != Resource::Reminders {
        bail!("--id only applies to `kar get reminders`");
    }
    if args.actor_type.is_some() && args.resource == Resource::Subscriptions {
        bail!("--type does not apply to `kar get subscriptions`");
    }
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
        Resource::Subscriptions => {
            let mut subscriptions = client.list_subscriptions(args.topic.as_deref()).await.map_err(client_error)?;
            subscriptions.sort_by(|a, b| (&a.topic, &a.subscription_id).cmp(&(&b.topic, &b.subscription_id)));
            let header = &["ID", "TOPIC", "TARGET", "METHOD", "NEXT OFFSET"];
            let rows = subscriptions.iter().map(subscription_row).collect();
            (header, rows, subscriptions.iter().map(subscription_json).collect())
        }
        Resource::Reminders => super::reminders::list(&client, args.actor_type.as_deref(), args.id.as_deref()).await?,
    };
    print_list(args.output, header, &rows, &objects)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a list in `format`: the table of `header` and `rows`, or the JSON
/// array of `objects`.
pub fn print_list(format: ListFormat, header: &[&str], rows: &[Vec<String>], objects: &[Value]) -> anyhow::Result<()> {
    match format {
        ListFormat::Table => print!("{}", table(header, rows)),
        ListFormat::Json => println!("{}", serde_json::to_string(objects)?),
        ListFormat::Pretty => println!("{}", serde_json::to_string_pretty(objects)?),
    }
    Ok(())
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

fn subscription_target(s: &Subscription) -> Option<&SubscriptionTarget> {
    s.target.as_ref().and_then(|t| t.target.as_ref())
}

fn subscription_row(s: &Subscription) -> Vec<String> {
    let target = match subscription_target(s) {
        Some(SubscriptionTarget::Actor(actor)) => format!("actor {}/{}", actor.r#type, actor.id),
        Some(SubscriptionTarget::Service(service)) => format!("service {service}"),
        None => "-".to_owned(),
    };
    let method = s.target.as_ref().map(|t| t.method.clone()).unwrap_or_default();
    vec![s.subscription_id.clone(), s.topic.clone(), target, method, s.next_offset.to_string()]
}

fn subscription_json(s: &Subscription) -> Value {
    let target = match subscription_target(s) {
        Some(SubscriptionTarget::Actor(actor)) => json!({ "actor": { "type": actor.r#type, "id": actor.id } }),
        Some(SubscriptionTarget::Service(service)) => json!({ "service": service }),
        None => Value::Null,
    };
    json!({
        "id": s.subscription_id,
        "topic": s.topic,
        "target": target,
        "method": s.target.as_ref().map(|t| t.method.clone()).unwrap_or_default(),
        "next_offset": s.next_offset,
    })
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
