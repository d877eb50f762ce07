//! [`KafkaLog`]: the log of the distributed deployment, on Apache Kafka.
//!
//! # Layout
//!
//! One `KafkaLog` owns one topic, `kar.<app>.log.<name>`, with one partition
//! and `cleanup.policy=compact` (created with the admin client if missing).
//! Every record is keyed, so compaction keeps exactly the live state:
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `req:<id>` | postcard-encoded [`Request`] | the request is pending |
//! | `req:<id>` | null (tombstone) | the request is done (or dropped) |
//! | `out:<id>` | postcard-encoded `(completed_at, Outcome)` | its recorded outcome |
//! | `out:<id>` | null (tombstone) | the outcome was expired |
//! | `epoch` | the ownership epoch, a big-endian `u64` | the latest epoch |
//!
//! Each record also carries a `kar-kind` header (`request`, `done`,
//! `outcome`, `expired`, `epoch`) for whoever reads the topic by hand;
//! recovery only looks at keys. Requests and outcomes have separate keys so
//! that a tail call (a completion whose `next` reuses the request id) keeps
//! both its outcome and its next pending step.
//!
//! # Ownership and fencing
//!
//! Writes go through two transactional producers, used in turn, whose
//! `transactional.id`s are the topic name and the topic name + `.b` (in turn,
//! because a transaction begun on the producer that just committed is refused
//! until the commit's markers are written, and librdkafka backs off 20 ms).
//! [`Log::recover`] creates fresh producers, asks the log's guard (if any,
//! [`KafkaLog::with_guard`]: the mesh confirms with the group coordinator
//! that the partition is still assigned to this runtime) and calls
//! `init_transactions` on both, which aborts any transaction older producers
//! with those ids left open and fences them (KIP-98/KIP-447): an older
//! producer's next transaction fails with a fatal error, reported as
//! [`Error::Fenced`], and
//! every write queued to it afterwards fails the same way. Recovery then reads
//! the whole partition from the beginning with `isolation.level=read_committed`
//! until the partition end (librdkafka's partition EOF, which for
//! `read_committed` is the last stable offset — after `init_transactions`, the
//! end of everything committed), rebuilds the pending requests (in offset
//! order, which is append order), the recorded outcomes and the epoch, and
//! commits `epoch + 1` in a transaction of its own.
//!
//! # Writes: group commit
//!
//! Like the embedded log, a single writer thread takes every queued append,
//! completion and expiry, and for each batch runs `begin_transaction` →
//! produce all records → `commit_transaction`; each caller's future resolves
//! once its batch commits (the records are then replicated per the topic's
//! settings and survive a crash of this process). Calls are queued at call
//! time, so writes take effect in call order. The writer keeps the set of
//! pending ids (to ignore the append of an id already pending, and to know
//! which completions must write a tombstone) and the outcomes (which
//! [`Log::outcome`] reads); a batch's changes to them are staged and applied
//! only once its transaction commits.
//!
//! # Errors
//!
//! A transaction error that requires an abort aborts the transaction and
//! fails the batch with [`Error::Storage`]; a retriable commit error is
//! retried a few times first. A fatal producer error (fencing above all)
//! fails the batch and every later write with [`Error::Fenced`] until the
//! next [`Log::recover`]. Writes before the first `recover` fail with
//! [`Error::Fenced`] too: this process does not own the log yet.

use super::{Completion, Durable, Error, Log, Recovery};
use crate::engine::types::{Outcome, Request, now_millis};
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const REQUEST_PREFIX: &str = "req:";
const OUTCOME_PREFIX: &str = "out:";
const EPOCH_KEY: &str = "epoch";
const KIND_HEADER: &str = "kar-kind";

