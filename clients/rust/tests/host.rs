//! The host against a fake runtime: an in-process gRPC server that plays the
//! runtime's side of `AppService/Attach` and records the metadata of the
//! calls handlers make through `ActorsService`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kar_client::host::{ActorHost, AppError, Context, Reply};
use kar_client::json::{json_payload, json_to_value, payload_to_json};
use kar_client::kar_proto::metadata;
use kar_client::kar_proto::v1::{
    ActorRef, AttachRequest, AttachResponse, CallActorRequest, CallActorResponse, Heartbeat, Invocation,
    InvocationContext, InvocationKind, InvocationResult, Register, Registered, RemoveActorRequest, RemoveActorResponse,
    TellActorRequest, TellActorResponse, actors_service_server, app_service_server, attach_request, attach_response,
    call_actor_response, invocation_result,
};
use kar_client::{Actor, Client, async_trait};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// One attached component, as the fake runtime sees it.
struct Session {
    register: Register,
    incoming: Streaming<AttachRequest>,
    outgoing: mpsc::Sender<Result<AttachResponse, Status>>,
}

impl Session {
    async fn invoke(&mut self, invocation: Invocation) -> InvocationResult {
        let delivery_id = invocation.delivery_id;
        let message = AttachResponse { message: Some(attach_response::Message::Invocation(invocation)) };
        self.outgoing.send(Ok(message)).await.expect("host is listening");
        match self.incoming.message().await.expect("stream is open") {
            Some(AttachRequest { message: Some(attach_request::Message::Result(result)) }) => {
                assert_eq!(result.delivery_id, delivery_id);
                result
            }
            other => panic!("expected a result, got {other:?}"),
        }
    }
}

struct FakeApp {
    sessions: mpsc::Sender<Session>,
    lease: Option<Duration>,
}

#[async_trait]
impl app_service_server::AppService for FakeApp {
    type AttachStream = ReceiverStream<Result<AttachResponse, Status>>;

