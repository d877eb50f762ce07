//! The checker: a pure function from a [`History`] to the violations of each
//! promise G1–G7 of `shared/DESIGN.md` §3.
//!
//! An attempt *lives* from its start until the first of: its end (the
//! handler returned), its abandonment (the SDK dropped the handler and logged
//! it), or the SIGKILL of its component process (the time just before the
//! signal, so the attempt surely lived until then). With no such event it
//! lives until the end of the history. Timing tolerances only ever excuse
//! (they never create) a violation, and they are kept small.
//!
//! | promise | what counts as a violation |
//! |---|---|
//! | G1 | a call the client never got an answer for; an answered call or acknowledged tell, or a nested call/tell whose caller got its answer/acknowledgement, that has no ended attempt; an answer that no ended attempt returned |
//! | G2 | an attempt that starts while another attempt of the same invocation lives |
//! | G3 | an attempt that starts after an earlier attempt of the same invocation ended, when that completion was known to be recorded (the client got the result; another flow got the actor's turn afterwards, in the same runtime) or when neither its component nor the runtime was killed shortly after it ended |
//! | G4 | the first attempt of a nested call that starts when no attempt of its caller that issued it is alive (with a short tolerance for the runtime's check, and none across a runtime restart); a nested call re-executed after it completed (counted here, not under G3) |
//! | G5 | a chain step that starts after a later step of the chain started; a step that starts before the previous step ended |
//! | G6 | an attempt on an actor that starts while an attempt of another flow lives on the same actor |
//! | G7 | an increment that completed but is missing from its counter's state; a counter whose count is below its completed increments |
//!
//! **A mesh** (several runtimes, `Fault::name` and `RuntimeSpawn::runtime`
//! name each; `History::component_runtimes` says which runtime delivered to
//! each component process): an attempt's runtime is its component's. Kills
//! and restarts count per runtime. A frozen runtime (SIGSTOP, then SIGCONT)
//! is not dead: its components abandon their attempts when their lease runs
//! out (logged), and an attempt that ended while it was frozen, or shortly
//! before, may run again (G3 excuses it). An actor's partition may move
//! between runtimes, so G4 does not require the child to run in its caller's
//! runtime process, and the G7 outage rule applies to the reminders the
//! killed runtime process was firing. G3 is as strict as on one runtime: a
//! partition that moves by rebalance is released only once the completions
//! of its ended attempts are written.

use super::history::{Attempt, ClientOp, FaultKind, History, Micros, OpKind, OpOutcome, SINGLE_RUNTIME};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// The timing tolerances of the checker.
#[derive(Clone, Debug)]
pub struct Options {
    /// G3: an ended attempt may run again if its component or the runtime
    /// was killed within this long after it ended (its result may not have
    /// been recorded yet).
    pub result_grace: Micros,
    /// G4: how long after its caller died a nested call may still start (the
    /// runtime checked the caller, then activated and delivered).
    pub orphan_tolerance: Micros,
    /// How much earlier than an attempt's end the kill of its component may
    /// be stamped (the signal takes effect a moment after it is sent).
    pub kill_skew: Micros,
}

impl Default for Options {
    fn default() -> Self {
        Options { result_grace: 2_000_000, orphan_tolerance: 1_000_000, kill_skew: 20_000 }
    }
}

/// One broken promise.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// 1..=7.
    pub promise: u8,
    /// The invocation (or operation, or actor) concerned.
    pub subject: String,
    /// What happened.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "G{} {}: {}", self.promise, self.subject, self.detail)
    }
}

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every violation.
    pub violations: Vec<Violation>,
    /// Distinct invocations that started at least once.
    pub invocations: usize,
    /// Attempts logged.
    pub attempts: usize,
    /// SIGKILLs.
    pub kills: usize,
    /// Of which of the runtime.
    pub runtime_kills: usize,
    /// Runtimes frozen (SIGSTOP) and resumed.
    pub freezes: usize,
    /// Client operations answered with an application error.
    pub app_errors: usize,
    /// Invocations that took more than one attempt.
    pub retried: usize,
    /// Attempts that started after an earlier attempt of the same invocation
    /// had ended (its result lost to a kill).
    pub reruns: usize,
    /// Attempts abandoned by their component (the SDK logged it).
    pub aborted: usize,
}

impl Report {
    /// Violations of promise `g` (1..=7).
    pub fn count(&self, g: u8) -> usize {
        self.violations.iter().filter(|v| v.promise == g).count()
    }

    /// `G1=.. G2=.. ... G7=..`
    pub fn per_promise(&self) -> String {
        (1..=7).map(|g| format!("G{g}={}", self.count(g))).collect::<Vec<_>>().join(" ")
    }
}

/// The request id and step of an invocation id (`<id>~<step>`).
pub fn split_inv(inv: &str) -> (&str, u32) {
    match inv.rsplit_once('~') {
        Some((base, step)) => match step.parse() {
            Ok(step) => (base, step),
            Err(_) => (inv, 0),
        },
        None => (inv, 0),
    }
}

fn fmt_t(t: Micros) -> String {
    format!("{}.{:06}", t / 1_000_000, t % 1_000_000)
}

/// Which runtime process delivered an attempt: the runtime's name and how
/// many times it had been spawned by the attempt's start.
type Incarnation<'h> = (&'h str, usize);

struct Ctx<'h> {
    h: &'h History,
    o: &'h Options,
    /// Kill time (signal sent) of each killed component process.
    comp_kill: HashMap<u32, Micros>,
    /// Kills (signal sent) of each runtime, sorted.
    rt_kills: BTreeMap<&'h str, Vec<Micros>>,
    /// Freezes (stopped, resumed) of each runtime.
    rt_freezes: BTreeMap<&'h str, Vec<(Micros, Micros)>>,
    /// Spawns of each runtime, sorted.
    rt_spawns: BTreeMap<&'h str, Vec<Micros>>,
    /// Whether the run had more than one runtime (a mesh), where an actor's
    /// partition may move between runtimes.
    mesh: bool,
    /// Attempts of each invocation, by start.
    by_inv: BTreeMap<&'h str, Vec<&'h Attempt>>,
    /// Attempts on each actor, by start.
    by_actor: BTreeMap<&'h str, Vec<&'h Attempt>>,
    /// Invocations issued as nested calls (not tells).
    nested_calls: HashSet<&'h str>,
}

