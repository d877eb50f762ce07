//! The engine's own vocabulary: requests, their targets and outcomes, and the
//! deliveries it hands to components. None of these are wire types; the API
//! edge converts to and from `kar.v1` messages.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch.
pub type UnixMillis = u64;

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// One virtual actor instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorId {
    /// The actor type.
    pub kind: String,
    /// The instance id within the type.
    pub id: String,
}

impl ActorId {
    /// Names an actor instance.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Self { kind: kind.into(), id: id.into() }
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.id)
    }
}

/// Who runs a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    /// A method of a virtual actor: turn-based, activated on demand.
    Actor(ActorId),
    /// A method of a stateless service: any replica may serve it.
    Service(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Actor(a) => write!(f, "actor {a}"),
            Target::Service(s) => write!(f, "service {s}"),
        }
    }
}

/// What the caller of a request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestKind {
    /// A synchronous call: the caller waits for the outcome. If the caller
    /// fails before the call starts, the call is not started (G4).
    Call,
    /// An asynchronous tell: durable once accepted, run until it succeeds.
    Tell,
    /// Remove an actor: deactivate it and delete its state, in its turn.
    Remove,
}

/// The invocation that issued a request from inside a handler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The request id of the calling invocation.
    pub request_id: String,
    /// The runtime on which the calling attempt runs.
    pub runtime: String,
    /// The partition whose log journals the calling invocation.
    pub partition: String,
    /// The ownership epoch of that partition in which the calling attempt ran.
    pub epoch: u64,
    /// The attempt of the calling invocation that issued this request.
    pub attempt: u32,
}

/// An accepted unit of work: the record the log keeps until it completes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Unique id; deterministic for calls made from handlers
    /// (`<caller request id>.<call sequence>`).
    pub id: String,
    /// Call, tell or removal.
    pub kind: RequestKind,
    /// Who runs it.
    pub target: Target,
    /// The method to run.
    pub method: String,
    /// The encoded `kar.v1.Payload`, opaque to the engine.
    pub payload: Bytes,
    /// The flow this request belongs to (reentrancy is decided by flow).
    pub flow: String,
    /// The calling invocation, for requests made from handlers.
    pub caller: Option<Caller>,
    /// After this instant the request is not started.
    pub deadline: Option<UnixMillis>,
    /// Whether the outcome is kept so that a repeated request with the same
    /// id gets it back instead of running again. False only for requests
    /// whose id nobody can repeat (random ids given to outside callers).
    pub keep_outcome: bool,
    /// The step of the invocation chain: 0 for the request as submitted, n
    /// for the n-th tail call. All steps share the request's id.
    #[serde(default)]
    pub step: u32,
}

impl Request {
    /// The id the handler of this step sees (and puts in `kar-caller-id`):
    /// the request id, suffixed with `~<step>` after a tail call, so that the
    /// calls of different steps get different deterministic ids. A step
    /// forwarded to another partition travels as a request of its own whose
    /// id is that step's invocation id (`<id>~<n>`); its later steps count on
    /// from `n`, so every step of a chain is `<id>~<step>` wherever it runs.
    pub fn invocation_id(&self) -> String {
        if self.step == 0 {
            return self.id.clone();
        }
        let (base, first) = split_invocation_id(&self.id);
        format!("{base}~{}", first + self.step)
    }
}

/// Splits an invocation id into the request id and the step.
pub fn split_invocation_id(invocation_id: &str) -> (&str, u32) {
    match invocation_id.rsplit_once('~') {
        Some((id, step)) => match step.parse() {
            Ok(step) => (id, step),
            Err(_) => (invocation_id, 0),
        },
        None => (invocation_id, 0),
    }
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The handler returned this encoded `kar.v1.Payload` (empty: nothing).
    Value(Bytes),
    /// The handler raised an application error.
    AppError {
        /// A `google.rpc.Code` value.
        code: i32,
        /// The handler's message.
        message: String,
    },
    /// The runtime ended the request without a handler result.
    Failed(Failure),
}

/// Why the runtime ended a request without a handler result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// Its deadline passed before it could start.
    DeadlineExceeded,
    /// It was not started because its caller failed (an orphan).
    Cancelled,
    /// The target does not exist.
    NotFound(String),
    /// Waiting for the actor's turn would close a cycle of flows each
    /// waiting for an actor another one holds; the message names it.
    Deadlock(String),
}

/// What a component is asked to do by one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryKind {
    /// Prepare an actor instance.
    Activate,
    /// Release an actor instance.
    Deactivate,
    /// Run an actor method.
    ActorMethod,
    /// Run a service method.
    ServiceMethod,
}

/// One delivery of work to a component.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Unique per delivery; the component answers with it.
    pub delivery_id: u64,
    /// What to do.
    pub kind: DeliveryKind,
    /// The actor or service.
    pub target: Target,
    /// The method.
    pub method: String,
    /// The encoded `kar.v1.Payload`.
    pub payload: Bytes,
    /// The flow of the invocation.
    pub flow: String,
    /// The id of the invocation (empty for activate/deactivate).
    pub request_id: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// When the caller stops waiting.
    pub deadline: Option<UnixMillis>,
}

/// The next step a handler hands off to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailCall {
    /// Who runs the next step.
    pub target: Target,
    /// Its method.
    pub method: String,
    /// Its encoded `kar.v1.Payload`.
    pub payload: Bytes,
    /// For the same actor: give up the turn between the steps.
    pub release_turn: bool,
}

/// A component's answer to a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The handler handed off to a next step.
    TailCall(TailCall),
    /// The handler returned this encoded payload.
    Value(Bytes),
    /// The handler raised an application error.
    AppError {
        /// A `google.rpc.Code` value.
        code: i32,
        /// The handler's message.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, step: u32) -> Request {
        Request {
            id: id.into(),
            kind: RequestKind::Call,
            target: Target::Service("s".into()),
            method: "m".into(),
            payload: Bytes::new(),
            flow: id.into(),
            caller: None,
            deadline: None,
            keep_outcome: true,
            step,
        }
    }

    #[test]
    fn every_step_of_a_chain_is_named_by_its_request_and_step_wherever_it_runs() {
        assert_eq!(request("r", 0).invocation_id(), "r");
        assert_eq!(request("r", 3).invocation_id(), "r~3");
        // Step 2 forwarded to another partition travels as request `r~2`;
        // its own next steps are steps 3 and 4 of `r`.
        assert_eq!(request("r~2", 0).invocation_id(), "r~2");
        assert_eq!(request("r~2", 1).invocation_id(), "r~3");
        assert_eq!(request("r~2", 2).invocation_id(), "r~4");
        assert_eq!(split_invocation_id("r~4"), ("r", 4));
        assert_eq!(split_invocation_id("a.b~x"), ("a.b~x", 0), "a suffix that is not a number is part of the id");
    }
}
