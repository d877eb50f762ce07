//! The store: durable actor state and small runtime metadata.
//!
//! Actor state is a map from keys to values, where an entry may also live in a
//! named submap. The store sees values as opaque bytes (the API edge encodes
//! them); a top-level entry is stored with the empty submap name.
//!
//! # The contract every implementation follows
//!
//! 1. A write is durable when its future resolves `Ok`.
//! 2. [`StateStore::update`] applies its removals and then its updates as one
//!    atomic step: a reader sees all of it or none of it.
//! 3. The state of different actors is independent: no operation on one actor
//!    reads or changes another's.
//! 4. `get_all` returns entries ordered by (submap, key).
//! 5. A sidecar entry ([`StateStore::put_sidecar`]) is listed until `ttl`
//!    after its last put, and never after that (give or take the clock
//!    resolution of the backend); expired entries need no cleanup by the
//!    caller.
//!
//! This module knows nothing of gRPC, the engine or components.

pub mod embedded;
pub mod redis;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod redis_test_server;

use crate::engine::types::{ActorId, Target, UnixMillis};
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub use self::redis::RedisStateStore;
pub use embedded::EmbeddedStateStore;

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage underneath failed.
    #[error("state storage failed: {0}")]
    Storage(String),
    /// A fenced write was refused: the partition of the invocation making it
    /// has a newer owner.
    #[error("state write refused: {0}")]
    Fenced(String),
}

/// The ownership a write depends on: applied only while the epoch recorded
/// in the metadata under `key` is not newer than `epoch` (see
/// [`StateStore::fenced`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The metadata key of the partition's published ownership epoch.
    pub key: String,
    /// The epoch the writer owns the partition in.
    pub epoch: u64,
}

impl From<crate::embedded::Error> for Error {
    fn from(e: crate::embedded::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

/// The result type of store operations.
pub type Result<T> = std::result::Result<T, Error>;

/// One state entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The submap holding it; empty for a top-level entry.
    pub submap: String,
    /// The key within its (sub)map.
    pub key: String,
    /// The encoded value.
    pub value: Bytes,
}

/// A batch of changes to one actor's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// `(submap, key)` pairs to remove, applied first.
    pub removals: Vec<(String, String)>,
    /// Entries to write, applied after the removals.
    pub updates: Vec<Entry>,
}

/// What an [`Update`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateCounts {
    /// Entries created (not counting overwritten ones).
    pub added: u32,
    /// Entries removed.
    pub removed: u32,
}

/// A persistent reminder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderRecord {
    /// The actor it invokes.
    pub actor: ActorId,
    /// Its id, unique per actor.
    pub id: String,
    /// The method it invokes.
    pub method: String,
    /// The encoded `kar.v1.Payload` the method receives.
    pub payload: Bytes,
    /// When it is due next.
    pub next_due: UnixMillis,
    /// The period of a periodic reminder, in milliseconds.
    pub period_ms: Option<u64>,
}

/// A durable subscription of a target to a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// Its id.
    pub id: String,
    /// The topic it reads.
    pub topic: String,
    /// Who receives the events.
    pub target: Target,
    /// The method that receives each event.
    pub method: String,
    /// The offset of the next event to deliver.
    pub next_offset: u64,
}

