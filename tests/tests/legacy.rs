//! End-to-end tests of legacy HTTP components: the Python `Counter` actor of
//! `tests/legacy/counter_app.py` (standard library only), attached through
//! `kar run --app-port`, called through gRPC and through the JSON gateway,
//! ending with tail calls, and SIGKILLed in the middle of a call.

use kar_tests::{LegacyApp, Runtime, count, counter_app_script, free_port, http_json};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A runtime whose legacy app is on `app_port`, with a client.
struct Legacy {
    dir: tempfile::TempDir,
    runtime: Runtime,
    client: kar_client::Client,
    app_port: u16,
}

impl Legacy {
    /// `kar run --app-port N --actors Counter`, with the Python app as its
    /// child when `child` (as a user would run it), else without any.
    async fn start(child: bool) -> anyhow::Result<Legacy> {
        let dir = tempfile::tempdir()?;
        let app_port = free_port();
        let log_dir = dir.path().join("attempts");
        let port = app_port.to_string();
        let script = counter_app_script().to_string_lossy().into_owned();
        let log = log_dir.to_string_lossy().into_owned();
        let mut args = vec!["--app-port", &port, "--actors", "Counter"];
        if child {
            args.extend(["--", "python3", &script, "--log-dir", &log, "--name", "counter"]);
        }
        let runtime = Runtime::start_with(dir.path(), &args)?;
        let client = kar_client::Client::connect(&runtime.addr()).await?;
        Ok(Legacy { dir, runtime, client, app_port })
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.path().join("attempts")
    }