/// How long one transactional operation (init, commit, abort) may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long recovery may take to read the topic to its end.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a retriable commit error is retried before aborting.
const COMMIT_RETRIES: usize = 3;
/// How long a batch of lazy appends alone waits for a write to ride with: a
/// short call's completion usually comes within it, so the call costs one
/// transaction instead of two.
const LAZY_FLUSH: Duration = Duration::from_millis(10);
/// The most writes one transaction takes, so a burst cannot starve callers.
const MAX_BATCH: usize = 4096;

#[derive(Clone, Serialize, Deserialize)]
struct RecordedOutcome {
    completed_at: u64,
    outcome: Outcome,
}

/// The recorded outcomes, with an index by completion time for expiry.
#[derive(Default)]
struct Outcomes {
    by_id: HashMap<String, RecordedOutcome>,
    by_time: BTreeSet<(u64, String)>,
}

impl Outcomes {
    fn set(&mut self, id: &str, recorded: Option<RecordedOutcome>) {
        if let Some(old) = self.by_id.remove(id) {
            self.by_time.remove(&(old.completed_at, id.to_owned()));
        }
        if let Some(recorded) = recorded {
            self.by_time.insert((recorded.completed_at, id.to_owned()));
            self.by_id.insert(id.to_owned(), recorded);
        }
    }
}

/// The log of the distributed deployment: one compacted Kafka topic written
/// by a transactional producer. Cheap to clone. See the module docs.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    brokers: String,
    topic: String,
    replication_factor: i32,
    guard: Option<OwnershipGuard>,
    outcomes: Arc<RwLock<Outcomes>>,
    writer: Mutex<Option<Writer>>,
    recovering: tokio::sync::Mutex<()>,
}

type Reply = oneshot::Sender<Result<usize, Error>>;

/// See [`KafkaLog::with_guard`].
pub type OwnershipGuard = Arc<dyn Fn() -> Result<(), Error> + Send + Sync>;

enum Op {
    /// Rewrites the epoch record: fails if this producer was fenced.
    Probe,
    Append(Vec<Request>),
    AppendLazily(Vec<Request>),
    Complete(Vec<Completion>),
    Expire(u64),
}

struct Job {
    op: Op,
    reply: Reply,
}

/// The writer thread of one ownership epoch. Dropping it lets the thread
/// commit what is queued and joins it.
struct Writer {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A producer without a polling thread of its own: the writer thread is the
/// only one serving its delivery reports (inside `commit_transaction`'s
/// flush). With a second poller (a `ThreadedProducer`) the flush could miss a
/// report taken by the other thread and sleep out its 100 ms poll.
type TxnProducer = BaseProducer<DefaultProducerContext>;

/// A record to produce: key, value (`None` is a tombstone) and kind header.
struct Record {
    key: String,
    value: Option<Vec<u8>>,
    kind: &'static str,
}

fn storage(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("kafka log: {context}: {e}"))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    postcard::to_stdvec(value).map_err(|e| storage("encode", e))
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Error> {
    postcard::from_bytes(bytes).map_err(|e| storage("decode", e))
}

/// Whether `part` may be used in a Kafka topic name made by this crate.
pub(crate) fn valid_topic_part(part: &str) -> bool {
    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl KafkaLog {
    /// A log on the topic `kar.<app>.log.<name>` of the cluster at `brokers`
    /// (a `bootstrap.servers` list). Nothing is contacted until
    /// [`Log::recover`]. `app` and `name` may use ASCII letters, digits, `.`,
    /// `_` and `-`.
    pub fn new(brokers: &str, app: &str, name: &str) -> Result<Self, Error> {
        if !valid_topic_part(app) || !valid_topic_part(name) {
            return Err(Error::Storage(format!(
                "kafka log: app {app:?} and log name {name:?} must be non-empty and use only [A-Za-z0-9._-]"
            )));
        }
        let topic = format!("kar.{app}.log.{name}");
        if topic.len() > 249 {
            return Err(Error::Storage(format!("kafka log: topic name too long: {topic}")));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                brokers: brokers.to_owned(),
                topic,
                replication_factor: 1,
                guard: None,
                outcomes: Arc::default(),
                writer: Mutex::new(None),
                recovering: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Sets the replication factor used if the topic must be created
    /// (default 1, for a single broker). Call before sharing the log.
    pub fn with_replication_factor(mut self, replication_factor: i32) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.replication_factor = replication_factor;
        }
        self
    }

    /// Sets a check that [`Log::recover`] runs right before it fences the
    /// log's current writer (blocking; an error fails the recovery): whoever
    /// decides who owns the log confirms this process still does. Call
    /// before sharing the log.
    pub fn with_guard(mut self, guard: OwnershipGuard) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.guard = Some(guard);
        }
        self
    }

