//! The body of the `chaos` binary: starts a runtime and test components,
//! runs the workload while the fault driver SIGKILLs and restarts them,
//! quiesces, collects the history and runs the checker.
//!
//! The workload: `clients` concurrent tasks, each issuing one operation at a
//! time, chosen at random (seeded) among
//!
//! * calls and tells of `ChaosCounter.incr` (actor state: G7),
//! * calls and tells of `ChaosSlow.work` (a sleep),
//! * nested calls (`ChaosCaller.call` → `ChaosSlow.work` or
//!   `ChaosCounter.incr`) and nested tells (`ChaosCaller.tell` →
//!   `ChaosCounter.incr`),
//! * reentrant chains (`ChaosReent.ping` on r2k → `pong` on r2k+1 → `leaf`
//!   back on r2k; always entered on the even actor, so flows cannot deadlock
//!   across actors),
//! * tail-call chains (`ChaosChain.step`, 2–5 steps, modes same, release and
//!   hop).
//!
//! Every operation carries its operation id as its request id, so its client
//! repeats it after a failure (a runtime crash) until it is answered (calls)
//! or acknowledged (tells) and learns the outcome without running it twice.
//!
//! The fault driver, every `fault_min..fault_max` (random), SIGKILLs either
//! the runtime (then restarts it in place after a short pause) or a random
//! component (then starts a replacement under the same name).

use super::checker::{self, Options};
use super::history::{
    ClientOp, CounterState, Fault, FaultKind, History, Micros, OpKind, OpOutcome, PeriodicReminder, now_us,
};
use crate::{Component, Runtime};
use anyhow::{Context as _, bail};
use kar_client::{Client, ReminderSpec};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The actor types every test component hosts.
pub const ACTOR_TYPES: &str = "ChaosCounter,ChaosSlow,ChaosCaller,ChaosReent,ChaosChain,ChaosTicker,ChaosSink";
/// The topic events are published to, its subscription and the subscriber.
const TOPIC: &str = "chaos-events";
const SUBSCRIPTION: &str = "chaos-sub";
const SINK: &str = "e0";
/// Periodic reminders: `ChaosTicker/p<i>` every `PERIODS[i]` ms.
const PERIODS: [u64; 3] = [100, 170, 290];
const TICKERS: usize = 4;
const COUNTERS: usize = 6;
const SLOWS: usize = 6;
const CALLERS: usize = 4;
const REENT_PAIRS: usize = 3;
const CHAINS: usize = 4;

/// How a run is configured (the `chaos` command line).
#[derive(Clone, Debug)]
pub struct Config {
    /// `embedded` (the only one for now).
    pub backend: String,
    /// How long the workload and the faults run.
    pub seconds: u64,
    /// The seed of every random choice.
    pub seed: u64,
    /// Concurrent client tasks.
    pub clients: usize,
    /// Test components.
    pub components: usize,
    /// Pause between faults: at least this long...
    pub fault_min: Duration,
    /// ...and at most this long.
    pub fault_max: Duration,
    /// How long to wait, after the faults stop, for everything accepted to
    /// complete.
    pub quiesce: Duration,
    /// Print every violation.
    pub verbose: bool,
    /// Keep the work directory (logs, history) even when the run is clean.
    pub keep: bool,
    /// The checker's tolerances.
    pub options: Options,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: "embedded".into(),
            seconds: 60,
            seed: now_us() % 1_000_000,
            clients: 16,
            components: 3,
            fault_min: Duration::from_millis(1500),
            fault_max: Duration::from_millis(4500),
            quiesce: Duration::from_secs(120),
            verbose: false,
            keep: false,
            options: Options::default(),
        }
    }
}

