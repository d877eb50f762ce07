//! [`KafkaTopics`]: the topics of the distributed deployment, on Apache Kafka.
//!
//! # Layout
//!
//! The topic `T` of the application `A` is the Kafka topic `kar.A.topic.T`,
//! created by [`Topics::create`] with the requested number of partitions (and
//! a configurable replication factor) and removed by [`Topics::delete`].
//! The broker answers a create before its metadata describes the new topic,
//! so `create` then asks the metadata until partition 0 has a leader (for at
//! most 10 s, else it fails): once it returns, the topic is usable.
//! The contract gives a topic one total order with offsets 0, 1, 2, …, so
//! every event goes to **partition 0** and an event's offset is its Kafka
//! offset there; the other partitions stay empty until the trait learns about
//! keys. Since the producer is idempotent and not transactional, partition 0
//! holds no control records and its offsets have no gaps.
//!
//! # Publishing
//!
//! One idempotent producer (`enable.idempotence=true`, `acks=all`) serves
//! every topic. An event of a topic seen to exist lately is queued when
//! [`Topics::publish`] is called, so concurrent publications take offsets in
//! call order; the future resolves with the offset once the broker has
//! acknowledged the event from all in-sync replicas.
//!
//! # Reading
//!
//! [`Topics::read`] uses a consumer that `assign`s partition 0 at the
//! requested offset (`isolation.level=read_committed`; it never joins its
//! group nor commits offsets). Consumers are pooled per topic and a read
//! takes the one already positioned where it starts, so a subscription
//! reading the topic in a loop keeps one consumer with its prefetched events.
//! A consumer that must move is re-assigned and waits for the first event or
//! the end of the partition (at most 10 s, else the read fails); a consumer
//! already in place waits at most 100 ms for new events. Either way a read
//! returns what is there, up to `max`.
//!
//! # Topics that do not exist
//!
//! Neither librdkafka's consumer nor its producer notices promptly that a
//! topic was deleted, so existence is asked of the cluster's metadata: before
//! a publish or read if the topic was not seen to exist within the last
//! second, and whenever a client reports the topic unknown. A "no" is asked
//! once more 250 ms later before it becomes [`Error::NoSuchTopic`], as a
//! broker may not know yet of a topic created a moment ago (and the engine
//! drops the subscriptions of a topic that does not exist). A client may
//! still hold metadata from before a topic was created; when a read or an
//! end offset hears "unknown" of a topic the metadata says exists, it tries
//! again for up to 10 s rather than failing. An event queued
//! just before its topic was deleted elsewhere fails after the producer's
//! `topic.metadata.propagation.max.ms` (5 s). Topics are never created
//! implicitly (`allow.auto.create.topics=false`).
//!
//! Like the rest of `topics`, this module knows nothing of gRPC, the engine
//! or components.

use super::{Error, Event, Result, Topics};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The partition that carries a topic's events (see the module docs).
const PARTITION: i32 = 0;
/// How long an admin operation or a metadata lookup may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read waits for new events with a consumer already in place.
const READ_WAIT: Duration = Duration::from_millis(100);
/// How long a re-assigned consumer may take to see an event or the end.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a topic seen to exist is taken to exist without asking again;
/// this bounds how late a topic deleted by another process is noticed.
const VERIFY_INTERVAL: Duration = Duration::from_secs(1);
/// How long to wait before asking again whether a missing topic exists.
const CONFIRM_DELAY: Duration = Duration::from_millis(250);
/// How long [`Topics::create`] waits for a new topic to become usable, and
/// how long a read or an end offset keeps trying a topic that exists but is
/// not yet known to the client asking.
const USABLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to look again while waiting for a topic to become usable.
const USABLE_POLL: Duration = Duration::from_millis(50);
/// How long a publish may wait for room in a full producer queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most idle consumers kept per topic.
const MAX_IDLE_READERS: usize = 4;

