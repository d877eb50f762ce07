//! `AppService`: the `Attach` stream through which components host actors
//! and services. The first message registers the component; then the
//! runtime streams invocations and the component streams results. When the
//! stream ends, the component is detached and its unanswered invocations are
//! retried.

use super::{convert, status};
use crate::engine::Engine;
use crate::engine::components::Registration;
use crate::engine::types::{ActorId, Delivery, DeliveryKind, DeliveryResult, TailCall, Target};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use kar_proto::v1::{self, app_service_server::AppService};
use prost::Message;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tonic::{Request, Response, Status, Streaming};

/// Serves `kar.v1.AppService`.
pub struct AppApi {
    engine: Engine,
}

impl AppApi {
    /// The service over `engine`.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

type AttachStream = Pin<Box<dyn Stream<Item = Result<v1::AttachResponse, Status>> + Send>>;

/// The wire form of a delivery (also the body the legacy HTTP channel posts).
pub(crate) fn invocation(delivery: Delivery) -> v1::Invocation {
    let (actor, service) = match &delivery.target {
        Target::Actor(a) => (Some(convert::to_actor_ref(a)), String::new()),
        Target::Service(s) => (None, s.clone()),
    };
    let kind = match delivery.kind {
        DeliveryKind::Activate => v1::InvocationKind::Activate,
        DeliveryKind::Deactivate => v1::InvocationKind::Deactivate,
        DeliveryKind::ActorMethod => v1::InvocationKind::ActorMethod,
        DeliveryKind::ServiceMethod => v1::InvocationKind::ServiceMethod,
    };
    v1::Invocation {
        delivery_id: delivery.delivery_id,
        kind: kind as i32,
        actor,
        service,
        method: delivery.method,
        payload: Some(convert::decode_payload(&delivery.payload)),
        context: Some(v1::InvocationContext { flow_id: delivery.flow, request_id: delivery.request_id }),
        attempt: delivery.attempt,
        deadline: delivery.deadline.map(convert::timestamp),
    }
}

/// The engine's form of a component's answer: its delivery id and outcome
/// (no outcome is a void value; a malformed tail call an application error).
pub(crate) fn result(result: v1::InvocationResult) -> (u64, DeliveryResult) {
    let outcome = match result.outcome {
        Some(v1::invocation_result::Outcome::Value(payload)) => {
            DeliveryResult::Value(Bytes::from(payload.encode_to_vec()))
        }
        Some(v1::invocation_result::Outcome::Error(e)) => DeliveryResult::AppError { code: e.code, message: e.message },
        Some(v1::invocation_result::Outcome::TailCall(t)) => match tail_call(t) {
            Ok(next) => DeliveryResult::TailCall(next),
            Err(message) => DeliveryResult::AppError { code: tonic::Code::InvalidArgument as i32, message },
        },
        None => DeliveryResult::Value(Bytes::new()),
    };
    (result.delivery_id, outcome)
}

/// Reads a tail call; a malformed one fails the step with the field named.
fn tail_call(t: v1::TailCall) -> Result<TailCall, String> {
    let target = match t.target {
        Some(v1::tail_call::Target::Actor(actor)) => {
            if actor.r#type.is_empty() || actor.id.is_empty() {
                return Err("tail_call.actor: type and id are required".into());
            }
            Target::Actor(ActorId::new(actor.r#type, actor.id))
        }
        Some(v1::tail_call::Target::Service(service)) if !service.is_empty() => Target::Service(service),
        _ => return Err("tail_call.target: an actor or a service is required".into()),
    };
    if t.method.is_empty() {
        return Err("tail_call.method is required".into());
    }
    Ok(TailCall {
        target,
        method: t.method,
        payload: Bytes::from(t.payload.unwrap_or_default().encode_to_vec()),
        release_turn: t.release_turn,
    })
}

/// The invocations for a component, with a heartbeat whenever `every`
/// passes without one; ends when the component is detached.
fn outbound(
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    every: Duration,
) -> impl Stream<Item = Result<v1::AttachResponse, Status>> {
    let mut silence = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    silence.set_missed_tick_behavior(MissedTickBehavior::Delay);
    futures::stream::unfold((deliveries, silence), |(mut deliveries, mut silence)| async move {
        let message = tokio::select! {
            biased;
            delivery = deliveries.recv() => {
                silence.reset();
                v1::attach_response::Message::Invocation(invocation(delivery?))
            }
            _ = silence.tick() => v1::attach_response::Message::Heartbeat(v1::Heartbeat {}),
        };
        Some((Ok(v1::AttachResponse { message: Some(message) }), (deliveries, silence)))
    })
}

#[tonic::async_trait]
impl AppService for AppApi {
    type AttachStream = AttachStream;

    async fn attach(&self, request: Request<Streaming<v1::AttachRequest>>) -> Result<Response<AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let register = match inbound.message().await? {
            Some(v1::AttachRequest { message: Some(v1::attach_request::Message::Register(r)) }) => r,
            _ => return Err(status::invalid("register", "the first message on Attach must be register")),
        };
        let registration = Registration {
            name: register.name,
            actor_types: register.actor_types,
            service: Some(register.service).filter(|s| !s.is_empty()),
            max_concurrency: register.max_concurrency,
        };
        let (component, deliveries) = self.engine.attach(registration).map_err(status::from_engine)?;
        let engine = self.engine.clone();
        let reader_component = component.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(v1::AttachRequest { message: Some(v1::attach_request::Message::Result(r)) })) => {
                        let (delivery_id, outcome) = result(r);
                        engine.answer(&reader_component, delivery_id, outcome);
                    }
                    Ok(Some(_)) => {
                        tracing::warn!(component = %reader_component, "ignoring an unexpected message on attach")
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(component = %reader_component, error = %e, "attach stream broke");
                        break;
                    }
                }
            }
            engine.detach(&reader_component);
        });
        let lease = self.engine.component_lease();
        let registered = v1::AttachResponse {
            message: Some(v1::attach_response::Message::Registered(v1::Registered {
                component_id: component,
                runtime_id: self.engine.runtime_id().to_owned(),
                lease: prost_types::Duration::try_from(lease).ok(),
            })),
        };
        let stream = futures::stream::once(async move { Ok(registered) }).chain(outbound(deliveries, lease / 4));
        Ok(Response::new(Box::pin(stream)))
    }
}
