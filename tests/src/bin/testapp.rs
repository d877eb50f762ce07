//! The test component: hosts the actor types and service the end-to-end tests
//! and the chaos test drive, and logs every attempt (start, and end or abort)
//! as a JSON line, so tests assert on counts rather than on timing.
//!
//! Configured by environment: `KAR_RUNTIME_ADDR`, `TESTAPP_NAME`,
//! `TESTAPP_ACTORS` (comma-separated types), `TESTAPP_SERVICE`,
//! `TESTAPP_LOG_DIR`. It reattaches whenever its runtime restarts.

use kar_client::Client;
use kar_client::host::{ActorHost, AppError, Context, Reply, shutdown_signal};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Appends attempt records to this component's own JSONL file.
struct AttemptLog {
    file: Mutex<std::fs::File>,
    component: String,
}

impl AttemptLog {
    fn open(dir: &std::path::Path, component: &str) -> std::io::Result<AttemptLog> {
        let path = dir.join(format!("{component}-{}.jsonl", std::process::id()));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AttemptLog { file: Mutex::new(file), component: component.to_owned() })
    }

    fn record(&self, event: &str, ctx: &Context, tag: &str) {
        let target = match (ctx.actor_type(), ctx.actor_id(), ctx.service()) {
            (Some(t), Some(id), _) => format!("{t}/{id}"),
            (_, _, Some(s)) => s.to_owned(),
            _ => String::new(),
        };
        let line = json!({
            "event": event,
            "request_id": ctx.request_id(),
            "attempt": ctx.attempt(),
            "target": target,
            "method": ctx.method(),
            "component": self.component,
            "tag": tag,
            "at_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        });
        let mut buf = line.to_string().into_bytes();
        buf.push(b'\n');
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(&buf);
        }
    }
}

fn arg(args: &Value, i: usize) -> &Value {
    args.get(i).unwrap_or(&Value::Null)
}

fn int_arg(args: &Value, i: usize, what: &str) -> Result<i64, AppError> {
    arg(args, i).as_i64().ok_or_else(|| AppError::invalid_argument(format!("argument {i} ({what}) must be an integer")))
}

fn str_arg(args: &Value, i: usize, what: &str) -> Result<String, AppError> {
    arg(args, i)
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| AppError::invalid_argument(format!("argument {i} ({what}) must be a string")))
}

async fn actor_method(log: Arc<AttemptLog>, ctx: Context, method: String, args: Value) -> Result<Reply, AppError> {
    let kind = ctx.actor_type().unwrap_or_default().to_owned();
    if kind.starts_with("Chaos") {
        return chaos::actor_method(ctx, &kind, &method, &args).await;
    }
    let tag = match (kind.as_str(), method.as_str()) {
        ("Slow", "work" | "write") | ("Caller", "call") => arg(&args, 1).as_str().unwrap_or_default().to_owned(),
        ("Chain" | "ChainB", "step") => format!("{}#{}", arg(&args, 2).as_str().unwrap_or_default(), arg(&args, 0)),
        ("Sink", "event") => arg(&args, 0).as_str().map(str::to_owned).unwrap_or_else(|| args.to_string()),
        ("Ticker", "tick") => ctx.request_id().to_owned(),
        _ => String::new(),
    };
    let attempt = Logged::start(&log, &ctx, &tag);
    let result = run_actor_method(&log, &ctx, &kind, &method, &args).await;
    attempt.end();
    result
}

/// One attempt in the log: `start` when made, `end` when ended, and `abort`
/// if it is dropped before its end (the SDK abandoned it).
struct Logged<'a> {
    log: &'a AttemptLog,
    ctx: &'a Context,
    tag: &'a str,
    ended: bool,
}

impl<'a> Logged<'a> {
    fn start(log: &'a AttemptLog, ctx: &'a Context, tag: &'a str) -> Logged<'a> {
        log.record("start", ctx, tag);
        Logged { log, ctx, tag, ended: false }
    }

    fn end(mut self) {
        self.log.record("end", self.ctx, self.tag);
        self.ended = true;
    }
}

impl Drop for Logged<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.log.record("abort", self.ctx, self.tag);
        }
    }
}