/// Topics as Kafka topics `kar.<app>.topic.<name>`. Cheap to clone. See the
/// module docs.
#[derive(Clone)]
pub struct KafkaTopics {
    inner: Arc<Inner>,
}

struct Inner {
    brokers: String,
    app: String,
    replication_factor: i32,
    admin: AdminClient<DefaultClientContext>,
    producer: FutureProducer,
    /// Answers metadata and watermark lookups; never assigned.
    metadata: Arc<BaseConsumer>,
    /// When each Kafka topic was last seen to exist, so that publish and
    /// read look it up at most every [`VERIFY_INTERVAL`].
    known: Mutex<HashMap<String, Instant>>,
    /// Idle consumers by Kafka topic.
    readers: Mutex<HashMap<String, Vec<Reader>>>,
    /// Grows on every delete; a consumer created before a delete is not
    /// pooled again, as it may read the deleted topic's partition.
    generation: AtomicU64,
}

/// A consumer of one topic's partition.
struct Reader {
    consumer: BaseConsumer,
    /// The offset of the next event it will return, if it is assigned.
    next: Option<u64>,
    generation: u64,
}

/// How a read ended.
enum ReadEnd {
    /// With these events (maybe none).
    Events {
        events: Vec<Event>,
        /// Whether the consumer may serve another read.
        reusable: bool,
    },
    /// The consumer reported the topic unknown.
    Unknown,
}

fn storage(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("kafka topics: {context}: {e}"))
}

use crate::log::kafka::valid_topic_part;

