//! `kar reminders list|schedule|cancel`: the persistent reminders of actors.

use super::get::{ListFormat, print_list};
use super::remote::{RuntimeArgs, client_error, json_arg};
use clap::{Args, Subcommand};
use kar_client::{Client, Reminder, ReminderSpec};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Arguments of `kar reminders`.
#[derive(Debug, Args)]
pub struct RemindersArgs {
    /// What to do with the reminders.
    #[command(subcommand)]
    pub command: RemindersCommand,
}

/// The `kar reminders` subcommands.
#[derive(Debug, Subcommand)]
pub enum RemindersCommand {
    /// List the reminders of all actors, of one actor type, or of one actor.
    List {
        /// Only reminders of this actor type.
        #[arg(value_name = "TYPE")]
        actor_type: Option<String>,
        /// Only reminders of this actor (of TYPE).
        id: Option<String>,
        /// How to print the list.
        #[arg(short, long, value_enum, default_value_t)]
        output: ListFormat,
        /// Where the runtime is.
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Schedule (or replace) a reminder that invokes an actor method, once or
    /// periodically; prints `scheduled` or `replaced`.
    Schedule(ScheduleArgs),
    /// Cancel one reminder of an actor, or all of them, and print
    /// `cancelled N`.
    Cancel {
        /// The actor type.
        #[arg(value_name = "TYPE")]
        actor_type: String,
        /// The actor id.
        id: String,
        /// The reminder; all reminders of the actor when omitted.
        reminder_id: Option<String>,
        /// Where the runtime is.
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
}

/// Arguments of `kar reminders schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The actor type.
    #[arg(value_name = "TYPE")]
    pub actor_type: String,
    /// The actor id.
    pub id: String,
    /// The reminder id, unique per actor; an existing reminder with this id
    /// is replaced.
    pub reminder_id: String,
    /// The method the reminder invokes.
    pub method: String,
    /// The arguments, each JSON or else taken as a string; sent as an array.
    #[arg(value_name = "ARG", allow_negative_numbers = true)]
    pub args: Vec<String>,
    /// The first (or only) time it fires, in UTC (e.g.
    /// `2030-01-01T09:00:00Z`); now when neither this nor `--after` is given.
    #[arg(long, value_name = "RFC3339", value_parser = humantime::parse_rfc3339_weak, conflicts_with = "after")]
    pub at: Option<SystemTime>,
    /// Fire first after this delay from now (e.g. `30s`, `1h 30m`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub after: Option<Duration>,
    /// Fire periodically, with this period (e.g. `5m`); once when omitted.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub every: Option<Duration>,
    /// Where the runtime is.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs `kar reminders`.
pub async fn run(args: RemindersArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RemindersCommand::List { actor_type, id, output, runtime } => {
            let client = runtime.connect().await?;
            let (header, rows, objects) = list(&client, actor_type.as_deref(), id.as_deref()).await?;
            print_list(output, header, &rows, &objects)?;
        }
        RemindersCommand::Schedule(args) => {
            let call_args = args.args.iter().map(|arg| json_arg(arg)).collect();
            let mut spec = ReminderSpec::new(&args.reminder_id, &args.method).args(Value::Array(call_args));
            if let Some(at) = args.at {
                spec = spec.at(at);
            }
            if let Some(after) = args.after {
                spec = spec.after(after);
            }
            if let Some(every) = args.every {
                spec = spec.every(every);
            }
            let client = args.runtime.connect().await?;
            let replaced = client.schedule_reminder(&args.actor_type, &args.id, spec).await.map_err(client_error)?;
            println!("{}", if replaced { "replaced" } else { "scheduled" });
        }
        RemindersCommand::Cancel { actor_type, id, reminder_id, runtime } => {
            let client = runtime.connect().await?;
            let cancelled =
                client.cancel_reminder(&actor_type, &id, reminder_id.as_deref()).await.map_err(client_error)?;
            println!("cancelled {cancelled}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The header, table rows and JSON objects of the reminders of all actors
/// (`actor_type` = `None`), of one type (`id` = `None`), or of one actor,
/// sorted by actor and reminder id; shared with `kar get reminders`.
pub async fn list(
    client: &Client,
    actor_type: Option<&str>,
    id: Option<&str>,
) -> anyhow::Result<(&'static [&'static str], Vec<Vec<String>>, Vec<Value>)> {
    let mut reminders = client.list_reminders(actor_type, id).await.map_err(client_error)?;
    reminders.sort_by_key(|r| {
        let (actor_type, id) = actor_of(r);
        (actor_type, id, r.reminder_id.clone())
    });
    let header: &[&str] = &["TYPE", "ID", "REMINDER", "METHOD", "NEXT FIRE", "PERIOD"];
    Ok((header, reminders.iter().map(reminder_row).collect(), reminders.iter().map(reminder_json).collect()))
}

fn actor_of(r: &Reminder) -> (String, String) {
    r.actor.as_ref().map(|a| (a.r#type.clone(), a.id.clone())).unwrap_or_default()
}

/// The next fire time in RFC 3339, UTC, to the millisecond.
fn next_fire(r: &Reminder) -> Option<String> {
    r.next_fire_time.as_ref().map(|t| {
        let since_epoch = Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
        humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + since_epoch).to_string()
    })
}

/// The period of a periodic reminder, as `1h 30m`.
fn period(r: &Reminder) -> Option<String> {
    r.period.as_ref().map(|p| {
        let period = Duration::new(p.seconds.max(0) as u64, p.nanos.max(0) as u32);
        humantime::format_duration(period).to_string()
    })
}

fn reminder_row(r: &Reminder) -> Vec<String> {
    let (actor_type, id) = actor_of(r);
    vec![
        actor_type,
        id,
        r.reminder_id.clone(),
        r.method.clone(),
        next_fire(r).unwrap_or_else(|| "-".to_owned()),
        period(r).unwrap_or_else(|| "-".to_owned()),
    ]
}

fn reminder_json(r: &Reminder) -> Value {
    let (actor_type, id) = actor_of(r);
    // A typed (protobuf) payload has no JSON form: shown as null.
    let args = r.payload.clone().and_then(|p| kar_client::json::payload_to_json(p).ok());
    json!({
        "type": actor_type,
        "id": id,
        "reminder_id": r.reminder_id,
        "method": r.method,
        "args": args,
        "next_fire_time": next_fire(r),
        "period": period(r),
    })
}
