//! What application code implements: the [`Actor`] and [`Service`] traits,
//! the [`Reply`] a handler returns and the [`AppError`] it raises, and
//! [`handler_fn`] for handlers written as closures.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use kar_proto::v1::Payload;
use tonic::Code;

use super::Context;
use crate::error::{Error, code_name};
use crate::json::{json_payload, payload_to_json};

/// An actor type's behaviour: one value per active instance, made by the
/// factory given to [`ActorHost::actor`](super::ActorHost::actor).
///
/// Methods take `&self`: the runtime admits a call that re-enters an instance
/// waiting on a nested call in the same flow (A calls B calls A), so an
/// instance must never be locked across an `await`. Keep durable data in
/// actor state ([`Context::state`]); keep in memory only what can be rebuilt
/// in [`Actor::activate`].
#[async_trait]
pub trait Actor: Send + Sync + 'static {
    /// Prepares the instance before its first method runs here. An error
    /// fails the invocation that needed the activation; the next one tries
    /// again.
    async fn activate(&self, _ctx: &Context) -> Result<(), AppError> {
        Ok(())
    }

    /// Runs `method` with JSON arguments (by convention an array). Answer an
    /// unknown method with [`Context::no_such_method`].
    async fn invoke(&self, ctx: &Context, method: &str, args: serde_json::Value) -> Result<Reply, AppError>;

    /// Runs `method` with raw arguments. The default reads them as JSON and
    /// calls [`Actor::invoke`]; override it to accept typed protobuf messages.
    async fn invoke_payload(&self, ctx: &Context, method: &str, args: Payload) -> Result<Reply, AppError> {
        self.invoke(ctx, method, json_args(args)?).await
    }

    /// Releases the instance (idle, moved or removed). Errors cannot stop a
    /// deactivation, so there is nothing to return.
    async fn deactivate(&self, _ctx: &Context) {}
}

/// A service's behaviour: one value serves every invocation, concurrently.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// Runs `method` with JSON arguments. Answer an unknown method with
    /// [`Context::no_such_method`].
    async fn invoke(&self, ctx: &Context, method: &str, args: serde_json::Value) -> Result<Reply, AppError>;

    /// Runs `method` with raw arguments. The default reads them as JSON and
    /// calls [`Service::invoke`].
    async fn invoke_payload(&self, ctx: &Context, method: &str, args: Payload) -> Result<Reply, AppError> {
        self.invoke(ctx, method, json_args(args)?).await
    }
}

fn json_args(args: Payload) -> Result<serde_json::Value, AppError> {
    payload_to_json(args).map_err(|err| AppError::invalid_argument(err.to_string()))
}

/// What a handler returns.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// A JSON result.
    Value(serde_json::Value),
    /// A raw result: JSON or a typed protobuf message; an empty payload for
    /// nothing.
    Payload(Payload),
    /// A tail call: the invocation continues with another method (of this
    /// actor, another actor, or a service). The hand-off is atomic with the
    /// end of this step, and the original caller receives the result of the
    /// last step of the chain.
    TailCall(TailCall),
}

/// The next step of an invocation chain; see [`Reply::tail_call`].
#[derive(Clone, Debug, PartialEq)]
pub struct TailCall {
    target: kar_proto::v1::tail_call::Target,
    method: String,
    payload: Payload,
    release_turn: bool,
}

impl Reply {
    /// The reply of a method that returns nothing (the caller sees `null`).
    pub fn none() -> Reply {
        Reply::Payload(Payload::default())
    }

    /// A JSON reply serialized from any `Serialize` value.
    pub fn json<T: serde::Serialize>(value: &T) -> Result<Reply, AppError> {
        serde_json::to_value(value)
            .map(Reply::Value)
            .map_err(|err| AppError::internal(format!("cannot serialize the result: {err}")))
    }

