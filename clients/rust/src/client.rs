//! The client: calls and tells to actors and services, actor removal, mesh
//! introspection, and the per-request metadata (deadline, idempotency key,
//! invocation context) that every RPC carries.
//!
//! Every RPC is built by [`Client::request`], which knows who is calling: a
//! program outside any handler ([`Caller::External`], which may pin an
//! idempotency key with `kar-request-id`) or a handler invocation
//! ([`Caller::Handler`], which propagates its flow id, its request id and a
//! call sequence number so the runtime can admit reentrant calls and give
//! child invocations deterministic ids).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use kar_proto::metadata;
use kar_proto::v1::{
    ActiveActor, ActorRef, CallActorRequest, CallServiceRequest, Component, ListActorsRequest, ListComponentsRequest,
    ListSidecarsRequest, Payload, RemoveActorRequest, Sidecar, TellActorRequest, TellServiceRequest,
    actors_service_client::ActorsServiceClient, call_actor_request, call_actor_response, call_service_request,
    call_service_response, mesh_service_client::MeshServiceClient, payload,
    services_service_client::ServicesServiceClient, tell_actor_request, tell_service_request,
};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::json::{json_payload, payload_to_json};
use crate::state::StateClient;

/// The environment variable naming the runtime's gRPC address; `kar run`
/// sets it for the component it starts.
pub const RUNTIME_ADDR_ENV: &str = "KAR_RUNTIME_ADDR";

/// The runtime address used when [`RUNTIME_ADDR_ENV`] is not set.
pub const DEFAULT_RUNTIME_ADDR: &str = "127.0.0.1:3500";

/// A connection to a KAR runtime.
///
/// Cheap to clone: clones share one HTTP/2 connection. Options set with
/// [`Client::with_timeout`] and [`Client::with_request_id`] apply to the
/// returned clone only.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    /// The deadline sent with each request (`grpc-timeout`); none by default.
    timeout: Option<Duration>,
    /// The idempotency key sent with each call and tell (`kar-request-id`).
    request_id: Option<String>,
}

impl Client {
    /// Connects to the runtime at `addr` (`127.0.0.1:3500` or
    /// `http://127.0.0.1:3500`), failing if it cannot be reached now.
    pub async fn connect(addr: &str) -> Result<Client> {
        let channel = endpoint(addr)?.connect().await?;
        Ok(Client::from_channel(channel))
    }

    /// Creates a client for the runtime at `addr` without connecting: the
    /// connection is made on first use (and remade after failures). Must be
    /// called within a Tokio runtime.
    pub fn connect_lazy(addr: &str) -> Result<Client> {
        Ok(Client::from_channel(endpoint(addr)?.connect_lazy()))
    }

    /// Connects to the runtime named by `KAR_RUNTIME_ADDR`, or to
    /// `127.0.0.1:3500` when it is not set.
    pub async fn from_env() -> Result<Client> {
        let addr = std::env::var(RUNTIME_ADDR_ENV).unwrap_or_else(|_| DEFAULT_RUNTIME_ADDR.to_owned());
        Client::connect(&addr).await
    }

    /// Wraps an existing tonic channel.
    pub fn from_channel(channel: Channel) -> Client {
        Client { channel, timeout: None, request_id: None }
    }