    /// The topic this log lives in; also the producer's `transactional.id`.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    fn queue(&self, op: Op) -> impl Future<Output = Result<usize, Error>> + Send + 'static {
        let (reply, result) = oneshot::channel();
        let queued = {
            let writer = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            match writer.as_ref().and_then(|w| w.jobs.as_ref()) {
                Some(jobs) => jobs.send(Job { op, reply }).map_err(|_| "the log's writer has stopped"),
                None => Err("this process does not own the log (recover it first)"),
            }
        };
        async move {
            queued.map_err(|e| Error::Fenced(format!("kafka log: {e}")))?;
            result.await.map_err(|_| Error::Storage("kafka log: the writer stopped before answering".into()))?
        }
    }

    async fn ensure_topic(&self) -> Result<(), Error> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.inner.brokers)
            .create()
            .map_err(|e| storage("admin client", e))?;
        let topic = NewTopic::new(&self.inner.topic, 1, TopicReplication::Fixed(self.inner.replication_factor))
            .set("cleanup.policy", "compact");
        let options = AdminOptions::new().operation_timeout(Some(TXN_TIMEOUT)).request_timeout(Some(TXN_TIMEOUT));
        let results = admin.create_topics([&topic], &options).await.map_err(|e| storage("create topic", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(storage(&format!("create topic {name}"), code)),
            }
        }
        Ok(())
    }

    async fn recover_inner(&self) -> Result<Recovery, Error> {
        let _one_at_a_time = self.inner.recovering.lock().await;
        // Writes queued before this call take effect (or fail) first.
        let old = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        tokio::task::spawn_blocking(move || drop(old)).await.map_err(|e| storage("stop writer", e))?;
        self.ensure_topic().await?;
        let inner = self.inner.clone();
        let (producers, scan, epoch) =
            tokio::task::spawn_blocking(move || take_ownership(&inner)).await.map_err(|e| storage("recover", e))??;
        let pending_ids: HashSet<String> = scan.pending.iter().map(|r| r.id.clone()).collect();
        *self.inner.outcomes.write().unwrap_or_else(|e| e.into_inner()) = scan.outcomes;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let state = WriterState {
            producers,
            next: 0,
            topic: self.inner.topic.clone(),
            pending: pending_ids,
            outcomes: self.inner.outcomes.clone(),
            fenced: None,
            epoch,
        };
        let thread = thread::Builder::new()
            .name("kar-kafka-log-writer".into())
            .spawn(move || write_loop(state, queue))
            .map_err(|e| storage("spawn writer", e))?;
        *self.inner.writer.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Writer { jobs: Some(jobs), thread: Some(thread) });
        Ok(Recovery { epoch, pending: scan.pending })
    }
}

/// What reading the topic from the beginning found.
struct Scan {
    pending: Vec<Request>,
    outcomes: Outcomes,
    epoch: u64,
}

