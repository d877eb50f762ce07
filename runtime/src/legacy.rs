//! Legacy HTTP components: `kar run --app-port N --actors A,B --service S`
//! hosts actors and a service in a process that cannot hold a gRPC stream.
//! The runtime attaches to the engine on its behalf and delivers each
//! invocation as an HTTP/1.1 POST on `127.0.0.1:N`.
//!
//! # The contract (also in the README)
//!
//! * `GET /kar/app/v1/health`: the runtime polls it until the app answers
//!   with any status below 500 (a 404 will do: implementing it is optional;
//!   a 503 says "not ready yet"), then attaches.
//! * `POST /kar/app/v1/invoke`, `Content-Type: application/json`: the body is
//!   the proto3 JSON form of `kar.v1.Invocation` (`kind`, `actor`,
//!   `service`, `method`, `payload`, `context`, `attempt`, `deadline`,
//!   `deliveryId`). Activate, deactivate, actor and service methods, events
//!   and reminders all arrive this way.
//! * The reply: `204` (or a `200` with an empty body) is a void value; a
//!   `200` with a JSON body is a `kar.v1.InvocationResult` (its `deliveryId`
//!   may be left out): `{"value": {"json": …}}`, `{"error": {"code": 9,
//!   "message": "…"}}` or `{"tailCall": {…}}`. A 502, 503 or 504 asks the
//!   runtime to post the same invocation again later (the handler did not
//!   run it); any other status is an application error (404 →
//!   `UNIMPLEMENTED`, 400 → `INVALID_ARGUMENT`, 5xx → `INTERNAL`, …) with
//!   the reply body as its message.
//!
//! # Failures, and why no attempt overlaps another (G2)
//!
//! Every invocation gets its own connection (`Connection: close`), so each
//! failure is about one request. Invocations are posted concurrently (one
//! task each): the engine already decided what may run together.
//!
//! * **Connection refused** (the app's listening socket is gone: the process
//!   died or is restarting): the component is gone. The runtime detaches it
//!   (the engine retries every attempt in flight to it), stops posting,
//!   waits until the app answers its health check again and attaches anew.
//!   A TCP probe every [`PROBE_INTERVAL`] detects the same death while the
//!   app is idle, so a restarted app gets its `ACTIVATE`s again.
//! * **The connection broke before a reply** while the app still accepts
//!   connections: the app is alive, so the handler failed without answering
//!   (an uncaught exception in Python's `http.server` does exactly this).
//!   It may even still be running, so the runtime does *not* retry it and
//!   does not detach (that would retry the app's other running attempts
//!   beside them): the invocation completes with `INTERNAL`.
//! * **No timeout**: a slow handler is waited for as long as it takes, as on
//!   the gRPC channel; the caller's own deadline bounds the caller's wait.
//!
//! The runtime knows the app by its port only, so an app that dies and
//! listens again (a new process) quicker than the runtime notices is taken
//! for the old one: restarted within [`PROBE_INTERVAL`] while idle, it gets
//! methods of instances it never saw activated; restarted within ~50 ms of
//! a crash that broke a connection, that invocation completes with
//! `INTERNAL` instead of being retried; restarted within the microseconds
//! between a refused connection and the detach, it could receive an
//! invocation that the engine then also retries.

use crate::api::app::{invocation, result};
use crate::engine::Engine;
use crate::engine::components::Registration;
use crate::engine::types::{Delivery, DeliveryResult};
use crate::gateway::JsonCodec;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Where invocations are posted.
pub const INVOKE_PATH: &str = "/kar/app/v1/invoke";
/// What the runtime polls before it attaches.
pub const HEALTH_PATH: &str = "/kar/app/v1/health";
/// How often an attached app is checked for a listening socket.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// How often a down app is polled for health.
const HEALTH_POLL: Duration = Duration::from_millis(100);
/// A connection not established by then was not made (the request was not
/// sent), so it is tried again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The health check's bound.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause between posts of an invocation the app asked to repeat.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The longest error message taken from a reply body.
const MAX_MESSAGE: usize = 1024;

