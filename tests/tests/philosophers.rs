//! End-to-end: the dining philosophers example (a tail-call state machine)
//! keeps making progress through component and runtime crashes, and every
//! philosopher eats exactly the meals it was asked to.

use kar_tests::{Runtime, bin_dir};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The example binary in `--serve` mode, killed when dropped.
struct Philosophers(Child);

impl Philosophers {
    fn start(runtime: &Runtime, log: &std::path::Path) -> anyhow::Result<Philosophers> {
        let binary = bin_dir().join("examples").join("philosophers");
        anyhow::ensure!(binary.exists(), "{} is missing: run `cargo build --workspace --examples`", binary.display());
        let out = std::fs::File::create(log)?;
        let child = Command::new(binary)
            .arg("--serve")
            .env("KAR_RUNTIME_ADDR", runtime.addr())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Philosophers(child))
    }
}

impl Drop for Philosophers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn meals(client: &kar_client::Client, n: usize) -> anyhow::Result<Vec<i64>> {
    let mut all = Vec::new();
    for i in 0..n {
        let meals = client.state("Philosopher", &format!("p{i}")).get("meals").await?;
        all.push(meals.and_then(|v| v.as_i64()).unwrap_or(0));
    }
    Ok(all)
}

async fn wait_for_meals(client: &kar_client::Client, n: usize, at_least: i64) -> anyhow::Result<Vec<i64>> {
    let start = Instant::now();
    loop {
        if let Ok(eaten) = meals(client, n).await
            && eaten.iter().sum::<i64>() >= at_least
        {
            return Ok(eaten);
        }
        if start.elapsed() > Duration::from_secs(90) {
            let eaten = meals(client, n).await?;
            anyhow::bail!("no progress to {at_least} meals in 90s: meals {eaten:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_philosophers_make_progress_through_crashes_and_eat_exactly_their_meals() -> anyhow::Result<()> {
    const PHILOSOPHERS: usize = 5;
    const MEALS: i64 = 12;
    let dir = tempfile::tempdir()?;
    let mut runtime = Runtime::start(dir.path())?;
    let mut first = Some(Philosophers::start(&runtime, &dir.path().join("p1.log"))?);
    let _second = Philosophers::start(&runtime, &dir.path().join("p2.log"))?;
    let client = kar_client::Client::connect(&runtime.addr()).await?;
    let start = Instant::now();
    while client.list_components().await?.len() < 2 {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "the components did not attach");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..PHILOSOPHERS {
        let left = format!("fork-{i}");
        let right = format!("fork-{}", (i + 1) % PHILOSOPHERS);
        client.tell_actor("Philosopher", &format!("p{i}"), "join", json!([left, right, MEALS])).await?;
    }
    let total = PHILOSOPHERS as i64 * MEALS;

    // Crash a component a third of the way, the runtime two thirds of the way.
    wait_for_meals(&client, PHILOSOPHERS, total / 3).await?;
    first.take();
    let _third = Philosophers::start(&runtime, &dir.path().join("p3.log"))?;
    wait_for_meals(&client, PHILOSOPHERS, 2 * total / 3).await?;
    runtime.kill();
    runtime.restart()?;
    let eaten = wait_for_meals(&client, PHILOSOPHERS, total).await?;
    assert_eq!(eaten, vec![MEALS; PHILOSOPHERS], "each philosopher ate exactly its meals");

    // Every chain has ended, so every fork is back on the table.
    let start = Instant::now();
    loop {
        let mut held = Vec::new();
        for i in 0..PHILOSOPHERS {
            if let Some(holder) = client.state("Fork", &format!("fork-{i}")).get("holder").await? {
                held.push((i, holder));
            }
        }
        if held.is_empty() {
            break;
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "forks still held: {held:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
