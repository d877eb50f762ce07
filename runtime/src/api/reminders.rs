//! `RemindersService`: schedule, cancel and list persistent reminders.

use super::{Limits, convert, status};
use crate::engine::Engine;
use crate::engine::types::UnixMillis;
use crate::store::ReminderRecord;
use kar_proto::v1::{self, reminders_service_server::RemindersService};
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Serves `kar.v1.RemindersService`.
pub struct RemindersApi {
    engine: Engine,
    limits: Limits,
}

impl RemindersApi {
    /// The service over `engine`.
    pub fn new(engine: Engine, limits: Limits) -> Self {
        Self { engine, limits }
    }
}

fn millis(t: &prost_types::Timestamp, field: &str) -> Result<UnixMillis, Status> {
    if t.seconds < 0 || !(0..1_000_000_000).contains(&t.nanos) {
        return Err(status::invalid(field, &format!("{field} is not a valid time after 1970")));
    }
    Ok(t.seconds as u64 * 1000 + t.nanos as u64 / 1_000_000)
}

fn duration(d: &prost_types::Duration, field: &str) -> Result<Duration, Status> {
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err(status::invalid(field, &format!("{field} must be a positive duration")));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

fn to_proto(r: ReminderRecord) -> v1::Reminder {
    v1::Reminder {
        actor: Some(convert::to_actor_ref(&r.actor)),
        reminder_id: r.id,
        method: r.method,
        payload: Some(convert::decode_payload(&r.payload)),
        next_fire_time: Some(convert::timestamp(r.next_due)),
        period: r
            .period_ms
            .map(|ms| prost_types::Duration { seconds: (ms / 1000) as i64, nanos: ((ms % 1000) * 1_000_000) as i32 }),
    }
}

#[tonic::async_trait]
impl RemindersService for RemindersApi {
    async fn schedule_reminder(
        &self,
        request: Request<v1::ScheduleReminderRequest>,
    ) -> Result<Response<v1::ScheduleReminderResponse>, Status> {
        let r = request.into_inner();
        let actor = convert::actor_ref(r.actor.as_ref())?;
        if r.reminder_id.is_empty() {
            return Err(status::invalid("reminder_id", "reminder_id is required"));
        }
        if r.method.is_empty() {
            return Err(status::invalid("method", "method is required"));
        }
        let payload = convert::encode_payload(r.payload.and_then(|p| p.kind), self.limits.max_payload_bytes)?;
        let fire_at = r.fire_time.as_ref().map(|t| millis(t, "fire_time")).transpose()?;
        let period = r.period.as_ref().map(|d| duration(d, "period")).transpose()?;
        let replaced = self
            .engine
            .schedule_reminder(actor, r.reminder_id, r.method, payload, fire_at, period)
            .await
            .map_err(status::from_engine)?;
        Ok(Response::new(v1::ScheduleReminderResponse { replaced }))
    }

    async fn cancel_reminder(
        &self,
        request: Request<v1::CancelReminderRequest>,
    ) -> Result<Response<v1::CancelReminderResponse>, Status> {
        let r = request.into_inner();
        let actor = convert::actor_ref(r.actor.as_ref())?;
        let id = Some(r.reminder_id.as_str()).filter(|id| !id.is_empty());
        let cancelled = self.engine.cancel_reminders(&actor, id).await.map_err(status::from_engine)?;
        Ok(Response::new(v1::CancelReminderResponse { cancelled }))
    }

    async fn list_reminders(
        &self,
        request: Request<v1::ListRemindersRequest>,
    ) -> Result<Response<v1::ListRemindersResponse>, Status> {
        let r = request.into_inner();
        let (kind, id) = match &r.actor {
            None => (None, None),
            Some(a) if a.r#type.is_empty() => {
                return Err(status::invalid("actor.type", "actor.type is required when actor is given"));
            }
            Some(a) => (Some(a.r#type.as_str()), Some(a.id.as_str()).filter(|id| !id.is_empty())),
        };
        let reminders = self.engine.list_reminders(kind, id).await.map_err(status::from_engine)?;
        Ok(Response::new(v1::ListRemindersResponse { reminders: reminders.into_iter().map(to_proto).collect() }))
    }
}