fn is_unknown_topic(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

impl KafkaTopics {
    /// The topics of the application `app` on the cluster at `brokers` (a
    /// `bootstrap.servers` list). `app` may use ASCII letters, digits, `.`,
    /// `_` and `-`; so may topic names. The clients connect in the
    /// background; nothing waits for the cluster here.
    pub fn new(brokers: &str, app: &str) -> Result<Self> {
        if !valid_topic_part(app) {
            return Err(Error::Storage(format!(
                "kafka topics: app {app:?} must be non-empty and use only [A-Za-z0-9._-]"
            )));
        }
        let admin =
            ClientConfig::new().set("bootstrap.servers", brokers).create().map_err(|e| storage("admin client", e))?;
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("allow.auto.create.topics", "false")
            // Events of a topic deleted elsewhere fail after this (instead of
            // the default 30 s); one created elsewhere was already looked up.
            .set("topic.metadata.propagation.max.ms", "5000")
            .set("linger.ms", "1")
            .create()
            .map_err(|e| storage("producer", e))?;
        let metadata = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("allow.auto.create.topics", "false")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| storage("metadata client", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                brokers: brokers.to_owned(),
                app: app.to_owned(),
                replication_factor: 1,
                admin,
                producer,
                metadata: Arc::new(metadata),
                known: Mutex::default(),
                readers: Mutex::default(),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// Sets the replication factor of the topics this creates (default 1,
    /// for a single broker). Call before sharing the topics.
    pub fn with_replication_factor(mut self, replication_factor: i32) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.replication_factor = replication_factor;
        }
        self
    }

    /// The Kafka topic of `topic`, or `None` if `topic` is not a valid name.
    pub fn kafka_topic(&self, topic: &str) -> Option<String> {
        let name = format!("kar.{}.topic.{topic}", self.inner.app);
        (valid_topic_part(topic) && name.len() <= 249).then_some(name)
    }

    /// Whether the topic was seen to exist within [`VERIFY_INTERVAL`].
    fn is_known(&self, kafka_topic: &str) -> bool {
        let known = self.inner.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(kafka_topic).is_some_and(|seen| seen.elapsed() < VERIFY_INTERVAL)
    }

    fn set_known(&self, kafka_topic: &str, exists: bool) {
        let mut known = self.inner.known.lock().unwrap_or_else(|e| e.into_inner());
        if exists {
            known.insert(kafka_topic.to_owned(), Instant::now());
        } else {
            known.remove(kafka_topic);
        }
    }

    /// Whether the topic exists: seen lately, or looked up in the metadata.
    async fn exists(&self, kafka_topic: &str) -> Result<bool> {
        if self.is_known(kafka_topic) {
            return Ok(true);
        }
        self.look_up(kafka_topic).await
    }

    /// Asks the cluster whether the topic exists, and remembers the answer.
    /// "No" is asked again after [`CONFIRM_DELAY`] (see the module docs).
    async fn look_up(&self, kafka_topic: &str) -> Result<bool> {
        let mut exists = self.ask_metadata(kafka_topic).await?;
        if !exists {
            tokio::time::sleep(CONFIRM_DELAY).await;
            exists = self.ask_metadata(kafka_topic).await?;
        }
        self.set_known(kafka_topic, exists);
        Ok(exists)
    }

    async fn ask_metadata(&self, kafka_topic: &str) -> Result<bool> {
        let metadata = self.inner.metadata.clone();
        let name = kafka_topic.to_owned();
        tokio::task::spawn_blocking(move || -> Result<bool> {
            let found = metadata.fetch_metadata(Some(&name), ADMIN_TIMEOUT).map_err(|e| storage("metadata", e))?;
            let Some(topic) = found.topics().iter().find(|t| t.name() == name) else { return Ok(false) };
            match topic.error().map(RDKafkaErrorCode::from) {
                None | Some(RDKafkaErrorCode::LeaderNotAvailable) => Ok(true),
                code if is_unknown_topic(code) => Ok(false),
                Some(code) => Err(storage(&format!("metadata of {name}"), code)),
            }
        })
        .await
        .map_err(|e| storage("metadata", e))?
    }

    /// Waits until the metadata describes partition 0 of the topic with a
    /// leader and no error, for at most [`USABLE_TIMEOUT`].
    async fn wait_usable(&self, kafka_topic: &str) -> Result<()> {
        let deadline = Instant::now() + USABLE_TIMEOUT;
        loop {
            let metadata = self.inner.metadata.clone();
            let name = kafka_topic.to_owned();
            let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(500));
            let state = tokio::task::spawn_blocking(move || partition_state(&metadata, &name, wait))
                .await
                .map_err(|e| storage("metadata", e))?;
            let why = match state {
                Ok(None) => return Ok(()),
                Ok(Some(why)) => why,
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(storage(
                    &format!("create {kafka_topic}"),
                    format!("not usable within {USABLE_TIMEOUT:?}: {why}"),
                ));
            }
            tokio::time::sleep(USABLE_POLL).await;
        }
    }

    /// Forgets the topic and drops its consumers, after a delete.
    async fn forget(&self, kafka_topic: &str) {
        self.set_known(kafka_topic, false);
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        let idle = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner()).remove(kafka_topic);
        // Closing a consumer blocks.
        let _ = tokio::task::spawn_blocking(move || drop(idle)).await;
    }

    /// An idle consumer of the topic, preferably one positioned at `from`.
    fn take_reader(&self, kafka_topic: &str, from: u64) -> Option<Reader> {
        let mut readers = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner());
        let idle = readers.get_mut(kafka_topic)?;
        let index = idle.iter().position(|r| r.next == Some(from)).unwrap_or(idle.len().checked_sub(1)?);
        Some(idle.swap_remove(index))
    }

    /// Pools the consumer again, unless the topic was deleted meanwhile or
    /// the pool is full; returns it if it was not pooled.
    fn return_reader(&self, kafka_topic: &str, reader: Reader) -> Option<Reader> {
        if reader.generation != self.inner.generation.load(Ordering::SeqCst) {
            return Some(reader);
        }
        let mut readers = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner());
        let idle = readers.entry(kafka_topic.to_owned()).or_default();
        if idle.len() >= MAX_IDLE_READERS {
            return Some(reader);
        }
        idle.push(reader);
        None
    }

    fn new_reader(&self) -> Result<Reader> {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", &self.inner.brokers)
            // librdkafka assigns only with a group; it never joins it nor
            // commits to it here.
            .set("group.id", format!("kar.{}.topics", self.inner.app))
            .set("allow.auto.create.topics", "false")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            // An offset before the start (deleted by retention) reads from
            // the start; offsets before `from` are skipped either way.
            .set("auto.offset.reset", "earliest")
            // An empty fetch at the end answers within this, so a read of a
            // re-assigned consumer learns quickly that there is nothing more.
            .set("fetch.wait.max.ms", "100")
            .set("queued.max.messages.kbytes", "4096")
            .create()
            .map_err(|e| storage("consumer", e))?;
        Ok(Reader { consumer, next: None, generation: self.inner.generation.load(Ordering::SeqCst) })
    }

    fn enqueue(&self, kafka_topic: &str, payload: &Bytes) -> std::result::Result<DeliveryFuture, KafkaError> {
        let record: FutureRecord<'_, (), [u8]> =
            FutureRecord::to(kafka_topic).payload(&payload[..]).partition(PARTITION);
        self.inner.producer.send_result(record).map_err(|(e, _)| e)
    }

    /// Maps a delivery report to the event's offset.
    fn delivered(&self, result: OwnedDeliveryResult, kafka_topic: &str, topic: String) -> Result<u64> {
        match result {
            Ok(delivery) => u64::try_from(delivery.offset).map_err(|_| storage("publish", "negative offset")),
            Err((e, _)) if is_unknown_topic(e.rdkafka_error_code()) => {
                self.set_known(kafka_topic, false);
                Err(Error::NoSuchTopic(topic))
            }
            Err((e, _)) => Err(storage(&format!("publish to {kafka_topic}"), e)),
        }
    }

    async fn read_inner(&self, topic: &str, from: u64, max: usize) -> Result<Vec<Event>> {
        let missing = || Error::NoSuchTopic(topic.to_owned());
        let Some(kafka_topic) = self.kafka_topic(topic) else { return Err(missing()) };
        if !self.exists(&kafka_topic).await? {
            return Err(missing());
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut reader = match self.take_reader(&kafka_topic, from) {
            Some(reader) => reader,
            None => self.new_reader()?,
        };
        let deadline = Instant::now() + USABLE_TIMEOUT;
        let (events, reusable) = loop {
            let name = kafka_topic.clone();
            let (used, end) = tokio::task::spawn_blocking(move || {
                let mut reader = reader;
                let end = read_partition(&mut reader, &name, from, max);
                (reader, end)
            })
            .await
            .map_err(|e| storage("read", e))?;
            reader = used;
            match end {
                Ok(ReadEnd::Events { events, reusable }) => break (Ok(events), reusable),
                Err(e) => break (Err(e), false),
                // Deleted behind our back, or too new for this consumer's
                // metadata yet.
                Ok(ReadEnd::Unknown) if !self.look_up(&kafka_topic).await? => break (Err(missing()), false),
                Ok(ReadEnd::Unknown) if Instant::now() >= deadline => {
                    tracing::debug!(topic = %kafka_topic, "a consumer still finds an existing topic unknown");
                    break (Ok(Vec::new()), false);
                }
                Ok(ReadEnd::Unknown) => {
                    // It exists: try again with a consumer that has not
                    // cached the topic as unknown.
                    let stale = std::mem::replace(&mut reader, self.new_reader()?);
                    tokio::task::spawn_blocking(move || drop(stale));
                    tokio::time::sleep(USABLE_POLL).await;
                }
            }
        };
        let unpooled = if reusable { self.return_reader(&kafka_topic, reader) } else { Some(reader) };
        if let Some(reader) = unpooled {
            // Closing a consumer blocks.
            tokio::task::spawn_blocking(move || drop(reader));
        }
        events
    }
}