    /// Ends the step by handing off to `method` of actor `actor_type`/`id`
    /// with JSON arguments. For the same actor, the actor's turn is kept for
    /// the next step unless [`Reply::releasing_turn`] is applied.
    pub fn tail_call(actor_type: &str, id: &str, method: &str, args: serde_json::Value) -> Reply {
        Reply::TailCall(TailCall {
            target: kar_proto::v1::tail_call::Target::Actor(kar_proto::v1::ActorRef {
                r#type: actor_type.to_owned(),
                id: id.to_owned(),
            }),
            method: method.to_owned(),
            payload: json_payload(args),
            release_turn: false,
        })
    }

    /// Ends the step by handing off to `method` of `service`.
    pub fn tail_call_service(service: &str, method: &str, args: serde_json::Value) -> Reply {
        Reply::TailCall(TailCall {
            target: kar_proto::v1::tail_call::Target::Service(service.to_owned()),
            method: method.to_owned(),
            payload: json_payload(args),
            release_turn: false,
        })
    }

    /// For a tail call to the same actor: lets other flows take the actor's
    /// turn before the next step runs. Other replies are returned unchanged.
    pub fn releasing_turn(self) -> Reply {
        match self {
            Reply::TailCall(t) => Reply::TailCall(TailCall { release_turn: true, ..t }),
            other => other,
        }
    }

    pub(crate) fn into_outcome(self) -> kar_proto::v1::invocation_result::Outcome {
        use kar_proto::v1::invocation_result::Outcome;
        match self {
            Reply::Value(value) => Outcome::Value(json_payload(value)),
            Reply::Payload(payload) => Outcome::Value(payload),
            Reply::TailCall(t) => Outcome::TailCall(kar_proto::v1::TailCall {
                target: Some(t.target),
                method: t.method,
                payload: Some(t.payload),
                release_turn: t.release_turn,
            }),
        }
    }

    #[cfg(test)]
    pub(crate) fn into_payload(self) -> Payload {
        match self.into_outcome() {
            kar_proto::v1::invocation_result::Outcome::Value(payload) => payload,
            _ => Payload::default(),
        }
    }
}

impl From<serde_json::Value> for Reply {
    fn from(value: serde_json::Value) -> Reply {
        Reply::Value(value)
    }
}

impl From<Payload> for Reply {
    fn from(payload: Payload) -> Reply {
        Reply::Payload(payload)
    }
}

impl From<()> for Reply {
    fn from((): ()) -> Reply {
        Reply::none()
    }
}

/// An error raised by application code. It completes the invocation (it is
/// not retried) and reaches the caller as a gRPC status with this code,
/// marked as an application error.
///
/// `?` converts a failed nested call ([`Error`]) into an `AppError` with the
/// same code and message, and a JSON (de)serialization error into
/// `INVALID_ARGUMENT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code_name(*.code))]
pub struct AppError {
    /// The gRPC code the caller receives.
    pub code: Code,
    /// The message the caller receives.
    pub message: String,
}

impl AppError {
    /// An error with code `UNKNOWN`.
    pub fn new(message: impl Into<String>) -> AppError {
        AppError::with_code(Code::Unknown, message)
    }

    /// An error with the given code (`OK` is sent as `UNKNOWN`).
    pub fn with_code(code: Code, message: impl Into<String>) -> AppError {
        let code = if code == Code::Ok { Code::Unknown } else { code };
        AppError { code, message: message.into() }
    }

    /// `INVALID_ARGUMENT`: the arguments are malformed.
    pub fn invalid_argument(message: impl Into<String>) -> AppError {
        AppError::with_code(Code::InvalidArgument, message)
    }