async fn run_actor_method(
    log: &Arc<AttemptLog>,
    ctx: &Context,
    kind: &str,
    method: &str,
    args: &Value,
) -> Result<Reply, AppError> {
    match (kind, method) {
        ("Counter", "incr") => {
            let state = ctx.state();
            let count = state.get("count").await?.and_then(|v| v.as_i64()).unwrap_or(0) + 1;
            state.set("count", json!(count)).await?;
            Ok(json!(count).into())
        }
        ("Counter", "add") => {
            let n = int_arg(args, 0, "n")?;
            let state = ctx.state();
            let count = state.get("count").await?.and_then(|v| v.as_i64()).unwrap_or(0) + n;
            state.set("count", json!(count)).await?;
            Ok(json!(count).into())
        }
        ("Counter", "get") => Ok(ctx.state().get("count").await?.unwrap_or(json!(0)).into()),
        ("Echo", "echo") => Ok(args.clone().into()),
        ("Echo", "fail") => Err(AppError::new(format!("failing as asked: {}", arg(args, 0)))),
        ("Echo", "nothing") => Ok(Reply::none()),
        ("Slow", "work") => {
            let ms = int_arg(args, 0, "milliseconds")?;
            tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
            Ok(arg(args, 1).clone().into())
        }
        // Sleeps ms, then sets state "written" to "<tag>:<component name>",
        // from a task of its own: the write goes out even if the SDK
        // abandons the attempt meanwhile (as a handler's background work
        // would), so the runtime's fence is what must stop a stale one. The
        // write's outcome is logged (`written` or `refused`).
        ("Slow", "write") => {
            let ms = int_arg(args, 0, "milliseconds")?;
            let name = std::env::var("TESTAPP_NAME").unwrap_or_default();
            let tag = arg(args, 1).as_str().unwrap_or_default().to_owned();
            let (log, ctx) = (Arc::clone(log), ctx.clone());
            let value = json!(format!("{tag}:{name}"));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
                let written = ctx.state().set("written", value).await;
                log.record(if written.is_ok() { "written" } else { "refused" }, &ctx, &tag);
                written?;
                Ok(json!(tag).into())
            })
            .await
            .map_err(|e| AppError::new(format!("the write task failed: {e}")))?
        }
        // A → B → A in one flow: ping calls pong on the other actor, which
        // calls leaf back on the first.
        ("Reent", "ping") => {
            let other = str_arg(args, 0, "other id")?;
            let me = ctx.actor_id().unwrap_or_default().to_owned();
            let answer = ctx.call_actor("Reent", &other, "pong", json!([me])).await?;
            Ok(json!(format!("ping>{}", answer.as_str().unwrap_or_default())).into())
        }
        ("Reent", "pong") => {
            let back = str_arg(args, 0, "caller id")?;
            let answer = ctx.call_actor("Reent", &back, "leaf", json!([])).await?;
            Ok(json!(format!("pong>{}", answer.as_str().unwrap_or_default())).into())
        }
        ("Reent", "leaf") => Ok(json!("leaf").into()),
        // Event subscriber: records the event it got (the tag) and counts.
        ("Sink", "event") => {
            let state = ctx.state();
            let count = state.get("events").await?.and_then(|v| v.as_i64()).unwrap_or(0) + 1;
            state.set("events", json!(count)).await?;
            Ok(Reply::none())
        }
        // Reminder target: the request id (the tag) names the due time.
        ("Ticker", "tick") => Ok(Reply::none()),
        // Calls Slow/<callee>.work([ms, tag]), then sleeps for the optional
        // fourth argument (ms), and returns the callee's result.
        ("Caller", "call") => {
            let callee = str_arg(args, 0, "callee id")?;
            let ms = int_arg(args, 2, "milliseconds")?;
            let answer = ctx.call_actor("Slow", &callee, "work", json!([ms, arg(args, 1)])).await?;
            let after = arg(args, 3).as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(after)).await;
            Ok(answer.into())
        }
        // Tells Slow/<callee>.work([ms, tag]) and returns at once.
        ("Caller", "tell") => {
            let callee = str_arg(args, 0, "callee id")?;
            let ms = int_arg(args, 2, "milliseconds")?;
            ctx.tell_actor("Slow", &callee, "work", json!([ms, arg(args, 1)])).await?;
            Ok(Reply::none())
        }
        // A tail-call chain: step [n, total, tag, ms, mode] sleeps ms and then
        // hands off to step n+1 — on the same actor keeping its turn
        // (mode "same"), on the same actor releasing it ("release"), on
        // actor <id>-<n+1> ("hop"), or on the actor of the same id of the
        // other chain type, Chain ⇄ ChainB ("cross") — until step `total`
        // returns "<tag>#done".
        ("Chain" | "ChainB", "step") => {
            let n = int_arg(args, 0, "step")?;
            let total = int_arg(args, 1, "total")?;
            let tag = str_arg(args, 2, "tag")?;
            let ms = int_arg(args, 3, "milliseconds")?;
            let mode = arg(args, 4).as_str().unwrap_or("same").to_owned();
            tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
            if n >= total {
                return Ok(json!(format!("{tag}#done")).into());
            }
            let next_args = json!([n + 1, total, tag, ms, mode]);
            let me = ctx.actor_id().unwrap_or_default().to_owned();
            Ok(match mode.as_str() {
                "hop" => {
                    let base = me.split('-').next().unwrap_or_default().to_owned();
                    Reply::tail_call("Chain", &format!("{base}-{}", n + 1), "step", next_args)
                }
                "release" => Reply::tail_call("Chain", &me, "step", next_args).releasing_turn(),
                "cross" => Reply::tail_call(if kind == "Chain" { "ChainB" } else { "Chain" }, &me, "step", next_args),
                _ => Reply::tail_call("Chain", &me, "step", next_args),
            })
        }
        _ => Err(ctx.no_such_method()),
    }
}