/// What the legacy app on `port` hosts.
#[derive(Clone, Debug)]
pub struct Options {
    /// The app's port on 127.0.0.1.
    pub port: u16,
    /// The actor types it hosts.
    pub actor_types: Vec<String>,
    /// The service it serves, if any.
    pub service: Option<String>,
    /// The largest reply body read.
    pub max_body_bytes: usize,
}

/// Keeps the app on `options.port` attached to `engine` for as long as the
/// returned future runs: attaches when it answers, detaches when it dies,
/// attaches again when it is back. Fails only on a bad registration.
pub async fn serve(engine: Engine, options: Options) -> anyhow::Result<()> {
    let channel = Arc::new(Channel {
        address: SocketAddr::from(([127, 0, 0, 1], options.port)),
        codec: JsonCodec::new()?,
        engine,
        options,
    });
    let mut announced = false;
    loop {
        channel.wait_until_healthy(&mut announced).await;
        let registration = Registration {
            name: format!("http:{}", channel.address),
            actor_types: channel.options.actor_types.clone(),
            service: channel.options.service.clone(),
            max_concurrency: 0,
        };
        let (id, deliveries) = channel.engine.attach(registration)?;
        tracing::info!(component = %id, app = %channel.address, "legacy app attached");
        channel.clone().drive(Arc::new(Attachment { id, gone: AtomicBool::new(false) }), deliveries).await;
        announced = false;
    }
}

/// The channel to one legacy app.
struct Channel {
    engine: Engine,
    options: Options,
    address: SocketAddr,
    codec: JsonCodec,
}

/// One attachment of the app (one component id).
struct Attachment {
    id: String,
    /// Set before the component is detached: nothing more is posted for it.
    gone: AtomicBool,
}

/// Why a post produced no reply.
enum PostError {
    /// The connection was refused: the app is not listening.
    Refused(std::io::Error),
    /// The request was not sent (connect timed out or failed otherwise).
    NotSent(String),
    /// The request may have reached the app, but no whole reply came back.
    Broken(String),
}

/// A reply of the app.
struct Reply {
    status: StatusCode,
    body: Result<Bytes, String>,
}