/// Creates the producers, fences older ones, reads the topic and commits the
/// new epoch. Blocking.
fn take_ownership(inner: &Inner) -> Result<([TxnProducer; 2], Scan, u64), Error> {
    let first = transactional_producer(inner, &inner.topic)?;
    let second = transactional_producer(inner, &format!("{}.b", inner.topic))?;
    // The last moment to find out this process must not take the log over:
    // from here on its current writer is fenced.
    if let Some(guard) = &inner.guard {
        guard()?;
    }
    for producer in [&first, &second] {
        producer.init_transactions(TXN_TIMEOUT).map_err(|e| classify("init transactions", producer, e))?;
    }
    let scan = read_all(inner)?;
    let epoch = scan.epoch + 1;
    let record = Record { key: EPOCH_KEY.into(), value: Some(epoch.to_be_bytes().to_vec()), kind: "epoch" };
    transact(&first, &inner.topic, &[record])?;
    Ok(([first, second], scan, epoch))
}

/// One of the log's two transactional producers, not initialized yet:
/// `init_transactions` fences any older producer with the same
/// `transactional.id`.
fn transactional_producer(inner: &Inner, transactional_id: &str) -> Result<TxnProducer, Error> {
    ClientConfig::new()
        .set("bootstrap.servers", &inner.brokers)
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "60000")
        .set("message.timeout.ms", "60000")
        .set("linger.ms", "1")
        // A transaction begun right after a commit is refused (concurrent
        // transactions) until the commit's markers are written, which takes
        // a few milliseconds; the default 100 ms back-off before retrying
        // would cost that much per transaction.
        .set("retry.backoff.ms", "2")
        .set("retry.backoff.max.ms", "50")
        .create()
        .map_err(|e| storage("producer", e))
}

/// Reads the whole partition, committed records only, up to its end.
/// The recovery consumer's context: reaching the partition's end is how
/// recovery knows it is done, not an error worth the log's error level
/// (where rdkafka's default context reports it).
struct RecoveryContext;

impl rdkafka::ClientContext for RecoveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::PartitionEOF) => tracing::trace!(%reason, "recovery reached the partition end"),
            _ => tracing::error!(%error, %reason, "kafka log recovery"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RecoveryContext {}

fn read_all(inner: &Inner) -> Result<Scan, Error> {
    let consumer: BaseConsumer<RecoveryContext> = ClientConfig::new()
        .set("bootstrap.servers", &inner.brokers)
        .set("group.id", format!("{}.recovery", inner.topic))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // Reading to the end: do not let the broker hold an empty fetch.
        .set("fetch.wait.max.ms", "10")
        .set("fetch.error.backoff.ms", "20")
        .create_with_context(RecoveryContext)
        .map_err(|e| storage("consumer", e))?;
    // From offset 0 rather than `Beginning`, which costs a round of offset
    // lookups; `auto.offset.reset=earliest` covers a log whose start moved.
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&inner.topic, 0, Offset::Offset(0)).map_err(|e| storage("assign", e))?;
    consumer.assign(&assignment).map_err(|e| storage("assign", e))?;

    // Pending requests by id, with the offset of their request record.
    let mut pending: HashMap<String, (i64, Request)> = HashMap::new();
    let mut outcomes = Outcomes::default();
    let mut epoch = 0u64;
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut last_error: Option<KafkaError> = None;
    loop {
        if Instant::now() > deadline {
            let why = last_error.map(|e| e.to_string()).unwrap_or_else(|| "no end of partition seen".into());
            return Err(Error::Storage(format!("kafka log: reading {} timed out: {why}", inner.topic)));
        }
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => {
                // Mostly transient (metadata of a new topic, a broker
                // reconnect); give up at the deadline.
                tracing::debug!(topic = %inner.topic, error = %e, "reading the log");
                last_error = Some(e);
                continue;
            }
            Some(Ok(message)) => message,
        };
        let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            tracing::warn!(topic = %inner.topic, offset = message.offset(), "skipping a record without a valid key");
            continue;
        };
        let value = message.payload();
        if let Some(id) = key.strip_prefix(REQUEST_PREFIX) {
            match value {
                Some(bytes) => {
                    let request: Request = decode(bytes)?;
                    pending.entry(id.to_owned()).or_insert((message.offset(), request));
                }
                None => {
                    pending.remove(id);
                }
            }
        } else if let Some(id) = key.strip_prefix(OUTCOME_PREFIX) {
            let recorded = value.map(decode::<RecordedOutcome>).transpose()?;
            outcomes.set(id, recorded);
        } else if key == EPOCH_KEY
            && let Some(bytes) = value.and_then(|v| <[u8; 8]>::try_from(v).ok())
        {
            epoch = epoch.max(u64::from_be_bytes(bytes));
        }
    }
    let mut pending: Vec<(i64, Request)> = pending.into_values().collect();
    pending.sort_by_key(|(offset, _)| *offset);
    Ok(Scan { pending: pending.into_iter().map(|(_, r)| r).collect(), outcomes, epoch })
}

