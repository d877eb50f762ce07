//! [`EmbeddedLog`]: the log in the embedded deployment's `redb` file.
//!
//! Tables: `pending` maps an append sequence number to the encoded request
//! (so recovery returns requests in append order), `pending_ids` maps a
//! request id to its sequence number, `outcomes` keeps the recorded outcome
//! of completed requests, and `meta` holds the ownership epoch and the next
//! sequence number.

use super::{Completion, Durable, Error, Log, Recovery};
use crate::embedded::{self, EmbeddedDb};
use crate::engine::types::{Outcome, Request, now_millis};
use futures::FutureExt;
use futures::future::BoxFuture;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("log_pending");
const PENDING_IDS: TableDefinition<&str, u64> = TableDefinition::new("log_pending_ids");
const OUTCOMES: TableDefinition<&str, &[u8]> = TableDefinition::new("log_outcomes");
const META: TableDefinition<&str, u64> = TableDefinition::new("log_meta");
/// `(completed_at, request id)` of every recorded outcome, for expiry.
const OUTCOME_TIMES: TableDefinition<(u64, &str), ()> = TableDefinition::new("log_outcome_times");

const EPOCH: &str = "epoch";
const NEXT_SEQ: &str = "next_seq";

#[derive(Serialize, Deserialize)]
struct RecordedOutcome {
    completed_at: u64,
    outcome: Outcome,
}

/// The log of the embedded deployment. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedLog {
    db: EmbeddedDb,
}

