//! Reminders (G7): persistent, once per due time, coalesced after outages.
//!
//! A reminder lives in the store with its next due time. A ticker takes the
//! due reminders and fires each as a tell whose request id names the reminder
//! and the due time (`reminder:<type>/<id>/<reminder>@<due>`), then advances
//! the reminder. The id makes the firing idempotent: if the runtime dies
//! between the tell and the advance, the same due time fires again after
//! recovery with the same id, and the log either still has it pending (it
//! joins) or has its outcome (it does not run again). A periodic reminder that
//! missed several ticks (the runtime was down) fires once for the earliest
//! missed one and moves to its first due time after now: missed ticks are
//! coalesced rather than flooded.

use super::types::{ActorId, Target, UnixMillis, now_millis};
use super::{Engine, Error, Submission};
use crate::store::ReminderRecord;
use std::time::Duration;

/// How many due reminders one tick fires at most.
const BATCH: usize = 256;

/// The shortest period a periodic reminder may have.
pub const MIN_PERIOD: Duration = Duration::from_millis(10);

/// The due time that follows `fired` for a reminder with period `period`:
/// the first `fired + k * period` later than `now` (k ≥ 1).
pub fn next_due(fired: UnixMillis, period: u64, now: UnixMillis) -> UnixMillis {
    let period = period.max(1);
    if fired + period > now {
        return fired + period;
    }
    fired + ((now - fired) / period + 1) * period
}

impl Engine {
    /// Schedules (or replaces) a reminder; true if it replaced one.
    pub async fn schedule_reminder(
        &self,
        actor: ActorId,
        reminder_id: String,
        method: String,
        payload: bytes::Bytes,
        fire_at: Option<UnixMillis>,
        period: Option<Duration>,
    ) -> Result<bool, Error> {
        if reminder_id.is_empty() {
            return Err(Error::InvalidArgument("reminder_id is required".into()));
        }
        if method.is_empty() {
            return Err(Error::InvalidArgument("method is required".into()));
        }
        if period.is_some_and(|p| p < MIN_PERIOD) {
            return Err(Error::InvalidArgument(format!("period: must be at least {MIN_PERIOD:?}")));
        }
        self.check_known(&Target::Actor(actor.clone())).await?;
        let record = ReminderRecord {
            actor,
            id: reminder_id,
            method,
            payload,
            next_due: fire_at.unwrap_or_else(now_millis),
            period_ms: period.map(|p| p.as_millis() as u64),
        };
        Ok(self.shared.store.put_reminder(record).await?)
    }

    /// Cancels one reminder of an actor, or all; returns how many.
    pub async fn cancel_reminders(&self, actor: &ActorId, reminder_id: Option<&str>) -> Result<u32, Error> {
        Ok(self.shared.store.cancel_reminders(actor, reminder_id).await?)
    }

    /// Lists reminders of an actor, of a type, or all.
    pub async fn list_reminders(&self, kind: Option<&str>, id: Option<&str>) -> Result<Vec<ReminderRecord>, Error> {
        Ok(self.shared.store.list_reminders(kind, id).await?)
    }

    pub(super) fn spawn_reminder_ticker(&self) {
        let engine = self.clone();
        let interval = self.shared.options.reminder_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticks = 0u64;
            loop {
                ticker.tick().await;
                if let Err(e) = engine.fire_due_reminders().await {
                    tracing::warn!(error = %e, "cannot fire reminders");
                }
                ticks += 1;
                // In a mesh, subscriptions made through other runtimes are
                // found here: each is delivered by the owner of its target.
                if engine.shared.remote.is_some()
                    && ticks.is_multiple_of(20)
                    && let Err(e) = engine.spawn_deliveries().await
                {
                    tracing::warn!(error = %e, "cannot list subscriptions");
                }
            }
        });
    }

    async fn fire_due_reminders(&self) -> Result<(), Error> {
        let now = now_millis();
        for reminder in self.shared.store.due_reminders(now, BATCH).await? {
            // The owner of the actor's partition fires it.
            if !self.owns(&Target::Actor(reminder.actor.clone()), "") {
                continue;
            }
            let fired = reminder.next_due;
            let request_id = format!("reminder:{}/{}@{fired}", reminder.actor, reminder.id);
            let submission = Submission {
                target: Target::Actor(reminder.actor.clone()),
                method: reminder.method.clone(),
                payload: reminder.payload.clone(),
                context: None,
                request_id: Some(request_id),
                deadline: None,
            };
            match self.tell(submission).await {
                Ok(_) => {
                    let next = reminder.period_ms.map(|p| next_due(fired, p, now));
                    self.shared.store.advance_reminder(&reminder.actor, &reminder.id, fired, next).await?;
                }
                // The type is not hosted (yet): the reminder stays due.
                Err(Error::NotFound(message)) => tracing::debug!(%message, "reminder waits for its actor type"),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::next_due;

    #[test]
    fn the_next_due_time_follows_the_period() {
        assert_eq!(next_due(1000, 100, 1000), 1100);
        assert_eq!(next_due(1000, 100, 1050), 1100);
    }

    #[test]
    fn missed_ticks_are_coalesced_into_the_first_due_time_after_now() {
        assert_eq!(next_due(1000, 100, 1100), 1200, "a tick due exactly now has passed");
        assert_eq!(next_due(1000, 100, 1999), 2000);
        assert_eq!(next_due(1000, 100, 5050), 5100, "forty missed ticks fire once");
    }
}