/// Maps a producer error: fatal (fencing above all) → `Fenced`, else `Storage`.
fn classify(context: &str, producer: &TxnProducer, e: KafkaError) -> Error {
    let fatal = producer.client().fatal_error();
    let is_fatal = fatal.is_some() || matches!(&e, KafkaError::Transaction(r) if r.is_fatal());
    if is_fatal {
        let detail = fatal.map(|(code, why)| format!("{code:?}: {why}")).unwrap_or_else(|| e.to_string());
        Error::Fenced(format!("kafka log: {context}: {detail}"))
    } else {
        storage(context, e)
    }
}

/// Produces `records` in one transaction and commits it. Blocking.
fn transact(producer: &TxnProducer, topic: &str, records: &[Record]) -> Result<(), Error> {
    producer.begin_transaction().map_err(|e| classify("begin transaction", producer, e))?;
    let result = produce_and_commit(producer, topic, records);
    if let Err(Error::Storage(_)) = &result
        && let Err(e) = producer.abort_transaction(TXN_TIMEOUT)
    {
        let error = classify("abort transaction", producer, e);
        tracing::error!(%topic, error = %error, "cannot abort a failed transaction");
        if let Error::Fenced(_) = error {
            return Err(error);
        }
    }
    result
}

/// Waits until every record produced is acknowledged, serving the delivery
/// reports. (`commit_transaction` alone waits for reports nobody serves, and
/// rdkafka's `flush` polls in slices of 100 ms that it always sleeps out.)
/// rdkafka's `poll(timeout)` also always lasts its whole timeout, spinning
/// through its last millisecond, so reports are served with non-blocking
/// polls between short sleeps: the thread stays nearly idle while waiting.
fn flush(producer: &TxnProducer) -> Result<(), Error> {
    let deadline = Instant::now() + TXN_TIMEOUT;
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Storage("kafka log: timed out waiting for the broker's acknowledgements".into()));
        }
        thread::sleep(FLUSH_NAP);
    }
}

/// The pause between two polls for delivery reports in [`flush`].
const FLUSH_NAP: Duration = Duration::from_micros(100);

fn produce_and_commit(producer: &TxnProducer, topic: &str, records: &[Record]) -> Result<(), Error> {
    for record in records {
        let headers = OwnedHeaders::new().insert(Header { key: KIND_HEADER, value: Some(record.kind) });
        let mut base = BaseRecord::<str, [u8]>::to(topic).partition(0).key(record.key.as_str()).headers(headers);
        if let Some(value) = &record.value {
            base = base.payload(value.as_slice());
        }
        loop {
            match producer.send(base) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    base = back;
                    thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(classify("produce", producer, e)),
            }
        }
    }
    flush(producer)?;
    let mut attempt = 0;
    loop {
        match producer.commit_transaction(TXN_TIMEOUT) {
            Ok(()) => return Ok(()),
            Err(e) => {
                let retriable = matches!(&e, KafkaError::Transaction(r) if r.is_retriable() && !r.is_fatal());
                attempt += 1;
                if !retriable || attempt > COMMIT_RETRIES {
                    return Err(classify("commit transaction", producer, e));
                }
                tracing::warn!(%topic, error = %e, attempt, "retrying a transaction commit");
            }
        }
    }
}

