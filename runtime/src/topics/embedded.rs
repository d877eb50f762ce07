//! [`EmbeddedTopics`]: topics in the embedded deployment's `redb` file.
//! `topics` maps a topic to its next offset; `topic_events` maps
//! `(topic, offset)` to the event.

use super::{Error, Event, Result, Topics};
use crate::embedded::{self, EmbeddedDb};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};

const TOPICS: TableDefinition<&str, u64> = TableDefinition::new("topics");
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("topic_events");

/// Topics in the embedded `redb` file. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedTopics {
    db: EmbeddedDb,
}

impl EmbeddedTopics {
    /// Topics in `db`.
    pub fn new(db: EmbeddedDb) -> Self {
        Self { db }
    }
}

/// What a write found, so the caller can tell "no topic" from a failure.
enum Found<T> {
    Yes(T),
    NoTopic,
}

fn settle<T>(result: std::result::Result<Found<T>, embedded::Error>, topic: String) -> Result<T> {
    match result? {
        Found::Yes(value) => Ok(value),
        Found::NoTopic => Err(Error::NoSuchTopic(topic)),
    }
}

impl Topics for EmbeddedTopics {
    fn create(&self, topic: &str, _partitions: u32) -> BoxFuture<'static, Result<bool>> {
        let topic = topic.to_owned();
        self.db
            .write(move |txn| {
                let mut topics = txn.open_table(TOPICS)?;
                if topics.get(topic.as_str())?.is_some() {
                    return Ok(false);
                }
                topics.insert(topic.as_str(), 0)?;
                Ok(true)
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn delete(&self, topic: &str) -> BoxFuture<'static, Result<bool>> {
        let topic = topic.to_owned();
        self.db
            .write(move |txn| {
                let Some(end) = txn.open_table(TOPICS)?.remove(topic.as_str())?.map(|v| v.value()) else {
                    return Ok(false);
                };
                let mut events = txn.open_table(EVENTS)?;
                for offset in 0..end {
                    events.remove((topic.as_str(), offset))?;
                }
                Ok(true)
            })
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn end_offset<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        async move {
            let read = || -> std::result::Result<Option<u64>, embedded::Error> {
                let txn = self.db.db().begin_read()?;
                let topics = match txn.open_table(TOPICS) {
                    Ok(table) => table,
                    Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                Ok(topics.get(topic)?.map(|v| v.value()))
            };
            Ok(read()?)
        }
        .boxed()
    }

    fn publish(&self, topic: &str, payload: Bytes) -> BoxFuture<'static, Result<u64>> {
        let topic = topic.to_owned();
        let name = topic.clone();
        self.db
            .write(move |txn| {
                let mut topics = txn.open_table(TOPICS)?;
                let Some(offset) = topics.get(topic.as_str())?.map(|v| v.value()) else { return Ok(Found::NoTopic) };
                topics.insert(topic.as_str(), offset + 1)?;
                txn.open_table(EVENTS)?.insert((topic.as_str(), offset), payload.as_ref())?;
                Ok(Found::Yes(offset))
            })
            .map(move |r| settle(r, name))
            .boxed()
    }

    fn read<'a>(&'a self, topic: &'a str, from: u64, max: usize) -> BoxFuture<'a, Result<Vec<Event>>> {
        async move {
            let read = || -> std::result::Result<Found<Vec<Event>>, embedded::Error> {
                let txn = self.db.db().begin_read()?;
                let topics = match txn.open_table(TOPICS) {
                    Ok(table) => table,
                    Err(TableError::TableDoesNotExist(_)) => return Ok(Found::NoTopic),
                    Err(e) => return Err(e.into()),
                };
                let Some(end) = topics.get(topic)?.map(|v| v.value()) else { return Ok(Found::NoTopic) };
                if from >= end {
                    return Ok(Found::Yes(Vec::new()));
                }
                let events = txn.open_table(EVENTS)?;
                let mut list = Vec::new();
                for item in events.range((topic, from)..(topic, end))? {
                    let (key, value) = item?;
                    list.push(Event { offset: key.value().1, payload: Bytes::copy_from_slice(value.value()) });
                    if list.len() >= max {
                        break;
                    }
                }
                Ok(Found::Yes(list))
            };
            settle(read(), topic.to_owned())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_topics_conform() {
        let dir = tempfile::tempdir().expect("tempdir");
        let topics = EmbeddedTopics::new(EmbeddedDb::open(dir.path()).expect("open"));
        crate::topics::conformance::run_all(&topics).await;
    }
}
