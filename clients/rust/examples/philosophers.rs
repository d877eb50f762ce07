//! Dijkstra's dining philosophers as a tail-call state machine.
//!
//! Each `Philosopher` actor runs a chain of steps — think, take the first
//! fork, take the second, eat, put both back — where each step ends with a
//! tail call to the next, so the chain survives any crash: only the last
//! unfinished step runs again (G5). `Fork` actors are taken and released with
//! idempotent operations (taking a fork you hold succeeds), and a meal is
//! counted once per eating step even if the step is retried. Forks are taken
//! in a global order, so the table never deadlocks.
//!
//! Run it under a runtime:
//!
//! ```text
//! kar run -- target/debug/examples/philosophers [PHILOSOPHERS] [MEALS]
//! ```
//!
//! With `--serve` it only hosts the actors (for tests that drive and crash it).

use anyhow::{Context as _, bail};
use kar_client::host::{ActorHost, AppError, Context, Reply};
use kar_client::{Client, StateUpdate};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Takes or releases a fork. State: `holder`, the philosopher holding it.
async fn fork(ctx: Context, method: String, args: Value) -> Result<Reply, AppError> {
    let who =
        args.get(0).and_then(Value::as_str).ok_or_else(|| AppError::invalid_argument("argument 0: the philosopher"))?;
    let state = ctx.state();
    let holder = state.get("holder").await?;
    match method.as_str() {
        "take" => match holder.as_ref().and_then(Value::as_str) {
            None => {
                state.set("holder", json!(who)).await?;
                Ok(json!(true).into())
            }
            Some(h) => Ok(json!(h == who).into()),
        },
        "release" => {
            if holder.as_ref().and_then(Value::as_str) == Some(who) {
                state.delete("holder").await?;
            }
            Ok(Reply::none())
        }
        _ => Err(ctx.no_such_method()),
    }
}

/// One step of a philosopher's life. State: `first` and `second` (fork ids,
/// in the global order), `meals`, `target`.
async fn philosopher(ctx: Context, method: String, args: Value) -> Result<Reply, AppError> {
    let me = ctx.actor_id().unwrap_or_default().to_owned();
    let state = ctx.state();
    let next = |step: &str| Reply::tail_call("Philosopher", &me, step, json!([]));
    match method.as_str() {
        "join" => {
            let (a, b, target) = (args.get(0).cloned(), args.get(1).cloned(), args.get(2).and_then(Value::as_i64));
            let (Some(Value::String(a)), Some(Value::String(b)), Some(target)) = (a, b, target) else {
                return Err(AppError::invalid_argument("join takes [left fork, right fork, meals]"));
            };
            let (first, second) = if a < b { (a, b) } else { (b, a) };
            let update = StateUpdate::new()
                .set("first", json!(first))
                .set("second", json!(second))
                .set("target", json!(target))
                .set("meals", json!(0));
            state.update(update).await?;
            Ok(next("think"))
        }
        "think" => {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(next("take_first"))
        }
        "take_first" | "take_second" => {
            let key = if method == "take_first" { "first" } else { "second" };
            let fork_id = state.get(key).await?.and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            let taken = ctx.call_actor("Fork", &fork_id, "take", json!([me])).await?;
            if taken != json!(true) {
                // Busy: try again shortly, letting others use this actor's turn.
                tokio::time::sleep(Duration::from_millis(5)).await;
                return Ok(next(&method).releasing_turn());
            }
            Ok(next(if method == "take_first" { "take_second" } else { "eat" }))
        }
        "eat" => {
            // Count this meal once, even if this step is retried: the step's
            // invocation id is stable across retries and unique per step.
            let meal_key = ctx.request_id().to_owned();
            let meals = state.get("meals").await?.and_then(|v| v.as_i64()).unwrap_or(0);
            let meals = if state.contains_sub("eaten", &meal_key).await? {
                meals
            } else {
                state
                    .update(StateUpdate::new().set("meals", json!(meals + 1)).set_sub("eaten", &meal_key, json!(true)))
                    .await?;
                meals + 1
            };
            for key in ["second", "first"] {
                let fork_id = state.get(key).await?.and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                ctx.call_actor("Fork", &fork_id, "release", json!([me])).await?;
            }
            let target = state.get("target").await?.and_then(|v| v.as_i64()).unwrap_or(0);
            if meals < target { Ok(next("think")) } else { Ok(json!(meals).into()) }
        }
        _ => Err(ctx.no_such_method()),
    }
}

fn host(client: Client) -> ActorHost {
    ActorHost::new(client).name("philosophers").actor_fn("Fork", fork).actor_fn("Philosopher", philosopher)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let client = Client::from_env().await.context("cannot reach the runtime (is KAR_RUNTIME_ADDR set?)")?;
    if args.first().map(String::as_str) == Some("--serve") {
        return Ok(host(client).run_until_signal().await?);
    }
    let philosophers: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let meals: i64 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(10);
    if philosophers < 2 {
        bail!("a table needs at least two philosophers");
    }
    let running = host(client.clone()).start().await?;
    let table = format!("table-{}", std::process::id());
    println!("{philosophers} philosophers sit at {table}, each to eat {meals} meals");
    for i in 0..philosophers {
        let left = format!("{table}-fork-{i}");
        let right = format!("{table}-fork-{}", (i + 1) % philosophers);
        client.tell_actor("Philosopher", &format!("{table}-p{i}"), "join", json!([left, right, meals])).await?;
    }
    let start = Instant::now();
    loop {
        let mut eaten = Vec::with_capacity(philosophers);
        for i in 0..philosophers {
            let n = client.state("Philosopher", &format!("{table}-p{i}")).get("meals").await?.and_then(|v| v.as_i64());
            eaten.push(n.unwrap_or(0));
        }
        println!("meals so far: {eaten:?}");
        if eaten.iter().all(|n| *n >= meals) {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("the philosophers did not finish within two minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("everyone ate {meals} meals in {:.1}s", start.elapsed().as_secs_f64());
    running.shutdown().await?;
    Ok(())
}