impl Channel {
    /// Polls the health path until the app answers below 500.
    async fn wait_until_healthy(&self, announced: &mut bool) {
        loop {
            match tokio::time::timeout(HEALTH_TIMEOUT, self.exchange(Method::GET, HEALTH_PATH, None)).await {
                Ok(Ok(reply)) if !reply.status.is_server_error() => return,
                Ok(Ok(reply)) => tracing::debug!(status = %reply.status, "legacy app not ready"),
                _ if !*announced => {
                    tracing::info!(app = %self.address, "waiting for the legacy app to listen");
                    *announced = true;
                }
                _ => {}
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Posts each delivery of this attachment until the component is
    /// detached (by a delivery task or the probe), then waits for every task
    /// of the attachment to end, so none of them posts after a new attach.
    async fn drive(self: Arc<Self>, attachment: Arc<Attachment>, mut deliveries: mpsc::UnboundedReceiver<Delivery>) {
        let mut tasks = JoinSet::new();
        tasks.spawn(self.clone().probe(attachment.clone()));
        loop {
            tokio::select! {
                delivery = deliveries.recv() => match delivery {
                    // After a detach the queue still holds what was sent
                    // before it: those attempts are abandoned, never posted.
                    Some(delivery) if !attachment.gone.load(Ordering::SeqCst) => {
                        tasks.spawn(self.clone().deliver(attachment.clone(), delivery));
                    }
                    Some(_) => {}
                    None => break,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.shutdown().await;
    }

    /// Checks every [`PROBE_INTERVAL`] that the app still listens, so that
    /// its death is noticed while it is idle.
    async fn probe(self: Arc<Self>, attachment: Arc<Attachment>) {
        while !attachment.gone.load(Ordering::SeqCst) {
            tokio::time::sleep(PROBE_INTERVAL).await;
            if let Err(PostError::Refused(e)) = self.connect().await {
                self.lost(&attachment, &format!("probe: {e}"));
            }
        }
    }

    /// Detaches the attachment (once): the engine retries what it had in flight.
    fn lost(&self, attachment: &Attachment, why: &str) {
        if !attachment.gone.swap(true, Ordering::SeqCst) {
            tracing::info!(component = %attachment.id, why, "legacy app unreachable; detaching");
            self.engine.detach(&attachment.id);
        }
    }

    /// Posts one delivery and hands its outcome to the engine.
    async fn deliver(self: Arc<Self>, attachment: Arc<Attachment>, delivery: Delivery) {
        let delivery_id = delivery.delivery_id;
        let body = match self.codec.encode("kar.v1.Invocation", &invocation(delivery)) {
            Ok(json) => Bytes::from(json.to_string()),
            Err(e) => {
                let outcome = app_error(tonic::Code::Internal, format!("cannot render the invocation: {e}"));
                self.engine.answer(&attachment.id, delivery_id, outcome);
                return;
            }
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            if attachment.gone.load(Ordering::SeqCst) {
                return;
            }
            let outcome = match self.exchange(Method::POST, INVOKE_PATH, Some(body.clone())).await {
                Ok(reply) if is_retry(reply.status) => {
                    tracing::debug!(delivery_id, status = %reply.status, "legacy app asked to post again");
                    None
                }
                Ok(reply) => Some(outcome(&self.codec, reply)),
                Err(PostError::Refused(e)) => {
                    self.lost(&attachment, &e.to_string());
                    return;
                }
                Err(PostError::NotSent(e)) => {
                    tracing::warn!(delivery_id, error = %e, "cannot reach the legacy app; posting again");
                    None
                }
                Err(PostError::Broken(e)) => {
                    if !self.listening().await {
                        self.lost(&attachment, &e);
                        return;
                    }
                    tracing::warn!(delivery_id, error = %e, "the legacy app closed the connection without a reply");
                    Some(app_error(
                        tonic::Code::Internal,
                        format!("the component closed the connection without answering: {e}"),
                    ))
                }
            };
            if let Some(outcome) = outcome {
                self.engine.answer(&attachment.id, delivery_id, outcome);
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Whether the app still accepts connections, after a connection broke.
    /// A dying process closes its sockets one after the other, so a refusal
    /// shortly after is also taken as death.
    async fn listening(&self) -> bool {
        for pause in [0, 10, 40] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if let Err(PostError::Refused(_)) = self.connect().await {
                return false;
            }
        }
        true
    }

    /// Opens a connection to the app.
    async fn connect(&self) -> Result<TcpStream, PostError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.address)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(PostError::Refused(e)),
            Ok(Err(e)) => Err(PostError::NotSent(e.to_string())),
            Err(_) => Err(PostError::NotSent("connecting timed out".into())),
        }
    }

    /// One request on a fresh connection, and its whole reply.
    async fn exchange(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<Reply, PostError> {
        let stream = self.connect().await?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake::<
            _,
            http_body_util::Either<Full<Bytes>, Empty<Bytes>>,
        >(TokioIo::new(stream))
        .await
        .map_err(|e| PostError::NotSent(e.to_string()))?;
        let driver = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.address.to_string())
            .header(header::CONNECTION, "close");
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(http_body_util::Either::Left(Full::new(body))),
            None => request.body(http_body_util::Either::Right(Empty::new())),
        }
        .map_err(|e| PostError::NotSent(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| PostError::Broken(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = match Limited::new(body, self.options.max_body_bytes).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                Err(format!("the reply is larger than {} bytes", self.options.max_body_bytes))
            }
            Err(e) => return Err(PostError::Broken(e.to_string())),
        };
        drop(driver);
        Ok(Reply { status: parts.status, body })
    }
}

/// The engine's outcome for a reply.
fn outcome(codec: &JsonCodec, reply: Reply) -> DeliveryResult {
    let body = match reply.body {
        Ok(body) => body,
        Err(e) => return app_error(tonic::Code::Internal, format!("cannot read the component's reply: {e}")),
    };
    if !reply.status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        let message = if text.is_empty() {
            format!("the component answered {}", reply.status)
        } else {
            truncate(text, MAX_MESSAGE).to_owned()
        };
        return app_error(error_code(reply.status), message);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return DeliveryResult::Value(Bytes::new());
    }
    let decoded = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| format!("malformed JSON: {e}"))
        .and_then(|json| codec.decode::<kar_proto::v1::InvocationResult>("kar.v1.InvocationResult", &json));
    match decoded {
        Ok(message) => result(message).1,
        Err(e) => app_error(tonic::Code::Internal, format!("the component's reply is not an InvocationResult: {e}")),
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The statuses by which the app says "post this again later".
fn is_retry(status: StatusCode) -> bool {
    matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
}

/// The gRPC code of an application error answered with an HTTP status.
fn error_code(status: StatusCode) -> tonic::Code {
    match status.as_u16() {
        400 | 422 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 | 405 | 501 => tonic::Code::Unimplemented,
        409 => tonic::Code::Aborted,
        412 => tonic::Code::FailedPrecondition,
        429 => tonic::Code::ResourceExhausted,
        400..=499 => tonic::Code::Unknown,
        _ => tonic::Code::Internal,
    }
}

fn app_error(code: tonic::Code, message: String) -> DeliveryResult {
    DeliveryResult::AppError { code: code as i32, message }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::types::{ActorId, DeliveryKind, Target};
    use prost::Message;

    fn codec() -> JsonCodec {
        JsonCodec::new().expect("codec")
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply { status: StatusCode::from_u16(status).expect("status"), body: Ok(Bytes::from(body.to_owned())) }
    }

    #[test]
    fn an_invocation_renders_as_proto3_json() {
        let payload = kar_proto::v1::Payload {
            kind: Some(kar_proto::v1::payload::Kind::Json(prost_types::Value {
                kind: Some(prost_types::value::Kind::ListValue(prost_types::ListValue {
                    values: vec![prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(2.0)) }],
                })),
            })),
        };
        let delivery = Delivery {
            delivery_id: 7,
            kind: DeliveryKind::ActorMethod,
            target: Target::Actor(ActorId::new("Counter", "c1")),
            method: "incr".into(),
            payload: Bytes::from(payload.encode_to_vec()),
            flow: "f1".into(),
            request_id: "r1".into(),
            attempt: 1,
            deadline: None,
        };
        let json = codec().encode("kar.v1.Invocation", &invocation(delivery)).expect("json");
        assert_eq!(json["kind"], "INVOCATION_KIND_ACTOR_METHOD");
        assert_eq!(json["actor"], serde_json::json!({"type": "Counter", "id": "c1"}));
        assert_eq!(json["method"], "incr");
        assert_eq!(json["payload"], serde_json::json!({"json": [2]}));
        assert_eq!(json["context"], serde_json::json!({"flowId": "f1", "requestId": "r1"}));
        assert_eq!(json["attempt"], 1);
        assert_eq!(json["deliveryId"], "7");
    }

    #[test]
    fn replies_become_outcomes() {
        let codec = codec();
        let of = |status: u16, body: &str| outcome(&codec, reply(status, body));
        assert!(matches!(of(204, ""), DeliveryResult::Value(b) if b.is_empty()));
        match of(200, r#"{"value": {"json": 5}}"#) {
            DeliveryResult::Value(bytes) => {
                let payload = kar_proto::v1::Payload::decode(bytes).expect("payload");
                let Some(kar_proto::v1::payload::Kind::Json(v)) = payload.kind else { panic!("json") };
                assert_eq!(v.kind, Some(prost_types::value::Kind::NumberValue(5.0)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            of(200, r#"{"error": {"code": 9, "message": "no"}}"#),
            DeliveryResult::AppError { code: 9, message } if message == "no"
        ));
        match of(200, r#"{"tailCall": {"actor": {"type": "A", "id": "1"}, "method": "m", "payload": {"json": []}}}"#) {
            DeliveryResult::TailCall(t) => {
                assert_eq!(t.target, Target::Actor(ActorId::new("A", "1")));
                assert_eq!(t.method, "m");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            of(404, "no method x"),
            DeliveryResult::AppError { code, message } if code == tonic::Code::Unimplemented as i32 && message == "no method x"
        ));
        assert!(matches!(
            of(200, r#"{"valu": 1}"#),
            DeliveryResult::AppError { code, message } if code == tonic::Code::Internal as i32 && message.contains("valu")
        ));
        assert!(matches!(of(500, ""), DeliveryResult::AppError { code, .. } if code == tonic::Code::Internal as i32));
    }
}
