//! `kar get components|actors|subscriptions|reminders|sidecars`: lists what
//! the mesh knows, as a table or as JSON.

use super::remote::{RuntimeArgs, client_error};
use anyhow::bail;
use clap::{Args, ValueEnum};
use kar_client::kar_proto::v1::subscription_target::Target as SubscriptionTarget;
use kar_client::{ActiveActor, Component, Sidecar, Subscription};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Arguments of `kar get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to list.
    #[arg(value_enum)]
    pub resource: Resource,
    /// Only components or sidecars hosting, actors of, or reminders of this
    /// actor type.
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
    /// The runtimes of the application, as registered in its store.
    Sidecars,
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
        Resource::Sidecars => {
            let mut sidecars = client.list_sidecars().await.map_err(client_error)?;
            if let Some(actor_type) = &args.actor_type {
                sidecars.retain(|s| s.actor_types.contains(actor_type));
            }
            sidecars.sort_by(|a, b| a.runtime_id.cmp(&b.runtime_id));
            let header = &["RUNTIME ID", "ADDRESS", "DEPLOYMENT", "ACTOR TYPES", "SERVICES", "PARTITIONS", "AGE"];
            let now = SystemTime::now();
            let rows = sidecars.iter().map(|s| sidecar_row(s, now)).collect();
            (header, rows, sidecars.iter().map(sidecar_json).collect())
        }
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

/// A wire timestamp as a point in time (clamped to the epoch).
fn system_time(t: &prost_types::Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.clamp(0, 999_999_999) as u32)
}

fn rfc3339(t: &prost_types::Timestamp) -> String {
    humantime::format_rfc3339_millis(system_time(t)).to_string()
}

fn component_json(c: &Component) -> Value {
    let connected_at = c.connected_at.as_ref().map(rfc3339);
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

fn sidecar_row(s: &Sidecar, now: SystemTime) -> Vec<String> {
    let or_dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    let age = s.started_at.as_ref().and_then(|t| now.duration_since(system_time(t)).ok());
    vec![
        s.runtime_id.clone(),
        s.address.clone(),
        s.deployment.clone(),
        or_dash(s.actor_types.join(",")),
        or_dash(s.services.join(",")),
        s.partitions.len().to_string(),
        age.map_or_else(|| "-".to_owned(), short_age),
    ]
}

fn sidecar_json(s: &Sidecar) -> Value {
    json!({
        "runtime_id": s.runtime_id,
        "address": s.address,
        "app": s.app,
        "deployment": s.deployment,
        "started_at": s.started_at.as_ref().map(rfc3339),
        "actor_types": s.actor_types,
        "services": s.services,
        "partitions": s.partitions,
    })
}

/// An age in its two largest units, as `kubectl get` prints it: `42s`,
/// `5m3s`, `2h7m`, `3d4h`.
fn short_age(age: Duration) -> String {
    let secs = age.as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_print_in_their_two_largest_units() {
        let age = |secs| short_age(Duration::from_secs(secs));
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(5 * 60 + 3), "5m3s");
        assert_eq!(age(2 * 3600 + 7 * 60 + 59), "2h7m");
        assert_eq!(age(3 * 86_400 + 4 * 3600 + 5), "3d4h");
    }

    #[test]
    fn a_sidecar_row_counts_partitions_and_dashes_empty_lists() {
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let sidecar = Sidecar {
            runtime_id: "rt-1".into(),
            address: "10.0.0.1:3500".into(),
            app: "shop".into(),
            deployment: "distributed".into(),
            started_at: Some(prost_types::Timestamp::from(started)),
            actor_types: vec!["Cart".into(), "Slow".into()],
            services: Vec::new(),
            partitions: vec!["actor.Slow.3".into(), "actor.Cart.0".into()],
        };
        let row = sidecar_row(&sidecar, started + Duration::from_secs(90));
        assert_eq!(row, ["rt-1", "10.0.0.1:3500", "distributed", "Cart,Slow", "-", "2", "1m30s"]);
    }
}
