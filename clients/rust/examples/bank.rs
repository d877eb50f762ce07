//! A small bank: `Account` actors that keep their balance in actor state, and
//! a `teller` service that transfers money between two accounts.
//!
//! Run it under a runtime, which sets `KAR_RUNTIME_ADDR`:
//!
//! ```text
//! kar run -- cargo run -p kar-client --example bank
//! ```
//!
//! It hosts both in the background, drives a short scenario (open accounts,
//! deposit, transfer, an overdraft that is refused), prints what happens and
//! exits.

use anyhow::{Context as _, bail};
use kar_client::host::{ActorHost, AppError, Context, Reply};
use kar_client::{Actor, Client, Service, StateUpdate, async_trait};
use serde::Deserialize;
use serde_json::{Value, json};

/// A bank account. Holds nothing in memory: the balance lives in actor state,
/// so it survives failures and moves with the actor.
struct Account;

impl Account {
    async fn balance(ctx: &Context) -> Result<i64, AppError> {
        Ok(ctx.state().get("balance").await?.and_then(|v| v.as_i64()).unwrap_or(0))
    }

    /// Applies a change to the balance once per invocation: the change and a
    /// history entry keyed by the invocation's request id (stable across
    /// retries) are written in one atomic update, so a retried deposit that
    /// had already been applied is not applied twice.
    async fn apply(ctx: &Context, operation: &str, delta: i64) -> Result<i64, AppError> {
        let state = ctx.state();
        let balance = Account::balance(ctx).await?;
        if state.contains_sub("history", ctx.request_id()).await? {
            return Ok(balance);
        }
        if balance + delta < 0 {
            return Err(AppError::failed_precondition(format!(
                "insufficient funds in {}: balance {balance}, requested {}",
                ctx.actor_id().unwrap_or_default(),
                -delta
            )));
        }
        let update = StateUpdate::new().set("balance", json!(balance + delta)).set_sub(
            "history",
            ctx.request_id(),
            json!({"operation": operation, "amount": delta.abs()}),
        );
        state.update(update).await?;
        Ok(balance + delta)
    }
}

/// Reads the single positive amount of `deposit` and `withdraw`.
fn amount(args: Value) -> Result<i64, AppError> {
    let (amount,): (i64,) = serde_json::from_value(args)?;
    if amount <= 0 {
        return Err(AppError::invalid_argument(format!("amount must be positive, got {amount}")));
    }
    Ok(amount)
}

#[async_trait]
impl Actor for Account {
    async fn invoke(&self, ctx: &Context, method: &str, args: Value) -> Result<Reply, AppError> {
        let balance = match method {
            "deposit" => Account::apply(ctx, "deposit", amount(args)?).await?,
            "withdraw" => Account::apply(ctx, "withdraw", -amount(args)?).await?,
            "balance" => Account::balance(ctx).await?,
            _ => return Err(ctx.no_such_method()),
        };
        Ok(json!(balance).into())
    }
}

/// Moves money between accounts.
struct Teller;

#[derive(Deserialize)]
struct Transfer {
    from: String,
    to: String,
    amount: i64,
}

#[async_trait]
impl Service for Teller {
    async fn invoke(&self, ctx: &Context, method: &str, args: Value) -> Result<Reply, AppError> {
        match method {
            "transfer" => {
                let (transfer,): (Transfer,) = serde_json::from_value(args)?;
                // A refused withdrawal ends the transfer with the account's
                // error, before any money has moved. (A deposit failing after
                // a withdrawal would need a compensation; a real bank would
                // chain the two steps with a tail call.)
                let from = ctx.call_actor("Account", &transfer.from, "withdraw", json!([transfer.amount])).await?;
                let to = ctx.call_actor("Account", &transfer.to, "deposit", json!([transfer.amount])).await?;
                Ok(json!({ transfer.from: from, transfer.to: to }).into())
            }
            _ => Err(ctx.no_such_method()),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = Client::from_env().await.context("connecting to the KAR runtime")?;
    let host = ActorHost::new(client.clone())
        .name("bank")
        .actor("Account", |_id| Account)
        .service("teller", Teller)
        .start()
        .await
        .context("registering with the runtime")?;
    println!("registered as component {}", host.component_id());

    let outcome = scenario(&client).await;
    host.shutdown().await?;
    outcome
}

async fn scenario(client: &Client) -> anyhow::Result<()> {
    // Start from empty accounts, whatever earlier runs left behind.
    for id in ["alice", "bob"] {
        client.remove_actor("Account", id).await?;
    }
    println!("opened accounts alice and bob");

    let alice = client.actor("Account", "alice");
    let bob = client.actor("Account", "bob");
    println!("alice deposits 100 -> balance {}", alice.call("deposit", json!([100])).await?);
    println!("bob deposits 50 -> balance {}", bob.call("deposit", json!([50])).await?);

    let receipt =
        client.call_service("teller", "transfer", json!([{"from": "alice", "to": "bob", "amount": 30}])).await?;
    println!("teller transfers 30 from alice to bob -> {receipt}");

    match client.call_service("teller", "transfer", json!([{"from": "bob", "to": "alice", "amount": 500}])).await {
        Err(err) if err.is_application_error() => {
            println!("teller transfers 500 from bob to alice -> refused: {}", err.message());
        }
        Err(err) => return Err(err).context("transferring 500 from bob to alice"),
        Ok(receipt) => bail!("an overdraft was accepted: {receipt}"),
    }

    let alice_balance = alice.call("balance", json!([])).await?;
    let bob_balance = bob.call("balance", json!([])).await?;
    println!("final balances: alice {alice_balance}, bob {bob_balance}");
    println!("alice's history has {} entries", alice.state().submap_size("history").await?);
    if alice_balance != json!(70) || bob_balance != json!(80) {
        bail!("unexpected final balances: alice {alice_balance}, bob {bob_balance}");
    }
    Ok(())
}
