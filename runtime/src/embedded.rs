//! The embedded deployment's storage: one `redb` file that holds both the log
//! and the actor state, written by a single group-commit writer.
//!
//! Every write is a closure queued to the writer thread. The writer takes all
//! the closures queued so far, runs them in one write transaction and commits
//! it with one fsync, then tells each caller. Many concurrent completions thus
//! share one fsync (group commit) without weakening durability: nobody hears
//! "done" before the transaction holding their write is on disk.
//!
//! Writes are applied in the order they were queued, so a caller that queues
//! A and then B knows B is never durable without A.

use redb::{Database, WriteTransaction};
use std::{path::Path, sync::Arc, thread};
use tokio::sync::oneshot;

/// A failure of the embedded storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// redb reported an error (I/O, corruption, ...).
    #[error("embedded storage: {0}")]
    Storage(String),
    /// The writer thread has stopped.
    #[error("embedded storage is closed")]
    Closed,
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

macro_rules! storage_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self { Error::Storage(e.to_string()) }
        }
    )*};
}
storage_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

type Finisher = Box<dyn FnOnce(Result<(), Arc<str>>) + Send>;
type Apply = Box<dyn FnOnce(&WriteTransaction) -> Result<Finisher, (Error, Finisher)> + Send>;

/// A queued write and whether its caller waits for it to be on disk.
struct Job {
    apply: Apply,
    /// False for a write whose caller only needs it applied in order: it may
    /// reach the disk up to [`LAZY_FLUSH`] later (or with the next durable
    /// write, which always carries every write queued before it).
    durable: bool,
}

/// The longest a lazy write waits for its fsync.
const LAZY_FLUSH: std::time::Duration = std::time::Duration::from_millis(2);

/// The most writes one transaction takes, so a burst cannot starve callers.
const MAX_BATCH: usize = 4096;

/// A `redb` database with a group-commit writer. Cheap to clone; the file is
/// closed when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedDb {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    writer: Option<thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it commits what is queued;
        // joining it releases the file for whoever opens it next.
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl EmbeddedDb {
    /// Opens (or creates) the database file `dir/kar.redb` and starts its writer.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Storage(format!("{}: {e}", dir.display())))?;
        let db = Arc::new(Database::create(dir.join("kar.redb"))?);
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let writer_db = db.clone();
        let writer = thread::Builder::new()
            .name("kar-redb-writer".into())
            .spawn(move || write_loop(&writer_db, queue))
            .map_err(|e| Error::Storage(e.to_string()))?;
        Ok(Self { inner: Arc::new(Inner { db, jobs: Some(jobs), writer: Some(writer) }) })
    }

    /// The database, for read transactions.
    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    /// Queues `write` for the next group commit and returns a future that
    /// resolves with its result once the transaction is durable. The write is
    /// queued at the time of this call, not when the future is polled.
    ///
    /// `write` must do all its validation before it modifies anything: an
    /// `Err` from it aborts the whole batch (and fails every write in it).
    pub fn write<R, F>(&self, write: F) -> impl Future<Output = Result<R, Error>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<R, Error> + Send + 'static,
    {
        self.queue(true, write)
    }

    /// Like [`EmbeddedDb::write`], but the future resolves once the write is
    /// applied (visible to reads, ordered before every later write), and it
    /// reaches the disk within [`LAZY_FLUSH`] or with the next durable write,
    /// whichever comes first. For records nobody is told about until a later
    /// durable write that implies them.
    pub fn write_lazily<R, F>(&self, write: F) -> impl Future<Output = Result<R, Error>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<R, Error> + Send + 'static,
    {
        self.queue(false, write)
    }

    fn queue<R, F>(&self, durable: bool, write: F) -> impl Future<Output = Result<R, Error>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<R, Error> + Send + 'static,
    {
        let (done, result) = oneshot::channel::<Result<R, Error>>();
        let apply: Apply = Box::new(move |txn| match write(txn) {
            Ok(value) => Ok(Box::new(move |commit: Result<(), Arc<str>>| {
                let _ = done.send(commit.map(|()| value).map_err(|e| Error::Storage(e.to_string())));
            }) as Finisher),
            Err(e) => Err((
                e,
                Box::new(move |commit: Result<(), Arc<str>>| {
                    let message = commit.err().unwrap_or_else(|| "write failed".into());
                    let _ = done.send(Err(Error::Storage(message.to_string())));
                }) as Finisher,
            )),
        });
        let job = Job { apply, durable };
        let queued = match &self.inner.jobs {
            Some(jobs) => jobs.send(job).map_err(|_| ()),
            None => Err(()),
        };
        async move {
            queued.map_err(|_| Error::Closed)?;
            result.await.map_err(|_| Error::Closed)?
        }
    }
}

fn write_loop(db: &Database, queue: std::sync::mpsc::Receiver<Job>) {
    use std::sync::mpsc::RecvTimeoutError;
    // When the oldest write committed without an fsync was committed.
    let mut unflushed_since: Option<std::time::Instant> = None;
    loop {
        let first = match unflushed_since {
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Some(since) => match queue.recv_timeout(LAZY_FLUSH.saturating_sub(since.elapsed())) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    flush(db);
                    unflushed_since = None;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    flush(db);
                    return;
                }
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let overdue = unflushed_since.is_some_and(|since| since.elapsed() >= LAZY_FLUSH);
        let durable = overdue || batch.iter().any(|job| job.durable);
        commit_batch(db, batch, durable);
        if durable {
            unflushed_since = None;
        } else if unflushed_since.is_none() {
            unflushed_since = Some(std::time::Instant::now());
        }
    }
}

/// Makes every commit so far durable: an empty transaction committed with
/// `Durability::Immediate` persists the `Durability::None` commits before it.
fn flush(db: &Database) {
    let result = db.begin_write().map_err(|e| e.to_string()).and_then(|txn| txn.commit().map_err(|e| e.to_string()));
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot flush lazy writes");
    }
}

fn commit_batch(db: &Database, batch: Vec<Job>, durable: bool) {
    let txn = match db.begin_write() {
        Ok(mut txn) => {
            if !durable && txn.set_durability(redb::Durability::None).is_err() {
                // Not allowed here (e.g. a persistent savepoint is pending):
                // this commit is simply durable.
            }
            txn
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot begin a write transaction");
            // A job reports only through the finisher it returns when run;
            // dropping it unrun closes its channel: its caller sees `Closed`.
            drop(batch);
            return;
        }
    };
    let mut finishers = Vec::with_capacity(batch.len());
    let mut failure: Option<Arc<str>> = None;
    for job in batch {
        if failure.is_some() {
            // Never run: dropped, its caller sees `Closed` (see above).
            continue;
        }
        match (job.apply)(&txn) {
            Ok(finish) => finishers.push(finish),
            Err((e, finish)) => {
                let message: Arc<str> = e.to_string().into();
                tracing::error!(error = %message, "write failed; aborting its batch");
                failure = Some(message);
                finishers.push(finish);
            }
        }
    }
    let outcome = match failure {
        Some(message) => {
            let _ = txn.abort();
            Err(message)
        }
        None => txn.commit().map_err(|e| {
            tracing::error!(error = %e, "commit failed");
            Arc::<str>::from(e.to_string())
        }),
    };
    for finish in finishers {
        finish(outcome.clone());
    }
}
