//! `EventsService`: topics, publication and subscriptions.

use super::{Limits, convert, status};
use crate::engine::Engine;
use crate::engine::types::{ActorId, Target};
use crate::store::SubscriptionRecord;
use kar_proto::v1::{self, events_service_server::EventsService};
use tonic::{Request, Response, Status};

/// Serves `kar.v1.EventsService`.
pub struct EventsApi {
    engine: Engine,
    limits: Limits,
}

impl EventsApi {
    /// The service over `engine`.
    pub fn new(engine: Engine, limits: Limits) -> Self {
        Self { engine, limits }
    }
}

fn target(t: Option<&v1::SubscriptionTarget>) -> Result<(Target, String), Status> {
    let t = t.ok_or_else(|| status::invalid("target", "target is required"))?;
    let target = match &t.target {
        Some(v1::subscription_target::Target::Actor(a)) => {
            if a.r#type.is_empty() || a.id.is_empty() {
                return Err(status::invalid("target.actor", "target.actor needs a type and an id"));
            }
            Target::Actor(ActorId::new(a.r#type.clone(), a.id.clone()))
        }
        Some(v1::subscription_target::Target::Service(s)) if !s.is_empty() => Target::Service(s.clone()),
        _ => return Err(status::invalid("target", "target needs an actor or a service")),
    };
    if t.method.is_empty() {
        return Err(status::invalid("target.method", "target.method is required"));
    }
    Ok((target, t.method.clone()))
}

fn to_proto(s: SubscriptionRecord) -> v1::Subscription {
    let target = match s.target {
        Target::Actor(a) => v1::subscription_target::Target::Actor(convert::to_actor_ref(&a)),
        Target::Service(name) => v1::subscription_target::Target::Service(name),
    };
    v1::Subscription {
        subscription_id: s.id,
        topic: s.topic,
        target: Some(v1::SubscriptionTarget { target: Some(target), method: s.method }),
        next_offset: s.next_offset,
    }
}

#[tonic::async_trait]
impl EventsService for EventsApi {
    async fn publish(&self, request: Request<v1::PublishRequest>) -> Result<Response<v1::PublishResponse>, Status> {
        let r = request.into_inner();
        let payload = match r.payload {
            Some(v1::publish_request::Payload::Json(v)) => Some(v1::payload::Kind::Json(v)),
            Some(v1::publish_request::Payload::Typed(v)) => Some(v1::payload::Kind::Typed(v)),
            None => None,
        };
        let payload = convert::encode_payload(payload, self.limits.max_payload_bytes)?;
        let offset = self.engine.publish(&r.topic, payload).await.map_err(status::from_engine)?;
        Ok(Response::new(v1::PublishResponse { offset }))
    }

    async fn create_topic(
        &self,
        request: Request<v1::CreateTopicRequest>,
    ) -> Result<Response<v1::CreateTopicResponse>, Status> {
        let r = request.into_inner();
        let created = self.engine.create_topic(&r.topic, r.partitions).await.map_err(status::from_engine)?;
        Ok(Response::new(v1::CreateTopicResponse { created }))
    }

    async fn delete_topic(
        &self,
        request: Request<v1::DeleteTopicRequest>,
    ) -> Result<Response<v1::DeleteTopicResponse>, Status> {
        let deleted = self.engine.delete_topic(&request.get_ref().topic).await.map_err(status::from_engine)?;
        Ok(Response::new(v1::DeleteTopicResponse { deleted }))
    }

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<v1::SubscribeResponse>, Status> {
        let r = request.into_inner();
        if r.subscription_id.is_empty() {
            return Err(status::invalid("subscription_id", "subscription_id is required"));
        }
        let (target, method) = target(r.target.as_ref())?;
        let created = self
            .engine
            .subscribe(r.subscription_id, r.topic, target, method, r.from_oldest)
            .await
            .map_err(status::from_engine)?;
        Ok(Response::new(v1::SubscribeResponse { created }))
    }

    async fn unsubscribe(
        &self,
        request: Request<v1::UnsubscribeRequest>,
    ) -> Result<Response<v1::UnsubscribeResponse>, Status> {
        let id = &request.get_ref().subscription_id;
        if id.is_empty() {
            return Err(status::invalid("subscription_id", "subscription_id is required"));
        }
        let deleted = self.engine.unsubscribe(id).await.map_err(status::from_engine)?;
        Ok(Response::new(v1::UnsubscribeResponse { deleted }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<v1::ListSubscriptionsRequest>,
    ) -> Result<Response<v1::ListSubscriptionsResponse>, Status> {
        let topic = Some(request.get_ref().topic.as_str()).filter(|t| !t.is_empty());
        let list = self.engine.list_subscriptions(topic).await.map_err(status::from_engine)?;
        Ok(Response::new(v1::ListSubscriptionsResponse { subscriptions: list.into_iter().map(to_proto).collect() }))
    }
}