/// Asks the cluster's metadata about the topic's partition 0: `None` if it
/// has a leader and no error, else why it is not usable yet. Blocking.
fn partition_state(metadata: &BaseConsumer, kafka_topic: &str, timeout: Duration) -> Result<Option<String>> {
    let found = metadata.fetch_metadata(Some(kafka_topic), timeout).map_err(|e| storage("metadata", e))?;
    let Some(topic) = found.topics().iter().find(|t| t.name() == kafka_topic) else {
        return Ok(Some("not in the metadata".to_owned()));
    };
    if let Some(error) = topic.error() {
        return Ok(Some(RDKafkaErrorCode::from(error).to_string()));
    }
    let Some(partition) = topic.partitions().iter().find(|p| p.id() == PARTITION) else {
        return Ok(Some(format!("no partition {PARTITION}")));
    };
    Ok(match partition.error() {
        Some(error) => Some(format!("partition {PARTITION}: {}", RDKafkaErrorCode::from(error))),
        None if partition.leader() < 0 => Some(format!("partition {PARTITION} has no leader")),
        None => None,
    })
}

/// Reads up to `max` events of the topic's partition from `from` (see the
/// module docs for how long it waits). Blocking.
fn read_partition(reader: &mut Reader, kafka_topic: &str, from: u64, max: usize) -> Result<ReadEnd> {
    let in_place = reader.next == Some(from);
    if !in_place {
        reader.next = None;
        let offset = i64::try_from(from).map_err(|_| storage("read", format!("offset {from} out of range")))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(kafka_topic, PARTITION, Offset::Offset(offset))
            .map_err(|e| storage("assign", e))?;
        reader.consumer.assign(&assignment).map_err(|e| storage("assign", e))?;
        reader.next = Some(from);
    }
    let deadline = Instant::now() + if in_place { READ_WAIT } else { ASSIGN_TIMEOUT };
    let mut events = Vec::new();
    let mut reached_end = false;
    let mut last_error: Option<KafkaError> = None;
    while events.len() < max {
        // Once there are events, take only those already fetched.
        let wait = if events.is_empty() { deadline.saturating_duration_since(Instant::now()) } else { Duration::ZERO };
        match reader.consumer.poll(wait) {
            Some(Ok(message)) => {
                let Ok(offset) = u64::try_from(message.offset()) else { continue };
                reader.next = Some(offset + 1);
                if offset >= from {
                    let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
                    events.push(Event { offset, payload });
                }
            }
            // The end seen by a consumer in place may be that of an earlier
            // fetch, with events published since: wait for them instead.
            Some(Err(KafkaError::PartitionEOF(_))) if in_place && events.is_empty() => {}
            Some(Err(KafkaError::PartitionEOF(_))) => {
                reached_end = true;
                break;
            }
            Some(Err(e)) if is_unknown_topic(e.rdkafka_error_code()) => return Ok(ReadEnd::Unknown),
            Some(Err(e)) => {
                tracing::debug!(topic = kafka_topic, error = %e, "reading a topic");
                last_error = Some(e);
            }
            None if !events.is_empty() => break,
            None => {}
        }
        if events.is_empty() && Instant::now() >= deadline {
            break;
        }
    }
    if !events.is_empty() || reached_end {
        return Ok(ReadEnd::Events { events, reusable: true });
    }
    if in_place {
        // Nothing new. After trouble, the next read starts afresh and
        // reports the trouble if it lasts.
        return Ok(ReadEnd::Events { events, reusable: last_error.is_none() });
    }
    // A consumer that had to move heard of neither an event nor the end.
    let why = last_error.map_or_else(|| "neither an event nor the end arrived in time".to_owned(), |e| e.to_string());
    Err(storage(&format!("read {kafka_topic}"), why))
}

