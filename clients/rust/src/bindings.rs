//! Reminders and events: the `RemindersService` and `EventsService` RPCs on
//! [`Client`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kar_proto::v1::{
    ActorRef, CancelReminderRequest, CreateTopicRequest, DeleteTopicRequest, ListRemindersRequest,
    ListSubscriptionsRequest, PublishRequest, Reminder, ScheduleReminderRequest, SubscribeRequest, Subscription,
    SubscriptionTarget, UnsubscribeRequest, events_service_client::EventsServiceClient, payload, publish_request,
    reminders_service_client::RemindersServiceClient, subscription_target,
};

use crate::client::{Caller, Client, Rpc, with_deadline};
use crate::error::{Error, Result};
use crate::json::json_payload;

/// A reminder to schedule: `ReminderSpec::new("r1", "tick").args(json!([1])).every(period)`.
#[derive(Clone, Debug)]
pub struct ReminderSpec {
    id: String,
    method: String,
    args: serde_json::Value,
    at: Option<SystemTime>,
    period: Option<Duration>,
}

impl ReminderSpec {
    /// A one-shot reminder `id` that invokes `method` now, with no arguments.
    pub fn new(id: impl Into<String>, method: impl Into<String>) -> ReminderSpec {
        ReminderSpec { id: id.into(), method: method.into(), args: serde_json::Value::Null, at: None, period: None }
    }

    /// The JSON arguments the method receives.
    pub fn args(mut self, args: serde_json::Value) -> ReminderSpec {
        self.args = args;
        self
    }

    /// The first (or only) time it fires.
    pub fn at(mut self, at: SystemTime) -> ReminderSpec {
        self.at = Some(at);
        self
    }

    /// Fires after `delay` from now.
    pub fn after(self, delay: Duration) -> ReminderSpec {
        self.at(SystemTime::now() + delay)
    }

    /// Makes it periodic.
    pub fn every(mut self, period: Duration) -> ReminderSpec {
        self.period = Some(period);
        self
    }
}

fn timestamp(t: SystemTime) -> Result<prost_types::Timestamp> {
    let since =
        t.duration_since(UNIX_EPOCH).map_err(|_| Error::InvalidArgument("a reminder time before 1970".into()))?;
    Ok(prost_types::Timestamp { seconds: since.as_secs() as i64, nanos: since.subsec_nanos() as i32 })
}

