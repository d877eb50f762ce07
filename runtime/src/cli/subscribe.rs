//! `kar subscribe`: subscribes an actor method or a service method to a
//! topic.

use super::remote::{RuntimeArgs, client_error};
use clap::{ArgGroup, Args};
use std::process::ExitCode;

/// Arguments of `kar subscribe`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["actor", "service"])))]
pub struct SubscribeArgs {
    /// The subscription id; subscribing again with the same id, topic and
    /// target changes nothing.
    pub subscription_id: String,
    /// The topic, which must exist.
    pub topic: String,
    /// Deliver the events to this actor.
    #[arg(long, num_args = 2, value_names = ["TYPE", "ID"])]
    pub actor: Option<Vec<String>>,
    /// Deliver the events to this service.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// The method that receives each event as its argument.
    pub method: String,
    /// Start from the oldest event of the topic rather than the next one.
    #[arg(long)]
    pub from_oldest: bool,
    /// Where the runtime is.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs `kar subscribe`; prints `subscribed`, or `already subscribed`.
pub async fn run(args: SubscribeArgs) -> anyhow::Result<ExitCode> {
    let client = args.runtime.connect().await?;
    let created = match (&args.actor, &args.service) {
        (Some(actor), _) => {
            let [actor_type, id] = actor.as_slice() else { anyhow::bail!("--actor takes TYPE and ID") };
            client
                .subscribe_actor(&args.subscription_id, &args.topic, (actor_type, id), &args.method, args.from_oldest)
                .await
        }
        (None, Some(service)) => {
            client.subscribe_service(&args.subscription_id, &args.topic, service, &args.method, args.from_oldest).await
        }
        (None, None) => anyhow::bail!("give --actor TYPE ID or --service NAME"),
    }
    .map_err(client_error)?;
    println!("{}", if created { "subscribed" } else { "already subscribed" });
    Ok(ExitCode::SUCCESS)
}
