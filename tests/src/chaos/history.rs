//! The history of a chaos run: what the test components logged (every
//! attempt, with its start and its end or abandonment, and the calls and
//! tells it made), what the workload's clients saw, what the fault driver
//! killed and restarted, and the final state of the counters.
//!
//! All times are microseconds since the Unix epoch, read from the one clock
//! every process of a run shares.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Microseconds since the Unix epoch.
pub type Micros = u64;

/// The current time in microseconds since the Unix epoch.
pub fn now_us() -> Micros {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// One line of a test component's chaos log (`*.chaoslog`).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct LogLine {
    /// `start`, `end`, `abort` (the SDK dropped the handler), or a mark made
    /// by the handler: `call`/`got` (a nested call and its answer),
    /// `tell`/`told` (a nested tell and its acknowledgement).
    pub ev: String,
    /// Unique per attempt: `<pid>:<n>`.
    pub aid: String,
    /// The invocation id the handler saw (`<request id>[~<step>]`).
    pub inv: String,
    /// The attempt number the runtime gave.
    #[serde(default)]
    pub attempt: u32,
    /// `Type/id`.
    pub actor: String,
    /// The method.
    pub method: String,
    /// The flow id.
    pub flow: String,
    /// The component's process id.
    pub pid: u32,
    /// The component's name.
    pub comp: String,
    /// The workload operation the invocation belongs to.
    #[serde(default)]
    pub op: String,
    /// When.
    pub t: Micros,
    /// For marks: the child invocation id.
    #[serde(default)]
    pub child: Option<String>,
    /// For `end`: whether the handler succeeded.
    #[serde(default)]
    pub ok: Option<bool>,
    /// For `end` and `got`: the result.
    #[serde(default)]
    pub result: Option<Value>,
}

/// One attempt of one invocation, assembled from its log lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// Unique attempt id.
    pub aid: String,
    /// The invocation id (`<request id>[~<step>]`).
    pub inv: String,
    /// The runtime's attempt number.
    pub attempt: u32,
    /// `Type/id`.
    pub actor: String,
    /// The method.
    pub method: String,
    /// The flow.
    pub flow: String,
    /// The component process.
    pub pid: u32,
    /// When it started.
    pub start: Micros,
    /// When its handler returned (normally or with an application error).
    pub end: Option<Micros>,
    /// Whether it returned normally.
    pub ok: bool,
    /// What it returned.
    pub result: Option<Value>,
    /// When the SDK abandoned it.
    pub abort: Option<Micros>,
}

/// A call or tell made by a handler, or its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    /// `call`, `got`, `tell` or `told`.
    pub ev: String,
    /// The attempt that made it.
    pub aid: String,
    /// The calling invocation.
    pub inv: String,
    /// The child invocation (`<inv>.<seq>`).
    pub child: String,
    /// For `got`: the answer.
    pub result: Option<Value>,
    /// When.
    pub t: Micros,
}

/// How a client operation was submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// A synchronous call, repeated with its request id until answered.
    Call,
    /// A tell, repeated with its request id until acknowledged.
    Tell,
    /// A one-shot reminder, scheduled (repeatedly, the same) until
    /// acknowledged; its firing is the invocation
    /// `reminder:<Type>/<id>/<reminder>@<due ms>`.
    Reminder,
    /// An event published to a subscribed topic (until acknowledged); its
    /// delivery is the invocation `event:<subscription>@<offset>`.
    Publish,
}

/// What the client finally got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpOutcome {
    /// A call's value, or a tell's acknowledgement (`null`).
    Value(Value),
    /// A call's application error.
    AppError(String),
    /// Nothing, within the run's bounds.
    Unanswered(String),
}

/// One operation of the workload, as its client saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientOp {
    /// The operation id, also its request id (the idempotency key).
    pub op: String,
    /// Call or tell.
    pub kind: OpKind,
    /// What the workload did (`counter`, `slow`, `nested-call`, ...).
    pub label: String,
    /// `Type/id.method`.
    pub target: String,
    /// The invocation whose result the caller gets (the last step of a chain).
    pub final_inv: String,
    /// When first issued.
    pub issued: Micros,
    /// When answered (call) or acknowledged (tell).
    pub answered: Option<Micros>,
    /// How many times the client submitted it.
    pub tries: u32,
    /// The outcome.
    pub outcome: OpOutcome,
}

/// What the fault driver did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// Killed the runtime.
    Runtime,
    /// Killed a test component.
    Component,
    /// Froze the runtime (SIGSTOP from `kill_sent`, SIGCONT at `kill_done`):
    /// the same process lives on.
    Freeze,
}

