//! The JSON gateway end to end: a real `kar run` process, a component
//! attached in-process over gRPC with the Rust SDK, and every `kar.v1` RPC
//! that has an HTTP binding called through JSON with `curl` on the same
//! port, error cases included.

use kar_client::Client;
use kar_client::host::{ActorHost, AppError, Reply, RunningHost};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::KarRun;

/// A runtime with a small payload limit, and JSON and gRPC clients of it.
struct Runtime(KarRun);

impl std::ops::Deref for Runtime {
    type Target = KarRun;
    fn deref(&self) -> &KarRun {
        &self.0
    }
}

impl Runtime {
    fn start() -> Runtime {
        Runtime(KarRun::start(&["--max-payload-bytes", "65536"]))
    }

    /// Sends `method path` with an optional JSON body and extra headers;
    /// returns the HTTP status and the JSON body (`Null` if empty).
    async fn http(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut args: Vec<String> = vec!["-s".into(), "-X".into(), method.into(), "-w".into(), "\n%{http_code}".into()];
        for (name, value) in headers {
            args.push("-H".into());
            args.push(format!("{name}: {value}"));
        }
        if let Some(body) = body {
            let file = self.dir.path().join(format!("body-{}", uuid::Uuid::new_v4()));
            std::fs::write(&file, body).expect("body file");
            args.push("-H".into());
            args.push("content-type: application/json".into());
            args.push("--data-binary".into());
            args.push(format!("@{}", file.display()));
        }
        args.push(format!("http://{}{path}", self.address));
        let output = tokio::process::Command::new("curl").args(&args).output().await.expect("run curl");
        let text = String::from_utf8(output.stdout).expect("utf-8");
        let (body, code) = text.rsplit_once('\n').expect("status line");
        let code: u16 = code.trim().parse().unwrap_or_else(|_| panic!("no status in {text:?}"));
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"))
        };
        (code, json)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.http("GET", path, None, &[]).await
    }

    /// Attaches a component hosting the actor type `Echo` and the service
    /// `Greeter`, over gRPC on the same port as the JSON API.
    async fn attach(&self) -> RunningHost {
        let client = Client::connect(&format!("http://{}", self.address)).await.expect("gRPC connect");
        ActorHost::new(client)
            .name("gateway-test")
            .actor_fn("Echo", |ctx, method, args| async move {
                match method.as_str() {
                    "echo" => Ok(Reply::from(args)),
                    "whoami" => Ok(Reply::from(json!({"id": ctx.actor_id(), "request": ctx.request_id()}))),
                    "fail" => Err(AppError::with_code(tonic::Code::FailedPrecondition, "no, thanks")),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        Ok(Reply::none())
                    }
                    _ => Err(ctx.no_such_method()),
                }
            })
            .service_fn("Greeter", |_ctx, method, args| async move {
                Ok(Reply::from(json!({"method": method, "args": args})))
            })
            .start()
            .await
            .expect("attach")
    }
}

fn openapi_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