impl<'h> Ctx<'h> {
    fn new(h: &'h History, o: &'h Options) -> Ctx<'h> {
        let mut comp_kill = HashMap::new();
        let mut rt_kills: BTreeMap<&str, Vec<Micros>> = BTreeMap::new();
        let mut rt_freezes: BTreeMap<&str, Vec<(Micros, Micros)>> = BTreeMap::new();
        for f in &h.faults {
            match f.kind {
                FaultKind::Component => {
                    comp_kill
                        .entry(f.pid)
                        .and_modify(|t: &mut Micros| *t = (*t).min(f.kill_sent))
                        .or_insert(f.kill_sent);
                }
                FaultKind::Runtime => rt_kills.entry(f.name.as_str()).or_default().push(f.kill_sent),
                FaultKind::Freeze => rt_freezes.entry(f.name.as_str()).or_default().push((f.kill_sent, f.kill_done)),
            }
        }
        let mut rt_spawns: BTreeMap<&str, Vec<Micros>> = BTreeMap::new();
        for s in &h.runtime_spawns {
            rt_spawns.entry(s.runtime.as_str()).or_default().push(s.at);
        }
        for list in rt_kills.values_mut().chain(rt_spawns.values_mut()) {
            list.sort();
        }
        let mesh = rt_spawns.len() > 1;
        let mut by_inv: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
        let mut by_actor: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
        for a in &h.attempts {
            by_inv.entry(&a.inv).or_default().push(a);
            by_actor.entry(&a.actor).or_default().push(a);
        }
        for list in by_inv.values_mut().chain(by_actor.values_mut()) {
            list.sort_by_key(|a| (a.start, a.aid.clone()));
        }
        let nested_calls = h.marks.iter().filter(|m| m.ev == "call").map(|m| m.child.as_str()).collect();
        Ctx { h, o, comp_kill, rt_kills, rt_freezes, rt_spawns, mesh, by_inv, by_actor, nested_calls }
    }

    /// The runtime the attempt's component was attached to: the runtime
    /// that delivered it.
    fn runtime_of(&self, a: &Attempt) -> &'h str {
        self.h.component_runtimes.get(&a.pid).map(String::as_str).unwrap_or(SINGLE_RUNTIME)
    }

    /// Every spawn of every runtime, sorted.
    fn all_spawns(&self) -> Vec<Micros> {
        let mut all: Vec<Micros> = self.rt_spawns.values().flatten().copied().collect();
        all.sort();
        all
    }

    /// Until when an attempt surely lived (its end, abandonment or the kill
    /// of its process; `MAX` if none is known).
    fn stop(&self, a: &Attempt) -> Micros {
        let kill = self.comp_kill.get(&a.pid).copied().filter(|&k| k >= a.start);
        [a.end, a.abort, kill].into_iter().flatten().min().unwrap_or(Micros::MAX)
    }

    /// When the attempt stopped counting as a live caller: its stop, or the
    /// death of the runtime that delivered it.
    fn caller_death(&self, a: &Attempt) -> Micros {
        self.stop(a).min(self.runtime_death(a).unwrap_or(Micros::MAX))
    }

    /// When the runtime process that delivered `a` was killed: the first kill
    /// of its runtime after that runtime's last spawn up to `a`'s start. (An
    /// attempt may start a moment after its runtime was killed: the delivery
    /// was already on its way.)
    fn runtime_death(&self, a: &Attempt) -> Option<Micros> {
        let runtime = self.runtime_of(a);
        let spawns = self.rt_spawns.get(runtime).map(Vec::as_slice).unwrap_or_default();
        let spawned = spawns.iter().copied().filter(|&s| s <= a.start).max().unwrap_or(0);
        self.rt_kills.get(runtime)?.iter().copied().find(|&k| k > spawned)
    }

    /// Which runtime process delivered `a`.
    fn incarnation(&self, a: &Attempt) -> Incarnation<'h> {
        let runtime = self.runtime_of(a);
        let spawns = self.rt_spawns.get(runtime).map(Vec::as_slice).unwrap_or_default();
        (runtime, spawns.iter().filter(|&&s| s <= a.start).count())
    }

    /// Whether an ended attempt `a`'s result may have been lost before the
    /// invocation ran again: its component was killed around its end, or the
    /// runtime that delivered it was killed before its end or shortly after,
    /// or was frozen then (its partitions may have moved on without the
    /// result). (In a mesh too: a partition that moves by rebalance is
    /// released only once the completions of its ended attempts are
    /// written.)
    fn excused(&self, a: &Attempt) -> bool {
        let Some(end) = a.end else { return true };
        let runtime = self.runtime_death(a).is_some_and(|k| k <= end + self.o.result_grace);
        let component =
            self.comp_kill.get(&a.pid).is_some_and(|&k| k + self.o.kill_skew >= end && k <= end + self.o.result_grace);
        let frozen = self.rt_freezes.get(self.runtime_of(a)).is_some_and(|list| {
            list.iter().any(|&(stopped, resumed)| stopped <= end + self.o.result_grace && resumed >= a.start)
        });
        runtime || component || frozen
    }

    /// Proof that an ended attempt's completion was recorded: an attempt of
    /// another flow started on the same actor after it, in the same runtime
    /// process and before that runtime was killed (the turn passes on only
    /// once a completion is durable). Returns when.
    fn turn_passed(&self, a: &Attempt) -> Option<Micros> {
        let end = a.end?;
        let incarnation = self.incarnation(a);
        let kill = self.runtime_death(a).unwrap_or(Micros::MAX);
        let list = self.by_actor.get(a.actor.as_str())?;
        let from = list.partition_point(|x| x.start <= end);
        list[from..].iter().find_map(|x| {
            (x.start > end && x.start < kill && x.flow != a.flow && self.incarnation(x) == incarnation)
                .then_some(x.start)
        })
    }
}

/// Checks a history against G1–G7.
pub fn check(h: &History, o: &Options) -> Report {
    let c = Ctx::new(h, o);
    let mut v = Vec::new();
    g1(&c, &mut v);
    g2(&c, &mut v);
    g3_g4_g5(&c, &mut v);
    g4_orphans(&c, &mut v);
    g6(&c, &mut v);
    g7(&c, &mut v);
    Report {
        violations: v,
        invocations: c.by_inv.len(),
        attempts: h.attempts.len(),
        kills: h.faults.iter().filter(|f| f.kind != FaultKind::Freeze).count(),
        runtime_kills: c.rt_kills.values().map(Vec::len).sum(),
        freezes: c.rt_freezes.values().map(Vec::len).sum(),
        app_errors: h.ops.iter().filter(|op| matches!(op.outcome, OpOutcome::AppError(_))).count(),
        retried: c.by_inv.values().filter(|list| list.len() > 1).count(),
        reruns: c
            .by_inv
            .values()
            .map(|list| list.iter().filter(|b| list.iter().any(|a| a.end.is_some_and(|e| e < b.start))).count())
            .sum(),
        aborted: h.attempts.iter().filter(|a| a.abort.is_some()).count(),
    }
}

fn violation(promise: u8, subject: &str, detail: String) -> Violation {
    Violation { promise, subject: subject.to_owned(), detail }
}

