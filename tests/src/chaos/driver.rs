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
//!
//! Backends: `embedded` is one runtime with its redb file; `distributed` is
//! a private Redis and `--runtimes` (3) runtimes forming one mesh on the
//! Kafka of `KAFKA_BROKERS`, the components spread over them (two per
//! runtime unless `--components` says otherwise), each client task entering
//! through its own runtime and repeating through the next. The fault driver
//! kills one runtime at a time (chosen at random) and restarts it with the
//! same flags, or, with `--freezes`, freezes one (SIGSTOP) for a moment or
//! past the session timeout and then resumes it.

use super::checker::{self, Options};
use super::history::{
    ClientOp, CounterState, Fault, FaultKind, History, OpKind, OpOutcome, PeriodicReminder, RuntimeSpawn,
    SINGLE_RUNTIME, now_us,
};
use crate::{Component, Redis, Runtime, SESSION_TIMEOUT, distributed_args, kafka_brokers, log_tail, unique_app_name};
use anyhow::{Context as _, bail};
use kar_client::{Client, ReminderSpec};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
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
    /// `embedded` or `distributed`.
    pub backend: String,
    /// How many runtimes: 1 for `embedded`, 3 by default for `distributed`.
    pub runtimes: usize,
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
    /// Also freeze a mesh's runtimes (SIGSTOP, then SIGCONT).
    pub freezes: bool,
    /// The checker's tolerances.
    pub options: Options,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: "embedded".into(),
            runtimes: 1,
            seconds: 60,
            seed: now_us() % 1_000_000,
            clients: 16,
            components: 3,
            fault_min: Duration::from_millis(1500),
            fault_max: Duration::from_millis(4500),
            quiesce: Duration::from_secs(120),
            verbose: false,
            keep: false,
            freezes: false,
            options: Options::default(),
        }
    }
}