async fn service_method(log: Arc<AttemptLog>, ctx: Context, method: String, args: Value) -> Result<Reply, AppError> {
    let attempt = Logged::start(&log, &ctx, "");
    let result = match method.as_str() {
        "echo" => Ok(args.clone().into()),
        "incr" => {
            let state = ctx.client().state("ServiceCounter", "total");
            let count = state.get("count").await?.and_then(|v| v.as_i64()).unwrap_or(0) + 1;
            state.set("count", json!(count)).await?;
            Ok(json!(count).into())
        }
        "counter" => Ok(ctx.call_actor("Counter", &str_arg(&args, 0, "counter id")?, "incr", json!([])).await?.into()),
        _ => Err(ctx.no_such_method()),
    };
    attempt.end();
    result
}

fn host(client: Client, name: &str, actor_types: &[String], service: &str, log: &Arc<AttemptLog>) -> ActorHost {
    let mut host = ActorHost::new(client).name(name);
    for kind in actor_types {
        let log = log.clone();
        host = host.actor_fn(kind.clone(), move |ctx, method, args| actor_method(log.clone(), ctx, method, args));
    }
    if !service.is_empty() {
        let log = log.clone();
        host = host.service_fn(service, move |ctx, method, args| service_method(log.clone(), ctx, method, args));
    }
    host
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("KAR_RUNTIME_ADDR").unwrap_or_else(|_| "127.0.0.1:3500".into());
    let name = std::env::var("TESTAPP_NAME").unwrap_or_else(|_| "testapp".into());
    let actor_types: Vec<String> = std::env::var("TESTAPP_ACTORS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let service = std::env::var("TESTAPP_SERVICE").unwrap_or_default();
    let log_dir = PathBuf::from(std::env::var("TESTAPP_LOG_DIR").unwrap_or_else(|_| ".".into()));
    let log = Arc::new(AttemptLog::open(&log_dir, &name)?);
    chaos::init(&log_dir, &name)?;

    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let attached = async {
            let client = Client::connect_lazy(&addr)?;
            let running = host(client, &name, &actor_types, &service, &log).start().await?;
            eprintln!("testapp {name}: attached as {}", running.component_id());
            running.closed().await
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            result = attached => {
                if let Err(e) = result {
                    eprintln!("testapp {name}: detached: {e}");
                }
            }
        }
        // The runtime went away (or is not up yet): try again shortly.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The actor types of the chaos test (`ChaosCounter`, `ChaosSlow`,
/// `ChaosCaller`, `ChaosReent`, `ChaosChain`, `ChaosTicker`, `ChaosSink`). Every attempt is logged to
/// `<name>-<pid>.chaoslog` with what the chaos checker needs: a unique attempt
/// id, the invocation id, flow, actor, process, microsecond timestamps of its
/// start and of its end (with the result) or of its abandonment (`abort`,
/// written when the SDK drops the handler), and the calls and tells it made.
mod chaos {
    use super::*;
    use kar_client::StateUpdate;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct ChaosLog {
        file: Mutex<std::fs::File>,
        component: String,
        pid: u32,
        seq: AtomicU64,
    }

    static LOG: OnceLock<ChaosLog> = OnceLock::new();

    /// Opens this process's chaos log.
    pub fn init(dir: &std::path::Path, component: &str) -> std::io::Result<()> {
        let pid = std::process::id();
        let path = dir.join(format!("{component}-{pid}.chaoslog"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let _ =
            LOG.set(ChaosLog { file: Mutex::new(file), component: component.to_owned(), pid, seq: AtomicU64::new(0) });
        Ok(())
    }

    fn now_us() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
    }

    /// One attempt: logs its start when created, its end when ended, and
    /// `abort` if it is dropped without ending (the SDK abandoned it).
    struct Attempt {
        base: serde_json::Map<String, Value>,
        done: bool,
    }

    impl Attempt {
        fn start(ctx: &Context, op: &str) -> Attempt {
            let log = LOG.get();
            let aid = match log {
                Some(l) => format!("{}:{}", l.pid, l.seq.fetch_add(1, Ordering::Relaxed)),
                None => String::new(),
            };
            let mut base = serde_json::Map::new();
            base.insert("aid".into(), json!(aid));
            base.insert("inv".into(), json!(ctx.request_id()));
            base.insert("attempt".into(), json!(ctx.attempt()));
            base.insert(
                "actor".into(),
                json!(format!("{}/{}", ctx.actor_type().unwrap_or_default(), ctx.actor_id().unwrap_or_default())),
            );
            base.insert("method".into(), json!(ctx.method()));
            base.insert("flow".into(), json!(ctx.flow_id()));
            base.insert("pid".into(), json!(log.map(|l| l.pid).unwrap_or(0)));
            base.insert("comp".into(), json!(log.map(|l| l.component.clone()).unwrap_or_default()));
            base.insert("op".into(), json!(op));
            let attempt = Attempt { base, done: false };
            attempt.write("start", |_| {});
            attempt
        }

        fn write(&self, event: &str, extra: impl FnOnce(&mut serde_json::Map<String, Value>)) {
            let Some(log) = LOG.get() else { return };
            let mut line = self.base.clone();
            line.insert("ev".into(), json!(event));
            extra(&mut line);
            // Stamp under the lock, so each file is in time order.
            if let Ok(mut file) = log.file.lock() {
                line.insert("t".into(), json!(now_us()));
                let mut buf = Value::Object(line).to_string().into_bytes();
                buf.push(b'\n');
                let _ = file.write_all(&buf);
            }
        }

        /// A call, tell or their answer concerning the child invocation `child`.
        fn mark(&self, event: &str, child: &str, result: Option<&Value>) {
            self.write(event, |line| {
                line.insert("child".into(), json!(child));
                if let Some(result) = result {
                    line.insert("result".into(), result.clone());
                }
            });
        }

        fn end(mut self, ok: bool, result: Value) {
            self.write("end", |line| {
                line.insert("ok".into(), json!(ok));
                line.insert("result".into(), result);
            });
            self.done = true;
        }
    }

    impl Drop for Attempt {
        fn drop(&mut self) {
            if !self.done {
                self.write("abort", |_| {});
            }
        }
    }

    fn app_error(e: kar_client::Error) -> AppError {
        AppError::new(format!("{:?}: {}", e.code(), e.message()))
    }

    /// Runs one method of a `Chaos*` actor type. Arguments are JSON arrays
    /// whose first element is the workload's operation id.
    pub async fn actor_method(ctx: Context, kind: &str, method: &str, args: &Value) -> Result<Reply, AppError> {
        let op = arg(args, 0).as_str().unwrap_or_default().to_owned();
        let attempt = Attempt::start(&ctx, &op);
        let result = run(&ctx, &attempt, kind, method, args).await;
        match &result {
            Ok((_, logged)) => attempt.end(true, logged.clone()),
            Err(e) => attempt.end(false, json!(format!("{e:?}"))),
        }
        result.map(|(reply, _)| reply)
    }

    /// The reply and what to log as the result.
    async fn run(
        ctx: &Context,
        attempt: &Attempt,
        kind: &str,
        method: &str,
        args: &Value,
    ) -> Result<(Reply, Value), AppError> {
        let inv = ctx.request_id().to_owned();
        let me = ctx.actor_id().unwrap_or_default().to_owned();
        match (kind, method) {
            // Counts its invocations; remembers each one in the submap `seen`.
            ("ChaosCounter", "incr") => {
                let state = ctx.state();
                let count = state.get("count").await.map_err(app_error)?.and_then(|v| v.as_i64()).unwrap_or(0) + 1;
                state
                    .update(StateUpdate::new().set("count", json!(count)).set_sub("seen", inv.clone(), json!(count)))
                    .await
                    .map_err(app_error)?;
                Ok((json!(count).into(), json!(count)))
            }
            // [op, ms]: sleeps, returns op.
            ("ChaosSlow", "work") => {
                let ms = arg(args, 1).as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok((json!(arg(args, 0)).into(), arg(args, 0).clone()))
            }
            // [op, type, id, method, args, after_ms]: calls the child, sleeps
            // after_ms, returns the child's result.
            ("ChaosCaller", "call") => {
                let (kind, id, child_method) =
                    (str_arg(args, 1, "type")?, str_arg(args, 2, "id")?, str_arg(args, 3, "method")?);
                let child = format!("{inv}.1");
                attempt.mark("call", &child, None);
                let answer =
                    ctx.call_actor(&kind, &id, &child_method, arg(args, 4).clone()).await.map_err(app_error)?;
                attempt.mark("got", &child, Some(&answer));
                tokio::time::sleep(Duration::from_millis(arg(args, 5).as_u64().unwrap_or(0))).await;
                Ok((answer.clone().into(), answer))
            }
            // [op, type, id, method, args, after_ms]: tells the child, sleeps
            // after_ms, returns nothing.
            ("ChaosCaller", "tell") => {
                let (kind, id, child_method) =
                    (str_arg(args, 1, "type")?, str_arg(args, 2, "id")?, str_arg(args, 3, "method")?);
                let child = format!("{inv}.1");
                attempt.mark("tell", &child, None);
                ctx.tell_actor(&kind, &id, &child_method, arg(args, 4).clone()).await.map_err(app_error)?;
                attempt.mark("told", &child, None);
                tokio::time::sleep(Duration::from_millis(arg(args, 5).as_u64().unwrap_or(0))).await;
                Ok((Reply::none(), Value::Null))
            }
            // A → B → A in one flow: [op, other] calls other.pong([op, me]),
            // which calls me.leaf([op]).
            ("ChaosReent", "ping") | ("ChaosReent", "pong") => {
                let other = str_arg(args, 1, "other id")?;
                let (next, label) = if method == "ping" { ("pong", "ping") } else { ("leaf", "pong") };
                let child = format!("{inv}.1");
                attempt.mark("call", &child, None);
                let answer =
                    ctx.call_actor("ChaosReent", &other, next, json!([arg(args, 0), me])).await.map_err(app_error)?;
                attempt.mark("got", &child, Some(&answer));
                let result = json!(format!("{label}>{}", answer.as_str().unwrap_or_default()));
                Ok((result.clone().into(), result))
            }
            ("ChaosReent", "leaf") => Ok((json!("leaf").into(), json!("leaf"))),
            // A reminder's target ([op]): returns op.
            ("ChaosTicker", "tick") => Ok((arg(args, 0).clone().into(), arg(args, 0).clone())),
            // An event subscriber (the event is [op]): returns op.
            ("ChaosSink", "event") => Ok((arg(args, 0).clone().into(), arg(args, 0).clone())),
            // [op, n, total, ms, mode]: step n of a chain of `total` steps
            // (n from 0); sleeps ms, then tail-calls step n+1 — same actor
            // keeping the turn ("same"), releasing it ("release"), or actor
            // <base>-<n+1> ("hop") — or returns "<op>#done" at the last step.
            ("ChaosChain", "step") => {
                let n = int_arg(args, 1, "step")?;
                let total = int_arg(args, 2, "total")?;
                let ms = arg(args, 3).as_u64().unwrap_or(0);
                let mode = arg(args, 4).as_str().unwrap_or("same").to_owned();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if n + 1 >= total {
                    let done = json!(format!("{}#done", arg(args, 0).as_str().unwrap_or_default()));
                    return Ok((done.clone().into(), done));
                }
                let next = json!([arg(args, 0), n + 1, total, ms, mode]);
                let (target, reply) = match mode.as_str() {
                    "hop" => {
                        let base = me.split('-').next().unwrap_or_default().to_owned();
                        let target = format!("{base}-{}", n + 1);
                        let reply = Reply::tail_call("ChaosChain", &target, "step", next);
                        (target, reply)
                    }
                    "release" => (me.clone(), Reply::tail_call("ChaosChain", &me, "step", next).releasing_turn()),
                    _ => (me.clone(), Reply::tail_call("ChaosChain", &me, "step", next)),
                };
                Ok((reply, json!({"tail": format!("ChaosChain/{target}"), "step": n + 1})))
            }
            _ => Err(ctx.no_such_method()),
        }
    }
}