/// G1: nothing accepted is lost, and nothing is answered without running.
fn g1(c: &Ctx, v: &mut Vec<Violation>) {
    let ended = |inv: &str| -> Vec<&Attempt> {
        c.by_inv.get(inv).map(|list| list.iter().copied().filter(|a| a.end.is_some()).collect()).unwrap_or_default()
    };
    let require = |v: &mut Vec<Violation>, inv: &str, what: &str, value: Option<&serde_json::Value>| {
        let done = ended(inv);
        if done.is_empty() {
            v.push(violation(1, inv, format!("{what}, but no attempt ever completed")));
        } else if let Some(value) = value
            && !done.iter().any(|a| a.ok && a.result.as_ref().unwrap_or(&serde_json::Value::Null) == value)
        {
            let results: Vec<_> = done.iter().map(|a| a.result.clone().unwrap_or_default()).collect();
            v.push(violation(1, inv, format!("{what} {value}, which no completed attempt returned ({results:?})")));
        }
    };
    for op in &c.h.ops {
        let ClientOp { kind, outcome, final_inv, .. } = op;
        match (kind, outcome) {
            (OpKind::Call, OpOutcome::Value(value)) => require(v, final_inv, "the caller got", Some(value)),
            (OpKind::Call, OpOutcome::AppError(e)) => {
                require(v, final_inv, &format!("the caller got the error {e:?}"), None)
            }
            (OpKind::Tell, OpOutcome::Value(_)) => require(v, final_inv, "the tell was acknowledged", None),
            (OpKind::Publish, OpOutcome::Value(_)) => require(v, final_inv, "the event was published", None),
            (OpKind::Call, OpOutcome::Unanswered(why)) => {
                v.push(violation(1, &op.op, format!("the call to {} was never answered ({why})", op.target)))
            }
            // Never accepted: nothing was promised. (Reminders: see G7.)
            (OpKind::Tell | OpKind::Publish | OpKind::Reminder, _) => {}
        }
    }
    for m in &c.h.marks {
        match m.ev.as_str() {
            "got" => require(v, &m.child, &format!("caller {} got", m.inv), m.result.as_ref()),
            "told" => require(v, &m.child, &format!("the tell from {} was acknowledged", m.inv), None),
            _ => {}
        }
    }
}

/// G2: attempts of one invocation never overlap.
fn g2(c: &Ctx, v: &mut Vec<Violation>) {
    for (inv, list) in &c.by_inv {
        // The attempts started so far that may still be alive.
        let mut alive: Vec<&Attempt> = Vec::new();
        for b in list {
            alive.retain(|a| c.stop(a) > b.start);
            let overlapping = alive.first().copied();
            alive.push(b);
            if let Some(a) = overlapping {
                v.push(violation(
                    2,
                    inv,
                    format!(
                        "attempt {} (#{} pid {}) started at {} while attempt {} (#{} pid {}, started {}) still ran",
                        b.aid,
                        b.attempt,
                        b.pid,
                        fmt_t(b.start),
                        a.aid,
                        a.attempt,
                        a.pid,
                        fmt_t(a.start)
                    ),
                ));
            }
        }
    }
}

/// G3 (and G4's "completed nested calls are not rerun", and G5's "earlier
/// steps never run again"): a completed invocation never runs again.
fn g3_g4_g5<'h>(c: &Ctx<'h>, v: &mut Vec<Violation>) {
    // When a caller certainly had the outcome of each invocation.
    let mut answered: HashMap<&str, Micros> = HashMap::new();
    let mut note = |inv: &'h str, t: Micros| {
        answered.entry(inv).and_modify(|x| *x = (*x).min(t)).or_insert(t);
    };
    let mut steps_of: HashMap<&str, Vec<&'h str>> = HashMap::new();
    for inv in c.by_inv.keys() {
        steps_of.entry(split_inv(inv).0).or_default().push(inv);
    }
    for op in &c.h.ops {
        if let (OpKind::Call, Some(t), OpOutcome::Value(_) | OpOutcome::AppError(_)) =
            (op.kind, op.answered, &op.outcome)
        {
            // Every step of the chain is done once its caller has the answer.
            for inv in steps_of.get(op.op.as_str()).into_iter().flatten() {
                note(inv, t);
            }
        }
    }
    for m in c.h.marks.iter().filter(|m| m.ev == "got") {
        note(&m.child, m.t);
    }
    // First start of each step of each chain.
    let mut chain_steps: HashMap<&str, BTreeMap<u32, Micros>> = HashMap::new();
    for (inv, list) in &c.by_inv {
        let (base, step) = split_inv(inv);
        if let Some(first) = list.first() {
            chain_steps.entry(base).or_default().insert(step, first.start);
        }
    }

    for (inv, list) in &c.by_inv {
        let (base, step) = split_inv(inv);
        let steps = &chain_steps[base];
        // G5: the step after this one may start only after this one ended.
        if step > 0 {
            let previous = format!("{base}~{}", step - 1);
            let previous = if step == 1 { base.to_owned() } else { previous };
            let first = list[0].start;
            let prior_end =
                c.by_inv.get(previous.as_str()).is_some_and(|p| p.iter().any(|a| a.end.is_some_and(|e| e <= first)));
            if !prior_end {
                v.push(violation(
                    5,
                    inv,
                    format!("step {step} started at {} before step {} ended", fmt_t(first), step - 1),
                ));
            }
        }
        for b in list {
            // G5: an earlier step of a chain runs again after a later one started.
            if let Some((later, t)) = steps.range(step + 1..).find(|(_, t)| **t < b.start) {
                v.push(violation(
                    5,
                    inv,
                    format!(
                        "attempt {} of step {step} started at {} after step {later} started at {}",
                        b.aid,
                        fmt_t(b.start),
                        fmt_t(*t)
                    ),
                ));
                continue;
            }
            let promise = if c.nested_calls.contains(inv) {
                4
            } else if inv.starts_with("reminder:") {
                7 // a reminder fired twice for one due time
            } else {
                3
            };
            if let Some(&t) = answered.get(inv)
                && t < b.start
            {
                v.push(violation(
                    promise,
                    inv,
                    format!(
                        "attempt {} started at {} after its caller got the result at {}",
                        b.aid,
                        fmt_t(b.start),
                        fmt_t(t)
                    ),
                ));
                continue;
            }
            let earlier = list.iter().filter(|a| a.end.is_some_and(|e| e < b.start));
            for a in earlier {
                if let Some(t) = c.turn_passed(a).filter(|&t| t < b.start) {
                    v.push(violation(
                        promise,
                        inv,
                        format!(
                            "attempt {} started at {} after attempt {} ended at {} and another flow took the actor's turn at {}",
                            b.aid, fmt_t(b.start), a.aid, fmt_t(a.end.unwrap_or_default()), fmt_t(t)
                        ),
                    ));
                    break;
                }
                if !c.excused(a) {
                    v.push(violation(
                        promise,
                        inv,
                        format!(
                            "attempt {} started at {} after attempt {} ended at {} with no kill within {} ms after",
                            b.aid,
                            fmt_t(b.start),
                            a.aid,
                            fmt_t(a.end.unwrap_or_default()),
                            c.o.result_grace / 1000
                        ),
                    ));
                    break;
                }
            }
        }
    }
}

