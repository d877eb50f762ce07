//! [`EmbeddedStateStore`]: actor state in the embedded deployment's `redb`
//! file. One table keyed by `(actor type, actor id, submap, key)`, so the
//! state of one actor (and of one submap) is a contiguous range.
//!
//! Sidecar entries carry their expiry time (wall clock, ms since the epoch)
//! and are filtered on read; each put also drops the expired ones, so the
//! table stays as small as the set of live runtimes.

use super::{Entry, ReminderRecord, Result, StateStore, SubscriptionRecord, Update, UpdateCounts};
use crate::embedded::{self, EmbeddedDb};
use crate::engine::types::ActorId;
use crate::engine::types::UnixMillis;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};
use std::time::{Duration, SystemTime};

type StateKey<'a> = (&'a str, &'a str, &'a str, &'a str);

const STATE: TableDefinition<StateKey<'static>, &[u8]> = TableDefinition::new("state");
const METADATA: TableDefinition<&str, &[u8]> = TableDefinition::new("metadata");
/// `(actor type, actor id, reminder id)` → encoded [`ReminderRecord`].
const REMINDERS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("reminders");
/// `(due, actor type, actor id, reminder id)`: the reminders by due time.
const REMINDERS_DUE: TableDefinition<(u64, &str, &str, &str), ()> = TableDefinition::new("reminders_due");
/// Subscription id → encoded [`SubscriptionRecord`].
const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
/// Runtime id → its expiry (ms since the epoch, 8 bytes big-endian)
/// followed by its opaque info.
const SIDECARS: TableDefinition<&str, &[u8]> = TableDefinition::new("sidecars");

/// The wall clock in ms since the epoch: sidecar expiry must hold across
/// restarts, so a monotonic clock will not do.
fn wall_millis() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Splits a [`SIDECARS`] value into its expiry and info.
fn split_sidecar(value: &[u8]) -> std::result::Result<(u64, &[u8]), embedded::Error> {
    let (expiry, info) = value
        .split_first_chunk::<8>()
        .ok_or_else(|| embedded::Error::Storage("decode: a sidecar entry is shorter than its expiry".into()))?;
    Ok((u64::from_be_bytes(*expiry), info))
}

fn encode<T: serde::Serialize>(value: &T) -> std::result::Result<Vec<u8>, embedded::Error> {
    postcard::to_stdvec(value).map_err(|e| embedded::Error::Storage(format!("encode: {e}")))
}

fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> std::result::Result<T, embedded::Error> {
    postcard::from_bytes(bytes).map_err(|e| embedded::Error::Storage(format!("decode: {e}")))
}

/// Opens a table for reading; a table never written reads as empty.
macro_rules! read_table {
    ($txn:expr, $table:expr) => {
        match $txn.open_table($table) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Default::default()),
            Err(e) => return Err(e.into()),
        }
    };
}

/// Actor state in the embedded `redb` file. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStateStore {
    db: EmbeddedDb,
}

impl EmbeddedStateStore {
    /// A store in `db`.
    pub fn new(db: EmbeddedDb) -> Self {
        Self { db }
    }

    /// Reads the entries of `actor` (of one submap if `submap` is given).
    fn scan(&self, actor: &ActorId, submap: Option<&str>) -> std::result::Result<Vec<Entry>, embedded::Error> {
        let txn = self.db.db().begin_read()?;
        let table = match txn.open_table(STATE) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let start = (actor.kind.as_str(), actor.id.as_str(), submap.unwrap_or(""), "");
        let mut entries = Vec::new();
        for item in table.range(start..)? {
            let (key, value) = item?;
            let (kind, id, sub, k) = key.value();
            if kind != actor.kind || id != actor.id || submap.is_some_and(|s| s != sub) {
                break;
            }
            entries.push(Entry {
                submap: sub.to_owned(),
                key: k.to_owned(),
                value: Bytes::copy_from_slice(value.value()),
            });
        }
        Ok(entries)
    }
}

/// Removes every entry of `actor` (of one submap if given) inside `txn`.
fn remove_range(
    txn: &redb::WriteTransaction,
    actor: &ActorId,
    submap: Option<&str>,
) -> std::result::Result<u32, embedded::Error> {
    let mut table = txn.open_table(STATE)?;
    let start = (actor.kind.as_str(), actor.id.as_str(), submap.unwrap_or(""), "");
    let mut doomed: Vec<(String, String)> = Vec::new();
    for item in table.range(start..)? {
        let (key, _) = item?;
        let (kind, id, sub, k) = key.value();
        if kind != actor.kind || id != actor.id || submap.is_some_and(|s| s != sub) {
            break;
        }
        doomed.push((sub.to_owned(), k.to_owned()));
    }
    for (sub, k) in &doomed {
        table.remove((actor.kind.as_str(), actor.id.as_str(), sub.as_str(), k.as_str()))?;
    }
    Ok(doomed.len() as u32)
}