/// What the writer thread of one epoch owns.
struct WriterState {
    /// Two producers, used in turn: a transaction begun on the producer that
    /// just committed is refused until the commit's markers are written, and
    /// librdkafka then backs off 20 ms; the other producer can begin at once.
    /// Transactions still run one at a time, in call order.
    producers: [TxnProducer; 2],
    /// The producer of the next transaction.
    next: usize,
    topic: String,
    /// Ids of the pending requests, as of the last commit.
    pending: HashSet<String>,
    /// The recorded outcomes (shared with [`Log::outcome`]), as of the last commit.
    outcomes: Arc<RwLock<Outcomes>>,
    /// Set once the producer failed fatally: every later write fails with it.
    fenced: Option<String>,
    /// This owner's epoch.
    epoch: u64,
}

/// A batch's changes, applied to the writer's state only once it commits.
#[derive(Default)]
struct Staged {
    records: Vec<Record>,
    pending: HashMap<String, bool>,
    outcomes: HashMap<String, Option<RecordedOutcome>>,
}

impl Staged {
    fn is_pending(&self, state: &WriterState, id: &str) -> bool {
        self.pending.get(id).copied().unwrap_or_else(|| state.pending.contains(id))
    }

    fn append(&mut self, state: &WriterState, requests: &[Request]) -> Result<(), Error> {
        for request in requests {
            if self.is_pending(state, &request.id) {
                continue;
            }
            self.records.push(Record {
                key: format!("{REQUEST_PREFIX}{}", request.id),
                value: Some(encode(request)?),
                kind: "request",
            });
            self.pending.insert(request.id.clone(), true);
        }
        Ok(())
    }

    fn complete(&mut self, state: &WriterState, completions: &[Completion]) -> Result<(), Error> {
        let now = now_millis();
        for completion in completions {
            let id = &completion.request_id;
            if self.is_pending(state, id) {
                self.records.push(Record { key: format!("{REQUEST_PREFIX}{id}"), value: None, kind: "done" });
                self.pending.insert(id.clone(), false);
            }
            if let Some(outcome) = &completion.outcome {
                let recorded = RecordedOutcome { completed_at: now, outcome: outcome.clone() };
                self.records.push(Record {
                    key: format!("{OUTCOME_PREFIX}{id}"),
                    value: Some(encode(&recorded)?),
                    kind: "outcome",
                });
                self.outcomes.insert(id.clone(), Some(recorded));
            }
        }
        for completion in completions {
            self.append(state, &completion.next)?;
        }
        Ok(())
    }

    fn expire(&mut self, state: &WriterState, before: u64) -> usize {
        let mut expired: Vec<String> = Vec::new();
        {
            let committed = state.outcomes.read().unwrap_or_else(|e| e.into_inner());
            for (_, id) in committed.by_time.range(..(before, String::new())) {
                if !self.outcomes.contains_key(id) {
                    expired.push(id.clone());
                }
            }
        }
        for (id, recorded) in &self.outcomes {
            if recorded.as_ref().is_some_and(|r| r.completed_at < before) {
                expired.push(id.clone());
            }
        }
        for id in &expired {
            self.records.push(Record { key: format!("{OUTCOME_PREFIX}{id}"), value: None, kind: "expired" });
            self.outcomes.insert(id.clone(), None);
        }
        expired.len()
    }
}

fn write_loop(mut state: WriterState, queue: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        let lazy_until = Instant::now() + LAZY_FLUSH;
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => {
                    // Only lazy appends so far: give the write that implies
                    // them (a call's completion) a moment to join the batch.
                    let lazy = batch.iter().all(|j| matches!(j.op, Op::AppendLazily(_)));
                    let now = Instant::now();
                    if !lazy || now >= lazy_until {
                        break;
                    }
                    match queue.recv_timeout(lazy_until - now) {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
        }
        commit_batch(&mut state, batch);
    }
}