/// G4: a nested call whose caller failed is not started.
fn g4_orphans(c: &Ctx, v: &mut Vec<Violation>) {
    let aids: HashMap<&str, &Attempt> = c.h.attempts.iter().map(|a| (a.aid.as_str(), a)).collect();
    let mut issued: HashMap<&str, Vec<(&Attempt, Micros)>> = HashMap::new();
    for m in c.h.marks.iter().filter(|m| m.ev == "call") {
        if let Some(a) = aids.get(m.aid.as_str()) {
            issued.entry(&m.child).or_default().push((a, m.t));
        }
    }
    for (child, issuers) in &issued {
        let Some(list) = c.by_inv.get(child) else { continue };
        for b in list.iter().filter(|b| b.attempt == 1) {
            // A single runtime drops pending nested calls when it restarts, so
            // a child runs in the same process as a caller attempt that issued
            // it. In a mesh the child's partition may live in another runtime
            // and survive that runtime's restart: only the caller must live.
            let incarnation = c.incarnation(b);
            let live = issuers.iter().any(|(p, t)| {
                *t <= b.start
                    && (c.mesh || c.incarnation(p) == incarnation)
                    && c.caller_death(p).saturating_add(c.o.orphan_tolerance) > b.start
            });
            if !live {
                let callers: Vec<String> = issuers
                    .iter()
                    .map(|(p, t)| format!("{} (called at {}, died at {})", p.aid, fmt_t(*t), fmt_t(c.caller_death(p))))
                    .collect();
                v.push(violation(
                    4,
                    child,
                    format!(
                        "attempt {} started at {} with no live caller attempt: {}",
                        b.aid,
                        fmt_t(b.start),
                        callers.join(", ")
                    ),
                ));
            }
        }
    }
}

/// G6: one flow at a time per actor.
fn g6(c: &Ctx, v: &mut Vec<Violation>) {
    for (actor, list) in &c.by_actor {
        let mut alive: Vec<&Attempt> = Vec::new();
        for b in list {
            alive.retain(|a| c.stop(a) > b.start);
            let overlapping = alive.iter().copied().find(|a| a.flow != b.flow);
            alive.push(b);
            if let Some(a) = overlapping {
                v.push(violation(
                    6,
                    actor,
                    format!(
                        "attempt {} ({} flow {}) started at {} while attempt {} ({} flow {}, started {}) still ran",
                        b.aid,
                        b.inv,
                        b.flow,
                        fmt_t(b.start),
                        a.aid,
                        a.inv,
                        a.flow,
                        fmt_t(a.start)
                    ),
                ));
            }
        }
    }
}

/// The due time of a reminder's firing, from its invocation id.
pub fn reminder_due(inv: &str) -> Option<Micros> {
    let due: u64 = inv.strip_prefix("reminder:")?.rsplit_once('@')?.1.parse().ok()?;
    Some(due * 1000)
}