impl Topics for KafkaTopics {
    fn create(&self, topic: &str, partitions: u32) -> BoxFuture<'static, Result<bool>> {
        let this = self.clone();
        let topic = topic.to_owned();
        async move {
            let Some(kafka_topic) = this.kafka_topic(&topic) else {
                return Err(Error::Storage(format!(
                    "kafka topics: topic {topic:?} must be non-empty, use only [A-Za-z0-9._-] and fit Kafka's 249 characters"
                )));
            };
            let partitions = i32::try_from(partitions.max(1))
                .map_err(|_| storage(&format!("create {kafka_topic}"), format!("{partitions} partitions")))?;
            let new_topic =
                NewTopic::new(&kafka_topic, partitions, TopicReplication::Fixed(this.inner.replication_factor));
            let options =
                AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT)).request_timeout(Some(ADMIN_TIMEOUT));
            let results = this
                .inner
                .admin
                .create_topics([&new_topic], &options)
                .await
                .map_err(|e| storage(&format!("create {kafka_topic}"), e))?;
            let mut created = false;
            for result in results {
                match result {
                    Ok(_) => created = true,
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => return Err(storage(&format!("create {name}"), code)),
                }
            }
            this.wait_usable(&kafka_topic).await?;
            this.set_known(&kafka_topic, true);
            Ok(created)
        }
        .boxed()
    }

    fn delete(&self, topic: &str) -> BoxFuture<'static, Result<bool>> {
        let this = self.clone();
        let topic = topic.to_owned();
        async move {
            let Some(kafka_topic) = this.kafka_topic(&topic) else { return Ok(false) };
            let options =
                AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT)).request_timeout(Some(ADMIN_TIMEOUT));
            let results = this
                .inner
                .admin
                .delete_topics(&[kafka_topic.as_str()], &options)
                .await
                .map_err(|e| storage(&format!("delete {kafka_topic}"), e))?;
            this.forget(&kafka_topic).await;
            let mut deleted = false;
            for result in results {
                match result {
                    Ok(_) => deleted = true,
                    Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                    Err((name, code)) => return Err(storage(&format!("delete {name}"), code)),
                }
            }
            Ok(deleted)
        }
        .boxed()
    }

    fn end_offset<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        async move {
            let Some(kafka_topic) = self.kafka_topic(topic) else { return Ok(None) };
            if !self.exists(&kafka_topic).await? {
                return Ok(None);
            }
            let deadline = Instant::now() + USABLE_TIMEOUT;
            loop {
                let metadata = self.inner.metadata.clone();
                let name = kafka_topic.clone();
                let watermarks =
                    tokio::task::spawn_blocking(move || metadata.fetch_watermarks(&name, PARTITION, ADMIN_TIMEOUT))
                        .await
                        .map_err(|e| storage("watermarks", e))?;
                match watermarks {
                    Ok((_, high)) => {
                        return u64::try_from(high).map(Some).map_err(|_| storage("watermarks", "negative offset"));
                    }
                    Err(e) if is_unknown_topic(e.rdkafka_error_code()) => {
                        if !self.look_up(&kafka_topic).await? {
                            return Ok(None);
                        }
                        // It exists, but this client's metadata is older.
                        if Instant::now() >= deadline {
                            return Err(storage(&format!("watermarks of {kafka_topic}"), e));
                        }
                        tokio::time::sleep(USABLE_POLL).await;
                    }
                    Err(e) => return Err(storage(&format!("watermarks of {kafka_topic}"), e)),
                }
            }
        }
        .boxed()
    }

    fn publish(&self, topic: &str, payload: Bytes) -> BoxFuture<'static, Result<u64>> {
        let this = self.clone();
        let topic = topic.to_owned();
        // Queued at call time when the topic was seen lately, so that publications
        // take offsets in call order.
        let queued = match self.kafka_topic(&topic) {
            Some(kafka_topic) if self.is_known(&kafka_topic) => Some(self.enqueue(&kafka_topic, &payload)),
            _ => None,
        };
        async move {
            let Some(kafka_topic) = this.kafka_topic(&topic) else { return Err(Error::NoSuchTopic(topic)) };
            let result = match queued {
                Some(Ok(delivery)) => {
                    delivery.await.map_err(|_| storage("publish", "the producer dropped the event"))?
                }
                Some(Err(e)) if e.rdkafka_error_code() != Some(RDKafkaErrorCode::QueueFull) => {
                    return Err(storage(&format!("publish to {kafka_topic}"), e));
                }
                // Not looked up yet, or the producer's queue was full.
                _ => {
                    if !this.exists(&kafka_topic).await? {
                        return Err(Error::NoSuchTopic(topic));
                    }
                    let record: FutureRecord<'_, (), [u8]> =
                        FutureRecord::to(&kafka_topic).payload(&payload[..]).partition(PARTITION);
                    this.inner.producer.send(record, Timeout::After(QUEUE_TIMEOUT)).await
                }
            };
            this.delivered(result, &kafka_topic, topic)
        }
        .boxed()
    }

    fn read<'a>(&'a self, topic: &'a str, from: u64, max: usize) -> BoxFuture<'a, Result<Vec<Event>>> {
        self.read_inner(topic, from, max).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::kafka_test_broker::broker;

    fn fresh_app() -> String {
        format!("t-{}", uuid::Uuid::new_v4().simple())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_topics_conform() {
        let broker = broker();
        let topics = KafkaTopics::new(&broker.brokers, &fresh_app()).expect("topics");
        crate::topics::conformance::run_all(&topics).await;
        for topic in ["orders", "gone"] {
            topics.delete(topic).await.expect("clean up");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_topic_is_a_kafka_topic_with_the_requested_partitions() {
        let broker = broker();
        let app = fresh_app();
        let topics = KafkaTopics::new(&broker.brokers, &app).expect("topics");
        assert!(topics.create("wide", 3).await.expect("create"));
        let name = format!("kar.{app}.topic.wide");
        assert_eq!(topics.kafka_topic("wide").as_deref(), Some(name.as_str()));
        // The broker may take a moment to describe a topic it just created.
        let started = Instant::now();
        loop {
            let metadata = topics.inner.metadata.fetch_metadata(Some(&name), ADMIN_TIMEOUT).expect("metadata");
            let partitions = metadata.topics()[0].partitions().len();
            if partitions == 3 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{name} has {partitions} partitions");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for i in 0..4u8 {
            assert_eq!(topics.publish("wide", Bytes::from(vec![i])).await.expect("publish"), u64::from(i));
        }
        let events = topics.read("wide", 1, 10).await.expect("read");
        assert_eq!(events.iter().map(|e| (e.offset, e.payload[0])).collect::<Vec<_>>(), vec![(1, 1), (2, 2), (3, 3)]);
        assert!(topics.delete("wide").await.expect("delete"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_topic_is_usable_as_soon_as_create_returns() {
        let broker = broker();
        let app = fresh_app();
        let topics = KafkaTopics::new(&broker.brokers, &app).expect("topics");
        // Another process of the app, which asked about each topic before it
        // existed, so that its clients may hold that answer.
        let elsewhere = KafkaTopics::new(&broker.brokers, &app).expect("topics");
        for i in 0..5 {
            let topic = format!("fresh{i}");
            assert_eq!(elsewhere.end_offset(&topic).await.expect("end before"), None);
            assert!(matches!(elsewhere.read(&topic, 0, 1).await, Err(Error::NoSuchTopic(_))));
            assert!(topics.create(&topic, 1).await.expect("create"), "{topic} is new");
            assert_eq!(elsewhere.end_offset(&topic).await.expect("end elsewhere"), Some(0), "{topic}");
            assert_eq!(topics.end_offset(&topic).await.expect("end"), Some(0), "{topic}");
            assert_eq!(topics.publish(&topic, Bytes::from(vec![i])).await.expect("publish"), 0, "{topic}");
            let expected = vec![Event { offset: 0, payload: Bytes::from(vec![i]) }];
            assert_eq!(topics.read(&topic, 0, 10).await.expect("read"), expected, "{topic}");
            assert_eq!(elsewhere.read(&topic, 0, 10).await.expect("read elsewhere"), expected, "{topic}");
            assert_eq!(topics.end_offset(&topic).await.expect("end"), Some(1), "{topic}");
            assert_eq!(elsewhere.end_offset(&topic).await.expect("end elsewhere"), Some(1), "{topic}");
        }
        for i in 0..5 {
            assert!(topics.delete(&format!("fresh{i}")).await.expect("clean up"));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_names_are_refused() {
        let broker = broker();
        assert!(KafkaTopics::new(&broker.brokers, "no/slash").is_err());
        let topics = KafkaTopics::new(&broker.brokers, &fresh_app()).expect("topics");
        assert!(matches!(topics.create("a b", 1).await, Err(Error::Storage(_))));
        assert!(matches!(topics.create(&"x".repeat(250), 1).await, Err(Error::Storage(_))));
        assert!(matches!(topics.publish("a b", Bytes::new()).await, Err(Error::NoSuchTopic(_))));
        assert!(matches!(topics.read("", 0, 1).await, Err(Error::NoSuchTopic(_))));
        assert_eq!(topics.end_offset("a b").await.expect("end"), None);
        assert!(!topics.delete("a b").await.expect("delete"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_at_the_end_returns_promptly_and_sees_later_events() {
        let broker = broker();
        let topics = KafkaTopics::new(&broker.brokers, &fresh_app()).expect("topics");
        topics.create("feed", 1).await.expect("create");
        topics.publish("feed", Bytes::from_static(b"a")).await.expect("publish");
        assert_eq!(topics.read("feed", 0, 10).await.expect("read").len(), 1);
        for _ in 0..3 {
            let started = Instant::now();
            assert!(topics.read("feed", 1, 10).await.expect("read").is_empty());
            assert!(started.elapsed() < Duration::from_secs(1), "an empty read took {:?}", started.elapsed());
        }
        assert_eq!(topics.publish("feed", Bytes::from_static(b"b")).await.expect("publish"), 1);
        let events = topics.read("feed", 1, 10).await.expect("read");
        assert_eq!(events, vec![Event { offset: 1, payload: Bytes::from_static(b"b") }]);
        topics.delete("feed").await.expect("clean up");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_topic_deleted_elsewhere_is_missing_here() {
        let broker = broker();
        let app = fresh_app();
        let here = KafkaTopics::new(&broker.brokers, &app).expect("topics");
        let elsewhere = KafkaTopics::new(&broker.brokers, &app).expect("topics");
        here.create("shared", 1).await.expect("create");
        assert_eq!(elsewhere.publish("shared", Bytes::from_static(b"x")).await.expect("publish"), 0);
        assert_eq!(here.read("shared", 0, 10).await.expect("read").len(), 1);
        assert!(elsewhere.delete("shared").await.expect("delete"));
        let started = Instant::now();
        loop {
            match here.read("shared", 1, 10).await {
                Err(Error::NoSuchTopic(_)) => break,
                Ok(events) => assert!(events.is_empty(), "events of a deleted topic: {events:?}"),
                Err(e) => panic!("a read after the delete failed: {e}"),
            }
            assert!(started.elapsed() < Duration::from_secs(10), "the delete went unnoticed");
        }
        let publish = here.publish("shared", Bytes::from_static(b"y")).await;
        assert!(matches!(publish, Err(Error::NoSuchTopic(_))), "a publish after the delete: {publish:?}");
        assert_eq!(here.end_offset("shared").await.expect("end"), None);
    }
}
