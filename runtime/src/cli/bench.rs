//! `kar bench`: a built-in load test. It attaches to the runtime as a
//! component hosting an echo actor type (a fresh type name per run, so runs
//! never share actors), drives it with concurrent callers, and prints one
//! summary line:
//!
//! `bench: calls=<n> concurrency=<N> p50_ms=<x.xxx> p99_ms=<x.xxx> throughput_per_s=<n> errors=<n>`

use super::remote::{RuntimeArgs, client_error};
use anyhow::{Context as _, bail};
use clap::Args;
use hdrhistogram::Histogram;
use kar_client::host::{ActorHost, Reply};
use kar_client::{ActorProxy, Client};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `kar bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// How many callers run at once, each waiting for its call's result
    /// before making the next.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// How long to call before measuring, in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// How many actor instances the callers share (caller i calls actor
    /// `i % actors`); the default, one per caller, keeps callers from waiting
    /// on each other's turns.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub actors: Option<u32>,
    /// How many connections the callers spread over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub channels: u32,
    /// Where the runtime is; the timeout bounds each call.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// What one caller saw during the measured period.
struct Tally {
    /// Latencies of the successful calls, in microseconds.
    latencies: Histogram<u64>,
    /// Failed calls, by error message.
    errors: HashMap<String, u64>,
}

/// Runs `kar bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let warmup = Duration::try_from_secs_f64(args.warmup).context("bad --warmup")?;
    let measured = Duration::try_from_secs_f64(args.seconds).context("bad --seconds")?;
    let actor_type = format!("BenchEcho-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let actors = args.actors.unwrap_or(args.concurrency);

    let host = ActorHost::new(args.runtime.connect().await?)
        .name("kar-bench")
        .actor_fn(&actor_type, |ctx, method, args| async move {
            match method.as_str() {
                "echo" => Ok(Reply::from(args)),
                _ => Err(ctx.no_such_method()),
            }
        })
        .start()
        .await
        .map_err(client_error)?;
    let mut clients = Vec::new();
    for _ in 0..args.channels {
        clients.push(args.runtime.connect().await?);
    }
    wait_until_callable(&clients[0].actor(&actor_type, "0")).await?;

    let start = Instant::now();
    let (measure_from, stop_at) = (start + warmup, start + warmup + measured);
    let callers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let proxy = clients[(i % args.channels) as usize].actor(&actor_type, &(i % actors).to_string());
            tokio::spawn(caller(proxy, measure_from, stop_at))
        })
        .collect();
    let mut total = Tally { latencies: new_histogram(), errors: HashMap::new() };
    for joined in futures::future::join_all(callers).await {
        let tally = joined.context("a caller task failed")?;
        total.latencies.add(&tally.latencies).context("cannot merge latencies")?;
        for (message, n) in tally.errors {
            *total.errors.entry(message).or_default() += n;
        }
    }
    let elapsed = measure_from.elapsed().max(Duration::from_millis(1));

    remove_actors(&clients[0], &actor_type, actors).await;
    if let Err(e) = host.shutdown().await {
        eprintln!("kar: bench host did not shut down cleanly: {}", client_error(e));
    }
    report_errors(&total.errors);
    let calls = total.latencies.len();
    let ms = |quantile| total.latencies.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "bench: calls={calls} concurrency={} p50_ms={:.3} p99_ms={:.3} throughput_per_s={:.0} errors={}",
        args.concurrency,
        ms(0.5),
        ms(0.99),
        calls as f64 / elapsed.as_secs_f64(),
        total.errors.values().sum::<u64>(),
    );
    Ok(if calls == 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Calls `echo` back to back until `stop_at`, recording the calls that start
/// from `measure_from` on.
async fn caller(proxy: ActorProxy, measure_from: Instant, stop_at: Instant) -> Tally {
    let payload = json!([{ "text": "hello from kar bench", "n": 42 }]);
    let mut tally = Tally { latencies: new_histogram(), errors: HashMap::new() };
    loop {
        let started = Instant::now();
        if started >= stop_at {
            return tally;
        }
        let result = proxy.call("echo", payload.clone()).await;
        if started < measure_from {
            continue;
        }
        match result {
            Ok(_) => tally.latencies.saturating_record(started.elapsed().as_micros() as u64),
            Err(e) => *tally.errors.entry(client_error(e).to_string()).or_default() += 1,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits; the bounds are valid constants.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// The runtime may need a moment to route to a newly registered type.
async fn wait_until_callable(proxy: &ActorProxy) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match proxy.call("echo", Value::Array(vec![])).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => bail!("the bench actor never became callable: {}", client_error(e)),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Best effort: leave nothing of this run behind in the runtime.
async fn remove_actors(client: &Client, actor_type: &str, actors: u32) {
    let removals = (0..actors).map(|i| async move { client.remove_actor(actor_type, &i.to_string()).await });
    let _ = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(removals)).await;
}

fn report_errors(errors: &HashMap<String, u64>) {
    let mut errors: Vec<_> = errors.iter().collect();
    errors.sort_by(|a, b| b.1.cmp(a.1));
    for (message, n) in errors.iter().take(5) {
        eprintln!("bench: {n} calls failed: {message}");
    }
    if errors.len() > 5 {
        eprintln!("bench: ... and {} other kinds of failure", errors.len() - 5);
    }
}