fn commit_batch(state: &mut WriterState, batch: Vec<Job>) {
    if let Some(why) = &state.fenced {
        for job in batch {
            let _ = job.reply.send(Err(Error::Fenced(why.clone())));
        }
        return;
    }
    let mut staged = Staged::default();
    let mut replies: Vec<(Reply, usize)> = Vec::with_capacity(batch.len());
    let mut failure: Option<Error> = None;
    for job in batch {
        if failure.is_some() {
            replies.push((job.reply, 0));
            continue;
        }
        let result = match &job.op {
            Op::Append(requests) | Op::AppendLazily(requests) => staged.append(state, requests).map(|()| 0),
            Op::Complete(completions) => staged.complete(state, completions).map(|()| 0),
            Op::Expire(before) => Ok(staged.expire(state, *before)),
            Op::Probe => {
                let value = Some(state.epoch.to_be_bytes().to_vec());
                staged.records.push(Record { key: EPOCH_KEY.into(), value, kind: "epoch" });
                Ok(0)
            }
        };
        match result {
            Ok(count) => replies.push((job.reply, count)),
            Err(e) => {
                failure = Some(e);
                replies.push((job.reply, 0));
            }
        }
    }
    let result = match failure {
        Some(e) => Err(e),
        None if staged.records.is_empty() => Ok(()),
        None => {
            let started = Instant::now();
            let producer = &state.producers[state.next];
            state.next = 1 - state.next;
            let result = transact(producer, &state.topic, &staged.records);
            tracing::trace!(topic = %state.topic, records = staged.records.len(), elapsed = ?started.elapsed(), "transaction");
            result
        }
    };
    match result {
        Ok(()) => {
            for (id, pending) in staged.pending {
                if pending {
                    state.pending.insert(id);
                } else {
                    state.pending.remove(&id);
                }
            }
            let mut outcomes = state.outcomes.write().unwrap_or_else(|e| e.into_inner());
            for (id, recorded) in staged.outcomes {
                outcomes.set(&id, recorded);
            }
            drop(outcomes);
            for (reply, count) in replies {
                let _ = reply.send(Ok(count));
            }
        }
        Err(error) => {
            tracing::error!(topic = %state.topic, %error, "a log transaction failed");
            let fenced = matches!(error, Error::Fenced(_));
            let message = match &error {
                Error::Fenced(m) | Error::Storage(m) => m.clone(),
            };
            if fenced {
                state.fenced = Some(message.clone());
            }
            for (reply, _) in replies {
                let error = if fenced { Error::Fenced(message.clone()) } else { Error::Storage(message.clone()) };
                let _ = reply.send(Err(error));
            }
        }
    }
}