    /// The underlying channel, to use the generated `kar_proto` clients
    /// directly.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// A clone whose requests carry this deadline (`grpc-timeout`): the
    /// runtime does not start a call past its deadline, and the client stops
    /// waiting with `DEADLINE_EXCEEDED`.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client { timeout: Some(timeout), ..self.clone() }
    }

    /// A clone whose calls and tells carry this idempotency key
    /// (`kar-request-id`): repeating a call with the same key after a failure
    /// returns the recorded result instead of running the method again. Use
    /// one key per logical request.
    pub fn with_request_id(&self, request_id: impl Into<String>) -> Client {
        Client { request_id: Some(request_id.into()), ..self.clone() }
    }

    /// A handle on one actor instance.
    pub fn actor(&self, actor_type: &str, id: &str) -> ActorProxy {
        ActorProxy::new(self.clone(), Caller::External, actor_type, id)
    }

    /// The state of one actor instance.
    pub fn state(&self, actor_type: &str, id: &str) -> StateClient {
        StateClient::new(self.clone(), Caller::External, actor_ref(actor_type, id))
    }

    /// Calls `method` on an actor with JSON arguments (by convention an array
    /// of arguments) and returns its JSON result: `null` for a method that
    /// returns nothing.
    pub async fn call_actor(
        &self,
        actor_type: &str,
        id: &str,
        method: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value> {
        self.actor(actor_type, id).call(method, args).await
    }

    /// Calls `method` on an actor with a raw payload (JSON or typed) and
    /// returns the raw result: an empty payload for a method that returns
    /// nothing.
    pub async fn call_actor_payload(&self, actor_type: &str, id: &str, method: &str, args: Payload) -> Result<Payload> {
        self.actor(actor_type, id).call_payload(method, args).await
    }

    /// Enqueues `method` on an actor and returns the request id once the
    /// runtime has durably accepted it.
    pub async fn tell_actor(
        &self,
        actor_type: &str,
        id: &str,
        method: &str,
        args: serde_json::Value,
    ) -> Result<String> {
        self.actor(actor_type, id).tell(method, args).await
    }

    /// [`Client::tell_actor`] with a raw payload.
    pub async fn tell_actor_payload(&self, actor_type: &str, id: &str, method: &str, args: Payload) -> Result<String> {
        self.actor(actor_type, id).tell_payload(method, args).await
    }

    /// Deactivates an actor and deletes its state; returns how many state
    /// entries were deleted.
    pub async fn remove_actor(&self, actor_type: &str, id: &str) -> Result<u32> {
        self.actor(actor_type, id).remove().await
    }

    /// Calls `method` on a service with JSON arguments and returns its JSON
    /// result (`null` for nothing).
    pub async fn call_service(
        &self,
        service: &str,
        method: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value> {
        payload_to_json(self.call_service_from(&Caller::External, service, method, json_payload(args)).await?)
    }

    /// [`Client::call_service`] with a raw payload.
    pub async fn call_service_payload(&self, service: &str, method: &str, args: Payload) -> Result<Payload> {
        self.call_service_from(&Caller::External, service, method, args).await
    }

    /// Enqueues `method` on a service and returns the request id once the
    /// runtime has durably accepted it.
    pub async fn tell_service(&self, service: &str, method: &str, args: serde_json::Value) -> Result<String> {
        self.tell_service_from(&Caller::External, service, method, json_payload(args)).await
    }

    /// [`Client::tell_service`] with a raw payload.
    pub async fn tell_service_payload(&self, service: &str, method: &str, args: Payload) -> Result<String> {
        self.tell_service_from(&Caller::External, service, method, args).await
    }

    /// The components connected to the mesh.
    pub async fn list_components(&self) -> Result<Vec<Component>> {
        let request = self.request(&Caller::External, Rpc::Plain, ListComponentsRequest {})?;
        let mut mesh = MeshServiceClient::new(self.channel.clone());
        let response = with_deadline(request.timeout, mesh.list_components(request.inner)).await?;
        Ok(response.components)
    }

    /// The active actor instances, of one type or (with `None`) of all types.
    pub async fn list_actors(&self, actor_type: Option<&str>) -> Result<Vec<ActiveActor>> {
        let message = ListActorsRequest { r#type: actor_type.unwrap_or_default().to_owned() };
        let request = self.request(&Caller::External, Rpc::Plain, message)?;
        let mut mesh = MeshServiceClient::new(self.channel.clone());
        let response = with_deadline(request.timeout, mesh.list_actors(request.inner)).await?;
        Ok(response.actors)
    }

    /// The runtimes (sidecars) of the application, ordered by runtime id.
    pub async fn list_sidecars(&self) -> Result<Vec<Sidecar>> {
        let request = self.request(&Caller::External, Rpc::Plain, ListSidecarsRequest {})?;
        let mut mesh = MeshServiceClient::new(self.channel.clone());
        let response = with_deadline(request.timeout, mesh.list_sidecars(request.inner)).await?;
        Ok(response.sidecars)
    }

    pub(crate) async fn call_actor_from(
        &self,
        caller: &Caller,
        actor: &ActorRef,
        method: &str,
        args: Payload,
    ) -> Result<Payload> {
        check_actor(actor)?;
        check_non_empty("method", method)?;
        let message = CallActorRequest {
            actor: Some(actor.clone()),
            method: method.to_owned(),
            payload: args.kind.map(|kind| match kind {
                payload::Kind::Json(v) => call_actor_request::Payload::Json(v),
                payload::Kind::Typed(a) => call_actor_request::Payload::Typed(a),
            }),
        };
        let request = self.request(caller, Rpc::Call, message)?;
        let mut actors = ActorsServiceClient::new(self.channel.clone());
        let response = with_deadline(request.timeout, actors.call_actor(request.inner)).await?;
        Ok(Payload {
            kind: response.result.map(|result| match result {
                call_actor_response::Result::Json(v) => payload::Kind::Json(v),
                call_actor_response::Result::Typed(a) => payload::Kind::Typed(a),
            }),
        })
    }

    pub(crate) async fn tell_actor_from(
        &self,
        caller: &Caller,
        actor: &ActorRef,
        method: &str,
        args: Payload,
    ) -> Result<String> {
        check_actor(actor)?;
        check_non_empty("method", method)?;
        let message = TellActorRequest {
            actor: Some(actor.clone()),
            method: method.to_owned(),
            payload: args.kind.map(|kind| match kind {
                payload::Kind::Json(v) => tell_actor_request::Payload::Json(v),
                payload::Kind::Typed(a) => tell_actor_request::Payload::Typed(a),
            }),
        };
        let request = self.request(caller, Rpc::Tell, message)?;
        let mut actors = ActorsServiceClient::new(self.channel.clone());
        let response = with_deadline(request.timeout, actors.tell_actor(request.inner)).await?;
        Ok(response.request_id)
    }

    pub(crate) async fn remove_actor_from(&self, caller: &Caller, actor: &ActorRef) -> Result<u32> {
        check_actor(actor)?;
        let message = RemoveActorRequest { actor: Some(actor.clone()) };
        let request = self.request(caller, Rpc::Scoped, message)?;
        let mut actors = ActorsServiceClient::new(self.channel.clone());
        let response = with_deadline(request.timeout, actors.remove_actor(request.inner)).await?;
        Ok(response.removed_entries)
    }

    pub(crate) async fn call_service_from(
        &self,
        caller: &Caller,
        service: &str,
        method: &str,
        args: Payload,
    ) -> Result<Payload> {
        check_non_empty("service", service)?;
        check_non_empty("method", method)?;
        let message = CallServiceRequest {
            service: service.to_owned(),
            method: method.to_owned(),
            payload: args.kind.map(|kind| match kind {
                payload::Kind::Json(v) => call_service_request::Payload::Json(v),
                payload::Kind::Typed(a) => call_service_request::Payload::Typed(a),
            }),
        };
        let request = self.request(caller, Rpc::Call, message)?;
        let mut services = ServicesServiceClient::new(self.channel.clone());
        let response = with_deadline(request.timeout, services.call_service(request.inner)).await?;
        Ok(Payload {
            kind: response.result.map(|result| match result {
                call_service_response::Result::Json(v) => payload::Kind::Json(v),
                call_service_response::Result::Typed(a) => payload::Kind::Typed(a),
            }),
        })
    }

    pub(crate) async fn tell_service_from(
        &self,
        caller: &Caller,
        service: &str,
        method: &str,
        args: Payload,
    ) -> Result<String> {
        check_non_empty("service", service)?;
        check_non_empty("method", method)?;
        let message = TellServiceRequest {
            service: service.to_owned(),
            method: method.to_owned(),
            payload: args.kind.map(|kind| match kind {
                payload::Kind::Json(v) => tell_service_request::Payload::Json(v),
                payload::Kind::Typed(a) => tell_service_request::Payload::Typed(a),
            }),
        };
        let request = self.request(caller, Rpc::Tell, message)?;
        let mut services = ServicesServiceClient::new(self.channel.clone());
        let response = with_deadline(request.timeout, services.tell_service(request.inner)).await?;
        Ok(response.request_id)
    }

    /// Builds the request for one RPC: its deadline and its metadata.
    ///
    /// The deadline is the client's timeout, shortened for calls made by a
    /// handler to what is left of that handler's own deadline (a nested call
    /// cannot usefully outlive its caller). Tells do not inherit the handler's
    /// deadline: they start a new flow.
    pub(crate) fn request<T>(&self, caller: &Caller, rpc: Rpc, message: T) -> Result<OutgoingRequest<T>> {
        let mut request = tonic::Request::new(message);
        let mut timeout = self.timeout;
        match caller {
            Caller::External => {
                if let (Some(id), Rpc::Call | Rpc::Tell) = (&self.request_id, rpc) {
                    insert(&mut request, metadata::REQUEST_ID, id)?;
                }
            }
            Caller::Handler(scope) => {
                if rpc != Rpc::Plain {
                    insert(&mut request, metadata::FLOW_ID, &scope.flow_id)?;
                    insert(&mut request, metadata::CALLER_ID, &scope.request_id)?;
                }
                if matches!(rpc, Rpc::Call | Rpc::Tell) {
                    insert(&mut request, metadata::CALL_SEQ, &scope.next_call_seq().to_string())?;
                }
                if let (Some(deadline), Rpc::Call | Rpc::Scoped) = (scope.deadline, rpc) {
                    let left = deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
                    if left.is_zero() {
                        return Err(
                            tonic::Status::deadline_exceeded("the calling invocation's deadline has passed").into()
                        );
                    }
                    timeout = Some(timeout.map_or(left, |t| t.min(left)));
                }
            }
        }
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        Ok(OutgoingRequest { inner: request, timeout })
    }
}

/// A request ready to send, and the deadline the client enforces on it.
pub(crate) struct OutgoingRequest<T> {
    pub(crate) inner: tonic::Request<T>,
    pub(crate) timeout: Option<Duration>,
}

/// What kind of RPC a request is, which decides the metadata it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rpc {
    /// A synchronous call: idempotency key or full invocation context, deadline.
    Call,
    /// A tell: idempotency key or full invocation context, no inherited deadline.
    Tell,
    /// An operation on an actor that is not an invocation (state, removal):
    /// flow and caller ids so the runtime can admit it within the caller's
    /// turn, inherited deadline, but no call sequence number.
    Scoped,
    /// Introspection: no invocation context.
    Plain,
}

/// Who is making a request.
#[derive(Clone, Debug, Default)]
pub(crate) enum Caller {
    /// A program outside any handler.
    #[default]
    External,
    /// A handler invocation; calls made through it propagate its context.
    Handler(Arc<HandlerScope>),
}

/// The invocation context of one handler invocation, shared by everything
/// that calls on its behalf.
#[derive(Debug)]
pub(crate) struct HandlerScope {
    pub(crate) flow_id: String,
    pub(crate) request_id: String,
    pub(crate) deadline: Option<SystemTime>,
    /// The sequence number of the last call or tell made; the first gets 1.
    /// Deterministic across retries as long as the handler makes its calls
    /// in the same order.
    call_seq: AtomicU32,
}

impl HandlerScope {
    pub(crate) fn new(flow_id: String, request_id: String, deadline: Option<SystemTime>) -> HandlerScope {
        HandlerScope { flow_id, request_id, deadline, call_seq: AtomicU32::new(0) }
    }

    fn next_call_seq(&self) -> u32 {
        self.call_seq.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// A handle on one actor instance, from [`Client::actor`] or
/// [`Context::actor`](crate::Context::actor) (which propagates the handler's
/// invocation context).
#[derive(Clone, Debug)]
pub struct ActorProxy {
    client: Client,
    caller: Caller,
    actor: ActorRef,
}

impl ActorProxy {
    pub(crate) fn new(client: Client, caller: Caller, actor_type: &str, id: &str) -> ActorProxy {
        ActorProxy { client, caller, actor: actor_ref(actor_type, id) }
    }

    /// The actor type.
    pub fn actor_type(&self) -> &str {
        &self.actor.r#type
    }

    /// The actor id.
    pub fn id(&self) -> &str {
        &self.actor.id
    }

    /// Calls `method` with JSON arguments and returns its JSON result.
    pub async fn call(&self, method: &str, args: serde_json::Value) -> Result<serde_json::Value> {
        payload_to_json(self.call_payload(method, json_payload(args)).await?)
    }

    /// Calls `method` with a raw payload and returns the raw result.
    pub async fn call_payload(&self, method: &str, args: Payload) -> Result<Payload> {
        self.client.call_actor_from(&self.caller, &self.actor, method, args).await
    }

    /// Enqueues `method` with JSON arguments; returns the request id.
    pub async fn tell(&self, method: &str, args: serde_json::Value) -> Result<String> {
        self.tell_payload(method, json_payload(args)).await
    }

    /// Enqueues `method` with a raw payload; returns the request id.
    pub async fn tell_payload(&self, method: &str, args: Payload) -> Result<String> {
        self.client.tell_actor_from(&self.caller, &self.actor, method, args).await
    }

    /// Deactivates the actor and deletes its state; returns how many state
    /// entries were deleted.
    pub async fn remove(&self) -> Result<u32> {
        self.client.remove_actor_from(&self.caller, &self.actor).await
    }

    /// The actor's state.
    pub fn state(&self) -> StateClient {
        StateClient::new(self.client.clone(), self.caller.clone(), self.actor.clone())
    }
}

pub(crate) fn actor_ref(actor_type: &str, id: &str) -> ActorRef {
    ActorRef { r#type: actor_type.to_owned(), id: id.to_owned() }
}

pub(crate) fn check_actor(actor: &ActorRef) -> Result<()> {
    check_non_empty("actor.type", &actor.r#type)?;
    check_non_empty("actor.id", &actor.id)
}

pub(crate) fn check_non_empty(field: &str, value: &str) -> Result<()> {
    if value.is_empty() { Err(Error::InvalidArgument(format!("{field} must not be empty"))) } else { Ok(()) }
}

/// Waits for a response, giving up with `DEADLINE_EXCEEDED` once the deadline
/// has passed even if the runtime has not answered.
pub(crate) async fn with_deadline<T>(
    timeout: Option<Duration>,
    call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let response = match timeout {
        Some(timeout) => match tokio::time::timeout(timeout, call).await {
            Ok(response) => response,
            Err(_) => {
                return Err(tonic::Status::deadline_exceeded("deadline exceeded waiting for the runtime").into());
            }
        },
        None => call.await,
    };
    match response {
        Ok(response) => Ok(response.into_inner()),
        // tonic's channel enforces `grpc-timeout` itself and reports it as
        // CANCELLED; to the caller it is the deadline passing.
        Err(status) if status.code() == tonic::Code::Cancelled && status.message() == "Timeout expired" => {
            Err(tonic::Status::deadline_exceeded("deadline exceeded waiting for the runtime").into())
        }
        Err(status) => Err(status.into()),
    }
}

fn insert<T>(request: &mut tonic::Request<T>, key: &'static str, value: &str) -> Result<()> {
    let value = MetadataValue::try_from(value)
        .map_err(|_| Error::InvalidArgument(format!("{key} {value:?} is not a valid gRPC metadata value")))?;
    request.metadata_mut().insert(key, value);
    Ok(())
}

fn endpoint(addr: &str) -> Result<Endpoint> {
    let uri = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    Endpoint::from_shared(uri).map_err(|err| Error::InvalidArgument(format!("invalid runtime address {addr:?}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler_caller(deadline: Option<SystemTime>) -> Caller {
        Caller::Handler(Arc::new(HandlerScope::new("flow-1".into(), "req-7".into(), deadline)))
    }

    fn get<'a, T>(request: &'a tonic::Request<T>, key: &str) -> Option<&'a str> {
        request.metadata().get(key).and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn addresses_with_and_without_scheme_are_accepted() {
        assert!(Client::connect_lazy("127.0.0.1:3500").is_ok());
        assert!(Client::connect_lazy("http://127.0.0.1:3500").is_ok());
        assert!(matches!(Client::connect_lazy("not a uri"), Err(Error::InvalidArgument(_))));
    }

    #[tokio::test]
    async fn calls_from_a_handler_carry_flow_caller_and_increasing_seq() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap();
        let caller = handler_caller(None);
        let first = client.request(&caller, Rpc::Call, ()).unwrap().inner;
        let second = client.request(&caller, Rpc::Tell, ()).unwrap().inner;
        let state = client.request(&caller, Rpc::Scoped, ()).unwrap().inner;
        let third = client.request(&caller, Rpc::Call, ()).unwrap().inner;
        assert_eq!(get(&first, metadata::FLOW_ID), Some("flow-1"));
        assert_eq!(get(&first, metadata::CALLER_ID), Some("req-7"));
        assert_eq!(get(&first, metadata::CALL_SEQ), Some("1"));
        assert_eq!(get(&second, metadata::CALL_SEQ), Some("2"));
        assert_eq!(get(&state, metadata::FLOW_ID), Some("flow-1"));
        assert_eq!(get(&state, metadata::CALL_SEQ), None, "state operations take no sequence number");
        assert_eq!(get(&third, metadata::CALL_SEQ), Some("3"));
        assert_eq!(get(&first, metadata::REQUEST_ID), None);
    }

    #[tokio::test]
    async fn external_calls_carry_the_idempotency_key_and_timeout() {
        let client = Client::connect_lazy("127.0.0.1:1")
            .unwrap()
            .with_request_id("order-42")
            .with_timeout(Duration::from_secs(3));
        let call = client.request(&Caller::External, Rpc::Call, ()).unwrap();
        assert_eq!(get(&call.inner, metadata::REQUEST_ID), Some("order-42"));
        assert_eq!(get(&call.inner, metadata::FLOW_ID), None);
        assert_eq!(call.timeout, Some(Duration::from_secs(3)));
        assert!(call.inner.metadata().get("grpc-timeout").is_some());
        let mesh = client.request(&Caller::External, Rpc::Plain, ()).unwrap();
        assert_eq!(get(&mesh.inner, metadata::REQUEST_ID), None);
    }

    #[tokio::test]
    async fn nested_calls_inherit_the_handler_deadline_but_tells_do_not() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap();
        let caller = handler_caller(Some(SystemTime::now() + Duration::from_secs(10)));
        let call = client.request(&caller, Rpc::Call, ()).unwrap();
        assert!(call.timeout.is_some_and(|t| t <= Duration::from_secs(10) && t > Duration::from_secs(5)));
        let tell = client.request(&caller, Rpc::Tell, ()).unwrap();
        assert_eq!(tell.timeout, None);
    }

    #[tokio::test]
    async fn a_call_past_the_handler_deadline_is_not_sent() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap();
        let caller = handler_caller(Some(SystemTime::now() - Duration::from_secs(1)));
        let err = client.request(&caller, Rpc::Call, ()).err().unwrap();
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn invalid_metadata_is_an_invalid_argument() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap().with_request_id("bad\nid");
        assert!(matches!(client.request(&Caller::External, Rpc::Call, ()), Err(Error::InvalidArgument(_))));
    }

    #[tokio::test]
    async fn empty_names_are_rejected_before_sending() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap();
        let err = client.call_actor("", "a", "m", serde_json::Value::Null).await.unwrap_err();
        assert_eq!(err.message(), "actor.type must not be empty");
        let err = client.call_service("teller", "", serde_json::Value::Null).await.unwrap_err();
        assert_eq!(err.message(), "method must not be empty");
    }
}