impl Config {
    /// Parses `--backend B --runtimes N --seconds N --seed S --clients N
    /// --components N --fault-interval MIN_MS..MAX_MS --quiesce SECONDS
    /// --verbose --keep --freezes`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Config> {
        let mut config = Config::default();
        let (mut runtimes, mut components, mut faults) = (None, None, None);
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--backend" => config.backend = value()?,
                "--seconds" => config.seconds = value()?.parse().context("--seconds")?,
                "--seed" => config.seed = value()?.parse().context("--seed")?,
                "--clients" => config.clients = value()?.parse().context("--clients")?,
                "--runtimes" => runtimes = Some(value()?.parse().context("--runtimes")?),
                "--components" => components = Some(value()?.parse().context("--components")?),
                "--quiesce" => config.quiesce = Duration::from_secs(value()?.parse().context("--quiesce")?),
                "--fault-interval" => {
                    let v = value()?;
                    let (min, max) = v.split_once("..").context("--fault-interval MIN_MS..MAX_MS")?;
                    let min = Duration::from_millis(min.parse().context("--fault-interval")?);
                    let max = Duration::from_millis(max.parse().context("--fault-interval")?);
                    if max < min {
                        bail!("--fault-interval: MAX is below MIN");
                    }
                    faults = Some((min, max));
                }
                "--verbose" | "-v" => config.verbose = true,
                "--keep" => config.keep = true,
                "--freezes" => config.freezes = true,
                other => bail!("unknown argument {other:?}"),
            }
        }
        match config.backend.as_str() {
            "embedded" => {
                if runtimes.is_some_and(|n| n != 1) {
                    bail!("--runtimes: the embedded backend has one runtime");
                }
            }
            "distributed" => {
                // A mesh fails over after a session timeout: fewer, later
                // faults than on one runtime, two components per runtime.
                config.runtimes = runtimes.unwrap_or(3);
                config.components = 2 * config.runtimes;
                config.fault_min = Duration::from_millis(2500);
                config.fault_max = Duration::from_millis(6000);
            }
            other => bail!("unknown backend {other:?} (embedded, distributed)"),
        }
        if let Some(n) = components {
            config.components = n;
        }
        if let Some((min, max)) = faults {
            (config.fault_min, config.fault_max) = (min, max);
        }
        if config.runtimes == 0 {
            bail!("--runtimes must be at least 1");
        }
        if config.components == 0 || config.clients == 0 {
            bail!("--clients and --components must be at least 1");
        }
        if config.freezes && config.runtimes < 2 {
            bail!("--freezes: only a mesh (two runtimes or more) replaces a frozen runtime");
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
/// or until `give_up`: first through `clients[first]`, each repetition
/// through the next runtime's client (so a repeated request reaches the mesh
/// through another runtime).
async fn issue(clients: &[Client], first: usize, op: Op, give_up: Instant, retries: &RetryCounts) -> ClientOp {
    let issued = now_us();
    let mut final_inv = op.final_inv.clone();
    let mut tries = 0;
    let (outcome, answered) = loop {
        let client = &clients[(first + tries as usize) % clients.len()];
        let idempotent = client.with_request_id(op.op.clone());
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

/// A runtime of a run and its name in the history.
type NamedRuntime = (String, Runtime);

/// A component of a run and the runtime it attaches to.
struct ChaosComponent {
    name: String,
    runtime: usize,
    component: Component,
}

/// What the fault driver owns and records: the runtimes (each with its name
/// in the history), the components, and every kill and spawn.
struct Processes {
    runtimes: Vec<NamedRuntime>,
    components: Vec<ChaosComponent>,
    log_dir: PathBuf,
    faults: Vec<Fault>,
    spawns: Vec<RuntimeSpawn>,
    component_runtimes: HashMap<u32, String>,
    restart_failures: u32,
    freezes: bool,
}

impl Processes {
    /// Starts a component attached to runtime `runtime` and records where it
    /// is.
    fn start_component(&mut self, name: &str, runtime: usize) -> anyhow::Result<Component> {
        let component = Component::start(&self.runtimes[runtime].1.addr(), &self.log_dir, name, ACTOR_TYPES, "")?;
        if self.runtimes.len() > 1 {
            self.component_runtimes.insert(component.pid(), self.runtimes[runtime].0.clone());
        }
        Ok(component)
    }

    /// Kills something at random and restarts it: a runtime (one at a time,
    /// restarted with the same flags, port and work dir) or a component
    /// (replaced under the same name, on the same runtime) — or, with
    /// `--freezes`, freezes a runtime for a while.
    fn fault(&mut self, rng: &mut Rng) {
        // With --freezes a mesh also sees runtimes frozen (no extra draw
        // without: a seed replays an older run).
        if self.freezes && rng.range(0, 99) < 15 {
            let i = rng.range(0, self.runtimes.len() as u64 - 1) as usize;
            // Half of them past the session timeout (the runtime is replaced
            // and its components give up their handlers), half shorter.
            let frozen = match rng.range(0, 1) {
                0 => Duration::from_millis(rng.range(300, 1500)),
                _ => SESSION_TIMEOUT + Duration::from_millis(rng.range(500, 3000)),
            };
            self.freeze(i, frozen);
        } else if rng.range(0, 99) < 40 {
            // (No extra draw with one runtime: a seed replays an older run.)
            let i = if self.runtimes.len() > 1 { rng.range(0, self.runtimes.len() as u64 - 1) as usize } else { 0 };
            let (name, runtime) = &mut self.runtimes[i];
            let pid = runtime.pid().unwrap_or(0);
            let kill_sent = now_us();
            runtime.kill();
            let kill_done = now_us();
            std::thread::sleep(Duration::from_millis(rng.range(300, 1200)));
            let mut restarted = None;
            for _ in 0..5 {
                let spawned = now_us();
                self.spawns.push(RuntimeSpawn::new(name, spawned));
                match runtime.restart() {
                    Ok(()) => {
                        restarted = Some(spawned);
                        break;
                    }
                    Err(e) => {
                        eprintln!("chaos: runtime {name} did not restart: {e:#}");
                        self.restart_failures += 1;
                        runtime.kill();
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
            self.faults.push(Fault {
                kind: FaultKind::Runtime,
                name: name.clone(),
                pid,
                kill_sent,
                kill_done,
                restarted,
                new_pid: runtime.pid(),
            });
        } else {
            let i = rng.range(0, self.components.len() as u64 - 1) as usize;
            let ChaosComponent { name, runtime, component } = &mut self.components[i];
            let (name, runtime) = (name.clone(), *runtime);
            let pid = component.pid();
            let kill_sent = now_us();
            component.kill();
            let kill_done = now_us();
            std::thread::sleep(Duration::from_millis(rng.range(100, 1000)));
            let (restarted, new_pid) = match self.start_component(&name, runtime) {
                Ok(replacement) => {
                    let new_pid = replacement.pid();
                    self.components[i].component = replacement;
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

    /// SIGSTOPs runtime `i` for `frozen`, then SIGCONTs it.
    fn freeze(&mut self, i: usize, frozen: Duration) {
        let (name, runtime) = &self.runtimes[i];
        let pid = runtime.pid().unwrap_or(0);
        let stopped = now_us();
        if let Err(e) = runtime.pause() {
            eprintln!("chaos: runtime {name} could not be frozen: {e:#}");
            return;
        }
        std::thread::sleep(frozen);
        // Stamped before the signal: the process was frozen until then.
        let resumed = now_us();
        if let Err(e) = runtime.resume() {
            eprintln!("chaos: runtime {name} could not be resumed: {e:#}");
            self.restart_failures += 1;
        }
        self.faults.push(Fault {
            kind: FaultKind::Freeze,
            name: name.clone(),
            pid,
            kill_sent: stopped,
            kill_done: resumed,
            restarted: None,
            new_pid: Some(pid),
        });
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
    retrying("create the topic", || client.create_topic(TOPIC, 1)).await?;
    retrying("subscribe", || client.subscribe_actor(SUBSCRIPTION, TOPIC, ("ChaosSink", SINK), "event", true)).await?;
    let mut periodic = Vec::new();
    for (i, period) in PERIODS.iter().enumerate() {
        let actor = format!("p{i}");
        let spec =
            ReminderSpec::new("tick", "tick").args(json!([format!("tick-p{i}")])).every(Duration::from_millis(*period));
        retrying("schedule a periodic reminder", || client.schedule_reminder("ChaosTicker", &actor, spec.clone()))
            .await?;
        periodic.push(PeriodicReminder {
            actor: format!("ChaosTicker/{actor}"),
            reminder: "tick".into(),
            period: period * 1000,
        });
    }
    Ok(periodic)
}

/// Runs an idempotent set-up step until it succeeds, for at most 30 s: a
/// mesh that just formed may answer `UNAVAILABLE` for a moment (a new Kafka
/// topic's metadata still propagating, partitions still being assigned).
async fn retrying<T, Fut>(what: &str, mut step: impl FnMut() -> Fut) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = Result<T, kar_client::Error>>,
{
    let start = Instant::now();
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(e) if !e.is_application_error() && start.elapsed() < Duration::from_secs(30) => {
                eprintln!("chaos: {what}: {:?}: {} (retrying)", e.code(), e.message());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context(what.to_owned()),
        }
    }
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
        component_runtimes: serde_json::from_value(saved["component_runtimes"].clone()).unwrap_or_default(),
        counters: serde_json::from_value(saved["counters"].clone())?,
        periodic: serde_json::from_value(saved["periodic"].clone()).unwrap_or_default(),
        ..History::default()
    };
    let backend = saved["backend"].as_str().unwrap_or("embedded");
    let runtimes = saved["runtimes"].as_u64().unwrap_or(1);
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
        "chaos: backend={backend} runtimes={runtimes} kills={} invocations={} violations={} {}",
        report.kills,
        report.invocations,
        report.violations.len(),
        report.per_promise()
    );
    Ok(if report.violations.is_empty() { 0 } else { 1 })
}

/// Starts the runtimes of a run: one embedded runtime named `kar` in the
/// work dir, or, distributed, a private Redis and `config.runtimes`
/// runtimes `kar-<i>` (work dirs `rt<i>`) forming one fresh mesh on the
/// Kafka of `KAFKA_BROKERS`. Records each first spawn.
fn start_runtimes(
    config: &Config,
    work: &Path,
    spawns: &mut Vec<RuntimeSpawn>,
) -> anyhow::Result<(Option<Redis>, Vec<NamedRuntime>)> {
    if config.backend != "distributed" {
        spawns.push(RuntimeSpawn::new(SINGLE_RUNTIME, now_us()));
        return Ok((None, vec![(SINGLE_RUNTIME.to_owned(), Runtime::start(work)?)]));
    }
    let brokers = kafka_brokers()?;
    let redis = Redis::start(&work.join("redis"))?;
    let app = unique_app_name("chaos");
    eprintln!("chaos: mesh {app} on Kafka {brokers}, Redis {}", redis.url());
    let args = distributed_args(&brokers, &redis.url(), &app);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut runtimes = Vec::new();
    for i in 0..config.runtimes {
        let name = format!("kar-{i}");
        let dir = work.join(format!("rt{i}"));
        std::fs::create_dir_all(&dir)?;
        spawns.push(RuntimeSpawn::new(&name, now_us()));
        let runtime = Runtime::start_with(&dir, &args).map_err(|e| {
            anyhow::anyhow!("runtime {name} did not start: {e:#}\nits log:\n{}", log_tail(&dir.join("kar-1.log"), 40))
        })?;
        runtimes.push((name, runtime));
    }
    Ok((Some(redis), runtimes))
}

/// Runs the chaos test; returns the process exit code. The work dir is kept
/// when the run fails or finds a violation (or with `--keep`).
pub async fn run(config: Config) -> anyhow::Result<i32> {
    let dir = tempfile::Builder::new().prefix("kar-chaos-").tempdir()?;
    let work = dir.path().to_path_buf();
    match run_in(&config, &work).await {
        Ok(code) => {
            if code != 0 || config.keep {
                let kept = dir.keep();
                eprintln!("chaos: logs and history kept in {}", kept.display());
            }
            Ok(code)
        }
        Err(e) => {
            let kept = dir.keep();
            Err(e.context(format!("logs kept in {}", kept.display())))
        }
    }
}

async fn run_in(config: &Config, work: &Path) -> anyhow::Result<i32> {
    let log_dir = work.join("attempts");
    std::fs::create_dir_all(&log_dir)?;
    eprintln!(
        "chaos: backend={} runtimes={} seed={} seconds={} clients={} components={} faults every {:?}..{:?}; work dir {}",
        config.backend,
        config.runtimes,
        config.seed,
        config.seconds,
        config.clients,
        config.components,
        config.fault_min,
        config.fault_max,
        work.display()
    );

    let mut spawns = Vec::new();
    let (redis, runtimes) = start_runtimes(config, work, &mut spawns)?;
    let clients =
        runtimes.iter().map(|(_, runtime)| Client::connect_lazy(&runtime.addr())).collect::<Result<Vec<_>, _>>()?;
    let mut processes = Processes {
        runtimes,
        components: Vec::new(),
        log_dir: log_dir.clone(),
        faults: Vec::new(),
        spawns,
        component_runtimes: HashMap::new(),
        restart_failures: 0,
        freezes: config.freezes,
    };
    // Components are spread over the runtimes: chaos-a on the first, chaos-b
    // on the second, ...
    for i in 0..config.components {
        let name = format!("chaos-{}", (b'a' + i as u8) as char);
        let runtime = i % processes.runtimes.len();
        let component = processes.start_component(&name, runtime)?;
        processes.components.push(ChaosComponent { name, runtime, component });
    }
    for (r, client) in clients.iter().enumerate() {
        let names: Vec<String> =
            processes.components.iter().filter(|c| c.runtime == r).map(|c| c.name.clone()).collect();
        wait_attached(client, &names, Duration::from_secs(60)).await?;
    }
    let periodic = setup(&clients[0]).await?;

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
                    processes.fault(&mut rng);
                    next = Instant::now() + Duration::from_millis(rng.range(min, max));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            processes
        })
    };

    // The workload: task t enters the mesh through runtime t (mod their
    // number), and repeats through the next ones.
    let ops: Arc<Mutex<Vec<ClientOp>>> = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..config.clients {
        let (clients, stop, ops, retries) = (clients.clone(), stop.clone(), ops.clone(), retries.clone());
        let mut rng = Rng::new(config.seed.wrapping_mul(1000).wrapping_add(task as u64 + 1));
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let op = choose(&mut rng, format!("o{task}x{n}"));
                n += 1;
                let done = issue(&clients, task, op, give_up, &retries).await;
                ops.lock().unwrap().push(done);
                tokio::time::sleep(Duration::from_millis(rng.range(0, 30))).await;
            }
        }));
    }

    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::SeqCst);
    eprintln!("chaos: {}s up; stopping faults and new work, quiescing", config.seconds);
    let processes = tokio::task::spawn_blocking(move || faults.join())
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

    // The final state of the counters (through the next runtime after a
    // failure).
    let mut counters = Vec::new();
    for i in 0..COUNTERS {
        let id = format!("c{i}");
        let mut last = None;
        for tries in 0..20 {
            let state = clients[(i + tries) % clients.len()].state("ChaosCounter", &id);
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
    let Processes { runtimes, components, faults, spawns, component_runtimes, restart_failures, .. } = processes;
    drop(components);
    drop(runtimes);
    drop(redis);
    let mut history = History {
        ops: issued_ops,
        faults,
        runtime_spawns: spawns,
        component_runtimes,
        counters,
        periodic,
        ..History::default()
    };
    history.read_logs(&log_dir)?;
    std::fs::write(
        work.join("history.json"),
        serde_json::to_vec_pretty(&json!({
            "seed": config.seed,
            "backend": config.backend,
            "runtimes": config.runtimes,
            "ops": history.ops,
            "faults": history.faults,
            "runtime_spawns": history.runtime_spawns,
            "component_runtimes": history.component_runtimes,
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
        "chaos: seed={} ops={} answered={} app_errors={} attempts={} retried_invocations={} reruns_after_end={} aborted_attempts={} runtime_kills={} component_kills={} runtime_freezes={} restart_failures={} unfinished={} retried_errors={:?} mix={:?}",
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
        report.freezes,
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
    println!(
        "chaos: backend={} runtimes={} kills={} invocations={} violations={} {}",
        config.backend,
        config.runtimes,
        report.kills,
        report.invocations,
        report.violations.len(),
        report.per_promise()
    );
    Ok(if clean { 0 } else { 1 })
}