impl Log for KafkaLog {
    fn recover(&self) -> BoxFuture<'_, Result<Recovery, Error>> {
        self.recover_inner().boxed()
    }

    fn append(&self, requests: Vec<Request>) -> Durable {
        self.queue(Op::Append(requests)).map(|r| r.map(|_| ())).boxed()
    }

    fn append_lazily(&self, requests: Vec<Request>) -> Durable {
        // Queued now, so ordered before every later write; the writer holds a
        // batch of lazy appends alone for at most `LAZY_FLUSH` before
        // committing it, waiting for a write that implies them (a call's
        // completion) to share the transaction. Resolves once committed.
        self.queue(Op::AppendLazily(requests)).map(|r| r.map(|_| ())).boxed()
    }

    fn complete(&self, completions: Vec<Completion>) -> Durable {
        self.queue(Op::Complete(completions)).map(|r| r.map(|_| ())).boxed()
    }

    fn probe(&self) -> Durable {
        self.queue(Op::Probe).map(|r| r.map(|_| ())).boxed()
    }

    fn outcome(&self, request_id: &str) -> BoxFuture<'_, Result<Option<Outcome>, Error>> {
        let outcome = self
            .inner
            .outcomes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .get(request_id)
            .map(|r| r.outcome.clone());
        futures::future::ready(Ok(outcome)).boxed()
    }

    fn expire_outcomes(&self, before: u64) -> BoxFuture<'static, Result<usize, Error>> {
        self.queue(Op::Expire(before)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::conformance;
    use crate::log::kafka_test_broker::{TestBroker, broker};

    fn fresh_name() -> String {
        format!("t-{}", uuid::Uuid::new_v4().simple())
    }

    fn ids(requests: &[Request]) -> Vec<&str> {
        requests.iter().map(|r| r.id.as_str()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_log_conforms() {
        let broker: Arc<TestBroker> = broker();
        conformance::run_all(|| {
            let broker = broker.clone();
            async move {
                let log = KafkaLog::new(&broker.brokers, "test", &fresh_name()).expect("log");
                (Box::new(broker) as Box<dyn std::any::Any + Send>, log)
            }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_owner_fences_the_first() {
        let broker = broker();
        let name = fresh_name();
        let first = KafkaLog::new(&broker.brokers, "test", &name).expect("log");
        let epoch = first.recover().await.expect("recover").epoch;
        first.append(vec![conformance::request("a"), conformance::request("b")]).await.expect("append");
        let value = Outcome::Value(bytes::Bytes::from_static(b"v"));
        first
            .complete(vec![Completion { request_id: "a".into(), outcome: Some(value.clone()), next: vec![] }])
            .await
            .expect("complete");

        let second = KafkaLog::new(&broker.brokers, "test", &name).expect("log");
        let recovery = second.recover().await.expect("recover");
        assert!(recovery.epoch > epoch, "epochs must grow: {epoch} then {}", recovery.epoch);
        assert_eq!(ids(&recovery.pending), vec!["b"]);
        assert_eq!(second.outcome("a").await.expect("outcome"), Some(value));

        let append = first.append(vec![conformance::request("c")]).await;
        assert!(matches!(append, Err(Error::Fenced(_))), "a fenced append must fail with Fenced: {append:?}");
        let complete = first.complete(vec![Completion { request_id: "b".into(), outcome: None, next: vec![] }]).await;
        assert!(matches!(complete, Err(Error::Fenced(_))), "a fenced complete must fail with Fenced: {complete:?}");

        // The zombie changed nothing; the new owner still writes.
        second.append(vec![conformance::request("d")]).await.expect("append by the new owner");
        let third = KafkaLog::new(&broker.brokers, "test", &name).expect("log");
        let recovery = third.recover().await.expect("recover");
        assert_eq!(ids(&recovery.pending), vec!["b", "d"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_requests_survive_a_new_owner() {
        let broker = broker();
        let name = fresh_name();
        {
            let log = KafkaLog::new(&broker.brokers, "test", &name).expect("log");
            log.recover().await.expect("recover");
            log.append(vec![conformance::request("a"), conformance::request("b")]).await.expect("append");
            log.complete(vec![Completion { request_id: "a".into(), outcome: None, next: vec![] }])
                .await
                .expect("complete");
            // A tail call: the next step reuses the id and keeps the outcome.
            let mut next = conformance::request("b");
            next.step = 1;
            let value = Outcome::Value(bytes::Bytes::from_static(b"step0"));
            log.complete(vec![Completion { request_id: "b".into(), outcome: Some(value), next: vec![next] }])
                .await
                .expect("tail call");
            log.append(vec![conformance::request("c")]).await.expect("append");
        }
        let log = KafkaLog::new(&broker.brokers, "test", &name).expect("log");
        let recovery = log.recover().await.expect("recover");
        assert_eq!(recovery.epoch, 2);
        assert_eq!(ids(&recovery.pending), vec!["b", "c"]);
        assert_eq!(recovery.pending[0].step, 1);
        assert_eq!(log.outcome("b").await.expect("outcome"), Some(Outcome::Value(bytes::Bytes::from_static(b"step0"))));
    }
}