    /// Waits (bounded) until the legacy app is attached (`true`) or not.
    async fn wait_attached(&self, attached: bool) -> anyhow::Result<()> {
        let name = format!("http:127.0.0.1:{}", self.app_port);
        let start = Instant::now();
        loop {
            if let Ok(list) = self.client.list_components().await
                && list.iter().any(|c| c.name == name) == attached
            {
                return Ok(());
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "the legacy app attached != {attached}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A JSON request to the gateway, off the async runtime.
    async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let (port, method, path) = (self.runtime.port, method.to_owned(), path.to_owned());
        tokio::task::spawn_blocking(move || http_json(port, &method, &path, &[], body.as_ref())).await?
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_actor_is_called_through_grpc_and_through_json() -> anyhow::Result<()> {
    let legacy = Legacy::start(true).await?;
    legacy.wait_attached(true).await?;

    assert_eq!(legacy.client.call_actor("Counter", "c1", "incr", json!([1])).await?, json!(1));
    assert_eq!(legacy.client.call_actor("Counter", "c1", "incr", json!([])).await?, json!(2));
    let (status, reply) = legacy.http("POST", "/kar/v1/actor/Counter/c1/call/incr", Some(json!([3]))).await?;
    assert_eq!((status, &reply["json"]), (200, &json!(5)), "{reply}");
    let (status, _) = legacy.http("POST", "/kar/v1/actor/Counter/c1/tell/incr", Some(json!([10]))).await?;
    assert_eq!(status, 200);
    // The tell ran before this call (one flow at a time, in order).
    assert_eq!(legacy.client.call_actor("Counter", "c1", "get", json!([])).await?, json!(15));
    let (status, state) = legacy.http("GET", "/kar/v1/actor/Counter/c1/state/count", None).await?;
    assert_eq!((status, &state["value"]), (200, &json!(15)), "{state}");

    // Application errors and unknown methods reach both kinds of caller.
    let err = legacy.client.call_actor("Counter", "c1", "fail", json!(["no way"])).await.expect_err("fails");
    assert_eq!((err.code(), err.message()), (tonic::Code::FailedPrecondition, "no way".to_owned()));
    assert!(err.is_application_error());
    let (status, reply) = legacy.http("POST", "/kar/v1/actor/Counter/c1/call/nope", Some(json!([]))).await?;
    assert_eq!((status, &reply["code"]), (501, &json!(12)), "{reply}");

    let log = legacy.log_dir();
    let incr = |a: &kar_tests::Attempt| a.method == "incr" && a.target == "Counter/c1";
    assert_eq!(count(&log, "start", incr), 4, "each incr ran once");
    assert_eq!(count(&log, "end", incr), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_actor_hands_off_with_tail_calls() -> anyhow::Result<()> {
    let legacy = Legacy::start(true).await?;
    legacy.wait_attached(true).await?;
    let client = legacy.client.with_request_id("chain-1");
    assert_eq!(client.call_actor("Counter", "t", "chain", json!([3, "grpc"])).await?, json!("grpc done"));
    let (status, reply) = legacy.http("POST", "/kar/v1/actor/Counter/t/call/chain", Some(json!([2, "json"]))).await?;
    assert_eq!((status, &reply["json"]), (200, &json!("json done")), "{reply}");

    let log = legacy.log_dir();
    for step in 0..=3 {
        let tag = format!("grpc#{step}");
        assert_eq!(count(&log, "start", |a| a.tag == tag), 1, "step {tag} ran once");
    }
    let ids: Vec<String> = kar_tests::attempts(&log)
        .into_iter()
        .filter(|a| a.tag.starts_with("grpc#") && a.event == "start")
        .map(|a| a.request_id)
        .collect();
    assert_eq!(ids, ["chain-1", "chain-1~1", "chain-1~2", "chain-1~3"], "one request, four steps, in order");
    assert_eq!(count(&log, "end", |a| a.tag.starts_with("json#")), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_actor_killed_mid_call_is_retried_once_and_completes_once() -> anyhow::Result<()> {
    // The app is not `kar run`'s child here: the child's exit would end the
    // runtime. It runs on its own, is SIGKILLed and started again.
    let legacy = Legacy::start(false).await?;
    let mut app = LegacyApp::start(&legacy.runtime.addr(), legacy.app_port, &legacy.log_dir(), "counter")?;
    legacy.wait_attached(true).await?;
    assert_eq!(legacy.client.call_actor("Counter", "k", "incr", json!([1])).await?, json!(1));

    let grpc_call = {
        let client = legacy.client.clone();
        tokio::spawn(async move { client.call_actor("Counter", "k", "slow", json!([1000, "victim"])).await })
    };
    let json_call = {
        let port = legacy.runtime.port;
        tokio::task::spawn_blocking(move || {
            http_json(port, "POST", "/kar/v1/actor/Counter/j/call/slow", &[], Some(&json!([1000, "json-victim"])))
        })
    };
    let log = legacy.log_dir();
    let started = |tag: &'static str| move |a: &kar_tests::Attempt| a.tag == tag;
    let start = Instant::now();
    while count(&log, "start", started("victim")) == 0 || count(&log, "start", started("json-victim")) == 0 {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "the calls did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.kill();
    legacy.wait_attached(false).await?;
    let _app = LegacyApp::start(&legacy.runtime.addr(), legacy.app_port, &log, "counter-2")?;

    assert_eq!(grpc_call.await??, json!("victim"), "the gRPC caller gets the retried attempt's result");
    let (status, reply) = json_call.await??;
    assert_eq!((status, &reply["json"]), (200, &json!("json-victim")), "{reply}");
    for tag in ["victim", "json-victim"] {
        assert_eq!(count(&log, "start", started(tag)), 2, "{tag}: one retry after the crash");
        assert_eq!(count(&log, "end", started(tag)), 1, "{tag}: completed once");
        let mut attempts: Vec<u32> = kar_tests::attempts(&log)
            .iter()
            .filter(|a| a.tag == tag && a.event == "start")
            .map(|a| a.attempt)
            .collect();
        attempts.sort();
        assert_eq!(attempts, [1, 2], "{tag}");
    }
    // The state written before the crash is there for the new process.
    assert_eq!(legacy.client.call_actor("Counter", "k", "incr", json!([1])).await?, json!(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_app_that_dies_idle_is_detached_and_attached_again_when_back() -> anyhow::Result<()> {
    let legacy = Legacy::start(false).await?;
    let mut app = LegacyApp::start(&legacy.runtime.addr(), legacy.app_port, &legacy.log_dir(), "counter")?;
    legacy.wait_attached(true).await?;
    assert_eq!(legacy.client.call_actor("Counter", "idle", "incr", json!([1])).await?, json!(1));
    app.kill();
    // Nothing was in flight: the runtime's probe notices the death.
    legacy.wait_attached(false).await?;
    // A call made while the app is down waits for it.
    let call = {
        let client = legacy.client.clone();
        tokio::spawn(async move { client.call_actor("Counter", "idle", "incr", json!([1])).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _app = LegacyApp::start(&legacy.runtime.addr(), legacy.app_port, &legacy.log_dir(), "counter-2")?;
    assert_eq!(call.await??, json!(2));
    let log = legacy.log_dir();
    assert_eq!(count(&log, "start", |a| a.method == "incr" && a.target == "Counter/idle"), 2);
    Ok(())
}