    /// `NOT_FOUND`: something the method needs does not exist.
    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::with_code(Code::NotFound, message)
    }

    /// `FAILED_PRECONDITION`: the request is refused in the current state
    /// (e.g. insufficient funds).
    pub fn failed_precondition(message: impl Into<String>) -> AppError {
        AppError::with_code(Code::FailedPrecondition, message)
    }

    /// `INTERNAL`: an application bug.
    pub fn internal(message: impl Into<String>) -> AppError {
        AppError::with_code(Code::Internal, message)
    }

    /// `UNIMPLEMENTED`: "no method `method` on `target`", where `target` is
    /// e.g. `actor type Account` or `service teller`. See also
    /// [`Context::no_such_method`].
    pub fn no_such_method(target: &str, method: &str) -> AppError {
        AppError::with_code(Code::Unimplemented, format!("no method {method} on {target}"))
    }

    pub(crate) fn into_proto(self) -> kar_proto::v1::AppError {
        kar_proto::v1::AppError { code: self.code as i32, message: self.message }
    }
}

impl From<Error> for AppError {
    fn from(err: Error) -> AppError {
        AppError::with_code(err.code(), err.message())
    }
}

impl From<serde_json::Error> for AppError {
    fn from(err: serde_json::Error) -> AppError {
        AppError::invalid_argument(err.to_string())
    }
}

/// A handler written as a closure: `|ctx, method, args| async move { ... }`.
/// It implements both [`Actor`] (with no per-instance data) and [`Service`].
/// Made by [`handler_fn`].
pub struct HandlerFn<F> {
    f: Arc<F>,
}

impl<F> Clone for HandlerFn<F> {
    fn clone(&self) -> Self {
        HandlerFn { f: Arc::clone(&self.f) }
    }
}

/// Wraps a closure into a handler usable as an [`Actor`] or a [`Service`].
///
/// ```
/// use kar_client::host::{handler_fn, AppError, Reply};
/// use serde_json::json;
///
/// let echo = handler_fn(|ctx, method, args| async move {
///     match method.as_str() {
///         "echo" => Ok(Reply::from(args)),
///         _ => Err(ctx.no_such_method()),
///     }
/// });
/// # let _ = echo;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Context, String, serde_json::Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, AppError>> + Send + 'static,
{
    HandlerFn { f: Arc::new(f) }
}

#[async_trait]
impl<F, Fut> Actor for HandlerFn<F>
where
    F: Fn(Context, String, serde_json::Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, AppError>> + Send + 'static,
{
    async fn invoke(&self, ctx: &Context, method: &str, args: serde_json::Value) -> Result<Reply, AppError> {
        (self.f)(ctx.clone(), method.to_owned(), args).await
    }
}

#[async_trait]
impl<F, Fut> Service for HandlerFn<F>
where
    F: Fn(Context, String, serde_json::Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, AppError>> + Send + 'static,
{
    async fn invoke(&self, ctx: &Context, method: &str, args: serde_json::Value) -> Result<Reply, AppError> {
        (self.f)(ctx.clone(), method.to_owned(), args).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn app_errors_keep_their_code_and_ok_becomes_unknown() {
        assert_eq!(AppError::new("boom").code, Code::Unknown);
        assert_eq!(AppError::with_code(Code::Ok, "odd").code, Code::Unknown);
        let err = AppError::no_such_method("actor type Account", "fly");
        assert_eq!(err.code, Code::Unimplemented);
        assert_eq!(err.message, "no method fly on actor type Account");
        assert_eq!(err.clone().into_proto().code, 12);
        assert_eq!(err.to_string(), "UNIMPLEMENTED: no method fly on actor type Account");
    }

    #[test]
    fn a_failed_nested_call_converts_with_its_code() {
        let status = tonic::Status::with_error_details(
            Code::FailedPrecondition,
            "insufficient funds",
            ErrorDetails::with_error_info("APPLICATION_ERROR", "kar", std::collections::HashMap::new()),
        );
        let err: AppError = Error::from(status).into();
        assert_eq!(err, AppError::failed_precondition("insufficient funds"));
    }

    #[test]
    fn replies_become_payloads() {
        assert_eq!(Reply::none().into_payload(), Payload::default());
        assert_eq!(Reply::from(json!(5)).into_payload(), json_payload(json!(5)));
        assert_eq!(Reply::from(()), Reply::none());
        assert_eq!(Reply::json(&vec![1, 2]).unwrap(), Reply::Value(json!([1, 2])));
    }
}
