//! [`EmbeddedStateStore`]: actor state in the embedded deployment's `redb`
//! file. One table keyed by `(actor type, actor id, submap, key)`, so the
//! state of one actor (and of one submap) is a contiguous range.

use super::{Entry, Result, StateStore, Update, UpdateCounts};
use crate::embedded::{self, EmbeddedDb};
use crate::engine::types::ActorId;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};

type StateKey<'a> = (&'a str, &'a str, &'a str, &'a str);

const STATE: TableDefinition<StateKey<'static>, &[u8]> = TableDefinition::new("state");
const METADATA: TableDefinition<&str, &[u8]> = TableDefinition::new("metadata");

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
            entries.push(Entry { submap: sub.to_owned(), key: k.to_owned(), value: Bytes::copy_from_slice(value.value()) });
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
                    if table.remove((actor.kind.as_str(), actor.id.as_str(), submap.as_str(), key.as_str()))?.is_some() {
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
        self.db
            .write(move |txn| remove_range(txn, &actor, Some(&submap)))
            .map(|r| r.map_err(Into::into))
            .boxed()
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