/// Durable actor state and metadata. See the module docs for the contract.
pub trait StateStore: Send + Sync + 'static {
    /// Reads one entry.
    fn get<'a>(&'a self, actor: &'a ActorId, submap: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;

    /// Writes one entry; true if it did not exist before.
    fn set(&self, actor: &ActorId, entry: Entry) -> BoxFuture<'static, Result<bool>>;

    /// Deletes one entry; true if it existed.
    fn delete(&self, actor: &ActorId, submap: &str, key: &str) -> BoxFuture<'static, Result<bool>>;

    /// Reads every entry of the actor, ordered by (submap, key).
    fn get_all<'a>(&'a self, actor: &'a ActorId) -> BoxFuture<'a, Result<Vec<Entry>>>;

    /// Reads every entry of one submap, ordered by key.
    fn get_submap<'a>(&'a self, actor: &'a ActorId, submap: &'a str) -> BoxFuture<'a, Result<Vec<Entry>>>;

    /// Applies removals then updates atomically.
    fn update(&self, actor: &ActorId, update: Update) -> BoxFuture<'static, Result<UpdateCounts>>;

    /// Deletes every entry of the actor; returns how many.
    fn delete_all(&self, actor: &ActorId) -> BoxFuture<'static, Result<u32>>;

    /// Deletes every entry of one submap; returns how many.
    fn clear_submap(&self, actor: &ActorId, submap: &str) -> BoxFuture<'static, Result<u32>>;

    /// Reads a small metadata value of the runtime.
    fn metadata<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;

    /// This store with every state write (set, delete, update, delete_all,
    /// clear_submap) fenced by `fence`: checked and applied in one atomic
    /// step, failing with [`Error::Fenced`] once a newer epoch is published
    /// under `fence.key` (by [`StateStore::set_metadata`]). So a runtime
    /// that lost a partition while frozen lands none of the writes its
    /// components had in flight. `None` for a store only one process owns.
    fn fenced(&self, _fence: Fence) -> Option<std::sync::Arc<dyn StateStore>> {
        None
    }

    /// Writes a small metadata value of the runtime.
    fn set_metadata(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<()>>;

    /// Stores a reminder, replacing one with the same actor and id; true if
    /// it replaced one.
    fn put_reminder(&self, reminder: ReminderRecord) -> BoxFuture<'static, Result<bool>>;

    /// Deletes one reminder of an actor, or all of them; returns how many.
    fn cancel_reminders(&self, actor: &ActorId, id: Option<&str>) -> BoxFuture<'static, Result<u32>>;

    /// Lists reminders: of one actor (`kind` and `id`), of one type (`kind`
    /// only) or all.
    fn list_reminders<'a>(
        &'a self,
        kind: Option<&'a str>,
        id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ReminderRecord>>>;

    /// The reminders due at `now` or earlier, earliest first, at most `limit`.
    fn due_reminders(&self, now: UnixMillis, limit: usize) -> BoxFuture<'_, Result<Vec<ReminderRecord>>>;

    /// Moves a reminder that fired at `fired` to `next` (deletes it for
    /// `None`), unless it changed meanwhile (rescheduled or cancelled), in
    /// which case nothing happens.
    fn advance_reminder(
        &self,
        actor: &ActorId,
        id: &str,
        fired: UnixMillis,
        next: Option<UnixMillis>,
    ) -> BoxFuture<'static, Result<()>>;

    /// Stores a subscription unless one with its id exists; true if created.
    /// An existing subscription with the same id is left unchanged.
    fn put_subscription(&self, subscription: SubscriptionRecord) -> BoxFuture<'static, Result<bool>>;

    /// Reads one subscription.
    fn subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SubscriptionRecord>>>;

    /// Deletes a subscription; true if it existed.
    fn delete_subscription(&self, id: &str) -> BoxFuture<'static, Result<bool>>;

    /// Lists every subscription, ordered by id.
    fn list_subscriptions(&self) -> BoxFuture<'_, Result<Vec<SubscriptionRecord>>>;

    /// Moves a subscription's position from `from` to `to`, unless it is no
    /// longer at `from` (or was deleted); true if it moved.
    fn advance_subscription(&self, id: &str, from: u64, to: u64) -> BoxFuture<'static, Result<bool>>;

    /// Registers or refreshes the runtime `runtime_id` in the sidecar
    /// registry of the application: `info` (opaque) replaces what it
    /// registered before, and the entry expires `ttl` from now unless put
    /// again.
    fn put_sidecar(&self, runtime_id: &str, info: Bytes, ttl: Duration) -> BoxFuture<'static, Result<()>>;

    /// The registered runtimes whose entries have not expired, as
    /// `(runtime id, info)` ordered by runtime id.
    fn sidecars(&self) -> BoxFuture<'_, Result<Vec<(String, Bytes)>>>;

    /// Removes a runtime from the sidecar registry; nothing happens if it is
    /// not there.
    fn remove_sidecar(&self, runtime_id: &str) -> BoxFuture<'static, Result<()>>;
}