    async fn attach(&self, request: Request<Streaming<AttachRequest>>) -> Result<Response<Self::AttachStream>, Status> {
        let mut incoming = request.into_inner();
        let register = match incoming.message().await? {
            Some(AttachRequest { message: Some(attach_request::Message::Register(register)) }) => register,
            _ => return Err(Status::invalid_argument("Register must come first")),
        };
        let (outgoing, rx) = mpsc::channel(16);
        let registered = Registered {
            component_id: "c-1".into(),
            runtime_id: "rt-1".into(),
            lease: self.lease.map(|lease| lease.try_into().unwrap()),
        };
        let _ =
            outgoing.send(Ok(AttachResponse { message: Some(attach_response::Message::Registered(registered)) })).await;
        let _ = self.sessions.send(Session { register, incoming, outgoing }).await;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// (flow id, caller id, call seq, method) of each call or tell received.
type Recorded = Arc<Mutex<Vec<(String, String, String, String)>>>;

struct FakeActors {
    recorded: Recorded,
}

impl FakeActors {
    fn record<T>(&self, request: &Request<T>, method: &str) {
        let get = |key: &str| request.metadata().get(key).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        self.recorded.lock().unwrap().push((
            get(metadata::FLOW_ID),
            get(metadata::CALLER_ID),
            get(metadata::CALL_SEQ),
            method.to_owned(),
        ));
    }
}

#[async_trait]
impl actors_service_server::ActorsService for FakeActors {
    async fn call_actor(&self, request: Request<CallActorRequest>) -> Result<Response<CallActorResponse>, Status> {
        self.record(&request, &request.get_ref().method);
        let result = call_actor_response::Result::Json(json_to_value(json!("called")));
        Ok(Response::new(CallActorResponse { result: Some(result), request_id: "child".into() }))
    }

    async fn tell_actor(&self, request: Request<TellActorRequest>) -> Result<Response<TellActorResponse>, Status> {
        self.record(&request, &request.get_ref().method);
        Ok(Response::new(TellActorResponse { request_id: "told".into() }))
    }

    async fn remove_actor(&self, _: Request<RemoveActorRequest>) -> Result<Response<RemoveActorResponse>, Status> {
        Ok(Response::new(RemoveActorResponse { removed_entries: 0 }))
    }
}

async fn fake_runtime(lease: Option<Duration>) -> (String, mpsc::Receiver<Session>, Recorded) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (sessions, sessions_rx) = mpsc::channel(4);
    let recorded = Recorded::default();
    let server = tonic::transport::Server::builder()
        .add_service(app_service_server::AppServiceServer::new(FakeApp { sessions, lease }))
        .add_service(actors_service_server::ActorsServiceServer::new(FakeActors { recorded: recorded.clone() }))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    (addr, sessions_rx, recorded)
}

#[derive(Default)]
struct Counts {
    activations: AtomicU32,
    deactivations: AtomicU32,
}

struct Counter {
    counts: Arc<Counts>,
}

#[async_trait]
impl Actor for Counter {
    async fn activate(&self, _ctx: &Context) -> Result<(), AppError> {
        self.counts.activations.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn invoke(&self, ctx: &Context, method: &str, args: Value) -> Result<Reply, AppError> {
        match method {
            "whoami" => Ok(json!({"id": ctx.actor_id(), "attempt": ctx.attempt(), "args": args}).into()),
            _ => Err(ctx.no_such_method()),
        }
    }

    async fn deactivate(&self, _ctx: &Context) {
        self.counts.deactivations.fetch_add(1, Ordering::SeqCst);
    }
}

fn invocation(delivery_id: u64, kind: InvocationKind, actor: Option<(&str, &str)>, method: &str) -> Invocation {
    Invocation {
        delivery_id,
        kind: kind as i32,
        actor: actor.map(|(t, id)| ActorRef { r#type: t.into(), id: id.into() }),
        method: method.into(),
        payload: Some(json_payload(json!([1]))),
        context: Some(InvocationContext { flow_id: "flow-1".into(), request_id: format!("req-{delivery_id}") }),
        attempt: 1,
        ..Invocation::default()
    }
}

fn value(result: InvocationResult) -> Value {
    match result.outcome {
        Some(invocation_result::Outcome::Value(payload)) => payload_to_json(payload).unwrap(),
        other => panic!("expected a value, got {other:?}"),
    }
}

fn error(result: InvocationResult) -> kar_client::kar_proto::v1::AppError {
    match result.outcome {
        Some(invocation_result::Outcome::Error(err)) => err,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_host_registers_runs_invocations_and_propagates_the_invocation_context() {
    let (addr, mut sessions, recorded) = fake_runtime(None).await;
    let client = Client::connect(&addr).await.unwrap();
    let counts = Arc::new(Counts::default());
    let factory_counts = counts.clone();
    let host = ActorHost::new(client)
        .name("test-app")
        .max_concurrency(8)
        .actor("Counter", move |_id| Counter { counts: factory_counts.clone() })
        .actor_fn("Crash", |_ctx, _method, _args| async move {
            if true {
                panic!("boom");
            }
            Ok(Reply::none())
        })
        .service_fn("relay", |ctx, _method, _args| async move {
            let called = ctx.call_actor("Counter", "x", "first", json!([])).await?;
            let told = ctx.tell_actor("Counter", "x", "second", json!([])).await?;
            Ok(json!([called, told]).into())
        })
        .start()
        .await
        .unwrap();
    assert_eq!(host.component_id(), "c-1");
    assert_eq!(host.runtime_id(), "rt-1");

    let mut session = sessions.recv().await.unwrap();
    assert_eq!(session.register.name, "test-app");
    assert_eq!(session.register.actor_types, vec!["Counter".to_owned(), "Crash".to_owned()]);
    assert_eq!(session.register.service, "relay");
    assert_eq!(session.register.max_concurrency, 8);

    // A method on an instance that was never activated here activates it first.
    let result = session.invoke(invocation(1, InvocationKind::ActorMethod, Some(("Counter", "a")), "whoami")).await;
    assert_eq!(value(result), json!({"id": "a", "attempt": 1, "args": [1]}));
    assert_eq!(counts.activations.load(Ordering::SeqCst), 1);

    // An explicit activation of an active instance does not activate it twice.
    let result = session.invoke(invocation(2, InvocationKind::Activate, Some(("Counter", "a")), "")).await;
    assert_eq!(value(result), Value::Null);
    assert_eq!(counts.activations.load(Ordering::SeqCst), 1);

    let err = error(session.invoke(invocation(3, InvocationKind::ActorMethod, Some(("Counter", "a")), "fly")).await);
    assert_eq!(err.code, tonic::Code::Unimplemented as i32);
    assert_eq!(err.message, "no method fly on actor type Counter");

    // A panicking handler is an INTERNAL application error; the host lives on.
    let err = error(session.invoke(invocation(4, InvocationKind::ActorMethod, Some(("Crash", "c")), "go")).await);
    assert_eq!(err.code, tonic::Code::Internal as i32);
    assert!(err.message.contains("boom"), "{}", err.message);

    // Calls and tells from a handler carry flow, caller and a 1-based sequence.
    let mut relay = invocation(5, InvocationKind::ServiceMethod, None, "go");
    relay.service = "relay".into();
    assert_eq!(value(session.invoke(relay).await), json!(["called", "told"]));
    assert_eq!(
        *recorded.lock().unwrap(),
        vec![
            ("flow-1".to_owned(), "req-5".to_owned(), "1".to_owned(), "first".to_owned()),
            ("flow-1".to_owned(), "req-5".to_owned(), "2".to_owned(), "second".to_owned()),
        ]
    );

    let err = error(session.invoke(invocation(6, InvocationKind::ActorMethod, Some(("Ghost", "g")), "x")).await);
    assert_eq!(err.code, tonic::Code::NotFound as i32);

    // Deactivation drops the instance; the next method makes a new one.
    let result = session.invoke(invocation(7, InvocationKind::Deactivate, Some(("Counter", "a")), "")).await;
    assert_eq!(value(result), Value::Null);
    assert_eq!(counts.deactivations.load(Ordering::SeqCst), 1);
    session.invoke(invocation(8, InvocationKind::ActorMethod, Some(("Counter", "a")), "whoami")).await;
    assert_eq!(counts.activations.load(Ordering::SeqCst), 2);

    // Shutdown ends the component's half of the stream.
    let shutdown = tokio::spawn(host.shutdown());
    assert!(session.incoming.message().await.unwrap().is_none());
    drop(session);
    shutdown.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_host_with_nothing_to_host_is_refused() {
    let client = Client::connect_lazy("127.0.0.1:1").unwrap();
    let err = ActorHost::new(client).start().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

/// Tells its channel when it is dropped.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[tokio::test]
async fn a_host_whose_runtime_falls_silent_for_a_lease_abandons_its_invocations_and_attaches_again() {
    let lease = Duration::from_millis(400);
    let (addr, mut sessions, _) = fake_runtime(Some(lease)).await;
    let client = Client::connect(&addr).await.unwrap();
    let (dropped_tx, mut dropped) = oneshot::channel();
    let signal = Arc::new(Mutex::new(Some(dropped_tx)));
    let host = ActorHost::new(client).actor_fn("Slow", move |_ctx, _method, _args| {
        let guard = DropSignal(signal.lock().unwrap().take());
        async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Reply::none())
        }
    });
    let running = tokio::spawn(host.run(std::future::pending()));

    let session = sessions.recv().await.unwrap();
    let slow = invocation(1, InvocationKind::ActorMethod, Some(("Slow", "s")), "wait");
    session
        .outgoing
        .send(Ok(AttachResponse { message: Some(attach_response::Message::Invocation(slow)) }))
        .await
        .unwrap();
    // Heartbeats keep the invocation running well past one lease.
    let mut last_heard = Instant::now();
    for _ in 0..8 {
        tokio::time::sleep(lease / 4).await;
        let beat = AttachResponse { message: Some(attach_response::Message::Heartbeat(Heartbeat {})) };
        session.outgoing.send(Ok(beat)).await.unwrap();
        last_heard = Instant::now();
    }
    assert!(dropped.try_recv().is_err(), "the invocation was abandoned while its runtime was heard from");

    // Silence for a lease: the host abandons the invocation and attaches again.
    tokio::time::timeout(Duration::from_secs(10), &mut dropped).await.expect("abandoned in time").unwrap();
    assert!(last_heard.elapsed() >= lease, "abandoned {:?} after the last heartbeat", last_heard.elapsed());
    let again = tokio::time::timeout(Duration::from_secs(10), sessions.recv()).await.expect("attached again in time");
    assert!(again.is_some());
    running.abort();
}
