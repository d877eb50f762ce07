//! `ActorsService` and `ServicesService`: calls and tells.

use super::{Limits, convert, status};
use crate::engine::types::{ActorId, Outcome, Target};
use crate::engine::{Engine, Submission};
use kar_proto::v1::{self, actors_service_server::ActorsService, services_service_server::ServicesService};
use tonic::{Request, Response, Status};

/// Serves `kar.v1.ActorsService`.
pub struct ActorsApi {
    engine: Engine,
    limits: Limits,
}

impl ActorsApi {
    /// The service over `engine`.
    pub fn new(engine: Engine, limits: Limits) -> Self {
        Self { engine, limits }
    }
}

/// Serves `kar.v1.ServicesService`.
pub struct ServicesApi {
    engine: Engine,
    limits: Limits,
}

impl ServicesApi {
    /// The service over `engine`.
    pub fn new(engine: Engine, limits: Limits) -> Self {
        Self { engine, limits }
    }
}

/// Whether the caller waits for the invocation (a call) or only for its
/// acceptance (a tell).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waits {
    ForResult,
    ForAcceptance,
}

/// The submission of a call or tell. A call's gRPC deadline becomes the
/// invocation's deadline (past it, the call is never started); a tell's
/// deadline bounds only its acceptance — once accepted, a tell runs until it
/// succeeds, however long that takes.
fn submission<T>(
    request: &Request<T>,
    target: Target,
    method: String,
    payload: Option<v1::payload::Kind>,
    limits: Limits,
    waits: Waits,
) -> Result<Submission, Status> {
    let metadata = request.metadata();
    let deadline = convert::deadline(metadata)?;
    Ok(Submission {
        target,
        method,
        payload: convert::encode_payload(payload, limits.max_payload_bytes)?,
        context: convert::call_context(metadata)?,
        request_id: convert::request_id(metadata)?,
        deadline: if waits == Waits::ForResult { deadline } else { None },
    })
}

fn required_method(method: &str) -> Result<String, Status> {
    if method.is_empty() {
        return Err(status::invalid("method", "method is required"));
    }
    Ok(method.to_owned())
}

/// The result of a call: its value, or the status of its failure.
fn result_of(outcome: Outcome) -> Result<Option<v1::payload::Kind>, Status> {
    match outcome {
        Outcome::Value(bytes) => Ok(convert::decode_payload(&bytes).kind),
        other => Err(status::from_outcome(other)),
    }
}

macro_rules! payload_of {
    ($payload:expr, $module:ident) => {
        match $payload {
            Some(v1::$module::Payload::Json(v)) => Some(v1::payload::Kind::Json(v)),
            Some(v1::$module::Payload::Typed(v)) => Some(v1::payload::Kind::Typed(v)),
            None => None,
        }
    };
}

macro_rules! result_into {
    ($kind:expr, $module:ident) => {
        match $kind {
            Some(v1::payload::Kind::Json(v)) => Some(v1::$module::Result::Json(v)),
            Some(v1::payload::Kind::Typed(v)) => Some(v1::$module::Result::Typed(v)),
            None => None,
        }
    };
}

#[tonic::async_trait]
impl ActorsService for ActorsApi {
    async fn call_actor(
        &self,
        request: Request<v1::CallActorRequest>,
    ) -> Result<Response<v1::CallActorResponse>, Status> {
        let actor = convert::actor_ref(request.get_ref().actor.as_ref())?;
        let method = required_method(&request.get_ref().method)?;
        let payload = payload_of!(request.get_ref().payload.clone(), call_actor_request);
        let submission = submission(&request, Target::Actor(actor), method, payload, self.limits, Waits::ForResult)?;
        let (request_id, outcome) = self.engine.call(submission).await.map_err(status::from_engine)?;
        let result = result_of(outcome)?;
        Ok(Response::new(v1::CallActorResponse { result: result_into!(result, call_actor_response), request_id }))
    }

    async fn tell_actor(
        &self,
        request: Request<v1::TellActorRequest>,
    ) -> Result<Response<v1::TellActorResponse>, Status> {
        let actor = convert::actor_ref(request.get_ref().actor.as_ref())?;
        let method = required_method(&request.get_ref().method)?;
        let payload = payload_of!(request.get_ref().payload.clone(), tell_actor_request);
        let submission =
            submission(&request, Target::Actor(actor), method, payload, self.limits, Waits::ForAcceptance)?;
        let request_id = self.engine.tell(submission).await.map_err(status::from_engine)?;
        Ok(Response::new(v1::TellActorResponse { request_id }))
    }

    async fn remove_actor(
        &self,
        request: Request<v1::RemoveActorRequest>,
    ) -> Result<Response<v1::RemoveActorResponse>, Status> {
        let actor: ActorId = convert::actor_ref(request.get_ref().actor.as_ref())?;
        let request_id = convert::request_id(request.metadata())?;
        let deadline = convert::deadline(request.metadata())?;
        // From inside a handler, the removal joins the handler's flow, so an
        // actor can remove itself (or an actor its flow holds) without waiting
        // for its own turn to end.
        let flow = convert::flow(request.metadata())?;
        let removed_entries =
            self.engine.remove(actor, request_id, deadline, flow).await.map_err(status::from_engine)?;
        Ok(Response::new(v1::RemoveActorResponse { removed_entries }))
    }
}

#[tonic::async_trait]
impl ServicesService for ServicesApi {
    async fn call_service(
        &self,
        request: Request<v1::CallServiceRequest>,
    ) -> Result<Response<v1::CallServiceResponse>, Status> {
        let service = request.get_ref().service.clone();
        if service.is_empty() {
            return Err(status::invalid("service", "service is required"));
        }
        let method = required_method(&request.get_ref().method)?;
        let payload = payload_of!(request.get_ref().payload.clone(), call_service_request);
        let submission =
            submission(&request, Target::Service(service), method, payload, self.limits, Waits::ForResult)?;
        let (request_id, outcome) = self.engine.call(submission).await.map_err(status::from_engine)?;
        let result = result_of(outcome)?;
        Ok(Response::new(v1::CallServiceResponse { result: result_into!(result, call_service_response), request_id }))
    }

    async fn tell_service(
        &self,
        request: Request<v1::TellServiceRequest>,
    ) -> Result<Response<v1::TellServiceResponse>, Status> {
        let service = request.get_ref().service.clone();
        if service.is_empty() {
            return Err(status::invalid("service", "service is required"));
        }
        let method = required_method(&request.get_ref().method)?;
        let payload = payload_of!(request.get_ref().payload.clone(), tell_service_request);
        let submission =
            submission(&request, Target::Service(service), method, payload, self.limits, Waits::ForAcceptance)?;
        let request_id = self.engine.tell(submission).await.map_err(status::from_engine)?;
        Ok(Response::new(v1::TellServiceResponse { request_id }))
    }
}
