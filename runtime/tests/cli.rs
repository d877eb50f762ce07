//! The `kar` command line, run as a real process against a real runtime
//! (`kar run --port 0`) started for each test.

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{KAR, KarRun};

/// A runtime for one test, with a way to run `kar` against it.
struct Runtime(KarRun);

impl std::ops::Deref for Runtime {
    type Target = KarRun;
    fn deref(&self) -> &KarRun {
        &self.0
    }
}

impl Runtime {
    /// Starts a runtime on a free port.
    fn start() -> Runtime {
        Runtime(KarRun::start(&[]))
    }

    /// Runs `kar ARGS... --runtime ADDRESS`.
    fn kar(&self, args: &[&str]) -> Output {
        kar(&[args, &["--runtime", &self.address]].concat())
    }
}

fn kar(args: &[&str]) -> Output {
    Command::new(KAR).args(args).env_remove("KAR_RUNTIME_ADDR").output().expect("run kar")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert!(output.status.success(), "kar failed: {}", stderr(output));
}

#[test]
fn version_names_the_runtime_it_reaches() {
    let runtime = Runtime::start();
    let output = runtime.kar(&["version"]);
    assert_success(&output);
    let text = stdout(&output);
    assert!(text.starts_with(&format!("kar {}\n", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains(&format!("runtime: reachable at {}, 0 components", runtime.address)), "{text}");
}

#[test]
fn version_does_not_fail_without_a_runtime() {
    let output = kar(&["version", "--runtime", "127.0.0.1:1"]);
    assert_success(&output);
    assert!(stdout(&output).contains("runtime: not reachable"), "{}", stdout(&output));
}

#[test]
fn invoking_an_unknown_actor_type_fails_with_one_not_found_line() {
    let runtime = Runtime::start();
    let output = runtime.kar(&["invoke", "Nobody", "x", "greet", "42", "hello"]);
    assert!(!output.status.success());
    assert_eq!(stderr(&output), "kar: NOT_FOUND: no component hosts actor type \"Nobody\"\n");
    assert!(output.stdout.is_empty());
}

#[test]
fn state_set_get_delete_round_trip() {
    let runtime = Runtime::start();
    assert_success(&runtime.kar(&["state", "set", "Counter", "c1", "count", "5"]));
    assert_success(&runtime.kar(&["state", "set", "Counter", "c1", "owner", "ann"]));
    assert_success(&runtime.kar(&["state", "set", "Counter", "c1", "history", "day1", r#"{"added":5}"#]));

    let count = runtime.kar(&["state", "get", "Counter", "c1", "count"]);
    assert_success(&count);
    assert_eq!(stdout(&count), "5\n");
    let all = runtime.kar(&["state", "get", "Counter", "c1"]);
    let all: serde_json::Value = serde_json::from_str(&stdout(&all)).expect("JSON state");
    assert_eq!(
        all,
        serde_json::json!({
            "entries": { "count": 5, "owner": "ann" },
            "submaps": { "history": { "day1": { "added": 5 } } },
        })
    );

    let missing = runtime.kar(&["state", "get", "Counter", "c1", "colour"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing), "kar: Counter/c1 has no state entry \"colour\"\n");

    let one = runtime.kar(&["state", "delete", "Counter", "c1", "count"]);
    assert_eq!(stdout(&one), "deleted 1 entry\n");
    let rest = runtime.kar(&["state", "delete", "Counter", "c1"]);
    assert_eq!(stdout(&rest), "deleted 2 entries\n");
    let empty = runtime.kar(&["state", "get", "Counter", "c1"]);
    assert_eq!(stdout(&empty), "{\"entries\":{},\"submaps\":{}}\n");
}

#[test]
fn get_components_prints_an_empty_table() {
    let runtime = Runtime::start();
    let table = runtime.kar(&["get", "components"]);
    assert_success(&table);
    assert_eq!(stdout(&table), "ID   NAME   ACTOR TYPES   SERVICE   IN FLIGHT\n");
    let json = runtime.kar(&["get", "actors", "-o", "json"]);
    assert_eq!(stdout(&json), "[]\n");
}

#[test]
fn get_sidecars_lists_the_runtime_itself() {
    let runtime = Runtime::start();
    // The runtime registers itself with its first heartbeat, right after
    // start-up; nothing tells when that write landed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let json = runtime.kar(&["get", "sidecars", "-o", "json"]);
        assert_success(&json);
        let listed: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("a JSON array");
        if listed.as_array().is_some_and(|l| !l.is_empty()) || Instant::now() > deadline {
            break listed;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["address"], runtime.address.as_str());
    assert_eq!(listed[0]["deployment"], "embedded");
    assert!(listed[0]["started_at"].is_string(), "{listed}");

    let table = runtime.kar(&["get", "sidecars"]);
    assert_success(&table);
    let text = stdout(&table);
    let lines: Vec<Vec<&str>> =
        text.lines().map(|l| l.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect()).collect();
    assert_eq!(lines[0], ["RUNTIME ID", "ADDRESS", "DEPLOYMENT", "ACTOR TYPES", "SERVICES", "PARTITIONS", "AGE"]);
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[1][1..3], [runtime.address.as_str(), "embedded"], "{text}");
}

#[test]
fn purge_refuses_bad_arguments_with_one_line() {
    for (args, message) in [
        (&["purge", "--app", "shop"][..], "kar: nothing to purge: give --kafka-brokers, --redis-url or both\n"),
        (
            &["purge", "--app", "a:b", "--redis-url", "redis://127.0.0.1:1"][..],
            "kar: invalid app name \"a:b\": use 1 to 100 ASCII letters, digits, '_' or '-'\n",
        ),
    ] {
        let output = kar(args);
        assert!(!output.status.success(), "{args:?} must fail");
        assert_eq!(stderr(&output), message);
    }
}

#[test]
fn bench_prints_one_summary_line() {
    let runtime = Runtime::start();
    let output = runtime.kar(&["bench", "--seconds", "1", "--warmup", "0.2", "--concurrency", "4"]);
    assert_success(&output);
    let text = stdout(&output);
    let line = text.strip_suffix('\n').expect("a line");
    assert!(!line.contains('\n'), "more than one line: {text}");
    let fields: Vec<(&str, &str)> = line
        .strip_prefix("bench: ")
        .expect("the bench: prefix")
        .split(' ')
        .map(|field| field.split_once('=').expect("key=value"))
        .collect();
    let keys: Vec<&str> = fields.iter().map(|(key, _)| *key).collect();
    assert_eq!(keys, ["calls", "concurrency", "p50_ms", "p99_ms", "throughput_per_s", "errors"]);
    let value = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap_or_default();
    assert!(value("calls").parse::<u64>().expect("calls") > 0);
    assert_eq!(value("concurrency"), "4");
    for key in ["p50_ms", "p99_ms"] {
        let (_, decimals) = value(key).split_once('.').expect("a decimal");
        assert_eq!(decimals.len(), 3, "{key} in {line}");
        value(key).parse::<f64>().expect("milliseconds");
    }
    value("throughput_per_s").parse::<u64>().expect("throughput");
    assert_eq!(value("errors"), "0");

    let components = runtime.kar(&["get", "components"]);
    assert_eq!(stdout(&components).lines().count(), 1, "the bench host is still attached");
}

#[test]
fn run_dump_config_prints_toml() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(KAR)
        .args(["run", "--dump-config", "--port", "4321"])
        .current_dir(dir.path())
        .output()
        .expect("run kar");
    assert_success(&output);
    let config: toml::Table = stdout(&output).parse().expect("TOML");
    assert_eq!(config.get("port").and_then(|p| p.as_integer()), Some(4321));
}

/// Attaches an in-process component hosting actor type `Ticker`, which
/// counts the invocations of its `tick` method.
async fn attach_ticker(runtime: &Runtime) -> (kar_client::RunningHost, Arc<AtomicUsize>) {
    let client = kar_client::Client::connect(&runtime.address).await.expect("connect");
    let ticks = Arc::new(AtomicUsize::new(0));
    let counter = ticks.clone();
    let host = kar_client::host::ActorHost::new(client)
        .actor_fn("Ticker", move |_ctx, method, _args| {
            let counter = counter.clone();
            async move {
                if method == "tick" {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                Ok(kar_client::host::Reply::none())
            }
        })
        .start()
        .await
        .expect("attach the Ticker host");
    (host, ticks)
}

/// Runs `kar ARGS...` off the async runtime, so the in-process host keeps
/// answering meanwhile.
async fn kar_async(runtime: &Runtime, args: &[&str]) -> Output {
    let args: Vec<String> = [args, &["--runtime", &runtime.address]].concat().into_iter().map(str::to_owned).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(KAR).args(&args).env_remove("KAR_RUNTIME_ADDR").output().expect("run kar")
    })
    .await
    .expect("join kar")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_subscribe_publish_unsubscribe() {
    let runtime = Runtime::start();
    let (host, ticks) = attach_ticker(&runtime).await;

    let created = kar_async(&runtime, &["topics", "create", "news", "--partitions", "1"]).await;
    assert_success(&created);
    assert_eq!(stdout(&created), "created\n");
    let again = kar_async(&runtime, &["topics", "create", "news"]).await;
    assert_eq!(stdout(&again), "already exists\n");

    let subscribed = kar_async(&runtime, &["subscribe", "s1", "news", "--actor", "Ticker", "t1", "tick"]).await;
    assert_success(&subscribed);
    assert_eq!(stdout(&subscribed), "subscribed\n");
    let table = kar_async(&runtime, &["get", "subscriptions"]).await;
    assert_success(&table);
    assert_eq!(
        stdout(&table),
        "ID   TOPIC   TARGET            METHOD   NEXT OFFSET\n\
         s1   news    actor Ticker/t1   tick     0\n"
    );

    let published = kar_async(&runtime, &["publish", "news", r#"{"headline":"hello"}"#]).await;
    assert_success(&published);
    assert_eq!(stdout(&published), "0\n");

    // The subscription's position advances once the event is delivered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = kar_async(&runtime, &["get", "subscriptions", "--topic", "news", "-o", "json"]).await;
        assert_success(&listed);
        let listed: serde_json::Value = serde_json::from_str(&stdout(&listed)).expect("JSON subscriptions");
        if listed[0]["next_offset"] == 1 {
            assert_eq!(
                listed,
                serde_json::json!([{
                    "id": "s1",
                    "topic": "news",
                    "target": { "actor": { "type": "Ticker", "id": "t1" } },
                    "method": "tick",
                    "next_offset": 1,
                }])
            );
            break;
        }
        assert!(Instant::now() < deadline, "the event was not delivered within 10 s: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ticks.load(Ordering::SeqCst), 1);
    let other_topic = kar_async(&runtime, &["get", "subscriptions", "--topic", "other", "-o", "json"]).await;
    assert_eq!(stdout(&other_topic), "[]\n");

    let unsubscribed = kar_async(&runtime, &["unsubscribe", "s1"]).await;
    assert_eq!(stdout(&unsubscribed), "unsubscribed\n");
    let gone = kar_async(&runtime, &["unsubscribe", "s1"]).await;
    assert_success(&gone);
    assert_eq!(stdout(&gone), "no such subscription\n");
    assert_eq!(stdout(&kar_async(&runtime, &["get", "subscriptions", "-o", "json"]).await), "[]\n");

    let deleted = kar_async(&runtime, &["topics", "delete", "news"]).await;
    assert_eq!(stdout(&deleted), "deleted\n");
    let missing = kar_async(&runtime, &["publish", "news", "42"]).await;
    assert!(!missing.status.success());
    assert_eq!(stderr(&missing), "kar: NOT_FOUND: no topic named \"news\"\n");
    assert!(missing.stdout.is_empty());

    host.shutdown().await.expect("shut the host down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_schedule_list_cancel() {
    let runtime = Runtime::start();
    let (host, _ticks) = attach_ticker(&runtime).await;

    let at = "2100-01-01T00:00:00Z";
    let scheduled =
        kar_async(&runtime, &["reminders", "schedule", "Ticker", "t1", "r1", "ring", "42", "hello", "--at", at]).await;
    assert_success(&scheduled);
    assert_eq!(stdout(&scheduled), "scheduled\n");
    let periodic = kar_async(
        &runtime,
        &["reminders", "schedule", "Ticker", "t2", "r2", "ring", "--after", "1h", "--every", "90m"],
    )
    .await;
    assert_eq!(stdout(&periodic), "scheduled\n");
    let replaced =
        kar_async(&runtime, &["reminders", "schedule", "Ticker", "t1", "r1", "ring", "42", "hello", "--at", at]).await;
    assert_eq!(stdout(&replaced), "replaced\n");

    let table = kar_async(&runtime, &["reminders", "list"]).await;
    assert_success(&table);
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        lines[0].split("   ").map(str::trim).filter(|h| !h.is_empty()).collect::<Vec<_>>(),
        ["TYPE", "ID", "REMINDER", "METHOD", "NEXT FIRE", "PERIOD"]
    );
    let cells = |line: &str| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(cells(lines[1]), ["Ticker", "t1", "r1", "ring", "2100-01-01T00:00:00.000Z", "-"]);
    let second = cells(lines[2]);
    assert_eq!(second[..4], ["Ticker", "t2", "r2", "ring"]);
    humantime::parse_rfc3339(&second[4]).expect("an RFC 3339 next fire time");
    assert_eq!(second[5..], ["1h", "30m"]);

    let one = kar_async(&runtime, &["reminders", "list", "Ticker", "t1", "-o", "json"]).await;
    let one: serde_json::Value = serde_json::from_str(&stdout(&one)).expect("JSON reminders");
    assert_eq!(
        one,
        serde_json::json!([{
            "type": "Ticker",
            "id": "t1",
            "reminder_id": "r1",
            "method": "ring",
            "args": [42, "hello"],
            "next_fire_time": "2100-01-01T00:00:00.000Z",
            "period": null,
        }])
    );
    let alias = kar_async(&runtime, &["get", "reminders", "--type", "Ticker", "--id", "t1", "-o", "json"]).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout(&alias)).expect("JSON reminders"), one);

    let cancelled = kar_async(&runtime, &["reminders", "cancel", "Ticker", "t1", "r1"]).await;
    assert_success(&cancelled);
    assert_eq!(stdout(&cancelled), "cancelled 1\n");
    let all = kar_async(&runtime, &["reminders", "cancel", "Ticker", "t2"]).await;
    assert_eq!(stdout(&all), "cancelled 1\n");
    let empty = kar_async(&runtime, &["get", "reminders"]).await;
    assert_eq!(stdout(&empty), "TYPE   ID   REMINDER   METHOD   NEXT FIRE   PERIOD\n");

    host.shutdown().await.expect("shut the host down");
}