impl EmbeddedLog {
    /// A log in `db`.
    pub fn new(db: EmbeddedDb) -> Self {
        Self { db }
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, embedded::Error> {
    postcard::to_stdvec(value).map_err(|e| embedded::Error::Storage(format!("encode: {e}")))
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, embedded::Error> {
    postcard::from_bytes(bytes).map_err(|e| embedded::Error::Storage(format!("decode: {e}")))
}

fn append_in(txn: &WriteTransaction, requests: &[Request]) -> Result<(), embedded::Error> {
    if requests.is_empty() {
        return Ok(());
    }
    let mut meta = txn.open_table(META)?;
    let mut seq = meta.get(NEXT_SEQ)?.map(|v| v.value()).unwrap_or(0);
    let mut pending = txn.open_table(PENDING)?;
    let mut ids = txn.open_table(PENDING_IDS)?;
    for request in requests {
        if ids.get(request.id.as_str())?.is_some() {
            continue;
        }
        let bytes = encode(request)?;
        pending.insert(seq, bytes.as_slice())?;
        ids.insert(request.id.as_str(), seq)?;
        seq += 1;
    }
    meta.insert(NEXT_SEQ, seq)?;
    Ok(())
}

impl Log for EmbeddedLog {
    fn recover(&self) -> BoxFuture<'_, Result<Recovery, Error>> {
        self.db
            .write(|txn| {
                let mut meta = txn.open_table(META)?;
                let epoch = meta.get(EPOCH)?.map(|v| v.value()).unwrap_or(0) + 1;
                meta.insert(EPOCH, epoch)?;
                let pending_table = txn.open_table(PENDING)?;
                let mut pending = Vec::new();
                for entry in pending_table.iter()? {
                    let (_, bytes) = entry?;
                    pending.push(decode::<Request>(bytes.value())?);
                }
                Ok(Recovery { epoch, pending })
            })
            .map(|r| r.map_err(Error::from))
            .boxed()
    }

    fn append(&self, requests: Vec<Request>) -> Durable {
        self.db.write(move |txn| append_in(txn, &requests)).map(|r| r.map_err(Error::from)).boxed()
    }

    fn append_lazily(&self, requests: Vec<Request>) -> Durable {
        self.db.write_lazily(move |txn| append_in(txn, &requests)).map(|r| r.map_err(Error::from)).boxed()
    }

    fn complete(&self, completions: Vec<Completion>) -> Durable {
        self.db
            .write(move |txn| {
                let now = now_millis();
                let recorded: Vec<Option<Vec<u8>>> = completions
                    .iter()
                    .map(|c| {
                        c.outcome
                            .as_ref()
                            .map(|outcome| encode(&RecordedOutcome { completed_at: now, outcome: outcome.clone() }))
                            .transpose()
                    })
                    .collect::<Result<_, _>>()?;
                {
                    let mut ids = txn.open_table(PENDING_IDS)?;
                    let mut pending = txn.open_table(PENDING)?;
                    let mut outcomes = txn.open_table(OUTCOMES)?;
                    let mut times = txn.open_table(OUTCOME_TIMES)?;
                    for (completion, recorded) in completions.iter().zip(&recorded) {
                        if let Some(seq) = ids.remove(completion.request_id.as_str())?.map(|v| v.value()) {
                            pending.remove(seq)?;
                        }
                        if let Some(bytes) = recorded {
                            let id = completion.request_id.as_str();
                            if let Some(old) = outcomes.insert(id, bytes.as_slice())? {
                                let old = decode::<RecordedOutcome>(old.value())?;
                                times.remove((old.completed_at, id))?;
                            }
                            times.insert((now, id), ())?;
                        }
                    }
                }
                for completion in &completions {
                    append_in(txn, &completion.next)?;
                }
                Ok(())
            })
            .map(|r| r.map_err(Error::from))
            .boxed()
    }

    fn outcome(&self, request_id: &str) -> BoxFuture<'_, Result<Option<Outcome>, Error>> {
        let request_id = request_id.to_owned();
        async move {
            let read = || -> Result<Option<Outcome>, embedded::Error> {
                let txn = self.db.db().begin_read()?;
                let table = match txn.open_table(OUTCOMES) {
                    Ok(table) => table,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                match table.get(request_id.as_str())? {
                    Some(bytes) => Ok(Some(decode::<RecordedOutcome>(bytes.value())?.outcome)),
                    None => Ok(None),
                }
            };
            read().map_err(Error::from)
        }
        .boxed()
    }

    fn expire_outcomes(&self, before: u64) -> BoxFuture<'static, Result<usize, Error>> {
        self.db.write(move |txn| Self::expire_in(txn, before)).map(|r| r.map_err(Error::from)).boxed()
    }
}

impl EmbeddedLog {
    fn expire_in(txn: &WriteTransaction, before: u64) -> Result<usize, embedded::Error> {
        let mut times = txn.open_table(OUTCOME_TIMES)?;
        let mut outcomes = txn.open_table(OUTCOMES)?;
        let mut expired: Vec<(u64, String)> = Vec::new();
        for item in times.range((0u64, "")..(before, ""))? {
            let (key, _) = item?;
            let (at, id) = key.value();
            expired.push((at, id.to_owned()));
        }
        for (at, id) in &expired {
            times.remove((*at, id.as_str()))?;
            outcomes.remove(id.as_str())?;
        }
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::conformance;

    fn open() -> (tempfile::TempDir, EmbeddedLog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = EmbeddedDb::open(dir.path()).expect("open");
        (dir, EmbeddedLog::new(db))
    }

    #[tokio::test]
    async fn embedded_log_conforms() {
        conformance::run_all(|| async {
            let (dir, log) = open();
            (Box::new(dir) as Box<dyn std::any::Any + Send>, log)
        })
        .await;
    }

    #[tokio::test]
    async fn pending_requests_survive_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = EmbeddedLog::new(EmbeddedDb::open(dir.path()).expect("open"));
            log.recover().await.expect("recover");
            log.append(vec![conformance::request("a"), conformance::request("b")]).await.expect("append");
            log.complete(vec![Completion { request_id: "a".into(), outcome: None, next: vec![] }])
                .await
                .expect("complete");
        }
        let log = EmbeddedLog::new(EmbeddedDb::open(dir.path()).expect("reopen"));
        let recovery = log.recover().await.expect("recover");
        assert_eq!(recovery.epoch, 2);
        assert_eq!(recovery.pending.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["b"]);
    }
}