fn actor_ref(actor_type: &str, id: &str) -> ActorRef {
    ActorRef { r#type: actor_type.to_owned(), id: id.to_owned() }
}

impl Client {
    /// Schedules (or replaces) a reminder on an actor; true if it replaced one.
    pub async fn schedule_reminder(&self, actor_type: &str, id: &str, reminder: ReminderSpec) -> Result<bool> {
        let message = ScheduleReminderRequest {
            actor: Some(actor_ref(actor_type, id)),
            reminder_id: reminder.id,
            method: reminder.method,
            payload: Some(json_payload(reminder.args)),
            fire_time: reminder.at.map(timestamp).transpose()?,
            period: reminder
                .period
                .map(|p| prost_types::Duration { seconds: p.as_secs() as i64, nanos: p.subsec_nanos() as i32 }),
        };
        let request = self.request(&Caller::External, Rpc::Plain, message)?;
        let mut rpc = RemindersServiceClient::new(self.channel().clone());
        Ok(with_deadline(request.timeout, rpc.schedule_reminder(request.inner)).await?.replaced)
    }

    /// Cancels one reminder of an actor (or all with `None`); returns how many.
    pub async fn cancel_reminder(&self, actor_type: &str, id: &str, reminder_id: Option<&str>) -> Result<u32> {
        let message = CancelReminderRequest {
            actor: Some(actor_ref(actor_type, id)),
            reminder_id: reminder_id.unwrap_or_default().to_owned(),
        };
        let request = self.request(&Caller::External, Rpc::Plain, message)?;
        let mut rpc = RemindersServiceClient::new(self.channel().clone());
        Ok(with_deadline(request.timeout, rpc.cancel_reminder(request.inner)).await?.cancelled)
    }

    /// Lists reminders: of one actor, of one type (`id` = `None`), or all
    /// (`actor_type` = `None`).
    pub async fn list_reminders(&self, actor_type: Option<&str>, id: Option<&str>) -> Result<Vec<Reminder>> {
        let message = ListRemindersRequest { actor: actor_type.map(|t| actor_ref(t, id.unwrap_or_default())) };
        let request = self.request(&Caller::External, Rpc::Plain, message)?;
        let mut rpc = RemindersServiceClient::new(self.channel().clone());
        Ok(with_deadline(request.timeout, rpc.list_reminders(request.inner)).await?.reminders)
    }

    /// Creates a topic; false if it existed.
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Result<bool> {
        let message = CreateTopicRequest { topic: topic.to_owned(), partitions };
        let request = self.request(&Caller::External, Rpc::Plain, message)?;
        let mut rpc = EventsServiceClient::new(self.channel().clone());
        Ok(with_deadline(request.timeout, rpc.create_topic(request.inner)).await?.created)
    }

    /// Deletes a topic, its events and its subscriptions; false if there was
    /// no such topic.
    pub async fn delete_topic(&self, topic: &str) -> Result<bool> {
        let message = DeleteTopicRequest { topic: topic.to_owned() };
        let request = self.request(&Caller::External, Rpc::Plain, message)?;
        let mut rpc = EventsServiceClient::new(self.channel().clone());
        Ok(with_deadline(request.timeout, rpc.delete_topic(request.inner)).await?.deleted)
    }

    /// Publishes a JSON event; returns its offset in the topic.
    pub async fn publish(&self, topic: &str, event: serde_json::Value) -> Result<u64> {
        let payload = match json_payload(event).kind {
            Some(payload::Kind::Json(v)) => Some(publish_request::Payload::Json(v)),
            Some(payload::Kind::Typed(a)) => Some(publish_request::Payload::Typed(a)),
            None => None,
        };
        let message = PublishRequest { topic: topic.to_owned(), payload };
        let request = self.request(&Caller::External, Rpc::Plain, message)?;
        let mut rpc = EventsServiceClient::new(self.channel().clone());
        Ok(with_deadline(request.timeout, rpc.publish(request.inner)).await?.offset)
    }

    /// Subscribes `method` of actor `actor_type`/`id` to a topic; false if
    /// the subscription existed.
    pub async fn subscribe_actor(
        &self,
        subscription_id: &str,
        topic: &str,
        (actor_type, id): (&str, &str),
        method: &str,
        from_oldest: bool,
    ) -> Result<bool> {
        let target = subscription_target::Target::Actor(actor_ref(actor_type, id));
        self.subscribe(subscription_id, topic, target, method, from_oldest).await
    }

    /// Subscribes `method` of a service to a topic; false if the
    /// subscription existed.
    pub async fn subscribe_service(
        &self,
        subscription_id: &str,
        topic: &str,
        service: &str,
        method: &str,
        from_oldest: bool,
    ) -> Result<bool> {
        let target = subscription_target::Target::Service(service.to_owned());
        self.subscribe(subscription_id, topic, target, method, from_oldest).await
    }

    async fn subscribe(
        &self,
        subscription_id: &str,
        topic: &str,
        target: subscription_target::Target,
        method: &str,
        from_oldest: bool,
    ) -> Result<bool> {
        let message = SubscribeRequest {
            subscription_id: subscription_id.to_owned(),
            topic: topic.to_owned(),
            target: Some(SubscriptionTarget { target: Some(target), method: method.to_owned() }),
            from_oldest,
        };
        let request = self.request(&Caller::External, Rpc::Plain, message)?;
        let mut rpc = EventsServiceClient::new(self.channel().clone());
        Ok(with_deadline(request.timeout, rpc.subscribe(request.inner)).await?.created)
    }

    /// Ends a subscription; false if there was none.
    pub async fn unsubscribe(&self, subscription_id: &str) -> Result<bool> {
        let message = UnsubscribeRequest { subscription_id: subscription_id.to_owned() };
        let request = self.request(&Caller::External, Rpc::Plain, message)?;
        let mut rpc = EventsServiceClient::new(self.channel().clone());
        Ok(with_deadline(request.timeout, rpc.unsubscribe(request.inner)).await?.deleted)
    }

    /// Lists subscriptions, of one topic or all.
    pub async fn list_subscriptions(&self, topic: Option<&str>) -> Result<Vec<Subscription>> {
        let message = ListSubscriptionsRequest { topic: topic.unwrap_or_default().to_owned() };
        let request = self.request(&Caller::External, Rpc::Plain, message)?;
        let mut rpc = EventsServiceClient::new(self.channel().clone());
        Ok(with_deadline(request.timeout, rpc.list_subscriptions(request.inner)).await?.subscriptions)
    }
}
