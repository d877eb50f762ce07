//! The [`Context`] of one handler invocation: what is being invoked, and a
//! client whose calls carry the invocation context.

use std::sync::Arc;
use std::time::SystemTime;

use kar_proto::v1::Payload;

use super::AppError;
use crate::client::{ActorProxy, Caller, Client, HandlerScope, actor_ref};
use crate::error::Result;
use crate::json::{json_payload, payload_to_json};
use crate::state::StateClient;

/// What an invocation targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Actor { actor_type: String, id: String },
    Service(String),
}

/// The context of one handler invocation. Cheap to clone; clones share the
/// call sequence.
///
/// Calls and tells made through the context (and through the
/// [`ActorProxy`] and [`StateClient`] it hands out) carry the invocation
/// context in gRPC metadata: `kar-flow-id` (the flow), `kar-caller-id` (this
/// invocation's request id) and, for calls and tells, `kar-call-seq` (1 for
/// the first call or tell this invocation makes, 2 for the next, ...). The
/// runtime uses them to admit reentrant calls and to give child invocations
/// ids that are the same on every attempt, so a retried handler finds the
/// results of the calls its earlier attempt made. That holds as long as the
/// handler makes its calls in the same order on every attempt: do not race
/// calls from concurrent tasks if you rely on it.
#[derive(Clone, Debug)]
pub struct Context {
    inner: Arc<ContextInner>,
}

#[derive(Debug)]
struct ContextInner {
    target: Target,
    method: String,
    attempt: u32,
    /// The plain client, for calls that must not propagate the context.
    client: Client,
    /// The propagated context and the call sequence counter.
    caller: Caller,
    scope: Arc<HandlerScope>,
}

impl Context {
    pub(crate) fn new(
        client: Client,
        target: Target,
        method: String,
        attempt: u32,
        flow_id: String,
        request_id: String,
        deadline: Option<SystemTime>,
    ) -> Context {
        let scope = Arc::new(HandlerScope::new(flow_id, request_id, deadline));
        Context {
            inner: Arc::new(ContextInner {
                target,
                method,
                attempt,
                client,
                caller: Caller::Handler(Arc::clone(&scope)),
                scope,
            }),
        }
    }

    /// The actor type, for an actor invocation.
    pub fn actor_type(&self) -> Option<&str> {
        match &self.inner.target {
            Target::Actor { actor_type, .. } => Some(actor_type),
            Target::Service(_) => None,
        }
    }

    /// The actor id, for an actor invocation.
    pub fn actor_id(&self) -> Option<&str> {
        match &self.inner.target {
            Target::Actor { id, .. } => Some(id),
            Target::Service(_) => None,
        }
    }

    /// The service name, for a service invocation.
    pub fn service(&self) -> Option<&str> {
        match &self.inner.target {
            Target::Service(name) => Some(name),
            Target::Actor { .. } => None,
        }
    }

    /// The method invoked (empty for activations and deactivations).
    pub fn method(&self) -> &str {
        &self.inner.method
    }

