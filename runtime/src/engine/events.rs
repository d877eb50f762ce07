//! Events: topics and durable subscriptions.
//!
//! Each subscription has a delivery task that reads its topic from the
//! subscription's position and delivers one event at a time, in order, as a
//! tell whose request id names the subscription and the offset
//! (`event:<subscription>@<offset>`); it waits for the tell to complete, then
//! advances the position. If the runtime dies between the tell and the
//! advance, the redelivery after recovery carries the same id, so the log
//! either still has it (it joins) or has its outcome (it does not run again):
//! each event is delivered once, in order.

use super::types::Target;
use super::{Engine, Error, Submission};
use crate::store::SubscriptionRecord;
use crate::topics;
use std::time::Duration;

/// How many events a delivery task reads at a time.
const READ_BATCH: usize = 64;

impl From<topics::Error> for Error {
    fn from(e: topics::Error) -> Self {
        match e {
            topics::Error::NoSuchTopic(t) => Error::NotFound(format!("no topic named {t:?}")),
            topics::Error::Storage(m) => Error::Unavailable(m),
        }
    }
}

/// Checks a topic name: 1 to 200 letters, digits, '.', '_' or '-'.
pub fn check_topic_name(topic: &str) -> Result<(), Error> {
    let valid = !topic.is_empty()
        && topic.len() <= 200
        && topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("topic: {topic:?} must be 1 to 200 letters, digits, '.', '_' or '-'")))
    }
}

impl Engine {
    /// Creates a topic; false if it existed.
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Result<bool, Error> {
        check_topic_name(topic)?;
        Ok(self.shared.topics.create(topic, partitions.max(1)).await?)
    }

    /// Deletes a topic, its events and its subscriptions; false if it did
    /// not exist.
    pub async fn delete_topic(&self, topic: &str) -> Result<bool, Error> {
        check_topic_name(topic)?;
        for subscription in self.shared.store.list_subscriptions().await? {
            if subscription.topic == topic {
                self.shared.store.delete_subscription(&subscription.id).await?;
            }
        }
        let deleted = self.shared.topics.delete(topic).await?;
        self.shared.published.notify_waiters();
        Ok(deleted)
    }

    /// Publishes an event; returns its offset.
    pub async fn publish(&self, topic: &str, payload: bytes::Bytes) -> Result<u64, Error> {
        check_topic_name(topic)?;
        let offset = self.shared.topics.publish(topic, payload).await?;
        self.shared.published.notify_waiters();
        Ok(offset)
    }

    /// Subscribes a target to a topic, from its oldest or its next event;
    /// false if the subscription existed.
    pub async fn subscribe(
        &self,
        id: String,
        topic: String,
        target: Target,
        method: String,
        from_oldest: bool,
    ) -> Result<bool, Error> {
        if id.is_empty() {
            return Err(Error::InvalidArgument("subscription_id is required".into()));
        }
        if method.is_empty() {
            return Err(Error::InvalidArgument("target.method is required".into()));
        }
        check_topic_name(&topic)?;
        self.check_known(&target).await?;
        let Some(end) = self.shared.topics.end_offset(&topic).await? else {
            return Err(Error::NotFound(format!("no topic named {topic:?}")));
        };
        if let Some(existing) = self.shared.store.subscription(&id).await? {
            if existing.topic != topic || existing.target != target || existing.method != method {
                return Err(Error::FailedPrecondition(format!(
                    "subscription {id:?} exists with another topic or target"
                )));
            }
            return Ok(false);
        }
        let record = SubscriptionRecord {
            id: id.clone(),
            topic,
            target: target.clone(),
            method,
            next_offset: if from_oldest { 0 } else { end },
        };
        let created = self.shared.store.put_subscription(record).await?;
        self.spawn_delivery(id, &target);
        Ok(created)
    }

    /// Ends a subscription; false if it did not exist.
    pub async fn unsubscribe(&self, id: &str) -> Result<bool, Error> {
        let deleted = self.shared.store.delete_subscription(id).await?;
        self.shared.published.notify_waiters();
        Ok(deleted)
    }

    /// Lists subscriptions, optionally of one topic.
    pub async fn list_subscriptions(&self, topic: Option<&str>) -> Result<Vec<SubscriptionRecord>, Error> {
        let mut list = self.shared.store.list_subscriptions().await?;
        list.retain(|s| topic.is_none_or(|t| s.topic == t));
        Ok(list)
    }

    /// Starts the delivery tasks of the stored subscriptions.
    pub(super) async fn spawn_deliveries(&self) -> Result<(), Error> {
        for subscription in self.shared.store.list_subscriptions().await? {
            self.spawn_delivery(subscription.id, &subscription.target);
        }
        Ok(())
    }

    /// Starts the delivery task of a subscription, unless it runs already or
    /// the subscription's target is owned by another runtime (which delivers).
    fn spawn_delivery(&self, id: String, target: &Target) {
        if !self.owns(target, &id) || !self.lock().delivering.insert(id.clone()) {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.deliver_events(&id).await {
                tracing::warn!(subscription = %id, error = %e, "event delivery stopped");
            }
            engine.lock().delivering.remove(&id);
        });
    }

    /// Delivers the events of one subscription until it is deleted.
    async fn deliver_events(&self, id: &str) -> Result<(), Error> {
        loop {
            let published = self.shared.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let Some(subscription) = self.shared.store.subscription(id).await? else { return Ok(()) };
            if !self.owns(&subscription.target, id) {
                // Its partition moved to another runtime, which delivers now.
                return Ok(());
            }
            let events = match self.shared.topics.read(&subscription.topic, subscription.next_offset, READ_BATCH).await
            {
                Ok(events) => events,
                Err(topics::Error::NoSuchTopic(_)) => {
                    self.shared.store.delete_subscription(id).await?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            if events.is_empty() {
                let _ = tokio::time::timeout(Duration::from_secs(1), published).await;
                continue;
            }
            for event in events {
                let submission = Submission {
                    target: subscription.target.clone(),
                    method: subscription.method.clone(),
                    payload: event.payload,
                    context: None,
                    request_id: Some(format!("event:{id}@{}", event.offset)),
                    deadline: None,
                };
                loop {
                    if self.shared.store.subscription(id).await?.is_none() {
                        return Ok(());
                    }
                    match self.tell_and_wait(submission.clone()).await {
                        Ok(_) => break,
                        Err(e) => {
                            tracing::debug!(subscription = id, error = %e, "event delivery waits");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
                if !self.shared.store.advance_subscription(id, event.offset, event.offset + 1).await? {
                    // Deleted or moved meanwhile: start over from the store.
                    break;
                }
            }
        }
    }
}