impl Config {
    /// Parses `--backend B --seconds N --seed S --clients N --components N
    /// --fault-interval MIN_MS..MAX_MS --quiesce SECONDS --verbose --keep`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Config> {
        let mut config = Config::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--backend" => config.backend = value()?,
                "--seconds" => config.seconds = value()?.parse().context("--seconds")?,
                "--seed" => config.seed = value()?.parse().context("--seed")?,
                "--clients" => config.clients = value()?.parse().context("--clients")?,
                "--components" => config.components = value()?.parse().context("--components")?,
                "--quiesce" => config.quiesce = Duration::from_secs(value()?.parse().context("--quiesce")?),
                "--fault-interval" => {
                    let v = value()?;
                    let (min, max) = v.split_once("..").context("--fault-interval MIN_MS..MAX_MS")?;
                    config.fault_min = Duration::from_millis(min.parse().context("--fault-interval")?);
                    config.fault_max = Duration::from_millis(max.parse().context("--fault-interval")?);
                    if config.fault_max < config.fault_min {
                        bail!("--fault-interval: MAX is below MIN");
                    }
                }
                "--verbose" | "-v" => config.verbose = true,
                "--keep" => config.keep = true,
                other => bail!("unknown argument {other:?}"),
            }
        }
        if config.backend != "embedded" {
            bail!("backend {:?} is not available yet (only embedded)", config.backend);
        }
        if config.components == 0 || config.clients == 0 {
            bail!("--clients and --components must be at least 1");
        }
        Ok(config)
    }
}

/// A small seeded random generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.next_u64() % (hi - lo + 1) }
    }
}

/// One operation to issue.
#[derive(Clone, Debug)]
struct Op {
    op: String,
    kind: OpKind,
    label: &'static str,
    actor_type: &'static str,
    id: String,
    method: &'static str,
    args: Value,
    final_inv: String,
}

fn choose(rng: &mut Rng, op: String) -> Op {
    let call = |label, actor_type, id: String, method, args, op: &String| Op {
        op: op.clone(),
        kind: OpKind::Call,
        label,
        actor_type,
        id,
        method,
        args,
        final_inv: op.clone(),
    };
    let counter = format!("c{}", rng.range(0, COUNTERS as u64 - 1));
    let slow = format!("s{}", rng.range(0, SLOWS as u64 - 1));
    let caller = format!("a{}", rng.range(0, CALLERS as u64 - 1));
    let ms = rng.range(0, 250);
    let after = rng.range(0, 200);
    match rng.range(0, 99) {
        0..18 => call("counter-call", "ChaosCounter", counter, "incr", json!([op]), &op),
        18..28 => Op { kind: OpKind::Tell, ..call("counter-tell", "ChaosCounter", counter, "incr", json!([op]), &op) },
        28..35 => call("slow-call", "ChaosSlow", slow, "work", json!([op, ms]), &op),
        35..39 => Op { kind: OpKind::Tell, ..call("slow-tell", "ChaosSlow", slow, "work", json!([op, ms]), &op) },
        39..48 => {
            let args = json!([op, "ChaosSlow", slow, "work", [op, ms], after]);
            call("nested-call-slow", "ChaosCaller", caller, "call", args, &op)
        }
        48..54 => {
            let args = json!([op, "ChaosCounter", counter, "incr", [op], after]);
            call("nested-call-counter", "ChaosCaller", caller, "call", args, &op)
        }
        54..60 => {
            let args = json!([op, "ChaosCounter", counter, "incr", [op], after]);
            call("nested-tell-counter", "ChaosCaller", caller, "tell", args, &op)
        }
        90..95 => {
            // A one-shot reminder due in 0.2–3 s, on a whole millisecond.
            let ticker = format!("t{}", rng.range(0, TICKERS as u64 - 1));
            let due_ms = now_us() / 1000 + rng.range(200, 3000);
            let final_inv = format!("reminder:ChaosTicker/{ticker}/{op}@{due_ms}");
            Op {
                kind: OpKind::Reminder,
                final_inv,
                ..call("reminder-once", "ChaosTicker", ticker, "tick", json!(due_ms), &op)
            }
        }
        95..100 => Op { kind: OpKind::Publish, ..call("publish", "ChaosSink", SINK.into(), "event", json!([op]), &op) },
        60..70 => {
            let pair = rng.range(0, REENT_PAIRS as u64 - 1);
            let args = json!([op, format!("r{}", 2 * pair + 1)]);
            call("reentrant", "ChaosReent", format!("r{}", 2 * pair), "ping", args, &op)
        }
        _ => {
            // 70..90
            let total = rng.range(2, 5);
            let mode = ["same", "release", "hop"][rng.range(0, 2) as usize];
            let chain = format!("h{}", rng.range(0, CHAINS as u64 - 1));
            let id = if mode == "hop" { format!("{chain}-0") } else { chain };
            let step_ms = rng.range(0, 150);
            let mut op = call("chain", "ChaosChain", id, "step", json!([op, 0, total, step_ms, mode]), &op);
            op.final_inv = format!("{}~{}", op.op, total - 1);
            op
        }
    }
}