    /// 1 for the first attempt of this invocation, 2 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// When the caller stops waiting, if it set a deadline.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.inner.scope.deadline
    }

    /// The flow this invocation belongs to.
    pub fn flow_id(&self) -> &str {
        &self.inner.scope.flow_id
    }

    /// The id of this invocation, stable across its retries.
    pub fn request_id(&self) -> &str {
        &self.inner.scope.request_id
    }

    /// The plain client. Calls made through it do **not** carry the
    /// invocation context: a call back into this actor from it would wait for
    /// this flow to end. Prefer the methods of the context.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// A handle on an actor whose calls carry the invocation context.
    pub fn actor(&self, actor_type: &str, id: &str) -> ActorProxy {
        ActorProxy::new(self.inner.client.clone(), self.inner.caller.clone(), actor_type, id)
    }

    /// The state of the invoked actor. For a service invocation every
    /// operation fails with `INVALID_ARGUMENT`, as there is no actor.
    pub fn state(&self) -> StateClient {
        let actor = match &self.inner.target {
            Target::Actor { actor_type, id } => actor_ref(actor_type, id),
            Target::Service(_) => actor_ref("", ""),
        };
        StateClient::new(self.inner.client.clone(), self.inner.caller.clone(), actor)
    }

    /// Calls an actor method, propagating the invocation context.
    pub async fn call_actor(
        &self,
        actor_type: &str,
        id: &str,
        method: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value> {
        self.actor(actor_type, id).call(method, args).await
    }

    /// [`Context::call_actor`] with a raw payload.
    pub async fn call_actor_payload(&self, actor_type: &str, id: &str, method: &str, args: Payload) -> Result<Payload> {
        self.actor(actor_type, id).call_payload(method, args).await
    }

    /// Tells an actor method, propagating the invocation context; returns
    /// the request id.
    pub async fn tell_actor(
        &self,
        actor_type: &str,
        id: &str,
        method: &str,
        args: serde_json::Value,
    ) -> Result<String> {
        self.actor(actor_type, id).tell(method, args).await
    }

    /// [`Context::tell_actor`] with a raw payload.
    pub async fn tell_actor_payload(&self, actor_type: &str, id: &str, method: &str, args: Payload) -> Result<String> {
        self.actor(actor_type, id).tell_payload(method, args).await
    }

    /// Calls a service method, propagating the invocation context.
    pub async fn call_service(
        &self,
        service: &str,
        method: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value> {
        payload_to_json(self.call_service_payload(service, method, json_payload(args)).await?)
    }

    /// [`Context::call_service`] with a raw payload.
    pub async fn call_service_payload(&self, service: &str, method: &str, args: Payload) -> Result<Payload> {
        self.inner.client.call_service_from(&self.inner.caller, service, method, args).await
    }

    /// Tells a service method, propagating the invocation context; returns
    /// the request id.
    pub async fn tell_service(&self, service: &str, method: &str, args: serde_json::Value) -> Result<String> {
        self.tell_service_payload(service, method, json_payload(args)).await
    }

    /// [`Context::tell_service`] with a raw payload.
    pub async fn tell_service_payload(&self, service: &str, method: &str, args: Payload) -> Result<String> {
        self.inner.client.tell_service_from(&self.inner.caller, service, method, args).await
    }

    /// The `UNIMPLEMENTED` error for the invoked method: "no method M on
    /// actor type T" or "no method M on service S".
    pub fn no_such_method(&self) -> AppError {
        let target = match &self.inner.target {
            Target::Actor { actor_type, .. } => format!("actor type {actor_type}"),
            Target::Service(name) => format!("service {name}"),
        };
        AppError::no_such_method(&target, &self.inner.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Rpc;
    use kar_proto::metadata;

    fn seq_of(ctx: &Context) -> String {
        let request = ctx.inner.client.request(&ctx.inner.caller, Rpc::Call, ()).unwrap().inner;
        request.metadata().get(metadata::CALL_SEQ).unwrap().to_str().unwrap().to_owned()
    }

    fn context(client: Client) -> Context {
        let target = Target::Actor { actor_type: "Account".into(), id: "alice".into() };
        Context::new(client, target, "deposit".into(), 2, "f".into(), "r".into(), None)
    }

    #[tokio::test]
    async fn each_invocation_numbers_its_calls_from_one() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap();
        let ctx = context(client.clone());
        let clone = ctx.clone();
        assert_eq!(seq_of(&ctx), "1");
        assert_eq!(seq_of(&clone), "2", "clones share the sequence");
        assert_eq!(seq_of(&ctx), "3");
        assert_eq!(seq_of(&context(client)), "1", "a new invocation starts again");
    }

    #[tokio::test]
    async fn the_context_describes_the_invocation() {
        let ctx = context(Client::connect_lazy("127.0.0.1:1").unwrap());
        assert_eq!(ctx.actor_type(), Some("Account"));
        assert_eq!(ctx.actor_id(), Some("alice"));
        assert_eq!(ctx.service(), None);
        assert_eq!(ctx.attempt(), 2);
        assert_eq!(ctx.no_such_method().message, "no method deposit on actor type Account");
        assert_eq!(ctx.state().actor_id(), "alice");
    }

    #[tokio::test]
    async fn state_in_a_service_invocation_is_refused() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap();
        let ctx = Context::new(client, Target::Service("teller".into()), "x".into(), 1, "f".into(), "r".into(), None);
        assert_eq!(ctx.state().get("k").await.unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(ctx.no_such_method().message, "no method x on service teller");
    }
}
