//! The test component: hosts the actor types and service the end-to-end tests
//! and the chaos test drive, and logs every attempt (start and end) as a JSON
//! line, so tests assert on counts rather than on timing.
//!
//! Configured by environment: `KAR_RUNTIME_ADDR`, `TESTAPP_NAME`,
//! `TESTAPP_ACTORS` (comma-separated types), `TESTAPP_SERVICE`,
//! `TESTAPP_LOG_DIR`. It reattaches whenever its runtime restarts.

use kar_client::host::{ActorHost, AppError, Context, Reply, shutdown_signal};
use kar_client::Client;
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
    fn open(dir: &PathBuf, component: &str) -> std::io::Result<AttemptLog> {
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
    let tag = match (kind.as_str(), method.as_str()) {
        ("Slow", "work") | ("Caller", "call") => arg(&args, 1).as_str().unwrap_or_default().to_owned(),
        ("Chain", "step") => format!("{}#{}", arg(&args, 2).as_str().unwrap_or_default(), arg(&args, 0)),
        _ => String::new(),
    };
    log.record("start", &ctx, &tag);
    let result = run_actor_method(&ctx, &kind, &method, &args).await;
    log.record("end", &ctx, &tag);
    result
}

async fn run_actor_method(ctx: &Context, kind: &str, method: &str, args: &Value) -> Result<Reply, AppError> {
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
        // (mode "same"), on the same actor releasing it ("release"), or on
        // actor <id>-<n+1> ("hop") — until step `total` returns "<tag>#done".
        ("Chain", "step") => {
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
                _ => Reply::tail_call("Chain", &me, "step", next_args),
            })
        }
        _ => Err(ctx.no_such_method()),
    }
}

async fn service_method(log: Arc<AttemptLog>, ctx: Context, method: String, args: Value) -> Result<Reply, AppError> {
    log.record("start", &ctx, "");
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
    log.record("end", &ctx, "");
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