/// Counts of the errors clients retried after, by gRPC code.
type RetryCounts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Issues one operation until it is answered (call) or acknowledged (tell),
/// or until `give_up`.
async fn issue(client: &Client, op: Op, give_up: Instant, retries: &RetryCounts) -> ClientOp {
    let issued = now_us();
    let idempotent = client.with_request_id(op.op.clone());
    let mut final_inv = op.final_inv.clone();
    let mut tries = 0;
    let (outcome, answered) = loop {
        tries += 1;
        let attempt = async {
            match op.kind {
                OpKind::Call => idempotent.call_actor(op.actor_type, &op.id, op.method, op.args.clone()).await,
                OpKind::Tell => {
                    idempotent.tell_actor(op.actor_type, &op.id, op.method, op.args.clone()).await.map(|_| Value::Null)
                }
                OpKind::Reminder => {
                    let due = std::time::UNIX_EPOCH + Duration::from_millis(op.args.as_u64().unwrap_or_default());
                    let spec = ReminderSpec::new(op.op.clone(), op.method).args(json!([op.op])).at(due);
                    client.schedule_reminder(op.actor_type, &op.id, spec).await.map(|_| Value::Null)
                }
                OpKind::Publish => client.publish(TOPIC, op.args.clone()).await.map(|offset| json!(offset)),
            }
        };
        let error = match tokio::time::timeout(Duration::from_secs(30), attempt).await {
            Ok(Ok(value)) => {
                if op.kind == OpKind::Publish {
                    final_inv = format!("event:{SUBSCRIPTION}@{value}");
                }
                break (OpOutcome::Value(value), Some(now_us()));
            }
            Ok(Err(e)) if e.is_application_error() => break (OpOutcome::AppError(e.message()), Some(now_us())),
            Ok(Err(e)) => format!("{:?}: {}", e.code(), e.message()),
            Err(_) => "client timeout after 30s".to_owned(),
        };
        let code = error.split(':').next().unwrap_or_default().to_owned();
        *retries.lock().unwrap().entry(code).or_default() += 1;
        if Instant::now() >= give_up {
            break (OpOutcome::Unanswered(error), None);
        }
        tokio::time::sleep(Duration::from_millis(100 + (tries as u64 % 4) * 50)).await;
    };
    ClientOp {
        op: op.op,
        kind: op.kind,
        label: op.label.to_owned(),
        target: format!("{}/{}.{}", op.actor_type, op.id, op.method),
        final_inv,
        issued,
        answered,
        tries,
        outcome,
    }
}

/// What the fault driver owns and records.
struct Cluster {
    runtime: Runtime,
    components: Vec<(String, Component)>,
    log_dir: PathBuf,
    faults: Vec<Fault>,
    spawns: Vec<Micros>,
    restart_failures: u32,
}

impl Cluster {
    fn start_component(&self, name: &str) -> anyhow::Result<Component> {
        Component::start(&self.runtime.addr(), &self.log_dir, name, ACTOR_TYPES, "")
    }