/// One SIGKILL and the restart that followed, or one freeze.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// What was killed.
    pub kind: FaultKind,
    /// Its name (the runtime's — `kar`, or `kar-<i>` in a mesh — or the
    /// component's).
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Just before the signal was sent: the process was alive until then.
    pub kill_sent: Micros,
    /// After the process was reaped: it was dead by then.
    pub kill_done: Micros,
    /// When its replacement was spawned.
    pub restarted: Option<Micros>,
    /// The replacement's process id.
    pub new_pid: Option<u32>,
}

/// The name of the one runtime of a single-runtime (embedded) run, and the
/// runtime of any component process a history does not place.
pub const SINGLE_RUNTIME: &str = "kar";

/// One start of a runtime process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSpawn {
    /// Which runtime (`kar` in a single-runtime run, `kar-<i>` in a mesh).
    pub runtime: String,
    /// When it was spawned.
    pub at: Micros,
}

impl RuntimeSpawn {
    /// A spawn of `runtime` at `at`.
    pub fn new(runtime: &str, at: Micros) -> RuntimeSpawn {
        RuntimeSpawn { runtime: runtime.to_owned(), at }
    }
}

/// The final state of one counter actor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterState {
    /// `ChaosCounter/<id>`.
    pub actor: String,
    /// Its `count` entry.
    pub count: i64,
    /// The keys of its `seen` submap: the invocations that incremented it.
    pub seen: Vec<String>,
}

/// A periodic reminder the run scheduled (and never cancelled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodicReminder {
    /// `Type/id`.
    pub actor: String,
    /// The reminder id.
    pub reminder: String,
    /// Its period.
    pub period: Micros,
}

impl PeriodicReminder {
    /// The prefix of the invocation ids of its firings.
    pub fn prefix(&self) -> String {
        format!("reminder:{}/{}@", self.actor, self.reminder)
    }
}

/// Everything the checker reads.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// Every call and tell made by handlers.
    pub marks: Vec<Mark>,
    /// Every operation of the workload.
    pub ops: Vec<ClientOp>,
    /// Every kill.
    pub faults: Vec<Fault>,
    /// When each runtime process was spawned (the first starts included).
    pub runtime_spawns: Vec<RuntimeSpawn>,
    /// The runtime each component process was attached to, by process id
    /// (empty in a single-runtime run: every component is on [`SINGLE_RUNTIME`]).
    pub component_runtimes: HashMap<u32, String>,
    /// The final state of the counters.
    pub counters: Vec<CounterState>,
    /// The periodic reminders.
    pub periodic: Vec<PeriodicReminder>,
}

impl History {
    /// Assembles attempts and marks from log lines (in any order).
    pub fn add_lines(&mut self, lines: impl IntoIterator<Item = LogLine>) {
        let mut by_aid: HashMap<String, usize> = HashMap::new();
        let mut lines: Vec<LogLine> = lines.into_iter().collect();
        // Starts first, so that every other line finds its attempt.
        lines.sort_by_key(|l| (l.ev != "start", l.t));
        for line in lines {
            match line.ev.as_str() {
                "start" => {
                    by_aid.insert(line.aid.clone(), self.attempts.len());
                    self.attempts.push(Attempt {
                        aid: line.aid,
                        inv: line.inv,
                        attempt: line.attempt,
                        actor: line.actor,
                        method: line.method,
                        flow: line.flow,
                        pid: line.pid,
                        start: line.t,
                        end: None,
                        ok: false,
                        result: None,
                        abort: None,
                    });
                }
                "end" => {
                    if let Some(&i) = by_aid.get(&line.aid) {
                        let a = &mut self.attempts[i];
                        a.end = Some(line.t);
                        a.ok = line.ok.unwrap_or(false);
                        a.result = line.result;
                    }
                }
                "abort" => {
                    if let Some(&i) = by_aid.get(&line.aid) {
                        self.attempts[i].abort = Some(line.t);
                    }
                }
                _ => self.marks.push(Mark {
                    ev: line.ev,
                    aid: line.aid,
                    inv: line.inv,
                    child: line.child.unwrap_or_default(),
                    result: line.result,
                    t: line.t,
                }),
            }
        }
    }

    /// Reads every `*.chaoslog` file under `dir`. A torn last line (a
    /// component killed mid-write) is skipped.
    pub fn read_logs(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "chaoslog") {
                let text = std::fs::read_to_string(entry.path())?;
                lines.extend(text.lines().filter_map(|l| serde_json::from_str::<LogLine>(l).ok()));
            }
        }
        self.add_lines(lines);
        Ok(())
    }
}