impl StateStore for EmbeddedStateStore {
    fn get<'a>(&'a self, actor: &'a ActorId, submap: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        async move {
            let read = || -> std::result::Result<Option<Bytes>, embedded::Error> {
                let txn = self.db.db().begin_read()?;
                let table = match txn.open_table(STATE) {
                    Ok(table) => table,
                    Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                Ok(table
                    .get((actor.kind.as_str(), actor.id.as_str(), submap, key))?
                    .map(|v| Bytes::copy_from_slice(v.value())))
            };
            Ok(read()?)
        }
        .boxed()
    }

    fn set(&self, actor: &ActorId, entry: Entry) -> BoxFuture<'static, Result<bool>> {
        let actor = actor.clone();
        self.db
            .write(move |txn| {
                let mut table = txn.open_table(STATE)?;
                let old = table.insert(
                    (actor.kind.as_str(), actor.id.as_str(), entry.submap.as_str(), entry.key.as_str()),
                    entry.value.as_ref(),
                )?;
                Ok(old.is_none())
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn delete(&self, actor: &ActorId, submap: &str, key: &str) -> BoxFuture<'static, Result<bool>> {
        let (actor, submap, key) = (actor.clone(), submap.to_owned(), key.to_owned());
        self.db
            .write(move |txn| {
                let mut table = txn.open_table(STATE)?;
                let old = table.remove((actor.kind.as_str(), actor.id.as_str(), submap.as_str(), key.as_str()))?;
                Ok(old.is_some())
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn get_all<'a>(&'a self, actor: &'a ActorId) -> BoxFuture<'a, Result<Vec<Entry>>> {
        async move { Ok(self.scan(actor, None)?) }.boxed()
    }

    fn get_submap<'a>(&'a self, actor: &'a ActorId, submap: &'a str) -> BoxFuture<'a, Result<Vec<Entry>>> {
        async move { Ok(self.scan(actor, Some(submap))?) }.boxed()
    }

    fn update(&self, actor: &ActorId, update: Update) -> BoxFuture<'static, Result<UpdateCounts>> {
        let actor = actor.clone();
        self.db
            .write(move |txn| {
                let mut table = txn.open_table(STATE)?;
                let mut counts = UpdateCounts::default();
                for (submap, key) in &update.removals {
                    if table.remove((actor.kind.as_str(), actor.id.as_str(), submap.as_str(), key.as_str()))?.is_some()
                    {
                        counts.removed += 1;
                    }
                }
                for entry in &update.updates {
                    let old = table.insert(
                        (actor.kind.as_str(), actor.id.as_str(), entry.submap.as_str(), entry.key.as_str()),
                        entry.value.as_ref(),
                    )?;
                    if old.is_none() {
                        counts.added += 1;
                    }
                }
                Ok(counts)
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn delete_all(&self, actor: &ActorId) -> BoxFuture<'static, Result<u32>> {
        let actor = actor.clone();
        self.db.write(move |txn| remove_range(txn, &actor, None)).map(|r| r.map_err(Into::into)).boxed()
    }

    fn clear_submap(&self, actor: &ActorId, submap: &str) -> BoxFuture<'static, Result<u32>> {
        let (actor, submap) = (actor.clone(), submap.to_owned());
        self.db.write(move |txn| remove_range(txn, &actor, Some(&submap))).map(|r| r.map_err(Into::into)).boxed()
    }

    fn metadata<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        async move {
            let read = || -> std::result::Result<Option<Bytes>, embedded::Error> {
                let txn = self.db.db().begin_read()?;
                let table = match txn.open_table(METADATA) {
                    Ok(table) => table,
                    Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                Ok(table.get(key)?.map(|v| Bytes::copy_from_slice(v.value())))
            };
            Ok(read()?)
        }
        .boxed()
    }

    fn put_reminder(&self, reminder: ReminderRecord) -> BoxFuture<'static, Result<bool>> {
        self.db
            .write(move |txn| {
                let r = &reminder;
                let replaced = delete_reminder_in(txn, &r.actor.kind, &r.actor.id, &r.id)?;
                write_reminder_in(txn, r)?;
                Ok(replaced)
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn cancel_reminders(&self, actor: &ActorId, id: Option<&str>) -> BoxFuture<'static, Result<u32>> {
        let (actor, id) = (actor.clone(), id.map(str::to_owned));
        let store = self.clone();
        async move {
            let ids: Vec<String> = match id {
                Some(id) => vec![id],
                None => store.read_reminders(Some(&actor.kind), Some(&actor.id))?.into_iter().map(|r| r.id).collect(),
            };
            let cancelled = store
                .db
                .write(move |txn| {
                    let mut n = 0;
                    for rid in &ids {
                        if delete_reminder_in(txn, &actor.kind, &actor.id, rid)? {
                            n += 1;
                        }
                    }
                    Ok(n)
                })
                .await?;
            Ok(cancelled)
        }
        .boxed()
    }

    fn list_reminders<'a>(
        &'a self,
        kind: Option<&'a str>,
        id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ReminderRecord>>> {
        async move { Ok(self.read_reminders(kind, id)?) }.boxed()
    }

    fn due_reminders(&self, now: UnixMillis, limit: usize) -> BoxFuture<'_, Result<Vec<ReminderRecord>>> {
        async move { Ok(self.read_due(now, limit)?) }.boxed()
    }

    fn advance_reminder(
        &self,
        actor: &ActorId,
        id: &str,
        fired: UnixMillis,
        next: Option<UnixMillis>,
    ) -> BoxFuture<'static, Result<()>> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.db
            .write(move |txn| {
                let current: Option<ReminderRecord> = {
                    let table = txn.open_table(REMINDERS)?;
                    let found = table.get((actor.kind.as_str(), actor.id.as_str(), id.as_str()))?;
                    match found {
                        Some(bytes) => Some(decode(bytes.value())?),
                        None => None,
                    }
                };
                let Some(mut current) = current.filter(|r| r.next_due == fired) else { return Ok(()) };
                delete_reminder_in(txn, &actor.kind, &actor.id, &id)?;
                if let Some(next) = next {
                    current.next_due = next;
                    write_reminder_in(txn, &current)?;
                }
                Ok(())
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn put_subscription(&self, subscription: SubscriptionRecord) -> BoxFuture<'static, Result<bool>> {
        self.db
            .write(move |txn| {
                let mut table = txn.open_table(SUBSCRIPTIONS)?;
                if table.get(subscription.id.as_str())?.is_some() {
                    return Ok(false);
                }
                let bytes = encode(&subscription)?;
                table.insert(subscription.id.as_str(), bytes.as_slice())?;
                Ok(true)
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SubscriptionRecord>>> {
        async move { Ok(self.read_subscriptions(Some(id))?.pop()) }.boxed()
    }

    fn delete_subscription(&self, id: &str) -> BoxFuture<'static, Result<bool>> {
        let id = id.to_owned();
        self.db
            .write(move |txn| Ok(txn.open_table(SUBSCRIPTIONS)?.remove(id.as_str())?.is_some()))
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn list_subscriptions(&self) -> BoxFuture<'_, Result<Vec<SubscriptionRecord>>> {
        async move { Ok(self.read_subscriptions(None)?) }.boxed()
    }

    fn advance_subscription(&self, id: &str, from: u64, to: u64) -> BoxFuture<'static, Result<bool>> {
        let id = id.to_owned();
        self.db
            .write(move |txn| {
                let mut table = txn.open_table(SUBSCRIPTIONS)?;
                let current: Option<SubscriptionRecord> = match table.get(id.as_str())? {
                    Some(bytes) => Some(decode(bytes.value())?),
                    None => None,
                };
                let Some(mut current) = current.filter(|s| s.next_offset == from) else { return Ok(false) };
                current.next_offset = to;
                let bytes = encode(&current)?;
                table.insert(id.as_str(), bytes.as_slice())?;
                Ok(true)
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn set_metadata(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<()>> {
        let key = key.to_owned();
        self.db
            .write(move |txn| {
                txn.open_table(METADATA)?.insert(key.as_str(), value.as_ref())?;
                Ok(())
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn put_sidecar(&self, runtime_id: &str, info: Bytes, ttl: Duration) -> BoxFuture<'static, Result<()>> {
        let runtime_id = runtime_id.to_owned();
        self.db
            .write(move |txn| {
                let now = wall_millis();
                let mut table = txn.open_table(SIDECARS)?;
                let mut expired = Vec::new();
                for item in table.iter()? {
                    let (id, value) = item?;
                    if split_sidecar(value.value())?.0 <= now {
                        expired.push(id.value().to_owned());
                    }
                }
                for id in &expired {
                    table.remove(id.as_str())?;
                }
                let expiry = now.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64);
                let mut value = Vec::with_capacity(8 + info.len());
                value.extend_from_slice(&expiry.to_be_bytes());
                value.extend_from_slice(&info);
                table.insert(runtime_id.as_str(), value.as_slice())?;
                Ok(())
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn sidecars(&self) -> BoxFuture<'_, Result<Vec<(String, Bytes)>>> {
        async move { Ok(self.read_sidecars()?) }.boxed()
    }

    fn remove_sidecar(&self, runtime_id: &str) -> BoxFuture<'static, Result<()>> {
        let runtime_id = runtime_id.to_owned();
        self.db
            .write(move |txn| {
                txn.open_table(SIDECARS)?.remove(runtime_id.as_str())?;
                Ok(())
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }
}

/// Deletes a reminder and its due-time index entry inside `txn`.
fn delete_reminder_in(
    txn: &redb::WriteTransaction,
    kind: &str,
    id: &str,
    rid: &str,
) -> std::result::Result<bool, embedded::Error> {
    let mut reminders = txn.open_table(REMINDERS)?;
    let Some(old) = reminders.remove((kind, id, rid))? else { return Ok(false) };
    let old: ReminderRecord = decode(old.value())?;
    txn.open_table(REMINDERS_DUE)?.remove((old.next_due, kind, id, rid))?;
    Ok(true)
}

fn write_reminder_in(txn: &redb::WriteTransaction, r: &ReminderRecord) -> std::result::Result<(), embedded::Error> {
    let bytes = encode(r)?;
    txn.open_table(REMINDERS)?.insert((r.actor.kind.as_str(), r.actor.id.as_str(), r.id.as_str()), bytes.as_slice())?;
    txn.open_table(REMINDERS_DUE)?
        .insert((r.next_due, r.actor.kind.as_str(), r.actor.id.as_str(), r.id.as_str()), ())?;
    Ok(())
}

impl EmbeddedStateStore {
    fn read_reminders(
        &self,
        kind: Option<&str>,
        id: Option<&str>,
    ) -> std::result::Result<Vec<ReminderRecord>, embedded::Error> {
        let txn = self.db.db().begin_read()?;
        let table = read_table!(txn, REMINDERS);
        let mut list = Vec::new();
        let start = (kind.unwrap_or(""), id.unwrap_or(""), "");
        for item in table.range(start..)? {
            let (key, value) = item?;
            let (k, i, _) = key.value();
            // The range starts at the first match, so the first mismatch
            // ends it.
            if kind.is_some_and(|want| want != k) || id.is_some_and(|want| want != i) {
                break;
            }
            list.push(decode(value.value())?);
        }
        Ok(list)
    }

    fn read_due(&self, now: UnixMillis, limit: usize) -> std::result::Result<Vec<ReminderRecord>, embedded::Error> {
        let txn = self.db.db().begin_read()?;
        let due = read_table!(txn, REMINDERS_DUE);
        let reminders = read_table!(txn, REMINDERS);
        let mut list = Vec::new();
        for item in due.range((0u64, "", "", "")..)? {
            let (key, _) = item?;
            let (at, kind, id, rid) = key.value();
            if at > now || list.len() >= limit {
                break;
            }
            if let Some(bytes) = reminders.get((kind, id, rid))? {
                list.push(decode(bytes.value())?);
            }
        }
        Ok(list)
    }

    /// The live sidecar entries, ordered by runtime id (the table's order).
    fn read_sidecars(&self) -> std::result::Result<Vec<(String, Bytes)>, embedded::Error> {
        let txn = self.db.db().begin_read()?;
        let table = read_table!(txn, SIDECARS);
        let now = wall_millis();
        let mut list = Vec::new();
        for item in table.iter()? {
            let (id, value) = item?;
            let (expiry, info) = split_sidecar(value.value())?;
            if expiry > now {
                list.push((id.value().to_owned(), Bytes::copy_from_slice(info)));
            }
        }
        Ok(list)
    }

    fn read_subscriptions(&self, only: Option<&str>) -> std::result::Result<Vec<SubscriptionRecord>, embedded::Error> {
        let txn = self.db.db().begin_read()?;
        let table = read_table!(txn, SUBSCRIPTIONS);
        let mut list = Vec::new();
        match only {
            Some(id) => {
                if let Some(bytes) = table.get(id)? {
                    list.push(decode(bytes.value())?);
                }
            }
            None => {
                for item in table.iter()? {
                    let (_, value) = item?;
                    list.push(decode(value.value())?);
                }
            }
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[tokio::test]
    async fn embedded_store_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStateStore::new(EmbeddedDb::open(dir.path()).expect("open"));
        conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn state_survives_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let actor = ActorId::new("T", "1");
        {
            let store = EmbeddedStateStore::new(EmbeddedDb::open(dir.path()).expect("open"));
            store
                .set(&actor, Entry { submap: String::new(), key: "k".into(), value: Bytes::from_static(b"v") })
                .await
                .expect("set");
        }
        let store = EmbeddedStateStore::new(EmbeddedDb::open(dir.path()).expect("reopen"));
        assert_eq!(store.get(&actor, "", "k").await.expect("get"), Some(Bytes::from_static(b"v")));
    }
}