    /// Kills something at random and restarts it.
    fn fault(&mut self, rng: &mut Rng) {
        if rng.range(0, 99) < 40 {
            let kill_sent = now_us();
            self.runtime.kill();
            let kill_done = now_us();
            std::thread::sleep(Duration::from_millis(rng.range(300, 1200)));
            let mut restarted = None;
            for _ in 0..5 {
                let spawned = now_us();
                self.spawns.push(spawned);
                match self.runtime.restart() {
                    Ok(()) => {
                        restarted = Some(spawned);
                        break;
                    }
                    Err(e) => {
                        eprintln!("chaos: the runtime did not restart: {e:#}");
                        self.restart_failures += 1;
                        self.runtime.kill();
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
            self.faults.push(Fault {
                kind: FaultKind::Runtime,
                name: "kar".into(),
                pid: 0,
                kill_sent,
                kill_done,
                restarted,
                new_pid: None,
            });
        } else {
            let i = rng.range(0, self.components.len() as u64 - 1) as usize;
            let (name, component) = &mut self.components[i];
            let name = name.clone();
            let pid = component.pid();
            let kill_sent = now_us();
            component.kill();
            let kill_done = now_us();
            std::thread::sleep(Duration::from_millis(rng.range(100, 1000)));
            let (restarted, new_pid) = match self.start_component(&name) {
                Ok(replacement) => {
                    let new_pid = replacement.pid();
                    self.components[i].1 = replacement;
                    (Some(now_us()), Some(new_pid))
                }
                Err(e) => {
                    eprintln!("chaos: component {name} did not restart: {e:#}");
                    self.restart_failures += 1;
                    (None, None)
                }
            };
            self.faults.push(Fault { kind: FaultKind::Component, name, pid, kill_sent, kill_done, restarted, new_pid });
        }
    }
}

async fn wait_attached(client: &Client, names: &[String], limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(list) = client.list_components().await
            && names.iter().all(|n| list.iter().any(|c| &c.name == n))
        {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("components {names:?} did not all attach within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates the topic and its subscription, and schedules the periodic
/// reminders (before any fault).
async fn setup(client: &Client) -> anyhow::Result<Vec<PeriodicReminder>> {
    client.create_topic(TOPIC, 1).await.context("create the topic")?;
    client.subscribe_actor(SUBSCRIPTION, TOPIC, ("ChaosSink", SINK), "event", true).await.context("subscribe")?;
    let mut periodic = Vec::new();
    for (i, period) in PERIODS.iter().enumerate() {
        let actor = format!("p{i}");
        let spec =
            ReminderSpec::new("tick", "tick").args(json!([format!("tick-p{i}")])).every(Duration::from_millis(*period));
        client.schedule_reminder("ChaosTicker", &actor, spec).await.context("schedule a periodic reminder")?;
        periodic.push(PeriodicReminder {
            actor: format!("ChaosTicker/{actor}"),
            reminder: "tick".into(),
            period: period * 1000,
        });
    }
    Ok(periodic)
}

/// The invocations whose completion is required so far and not yet seen
/// (acknowledged tells, nested tells whose caller was acknowledged).
fn outstanding(log_dir: &Path, ops: &[ClientOp]) -> anyhow::Result<Vec<String>> {
    let mut history = History::default();
    history.read_logs(log_dir)?;
    let ended: std::collections::HashSet<&str> =
        history.attempts.iter().filter(|a| a.end.is_some()).map(|a| a.inv.as_str()).collect();
    let mut missing: Vec<String> = ops
        .iter()
        .filter(|op| op.kind != OpKind::Call && matches!(op.outcome, OpOutcome::Value(_)))
        .map(|op| op.final_inv.clone())
        .chain(history.marks.iter().filter(|m| m.ev == "told").map(|m| m.child.clone()))
        .filter(|inv| !ended.contains(inv.as_str()))
        .collect();
    missing.sort();
    missing.dedup();
    Ok(missing)
}

/// Checks the history kept in `dir` by an earlier run again, printing every
/// violation; returns the process exit code.
pub fn recheck(dir: &Path, options: &Options) -> anyhow::Result<i32> {
    let saved: Value = serde_json::from_slice(&std::fs::read(dir.join("history.json"))?)?;
    let mut history = History {
        ops: serde_json::from_value(saved["ops"].clone())?,
        faults: serde_json::from_value(saved["faults"].clone())?,
        runtime_spawns: serde_json::from_value(saved["runtime_spawns"].clone())?,
        counters: serde_json::from_value(saved["counters"].clone())?,
        periodic: serde_json::from_value(saved["periodic"].clone()).unwrap_or_default(),
        ..History::default()
    };
    history.read_logs(&dir.join("attempts"))?;
    let report = checker::check(&history, options);
    for violation in &report.violations {
        println!("violation: {violation}");
    }
    println!(
        "chaos: recheck attempts={} retried_invocations={} reruns_after_end={} aborted_attempts={} runtime_kills={} ops={}",
        report.attempts,
        report.retried,
        report.reruns,
        report.aborted,
        report.runtime_kills,
        history.ops.len()
    );
    println!(
        "chaos: backend=embedded runtimes=1 kills={} invocations={} violations={} {}",
        report.kills,
        report.invocations,
        report.violations.len(),
        report.per_promise()
    );
    Ok(if report.violations.is_empty() { 0 } else { 1 })
}

/// Runs the chaos test; returns the process exit code.
pub async fn run(config: Config) -> anyhow::Result<i32> {
    let dir = tempfile::Builder::new().prefix("kar-chaos-").tempdir()?;
    let work = dir.path().to_path_buf();
    let log_dir = work.join("attempts");
    std::fs::create_dir_all(&log_dir)?;
    eprintln!(
        "chaos: backend={} seed={} seconds={} clients={} components={} faults every {:?}..{:?}; work dir {}",
        config.backend,
        config.seed,
        config.seconds,
        config.clients,
        config.components,
        config.fault_min,
        config.fault_max,
        work.display()
    );

    let first_spawn = now_us();
    let runtime = Runtime::start(&work)?;
    let client = Client::connect_lazy(&runtime.addr())?;
    let names: Vec<String> = (0..config.components).map(|i| format!("chaos-{}", (b'a' + i as u8) as char)).collect();
    let mut cluster = Cluster {
        runtime,
        components: Vec::new(),
        log_dir: log_dir.clone(),
        faults: Vec::new(),
        spawns: vec![first_spawn],
        restart_failures: 0,
    };
    for name in &names {
        let component = cluster.start_component(name)?;
        cluster.components.push((name.clone(), component));
    }
    wait_attached(&client, &names, Duration::from_secs(60)).await?;
    let periodic = setup(&client).await?;

    let started = Instant::now();
    let run_for = Duration::from_secs(config.seconds);
    let give_up = started + run_for + config.quiesce;
    let stop = Arc::new(AtomicBool::new(false));
    let retries: RetryCounts = Arc::default();

    // The fault driver: a plain thread, since restarting waits on processes.
    let faults = {
        let stop = stop.clone();
        let (min, max) = (config.fault_min.as_millis() as u64, config.fault_max.as_millis() as u64);
        let mut rng = Rng::new(config.seed ^ 0xFA17);
        std::thread::spawn(move || {
            // Let the workload warm up first.
            let mut next = Instant::now() + Duration::from_millis(1500);
            while !stop.load(Ordering::SeqCst) {
                if Instant::now() >= next {
                    cluster.fault(&mut rng);
                    next = Instant::now() + Duration::from_millis(rng.range(min, max));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            cluster
        })
    };

    // The workload.
    let ops: Arc<Mutex<Vec<ClientOp>>> = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..config.clients {
        let (client, stop, ops, retries) = (client.clone(), stop.clone(), ops.clone(), retries.clone());
        let mut rng = Rng::new(config.seed.wrapping_mul(1000).wrapping_add(task as u64 + 1));
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let op = choose(&mut rng, format!("o{task}x{n}"));
                n += 1;
                let done = issue(&client, op, give_up, &retries).await;
                ops.lock().unwrap().push(done);
                tokio::time::sleep(Duration::from_millis(rng.range(0, 30))).await;
            }
        }));
    }

    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::SeqCst);
    eprintln!("chaos: {}s up; stopping faults and new work, quiescing", config.seconds);
    let cluster = tokio::task::spawn_blocking(move || faults.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the fault driver panicked"))?;
    for task in tasks {
        let _ = tokio::time::timeout(give_up.saturating_duration_since(Instant::now()) + Duration::from_secs(5), task)
            .await;
    }
    let issued_ops: Vec<ClientOp> = ops.lock().unwrap().clone();

    // Wait (bounded) until every accepted tell has completed.
    let mut missing = outstanding(&log_dir, &issued_ops)?;
    while !missing.is_empty() && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(500)).await;
        missing = outstanding(&log_dir, &issued_ops)?;
    }
    // Let anything that would wrongly run again show up.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The final state of the counters.
    let mut counters = Vec::new();
    for i in 0..COUNTERS {
        let id = format!("c{i}");
        let state = client.state("ChaosCounter", &id);
        let mut last = None;
        for _ in 0..20 {
            match state.get_all().await {
                Ok(all) => {
                    last = Some(all);
                    break;
                }
                Err(e) => {
                    eprintln!("chaos: reading the state of ChaosCounter/{id}: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let all = last.with_context(|| format!("cannot read the state of ChaosCounter/{id}"))?;
        let mut seen: Vec<String> = all.submaps.get("seen").map(|m| m.keys().cloned().collect()).unwrap_or_default();
        seen.sort();
        counters.push(CounterState {
            actor: format!("ChaosCounter/{id}"),
            count: all.entries.get("count").and_then(Value::as_i64).unwrap_or(0),
            seen,
        });
    }

    // Stop everything, then read the history.
    let Cluster { runtime, components, faults, spawns, restart_failures, .. } = cluster;
    drop(components);
    drop(runtime);
    let mut history =
        History { ops: issued_ops, faults, runtime_spawns: spawns, counters, periodic, ..History::default() };
    history.read_logs(&log_dir)?;
    std::fs::write(
        work.join("history.json"),
        serde_json::to_vec_pretty(&json!({
            "seed": config.seed,
            "ops": history.ops,
            "faults": history.faults,
            "runtime_spawns": history.runtime_spawns,
            "counters": history.counters,
            "periodic": history.periodic,
        }))?,
    )?;

    let report = checker::check(&history, &config.options);
    if config.verbose {
        for violation in &report.violations {
            println!("violation: {violation}");
        }
    } else {
        for violation in report.violations.iter().take(20) {
            println!("violation: {violation}");
        }
        if report.violations.len() > 20 {
            println!("... {} more (--verbose prints all)", report.violations.len() - 20);
        }
    }
    let answered = history.ops.iter().filter(|op| op.answered.is_some()).count();
    let mut by_label: BTreeMap<&str, usize> = BTreeMap::new();
    for op in &history.ops {
        *by_label.entry(op.label.as_str()).or_default() += 1;
    }
    println!(
        "chaos: seed={} ops={} answered={} app_errors={} attempts={} retried_invocations={} reruns_after_end={} aborted_attempts={} runtime_kills={} component_kills={} restart_failures={} unfinished={} retried_errors={:?} mix={:?}",
        config.seed,
        history.ops.len(),
        answered,
        report.app_errors,
        report.attempts,
        report.retried,
        report.reruns,
        report.aborted,
        report.runtime_kills,
        report.kills - report.runtime_kills,
        restart_failures,
        missing.len(),
        retries.lock().unwrap(),
        by_label,
    );
    let ran = report.invocations > 0 && answered > 0;
    if !ran {
        println!("chaos: the workload did not run");
    }
    let clean = ran && report.violations.is_empty();
    if !clean || config.keep {
        let kept = dir.keep();
        eprintln!("chaos: logs and history kept in {}", kept.display());
    }
    println!(
        "chaos: backend={} runtimes=1 kills={} invocations={} violations={} {}",
        config.backend,
        report.kills,
        report.invocations,
        report.violations.len(),
        report.per_promise()
    );
    Ok(if clean { 0 } else { 1 })
}