/// G7: state and reminders survive; a reminder fires once per due time
/// (see `g3_g4_g5`) and missed periodic ticks are coalesced.
fn g7(c: &Ctx, v: &mut Vec<Violation>) {
    let completed = |inv: &str| c.by_inv.get(inv).is_some_and(|list| list.iter().any(|a| a.end.is_some()));
    for op in c.h.ops.iter().filter(|op| op.kind == OpKind::Reminder && matches!(op.outcome, OpOutcome::Value(_))) {
        if !completed(&op.final_inv) {
            v.push(violation(7, &op.final_inv, "the reminder was scheduled but never fired to completion".into()));
        }
    }
    let all_spawns = c.all_spawns();
    let last_spawn = all_spawns.last().copied().unwrap_or(0);
    for p in &c.h.periodic {
        let prefix = p.prefix();
        let firings = || c.by_inv.range(prefix.as_str()..).take_while(|(inv, _)| inv.starts_with(&prefix));
        let mut dues: Vec<(Micros, bool)> = firings()
            .filter_map(|(inv, list)| Some((reminder_due(inv)?, list.iter().any(|a| a.end.is_some()))))
            .collect();
        dues.sort();
        // The runtime that fired the reminder last before `t` (in a mesh,
        // the owner of the actor's partition then), and when.
        let owner_at = |t: Micros| {
            firings()
                .flat_map(|(_, list)| list.iter())
                .filter(|a| a.end.is_some() && a.start <= t)
                .max_by_key(|a| a.start)
                .map(|a| (c.runtime_of(a), a.start))
        };
        let subject = format!("{}/{}", p.actor, p.reminder);
        if !dues.iter().any(|&(due, done)| done && due > last_spawn) {
            v.push(violation(
                7,
                &subject,
                format!("no firing due after the last runtime start ({})", fmt_t(last_spawn)),
            ));
        }
        // While the runtime was down nothing fired; at its restart the
        // earliest missed tick fires once and the next is after that moment:
        // at most one due time inside each outage. In a mesh this holds for
        // the reminders the killed runtime owned: the others fire on, and its
        // own move to a survivor only after its session expired, later than
        // the restart.
        let outages = c.rt_kills.iter().flat_map(|(runtime, kills)| kills.iter().map(move |&k| (*runtime, k)));
        for (runtime, kill) in outages {
            // In a mesh the rule holds if the killed process itself (not an
            // earlier incarnation of its runtime) was firing the reminder.
            let born = c.rt_spawns.get(runtime).and_then(|s| s.iter().copied().filter(|&s| s < kill).max());
            let fired_by_victim =
                owner_at(kill).is_some_and(|(owner, at)| owner == runtime && born.is_none_or(|born| at >= born));
            if c.mesh && !fired_by_victim {
                continue;
            }
            let back = c
                .rt_spawns
                .get(runtime)
                .and_then(|spawns| spawns.iter().copied().find(|&s| s > kill))
                .unwrap_or(Micros::MAX);
            let inside: Vec<Micros> = dues.iter().map(|d| d.0).filter(|&d| d > kill && d < back).collect();
            if inside.len() > 1 {
                v.push(violation(
                    7,
                    &subject,
                    format!(
                        "{} due times inside the outage {}..{} fired (missed ticks not coalesced): {}",
                        inside.len(),
                        fmt_t(kill),
                        fmt_t(back),
                        inside.iter().map(|d| fmt_t(*d)).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    for counter in &c.h.counters {
        let seen: HashSet<&str> = counter.seen.iter().map(String::as_str).collect();
        let done: HashSet<&str> = c
            .by_actor
            .get(counter.actor.as_str())
            .map(|list| {
                list.iter().filter(|a| a.method == "incr" && a.ok && a.end.is_some()).map(|a| a.inv.as_str()).collect()
            })
            .unwrap_or_default();
        let mut missing: Vec<&str> = done.difference(&seen).copied().collect();
        missing.sort();
        for inv in &missing {
            v.push(violation(7, &counter.actor, format!("the increment by {inv} completed but is not in the state")));
        }
        if (counter.count as usize) < done.len() {
            v.push(violation(
                7,
                &counter.actor,
                format!("count {} is below the {} increments that completed", counter.count, done.len()),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The checker is tested on hand-made histories: a clean one with every
    //! kind of legitimate retry, and one per kind of violation.

    use super::*;
    use crate::chaos::history::{Attempt, ClientOp, CounterState, Fault, Mark, PeriodicReminder, RuntimeSpawn};
    use serde_json::{Value, json};

    const S: Micros = 1_000_000; // one second

    fn attempt(aid: &str, inv: &str, actor: &str, flow: &str, pid: u32, start: Micros, end: Option<Micros>) -> Attempt {
        Attempt {
            aid: aid.into(),
            inv: inv.into(),
            attempt: 1,
            actor: actor.into(),
            method: "work".into(),
            flow: flow.into(),
            pid,
            start,
            end,
            ok: end.is_some(),
            result: end.map(|_| json!(inv)),
            abort: None,
        }
    }

    fn nth(mut a: Attempt, n: u32) -> Attempt {
        a.attempt = n;
        a
    }

    fn call(op: &str, final_inv: &str, answered: Micros, value: Value) -> ClientOp {
        ClientOp {
            op: op.into(),
            kind: OpKind::Call,
            label: "test".into(),
            target: "T/x.m".into(),
            final_inv: final_inv.into(),
            issued: 0,
            answered: Some(answered),
            tries: 1,
            outcome: OpOutcome::Value(value),
        }
    }

    fn tell(op: &str, acked: Micros) -> ClientOp {
        ClientOp { kind: OpKind::Tell, ..call(op, op, acked, Value::Null) }
    }

    fn mark(ev: &str, aid: &str, inv: &str, child: &str, t: Micros, result: Option<Value>) -> Mark {
        Mark { ev: ev.into(), aid: aid.into(), inv: inv.into(), child: child.into(), result, t }
    }

    fn component_kill(pid: u32, t: Micros) -> Fault {
        Fault {
            kind: FaultKind::Component,
            name: "c".into(),
            pid,
            kill_sent: t,
            kill_done: t + 1000,
            restarted: Some(t + S / 2),
            new_pid: Some(pid + 100),
        }
    }

    fn spawn(t: Micros) -> RuntimeSpawn {
        RuntimeSpawn::new(SINGLE_RUNTIME, t)
    }

    fn runtime_kill(t: Micros) -> Fault {
        Fault {
            kind: FaultKind::Runtime,
            name: "kar".into(),
            pid: 0,
            kill_sent: t,
            kill_done: t + 1000,
            restarted: Some(t + S / 2),
            new_pid: None,
        }
    }

    /// A history with every legitimate kind of retry, no violation.
    fn clean() -> History {
        let mut h = History { runtime_spawns: vec![spawn(0)], ..History::default() };
        // A call retried after its component was killed mid-attempt.
        h.attempts.push(attempt("1:0", "c1", "Slow/s0", "c1", 1, 10 * S, None));
        h.faults.push(component_kill(1, 11 * S));
        h.attempts.push(nth(attempt("2:0", "c1", "Slow/s0", "c1", 2, 11 * S + 5000, Some(12 * S)), 2));
        h.ops.push(call("c1", "c1", 12 * S + 100, json!("c1")));
        // A tell that ended just before the runtime was killed runs again
        // after the restart (its completion may not have been recorded).
        h.attempts.push(attempt("2:1", "t1", "Counter/k", "t1", 2, 20 * S, Some(21 * S)));
        h.faults.push(runtime_kill(21 * S + 300_000));
        h.runtime_spawns.push(spawn(22 * S));
        h.attempts.push(attempt("2:2", "t1", "Counter/k", "t1", 2, 22 * S + 1000, Some(22 * S + 2000)));
        h.ops.push(tell("t1", 19 * S));
        // A delivery already on its way when the runtime was killed starts
        // and ends a moment after the kill; its result is lost, so the
        // restarted runtime runs it again.
        h.attempts.push(attempt("2:9", "late1", "Slow/s9", "late1", 2, 21 * S + 300_400, Some(21 * S + 300_500)));
        h.attempts.push(attempt("3:9", "late1", "Slow/s9", "late1", 3, 22 * S + 100_000, Some(22 * S + 200_000)));
        h.ops.push(call("late1", "late1", 22 * S + 300_000, json!("late1")));
        // An attempt abandoned when the runtime died (the SDK aborted it),
        // then retried by the restarted runtime.
        let mut aborted = attempt("2:3", "c2", "Slow/s1", "c2", 2, 21 * S, None);
        aborted.abort = Some(21 * S + 310_000);
        h.attempts.push(aborted);
        h.attempts.push(attempt("3:0", "c2", "Slow/s1", "c2", 3, 22 * S + 5000, Some(23 * S)));
        h.ops.push(call("c2", "c2", 23 * S + 10, json!("c2")));
        // A nested call, then its caller retried: the retry gets the recorded
        // result (no second attempt of the child).
        h.attempts.push(attempt("3:1", "n1", "Caller/a", "n1", 3, 30 * S, None));
        h.marks.push(mark("call", "3:1", "n1", "n1.1", 30 * S + 10, None));
        h.attempts.push(attempt("2:4", "n1.1", "Slow/s2", "n1", 2, 30 * S + 1000, Some(30 * S + 2000)));
        h.marks.push(mark("got", "3:1", "n1", "n1.1", 30 * S + 3000, Some(json!("n1.1"))));
        h.faults.push(component_kill(3, 31 * S));
        h.attempts.push(nth(attempt("4:0", "n1", "Caller/a", "n1", 4, 31 * S + 5000, Some(32 * S)), 2));
        h.marks.push(mark("call", "4:0", "n1", "n1.1", 31 * S + 6000, None));
        h.marks.push(mark("got", "4:0", "n1", "n1.1", 31 * S + 7000, Some(json!("n1.1"))));
        h.ops.push(call("n1", "n1", 32 * S + 10, json!("n1")));
        // A reentrant chain: the same flow overlaps on actor r0.
        h.attempts.push(attempt("4:1", "p1", "Reent/r0", "p1", 4, 40 * S, Some(40 * S + 300)));
        h.marks.push(mark("call", "4:1", "p1", "p1.1", 40 * S + 10, None));
        h.attempts.push(attempt("4:2", "p1.1", "Reent/r1", "p1", 4, 40 * S + 50, Some(40 * S + 250)));
        h.marks.push(mark("call", "4:2", "p1.1", "p1.1.1", 40 * S + 60, None));
        h.attempts.push(attempt("4:3", "p1.1.1", "Reent/r0", "p1", 4, 40 * S + 100, Some(40 * S + 200)));
        h.marks.push(mark("got", "4:2", "p1.1", "p1.1.1", 40 * S + 210, Some(json!("p1.1.1"))));
        h.marks.push(mark("got", "4:1", "p1", "p1.1", 40 * S + 260, Some(json!("p1.1"))));
        h.ops.push(call("p1", "p1", 40 * S + 400, json!("p1")));
        // Another flow takes r0 afterwards.
        h.attempts.push(attempt("4:4", "p2", "Reent/r0", "p2", 4, 40 * S + 500, Some(40 * S + 600)));
        h.ops.push(call("p2", "p2", 40 * S + 700, json!("p2")));
        // A chain of three steps whose middle step is retried after a kill.
        h.attempts.push(attempt("4:5", "h1", "Chain/h", "h1", 4, 50 * S, Some(50 * S + 100)));
        h.attempts.push(attempt("4:6", "h1~1", "Chain/h", "h1", 4, 50 * S + 200, None));
        h.faults.push(component_kill(4, 50 * S + 300));
        h.attempts.push(attempt("5:0", "h1~1", "Chain/h", "h1", 5, 50 * S + 400, Some(50 * S + 500)));
        h.attempts.push(attempt("5:1", "h1~2", "Chain/h", "h1", 5, 50 * S + 600, Some(50 * S + 700)));
        h.ops.push(call("h1", "h1~2", 50 * S + 800, json!("h1~2")));
        // A counter whose two increments are both in its state.
        let mut incr = |aid: &str, inv: &str, t: Micros| {
            let mut a = attempt(aid, inv, "Counter/c0", inv, 5, t, Some(t + 100));
            a.method = "incr".into();
            h.attempts.push(a);
        };
        incr("5:2", "i1", 60 * S);
        incr("5:3", "i2", 61 * S);
        h.counters.push(CounterState { actor: "Counter/c0".into(), count: 2, seen: vec!["i1".into(), "i2".into()] });
        h.ops.push(tell("i1", 59 * S));
        h.ops.push(tell("i2", 59 * S));
        // A periodic reminder (100 ms): one due time inside the outage
        // 21.3 s..22 s fires after the restart, the next one after that.
        h.periodic.push(PeriodicReminder { actor: "Ticker/p0".into(), reminder: "tick".into(), period: S / 10 });
        for (due_ms, start) in
            [(21_000, 21 * S + 10_000), (21_500, 22 * S + 1000), (22_100, 22 * S + 101_000), (200_000, 200 * S)]
        {
            let inv = format!("reminder:Ticker/p0/tick@{due_ms}");
            h.attempts.push(attempt(&format!("2:r{due_ms}"), &inv, "Ticker/p0", &inv, 2, start, Some(start + 100)));
        }
        // A one-shot reminder that fired.
        h.ops.push(ClientOp {
            kind: OpKind::Reminder,
            ..call("once", "reminder:Ticker/t0/once@63000", 60 * S, Value::Null)
        });
        h.attempts.push(attempt(
            "5:4",
            "reminder:Ticker/t0/once@63000",
            "Ticker/t0",
            "x",
            5,
            63 * S,
            Some(63 * S + 10),
        ));
        h
    }

    fn only(h: &History, promise: u8, expected: usize) {
        let report = check(h, &Options::default());
        for v in &report.violations {
            eprintln!("{v}");
        }
        for g in 1..=7 {
            let want = if g == promise { expected } else { 0 };
            assert_eq!(report.count(g), want, "G{g} in {}", report.per_promise());
        }
    }

    #[test]
    fn a_clean_history_has_no_violation() {
        let report = check(&clean(), &Options::default());
        assert!(report.violations.is_empty(), "{:#?}", report.violations);
        assert_eq!(report.kills, 4);
        assert!(report.invocations >= 10);
    }

    #[test]
    fn g1_lost_tells_unanswered_calls_and_unexecuted_answers_are_caught() {
        let mut h = clean();
        h.ops.push(tell("lost", 70 * S)); // acknowledged, never ran
        h.ops.push(ClientOp {
            outcome: OpOutcome::Unanswered("timeout".into()),
            answered: None,
            ..call("never", "never", 0, Value::Null)
        });
        h.ops.push(call("c1-again", "c1", 70 * S, json!("something else"))); // no attempt returned that
        h.attempts.push(attempt("6:0", "n2", "Caller/a", "n2", 6, 71 * S, Some(72 * S)));
        h.marks.push(mark("told", "6:0", "n2", "n2.1", 71 * S + 10, None)); // nested tell lost
        only(&h, 1, 4);
    }

    #[test]
    fn g2_overlapping_attempts_are_caught() {
        let mut h = clean();
        // Attempt 2 starts while attempt 1 (whose component was not killed) runs.
        h.attempts.push(attempt("6:0", "o1", "Slow/s5", "o1", 6, 70 * S, Some(72 * S)));
        h.attempts.push(nth(attempt("7:0", "o1", "Slow/s5", "o1", 7, 71 * S, None), 2));
        // An attempt that ran on after the runtime died, overlapping the
        // restarted runtime's attempt.
        h.faults.push(runtime_kill(80 * S));
        h.runtime_spawns.push(spawn(81 * S));
        h.attempts.push(attempt("6:1", "o2", "Slow/s6", "o2", 6, 79 * S, Some(82 * S)));
        h.attempts.push(attempt("7:1", "o2", "Slow/s6", "o2", 7, 81 * S + 100, Some(81 * S + 200)));
        h.ops.push(call("o2", "o2", 83 * S, json!("o2")));
        // Not G3: o2's retry started before its first attempt ended.
        only(&h, 2, 2);
    }

    #[test]
    fn g3_reexecuted_completions_are_caught() {
        let mut h = clean();
        // Completed, no kill at all, ran again.
        h.attempts.push(attempt("6:0", "r1", "Slow/s5", "r1", 6, 70 * S, Some(70 * S + 100)));
        h.attempts.push(nth(attempt("6:1", "r1", "Slow/s5", "r1", 6, 75 * S, Some(75 * S + 100)), 2));
        // The client had the result; a later runtime kill does not excuse a rerun.
        h.attempts.push(attempt("6:2", "r2", "Slow/s6", "r2", 6, 76 * S, Some(76 * S + 100)));
        h.ops.push(call("r2", "r2", 76 * S + 200, json!("r2")));
        h.faults.push(runtime_kill(76 * S + 300));
        h.runtime_spawns.push(spawn(77 * S));
        h.attempts.push(attempt("7:0", "r2", "Slow/s6", "r2", 7, 77 * S + 100, Some(77 * S + 200)));
        // Another flow took the actor's turn after the tell completed, then
        // the runtime died: the tell's completion was recorded.
        h.attempts.push(attempt("7:1", "r3", "Counter/k9", "r3", 7, 80 * S, Some(80 * S + 100)));
        h.attempts.push(attempt("7:2", "x3", "Counter/k9", "x3", 7, 80 * S + 200, Some(80 * S + 300)));
        h.faults.push(runtime_kill(80 * S + 400));
        h.runtime_spawns.push(spawn(81 * S));
        h.attempts.push(attempt("8:0", "r3", "Counter/k9", "r3", 8, 81 * S + 100, Some(81 * S + 200)));
        only(&h, 3, 3);
    }

    #[test]
    fn g4_started_orphans_and_rerun_nested_calls_are_caught() {
        let mut h = clean();
        // The caller's component is killed; the nested call starts 2 s later
        // although no caller attempt is alive.
        h.attempts.push(attempt("6:0", "q1", "Caller/a", "q1", 6, 70 * S, None));
        h.marks.push(mark("call", "6:0", "q1", "q1.1", 70 * S + 10, None));
        h.faults.push(component_kill(6, 70 * S + 100));
        h.attempts.push(attempt("7:0", "q1.1", "Slow/s5", "q1", 7, 72 * S, Some(72 * S + 100)));
        // Across a runtime restart, no tolerance: the nested call starts on
        // the new runtime before any new caller attempt issued it.
        h.attempts.push(attempt("7:1", "q2", "Caller/b", "q2", 7, 80 * S, None));
        h.marks.push(mark("call", "7:1", "q2", "q2.1", 80 * S + 10, None));
        h.faults.push(runtime_kill(80 * S + 100));
        h.runtime_spawns.push(spawn(80 * S + 400_000));
        h.attempts.push(attempt("7:2", "q2.1", "Slow/s6", "q2", 7, 80 * S + 500_000, Some(80 * S + 600_000)));
        // A completed nested call whose caller got the result runs again
        // for the caller's retry.
        h.attempts.push(attempt("7:3", "q3", "Caller/c", "q3", 7, 90 * S, None));
        h.marks.push(mark("call", "7:3", "q3", "q3.1", 90 * S + 10, None));
        h.attempts.push(attempt("7:4", "q3.1", "Slow/s7", "q3", 7, 90 * S + 20, Some(90 * S + 30)));
        h.marks.push(mark("got", "7:3", "q3", "q3.1", 90 * S + 40, Some(json!("q3.1"))));
        h.faults.push(component_kill(7, 91 * S));
        h.attempts.push(nth(attempt("8:0", "q3", "Caller/c", "q3", 8, 92 * S, Some(93 * S)), 2));
        h.marks.push(mark("call", "8:0", "q3", "q3.1", 92 * S + 10, None));
        h.attempts.push(nth(attempt("8:1", "q3.1", "Slow/s7", "q3", 8, 92 * S + 20, Some(92 * S + 30)), 1));
        only(&h, 4, 3);
    }

    #[test]
    fn g5_rerun_chain_steps_are_caught() {
        let mut h = clean();
        // Step 0 runs again after step 1 started.
        h.attempts.push(attempt("6:0", "k1", "Chain/k", "k1", 6, 70 * S, Some(70 * S + 100)));
        h.attempts.push(attempt("6:1", "k1~1", "Chain/k", "k1", 6, 70 * S + 200, Some(70 * S + 300)));
        h.faults.push(runtime_kill(70 * S + 250));
        h.runtime_spawns.push(spawn(71 * S));
        h.attempts.push(nth(attempt("7:0", "k1", "Chain/k", "k1", 7, 71 * S + 100, Some(71 * S + 200)), 1));
        // Step 1 of another chain starts before step 0 ended.
        h.attempts.push(attempt("7:1", "k2", "Chain/j", "k2", 7, 80 * S, Some(80 * S + 300)));
        h.attempts.push(attempt("7:2", "k2~1", "Chain/j", "k2", 7, 80 * S + 200, Some(80 * S + 400)));
        only(&h, 5, 2);
    }

    #[test]
    fn g6_concurrent_flows_in_one_actor_are_caught() {
        let mut h = clean();
        h.attempts.push(attempt("6:0", "f1", "Counter/k", "f1", 6, 70 * S, Some(71 * S)));
        h.attempts.push(attempt("6:1", "f2", "Counter/k", "f2", 6, 70 * S + 500, Some(70 * S + 600)));
        // After the first attempt's component was killed, another flow may run.
        h.attempts.push(attempt("7:0", "f3", "Counter/m", "f3", 7, 80 * S, None));
        h.faults.push(component_kill(7, 80 * S + 100));
        h.attempts.push(attempt("8:0", "f4", "Counter/m", "f4", 8, 80 * S + 200, Some(80 * S + 300)));
        only(&h, 6, 1);
    }

    #[test]
    fn g7_lost_state_is_caught() {
        let mut h = clean();
        h.counters[0].seen.retain(|k| k != "i2");
        h.counters[0].count = 1;
        only(&h, 7, 2); // i2 missing, and the count is below 2
    }

    #[test]
    fn g7_lost_twice_fired_and_flooding_reminders_are_caught() {
        let mut h = clean();
        // A one-shot reminder that never fired.
        h.ops.push(ClientOp {
            kind: OpKind::Reminder,
            ..call("lost", "reminder:Ticker/t0/lost@64000", 60 * S, Value::Null)
        });
        // A due time that fired twice, with no kill in between.
        let inv = "reminder:Ticker/t1/r@65000";
        h.attempts.push(attempt("6:0", inv, "Ticker/t1", inv, 6, 65 * S, Some(65 * S + 10)));
        h.attempts.push(attempt("6:1", inv, "Ticker/t1", inv, 6, 66 * S, Some(66 * S + 10)));
        // A runtime outage 70 s..71 s in which three due times of a 100 ms
        // reminder fired (not coalesced); the reminder also stops firing
        // after the last restart at 90 s.
        h.periodic.push(PeriodicReminder { actor: "Ticker/p1".into(), reminder: "tick".into(), period: S / 10 });
        h.faults.push(runtime_kill(70 * S));
        h.runtime_spawns.push(spawn(71 * S));
        for due_ms in [69_900, 70_200, 70_300, 70_400] {
            let inv = format!("reminder:Ticker/p1/tick@{due_ms}");
            h.attempts.push(attempt(
                &format!("7:{due_ms}"),
                &inv,
                "Ticker/p1",
                &inv,
                7,
                71 * S + due_ms,
                Some(71 * S + due_ms + 10),
            ));
        }
        h.faults.push(runtime_kill(89 * S));
        h.runtime_spawns.push(spawn(90 * S));
        // p0 of the clean history fires on after 90 s; p1 does not.
        h.attempts.push(attempt(
            "8:0",
            "reminder:Ticker/p0/tick@91000",
            "Ticker/p0",
            "y",
            8,
            91 * S,
            Some(91 * S + 10),
        ));
        only(&h, 7, 4);
    }

    fn mesh_runtime_kill(runtime: &str, t: Micros) -> Fault {
        Fault { name: runtime.into(), ..runtime_kill(t) }
    }

    fn freeze(runtime: &str, stopped: Micros, resumed: Micros) -> Fault {
        Fault {
            kind: FaultKind::Freeze,
            name: runtime.into(),
            pid: 0,
            kill_sent: stopped,
            kill_done: resumed,
            restarted: None,
            new_pid: Some(0),
        }
    }

    /// A mesh of two runtimes, `kar-0` (component process 1) and `kar-1`
    /// (component process 2), with the legitimate retries of a mesh.
    fn mesh() -> History {
        let mut h = History {
            runtime_spawns: vec![RuntimeSpawn::new("kar-0", 0), RuntimeSpawn::new("kar-1", 0)],
            component_runtimes: [(1, "kar-0".to_owned()), (2, "kar-1".to_owned())].into(),
            ..History::default()
        };
        // kar-0 dies mid-call; its component abandons the attempt and kar-1
        // retries it once it owns the actor's partition.
        let mut aborted = attempt("1:0", "m1", "Slow/s0", "m1", 1, 10 * S, None);
        aborted.abort = Some(10 * S + 310_000);
        h.attempts.push(aborted);
        h.faults.push(mesh_runtime_kill("kar-0", 10 * S + 300_000));
        h.runtime_spawns.push(RuntimeSpawn::new("kar-0", 11 * S));
        h.attempts.push(nth(attempt("2:0", "m1", "Slow/s0", "m1", 2, 17 * S, Some(17 * S + 100)), 2));
        h.ops.push(call("m1", "m1", 17 * S + 200, json!("m1")));
        // A nested call from kar-0's component runs on kar-1's.
        h.attempts.push(attempt("1:2", "n1", "Caller/a", "n1", 1, 40 * S, Some(40 * S + 800_000)));
        h.marks.push(mark("call", "1:2", "n1", "n1.1", 40 * S + 10_000, None));
        h.attempts.push(attempt("2:2", "n1.1", "Slow/s1", "n1", 2, 40 * S + 500_000, Some(40 * S + 600_000)));
        h.marks.push(mark("got", "1:2", "n1", "n1.1", 40 * S + 700_000, Some(json!("n1.1"))));
        h.ops.push(call("n1", "n1", 40 * S + 900_000, json!("n1")));
        // A reminder kar-0's first process fired until it died at 10.3 s;
        // kar-1 took it over, and fires on while kar-0's next process is
        // down (20 s..21 s): that outage is not the reminder's.
        h.periodic.push(PeriodicReminder { actor: "Ticker/p2".into(), reminder: "tick".into(), period: S });
        h.faults.push(mesh_runtime_kill("kar-0", 20 * S));
        h.runtime_spawns.push(RuntimeSpawn::new("kar-0", 21 * S));
        for (pid, due_ms) in [(1, 9_000), (1, 10_000), (2, 20_200), (2, 20_400), (2, 200_000)] {
            let inv = format!("reminder:Ticker/p2/tick@{due_ms}");
            let start = due_ms * 1000 + 5000;
            h.attempts.push(attempt(
                &format!("{pid}:p{due_ms}"),
                &inv,
                "Ticker/p2",
                &inv,
                pid,
                start,
                Some(start + 100),
            ));
        }
        // kar-0 is frozen from 100 s to 108 s. An attempt its component
        // ended just after the freeze began (its result lost in the frozen
        // runtime) runs again on kar-1; another, still running, is abandoned
        // when its lease runs out, then retried on kar-1.
        h.faults.push(freeze("kar-0", 100 * S, 108 * S));
        h.attempts.push(attempt("1:f1", "f1", "Slow/s7", "f1", 1, 99 * S + 500_000, Some(100 * S + 200_000)));
        h.attempts.push(nth(attempt("2:f1", "f1", "Slow/s7", "f1", 2, 107 * S, Some(107 * S + 100)), 2));
        h.ops.push(call("f1", "f1", 107 * S + 200, json!("f1")));
        let mut abandoned = attempt("1:f2", "f2", "Slow/s8", "f2", 1, 99 * S, None);
        abandoned.abort = Some(102 * S);
        h.attempts.push(abandoned);
        h.attempts.push(nth(attempt("2:f2", "f2", "Slow/s8", "f2", 2, 106 * S, Some(106 * S + 100)), 2));
        h.ops.push(call("f2", "f2", 106 * S + 200, json!("f2")));
        // A periodic reminder kar-1 fires on while kar-0 is down.
        h.periodic.push(PeriodicReminder { actor: "Ticker/p0".into(), reminder: "tick".into(), period: S / 10 });
        for due_ms in (9_800..=12_000).step_by(100).chain([200_000]) {
            let inv = format!("reminder:Ticker/p0/tick@{due_ms}");
            let start = due_ms * 1000 + 5000;
            h.attempts.push(attempt(&format!("2:r{due_ms}"), &inv, "Ticker/p0", &inv, 2, start, Some(start + 100)));
        }
        h
    }

    #[test]
    fn a_clean_mesh_history_has_no_violation() {
        let report = check(&mesh(), &Options::default());
        assert!(report.violations.is_empty(), "{:#?}", report.violations);
        assert_eq!(report.runtime_kills, 2);
    }

    #[test]
    fn in_a_mesh_reruns_without_a_kill_and_floods_of_an_owned_reminder_are_caught() {
        let mut h = mesh();
        // Ended in kar-0 and ran again in kar-1 with no kill: a partition
        // moved by rebalance only after its completions were written.
        h.attempts.push(attempt("1:1", "t1", "Counter/k", "t1", 1, 30 * S, Some(30 * S + 100)));
        h.attempts.push(attempt("2:1", "t1", "Counter/k", "t1", 2, 31 * S, Some(31 * S + 100)));
        h.ops.push(tell("t1", 29 * S));
        // Ended in kar-1 and ran again in the same kar-1 process, no kill.
        h.attempts.push(attempt("2:3", "t2", "Counter/k", "t2", 2, 50 * S, Some(50 * S + 100)));
        h.attempts.push(attempt("2:4", "t2", "Counter/k", "t2", 2, 51 * S, Some(51 * S + 100)));
        // kar-0 fired p1 until it died at 60 s; three due times inside its
        // outage 60 s..61 s fired.
        h.periodic.push(PeriodicReminder { actor: "Ticker/p1".into(), reminder: "tick".into(), period: S / 10 });
        h.faults.push(mesh_runtime_kill("kar-0", 60 * S));
        h.runtime_spawns.push(RuntimeSpawn::new("kar-0", 61 * S));
        for (pid, due_ms) in [(1, 59_900), (2, 60_200), (2, 60_300), (2, 60_400), (2, 200_000)] {
            let inv = format!("reminder:Ticker/p1/tick@{due_ms}");
            let start = due_ms * 1000 + 5000;
            h.attempts.push(attempt(
                &format!("{pid}:q{due_ms}"),
                &inv,
                "Ticker/p1",
                &inv,
                pid,
                start,
                Some(start + 100),
            ));
        }
        let report = check(&h, &Options::default());
        let found: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(report.count(3), 2, "{found:#?}");
        assert_eq!(report.count(7), 1, "{found:#?}");
        assert_eq!(report.violations.len(), 3, "{found:#?}");
    }

    #[test]
    fn in_a_mesh_a_frozen_runtimes_attempt_that_outlives_its_retry_is_caught() {
        let mut h = mesh();
        h.faults.push(freeze("kar-0", 120 * S, 128 * S));
        // Never abandoned: it ran on while kar-1 retried it.
        h.attempts.push(attempt("1:z1", "z1", "Slow/s9", "z1", 1, 119 * S, Some(129 * S)));
        h.attempts.push(nth(attempt("2:z1", "z1", "Slow/s9", "z1", 2, 126 * S, Some(126 * S + 100)), 2));
        // Ended long before the freeze: the freeze does not excuse a rerun.
        h.attempts.push(attempt("1:z2", "z2", "Slow/s10", "z2", 1, 110 * S, Some(110 * S + 100)));
        h.attempts.push(nth(attempt("2:z2", "z2", "Slow/s10", "z2", 2, 126 * S, Some(126 * S + 100)), 2));
        let report = check(&h, &Options::default());
        let found: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!((report.count(2), report.count(3), report.violations.len()), (1, 1, 2), "{found:#?}");
        assert_eq!(report.freezes, 2);
    }

    #[test]
    fn reminder_due_times_are_read_from_their_ids() {
        assert_eq!(reminder_due("reminder:Ticker/p0/tick@1234"), Some(1_234_000));
        assert_eq!(reminder_due("o1x2"), None);
    }

    #[test]
    fn invocation_ids_split_into_request_and_step() {
        assert_eq!(split_inv("o1x2~3"), ("o1x2", 3));
        assert_eq!(split_inv("o1x2"), ("o1x2", 0));
        assert_eq!(split_inv("o1x2.1"), ("o1x2.1", 0));
    }
}