/// The error body's `BadRequest` field, if any.
fn bad_field(body: &Value) -> Option<&str> {
    body["details"]
        .as_array()?
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")?["fieldViolations"][0]["field"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread")]
async fn actor_and_service_rpcs_work_through_json_beside_grpc() {
    let runtime = Runtime::start();
    let host = runtime.attach().await;

    let (code, body) =
        runtime.http("POST", "/kar/v1/actor/Echo/a1/call/echo", Some(r#"[1, "two", {"three": null}]"#), &[]).await;
    assert_eq!((code, &body["json"]), (200, &json!([1, "two", {"three": null}])), "{body}");
    assert!(!body["requestId"].as_str().unwrap_or_default().is_empty());

    // An id with a slash, percent-encoded, is one path variable.
    let (code, body) = runtime.http("POST", "/kar/v1/actor/Echo/a%2Fb/call/whoami", None, &[]).await;
    assert_eq!((code, &body["json"]["id"]), (200, &json!("a/b")), "{body}");

    // kar-request-id is carried into the call: a repeat gets the recorded outcome.
    let once = [("kar-request-id", "gateway-once")];
    let (_, first) = runtime.http("POST", "/kar/v1/actor/Echo/a1/call/whoami", None, &once).await;
    let (_, second) = runtime.http("POST", "/kar/v1/actor/Echo/a1/call/whoami", None, &once).await;
    assert_eq!(first["json"]["request"], "gateway-once");
    assert_eq!(first, second);

    // An application error keeps its code, mapped to HTTP, with its ErrorInfo.
    let (code, body) = runtime.http("POST", "/kar/v1/actor/Echo/a1/call/fail", Some("[]"), &[]).await;
    assert_eq!((code, &body["code"]), (400, &json!(9)), "{body}");
    assert_eq!(body["message"], "no, thanks");
    assert!(body["details"].as_array().expect("details").iter().any(|d| d["reason"] == "APPLICATION_ERROR"), "{body}");

    // grpc-timeout bounds the call: 504 once the deadline passes.
    let started = Instant::now();
    let (code, body) =
        runtime.http("POST", "/kar/v1/actor/Echo/slow1/call/slow", None, &[("grpc-timeout", "300m")]).await;
    assert_eq!((code, &body["code"]), (504, &json!(4)), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let (code, body) = runtime.http("POST", "/kar/v1/actor/Echo/a1/tell/echo", Some("[1]"), &[]).await;
    assert_eq!(code, 200, "{body}");
    assert!(!body["requestId"].as_str().unwrap_or_default().is_empty());

    let (code, body) = runtime.http("POST", "/kar/v1/service/Greeter/call/hello/world", Some(r#"{"n": 1}"#), &[]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["json"], json!({"method": "hello/world", "args": {"n": 1}}));
    let (code, body) = runtime.http("POST", "/kar/v1/service/Greeter/tell/hello", Some("null"), &[]).await;
    assert_eq!(code, 200, "{body}");

    let (code, body) = runtime.get("/kar/v1/system/components").await;
    assert_eq!(code, 200, "{body}");
    let component = &body["components"][0];
    assert_eq!((&component["name"], &component["actorTypes"]), (&json!("gateway-test"), &json!(["Echo"])));
    assert_eq!(component["service"], "Greeter");
    let (code, body) = runtime.get("/kar/v1/system/actors?type=Echo").await;
    assert_eq!(code, 200, "{body}");
    assert!(body["actors"].as_array().expect("actors").iter().any(|a| a["actor"]["id"] == "a1"), "{body}");

    runtime.http("PUT", "/kar/v1/actor/Echo/a1/state/k", Some("1"), &[]).await;
    let (code, body) = runtime.http("DELETE", "/kar/v1/actor/Echo/a1", None, &[]).await;
    assert_eq!((code, &body["removedEntries"]), (200, &json!(1)), "{body}");

    host.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_state_rpc_works_through_json() {
    let runtime = Runtime::start();
    let base = "/kar/v1/actor/Counter/c1";

    let (code, body) = runtime.http("PUT", &format!("{base}/state/total"), Some(r#"{"n": 41}"#), &[]).await;
    assert_eq!((code, body), (200, json!({"created": true})));
    let (code, body) = runtime.get(&format!("{base}/state/total")).await;
    assert_eq!((code, body), (200, json!({"found": true, "value": {"n": 41}})));
    let (code, body) = runtime.get(&format!("{base}/state/missing")).await;
    assert_eq!((code, body), (200, json!({"found": false})));

    // Submap entries through the additional bindings, and the query.
    let (code, _) = runtime.http("PUT", &format!("{base}/state/votes/alice"), Some("true"), &[]).await;
    assert_eq!(code, 200);
    let (code, body) = runtime.get(&format!("{base}/state/votes/alice")).await;
    assert_eq!((code, body), (200, json!({"found": true, "value": true})));
    let (code, body) = runtime.get(&format!("{base}/state/votes?subkey=alice")).await;
    assert_eq!((code, body), (200, json!({"found": true, "value": true})));

    let update = json!({
        "updates": {"a": 1, "b": [2]},
        "removals": ["total"],
        "submapUpdates": {"votes": {"entries": {"bob": false}}},
        "submap_removals": {"votes": {"keys": ["alice"]}},
    });
    let (code, body) = runtime.http("POST", &format!("{base}/state"), Some(&update.to_string()), &[]).await;
    assert_eq!((code, body), (200, json!({"added": 3, "removed": 2})));

    let (code, body) = runtime.get(&format!("{base}/state")).await;
    assert_eq!(code, 200);
    assert_eq!(body, json!({"entries": {"a": 1, "b": [2]}, "submaps": {"votes": {"entries": {"bob": false}}}}));
    let (code, body) = runtime.get(&format!("{base}/submap/votes")).await;
    assert_eq!((code, body), (200, json!({"entries": {"bob": false}})));

    let (code, body) = runtime.http("DELETE", &format!("{base}/state/votes/bob"), None, &[]).await;
    assert_eq!((code, body), (200, json!({"deleted": true})));
    runtime.http("PUT", &format!("{base}/state/votes/carol"), Some("1"), &[]).await;
    let (code, body) = runtime.http("DELETE", &format!("{base}/submap/votes"), None, &[]).await;
    assert_eq!((code, body), (200, json!({"removed": 1})));
    let (code, body) = runtime.http("DELETE", &format!("{base}/state/a"), None, &[]).await;
    assert_eq!((code, body), (200, json!({"deleted": true})));
    let (code, body) = runtime.http("DELETE", &format!("{base}/state"), None, &[]).await;
    assert_eq!((code, body), (200, json!({"removed": 1})));
}

#[tokio::test(flavor = "multi_thread")]
async fn reminders_and_events_work_through_json() {
    let runtime = Runtime::start();
    let host = runtime.attach().await;
    let base = "/kar/v1/actor/Echo/k1";

    let reminder =
        json!({"method": "tick", "payload": {"json": [1]}, "fireTime": "2999-01-01T00:00:00Z", "period": "60s"});
    let (code, body) = runtime.http("PUT", &format!("{base}/reminders/r1"), Some(&reminder.to_string()), &[]).await;
    assert_eq!((code, body), (200, json!({"replaced": false})));
    let (code, _) = runtime
        .http(
            "PUT",
            &format!("{base}/reminders/r2"),
            Some(r#"{"method": "tick", "fireTime": "2999-01-01T00:00:00.5Z"}"#),
            &[],
        )
        .await;
    assert_eq!(code, 200);
    let (code, body) = runtime.get(&format!("{base}/reminders")).await;
    assert_eq!(code, 200, "{body}");
    let r1 = body["reminders"].as_array().expect("list").iter().find(|r| r["reminderId"] == "r1").cloned();
    let r1 = r1.expect("r1 listed");
    assert_eq!((&r1["period"], &r1["nextFireTime"]), (&json!("60s"), &json!("2999-01-01T00:00:00Z")));
    let (code, body) = runtime.get("/kar/v1/reminders?actor.type=Echo").await;
    assert_eq!((code, body["reminders"].as_array().map(Vec::len)), (200, Some(2)));
    let (code, body) = runtime.http("DELETE", &format!("{base}/reminders/r1"), None, &[]).await;
    assert_eq!((code, body), (200, json!({"cancelled": 1})));
    let (code, body) = runtime.http("DELETE", &format!("{base}/reminders"), None, &[]).await;
    assert_eq!((code, body), (200, json!({"cancelled": 1})));

    let (code, body) = runtime.http("PUT", "/kar/v1/event/news", Some(r#"{"partitions": 1}"#), &[]).await;
    assert_eq!((code, body), (200, json!({"created": true})));
    let (code, body) = runtime.http("POST", "/kar/v1/event/news/publish", Some(r#"{"headline": "hi"}"#), &[]).await;
    assert_eq!((code, body), (200, json!({"offset": "0"})));
    let subscription = json!({"topic": "news", "target": {"service": "Greeter", "method": "read"}});
    let (code, body) = runtime.http("PUT", "/kar/v1/subscriptions/s1", Some(&subscription.to_string()), &[]).await;
    assert_eq!((code, body), (200, json!({"created": true})));
    let (code, body) = runtime.get("/kar/v1/subscriptions?topic=news").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["subscriptions"][0]["subscriptionId"], "s1");
    assert_eq!(body["subscriptions"][0]["target"], json!({"service": "Greeter", "method": "read"}));
    let (code, body) = runtime.http("DELETE", "/kar/v1/subscriptions/s1", None, &[]).await;
    assert_eq!((code, body), (200, json!({"deleted": true})));
    let (code, body) = runtime.http("DELETE", "/kar/v1/event/news", None, &[]).await;
    assert_eq!((code, body), (200, json!({"deleted": true})));
    host.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_json_statuses_with_the_matching_http_status() {
    let runtime = Runtime::start();
    let put_topic = |body: &'static str| runtime.http("PUT", "/kar/v1/event/t", Some(body), &[]);

    let (code, body) = put_topic(r#"{"partitions": "#).await;
    assert_eq!((code, &body["code"], bad_field(&body)), (400, &json!(3), Some("body")), "{body}");
    assert!(body["message"].as_str().expect("message").contains("malformed JSON"));

    let (code, body) = put_topic(r#"{"partitions": "many"}"#).await;
    assert_eq!((code, bad_field(&body)), (400, Some("partitions")), "{body}");
    let (code, body) = put_topic(r#"{"partitions": -1}"#).await;
    assert_eq!((code, bad_field(&body)), (400, Some("partitions")), "{body}");
    let (code, body) = put_topic(r#"{"partitionz": 1}"#).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().expect("message").contains("partitionz"), "{body}");
    let (code, body) =
        runtime.http("POST", "/kar/v1/actor/A/1/state", Some(r#"{"updates": {"k": 1}, "removals": [3]}"#), &[]).await;
    assert_eq!((code, bad_field(&body)), (400, Some("removals[0]")), "{body}");

    // Unknown routes are 404s, a gRPC path over plain HTTP included.
    for path in ["/", "/kar/v1/nope", "/kar/v1/actor/A/1/state/k/s/extra", "/kar.v1.MeshService/ListComponents"] {
        let (code, body) = runtime.http("POST", path, Some("{}"), &[]).await;
        assert_eq!((code, &body["code"]), (404, &json!(5)), "{path}: {body}");
    }
    let (code, _) = runtime.http("PATCH", "/kar/v1/actor/A/1/state", Some("{}"), &[]).await;
    assert_eq!(code, 405);

    // A path variable left empty is named.
    let (code, body) = runtime.get("/kar/v1/actor/A//state/k").await;
    assert_eq!((code, bad_field(&body)), (400, Some("actor.id")), "{body}");
    let (code, body) = runtime.http("POST", "/kar/v1/service/S/call/", None, &[]).await;
    assert_eq!((code, bad_field(&body)), (400, Some("method")), "{body}");

    // Query parameters: unknown, or bound by the path.
    let (code, body) = runtime.get("/kar/v1/subscriptions?tpoic=x").await;
    assert_eq!((code, bad_field(&body)), (400, Some("tpoic")), "{body}");
    let (code, body) = runtime.get("/kar/v1/actor/A/1/state/k?key=other").await;
    assert_eq!((code, bad_field(&body)), (400, Some("key")), "{body}");

    // The runtime's own validation comes back as 400 naming the field.
    let (code, body) = runtime.http("PUT", "/kar/v1/actor/A/1/state/k", None, &[]).await;
    assert_eq!((code, bad_field(&body)), (400, Some("value")), "{body}");
    let (code, body) = runtime.http("POST", "/kar/v1/event/nosuch/publish", Some("1"), &[]).await;
    assert_eq!((code, &body["code"]), (404, &json!(5)), "{body}");
    let (code, body) = runtime.http("POST", "/kar/v1/actor/A/1/call/m", None, &[("grpc-timeout", "soon")]).await;
    assert_eq!((code, bad_field(&body)), (400, Some("grpc-timeout")), "{body}");

    // Over the limit (64 KiB of payload here, plus slack): 413.
    let big = format!("\"{}\"", "x".repeat(200 * 1024));
    let (code, body) = runtime.http("POST", "/kar/v1/event/t/publish", Some(&big), &[]).await;
    assert_eq!((code, &body["code"]), (413, &json!(3)), "{body}");

    // And the runtime is still fine.
    let (code, _) = runtime.get("/kar/v1/system/components").await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_is_served() {
    let runtime = Runtime::start();
    let (code, served) = runtime.get("/openapi.json").await;
    assert_eq!(code, 200);
    let expected = kar_runtime::gateway::openapi::document().expect("document");
    assert_eq!(served, expected);
}

#[test]
fn the_checked_in_openapi_document_is_up_to_date() {
    let generated = kar_runtime::gateway::openapi::document_text().expect("document");
    let checked_in = std::fs::read_to_string(openapi_file()).unwrap_or_default();
    assert!(
        generated == checked_in,
        "runtime/openapi.json is stale: run `cargo run -p kar-runtime -- openapi --output runtime/openapi.json`"
    );
}
