//! The mesh: many runtimes of one application over Apache Kafka, with no
//! leader.
//!
//! * **Partitions.** Every actor type and every service has `P` partitions
//!   (`actor.<T>.<i>`, `svc.<S>.<i>`); an actor instance lives in the partition
//!   its id hashes to, a service request in the one its request id hashes to
//!   ([`HashPlacement`]). Each partition is journalled in a [`KafkaLog`] of its
//!   own.
//! * **Ownership is Kafka group membership.** The runtimes whose components
//!   host a type are the members of the consumer group of the type's inbox
//!   topic `kar.<app>.in.actor.<T>` (`P` partitions). Being assigned inbox
//!   partition `i` means owning partition `actor.<T>.<i>`: the engine adopts it
//!   (recovering its log fences the previous owner) and runs its actors. A
//!   rebalance moves partitions, and with them actors; a runtime whose last
//!   component for a type detaches leaves the group, handing its partitions
//!   to the other members.
//! * **Forwarding.** A request for a partition owned elsewhere is appended to
//!   that partition of the inbox topic, keyed by request id; the owner (whoever
//!   it is by the time the record is read) accepts it into its journal and only
//!   then stores the consumer offset. A forward may be repeated at will: the
//!   owner deduplicates by request id (pending: join; completed: the recorded
//!   outcome).
//! * **Replies go home.** A forwarder that waits names its runtime; the owner
//!   sends the outcome to that runtime's reply topic `kar.<app>.reply.<id>`.
//!   While it waits, the forwarder repeats the forward every few seconds, so
//!   neither a lost record nor an owner that died between completing and
//!   replying leaves a caller waiting forever.
//! * **Orphans.** Adopting a partition publishes its new epoch in the store; a
//!   call made by a handler in a partition whose epoch has moved on is not
//!   started (G4).

use crate::engine::types::{Caller, Outcome, Request, Target};
use crate::engine::{Engine, Error, Placement, Remote};
use crate::log::kafka::OwnershipGuard;
use crate::log::{Error as LogError, KafkaLog};
use crate::store::StateStore;
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::Duration;
use tokio::sync::oneshot;

/// How often a waiting forwarder repeats its forward.
const REFORWARD_EVERY: Duration = Duration::from_secs(3);
/// How long a released partition's running attempts may take to finish.
const RELEASE_GRACE: Duration = Duration::from_secs(10);
/// How long one Kafka admin or produce operation may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// How a mesh runtime reaches Kafka and how the application is partitioned.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The application name (prefix of every topic and key).
    pub app: String,
    /// Partitions per actor type and per service.
    pub partitions: u32,
    /// The consumer group session timeout: how long a silent runtime keeps
    /// its partitions.
    pub session_timeout: Duration,
    /// The replication factor of the topics created.
    pub replication_factor: i32,
}

/// Places actors by instance and service requests by request id, each into
/// one of `partitions` partitions of its type or service.
pub struct HashPlacement {
    partitions: u32,
}

impl HashPlacement {
    /// A placement with `partitions` partitions per type and service.
    pub fn new(partitions: u32) -> Self {
        Self { partitions: partitions.max(1) }
    }
}

/// FNV-1a: stable across processes and versions (unlike `DefaultHasher`).
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Placement for HashPlacement {
    fn partition_of(&self, target: &Target, request_id: &str) -> String {
        let n = u64::from(self.partitions);
        match target {
            Target::Actor(a) => format!("{}.{}", group_of_key(&format!("actor:{}", a.kind)), stable_hash(&a.id) % n),
            Target::Service(s) => format!("{}.{}", group_of_key(&format!("service:{s}")), stable_hash(request_id) % n),
        }
    }
}

/// The group (`actor.<T>` or `svc.<S>`) of a hosted target key (`actor:T`,
/// `service:S`).
fn group_of_key(key: &str) -> String {
    match key.split_once(':') {
        Some(("actor", t)) => format!("actor.{t}"),
        Some((_, s)) => format!("svc.{s}"),
        None => key.to_owned(),
    }
}

/// Splits a partition name into its group and index.
fn split_partition(partition: &str) -> Option<(&str, i32)> {
    let (group, index) = partition.rsplit_once('.')?;
    Some((group, index.parse().ok()?))
}

/// A record of a runtime's reply topic.
#[derive(Serialize, Deserialize)]
enum ReplyRecord {
    /// The outcome of a forwarded request.
    Outcome { request_id: String, outcome: Outcome },
    /// Is this attempt of this invocation running on the reader? Answer to
    /// `asker`'s reply topic.
    Query { query: u64, invocation_id: String, attempt: u32, asker: String },
    /// The answer to query `query`.
    Answer { query: u64, running: bool },
}

/// How long a liveness query waits for its answer before the caller's
/// partition epoch is looked at again and the query repeated.
const QUERY_WAIT: Duration = Duration::from_millis(1000);

/// A request forwarded to the owner of its partition.
#[derive(Serialize, Deserialize)]
struct Forward {
    request: Request,
    /// The runtime waiting for the outcome, if any.
    reply_to: Option<String>,
}

/// The mesh side of one runtime. Cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

struct Inner {
    config: MeshConfig,
    runtime_id: String,
    store: Arc<dyn StateStore>,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    engine: OnceLock<Engine>,
    handle: tokio::runtime::Handle,
    /// Forwarders waiting for outcomes, by request id.
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<Outcome>>>>,
    /// Liveness queries waiting for their answer.
    queries: Mutex<HashMap<u64, oneshot::Sender<bool>>>,
    next_query: std::sync::atomic::AtomicU64,
    /// Topics known to exist.
    topics: Mutex<HashSet<String>>,
    /// The groups this runtime is a member of.
    groups: Mutex<HashMap<String, Member>>,
    /// Serializes joining and leaving groups.
    membership: tokio::sync::Mutex<()>,
    /// Partitions owned, for introspection.
    owned: Mutex<BTreeSet<String>>,
    stopping: AtomicBool,
}

/// Membership of one group: a thread polling its consumer.
struct Member {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

fn kafka_error(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("mesh: {context}: {e}"))
}

impl Mesh {
    /// Connects to Kafka, creates this runtime's reply topic and starts
    /// reading it. The engine is given with [`Mesh::run`].
    pub async fn connect(config: MeshConfig, runtime_id: &str, store: Arc<dyn StateStore>) -> Result<Mesh, Error> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| kafka_error("producer", e))?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .create()
            .map_err(|e| kafka_error("admin client", e))?;
        let mesh = Mesh {
            inner: Arc::new(Inner {
                config,
                runtime_id: runtime_id.to_owned(),
                store,
                producer,
                admin,
                engine: OnceLock::new(),
                handle: tokio::runtime::Handle::current(),
                waiting: Mutex::default(),
                queries: Mutex::default(),
                next_query: std::sync::atomic::AtomicU64::new(1),
                topics: Mutex::default(),
                groups: Mutex::default(),
                membership: tokio::sync::Mutex::new(()),
                owned: Mutex::default(),
                stopping: AtomicBool::new(false),
            }),
        };
        let reply_topic = mesh.reply_topic(runtime_id);
        mesh.ensure_topic(&reply_topic, 1, false).await?;
        mesh.spawn_reply_reader(reply_topic)?;
        Ok(mesh)
    }

    /// Gives the mesh its engine, which it feeds with forwarded requests and
    /// the partitions it is assigned.
    pub fn run(&self, engine: Engine) {
        let _ = self.inner.engine.set(engine);
    }

    /// The partitions this runtime owns.
    pub fn owned(&self) -> Vec<String> {
        self.inner.owned.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// Leaves every group (handing the partitions over) and deletes this
    /// runtime's reply topic. For a clean shutdown.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let _membership = self.inner.membership.lock().await;
        let members: Vec<Member> =
            self.inner.groups.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, m)| m).collect();
        let _ = tokio::task::spawn_blocking(move || members.into_iter().for_each(Member::leave)).await;
        let topic = self.reply_topic(&self.inner.runtime_id);
        let options = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
        if let Err(e) = self.inner.admin.delete_topics(&[topic.as_str()], &options).await {
            tracing::warn!(error = %e, "cannot delete the reply topic");
        }
    }

    fn topic(&self, suffix: &str) -> String {
        format!("kar.{}.{suffix}", self.inner.config.app)
    }

    fn reply_topic(&self, runtime_id: &str) -> String {
        self.topic(&format!("reply.{runtime_id}"))
    }

    fn inbox_topic(&self, group: &str) -> String {
        self.topic(&format!("in.{group}"))
    }

    async fn ensure_topic(&self, topic: &str, partitions: i32, compact: bool) -> Result<(), Error> {
        if self.inner.topics.lock().unwrap_or_else(|e| e.into_inner()).contains(topic) {
            return Ok(());
        }
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(self.inner.config.replication_factor));
        if compact {
            new = new.set("cleanup.policy", "compact");
        }
        let options = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT)).request_timeout(Some(KAFKA_TIMEOUT));
        let results =
            self.inner.admin.create_topics([&new], &options).await.map_err(|e| kafka_error("create topic", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(kafka_error(&format!("create topic {name}"), code)),
            }
        }
        self.inner.topics.lock().unwrap_or_else(|e| e.into_inner()).insert(topic.to_owned());
        Ok(())
    }

    fn resolve(&self, request_id: &str, outcome: Outcome) {
        let waiters = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(request_id);
        for waiter in waiters.into_iter().flatten() {
            let _ = waiter.send(outcome.clone());
        }
    }

    /// Reads this runtime's reply topic from the start (it is new) and
    /// resolves the waiting forwarders.
    fn spawn_reply_reader(&self, topic: String) -> Result<(), Error> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.inner.config.brokers)
            .set("group.id", &topic)
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.error.backoff.ms", "20")
            .create()
            .map_err(|e| kafka_error("reply consumer", e))?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Beginning).map_err(|e| kafka_error("assign", e))?;
        consumer.assign(&assignment).map_err(|e| kafka_error("assign", e))?;
        let weak = Arc::downgrade(&self.inner);
        thread::Builder::new()
            .name("kar-mesh-replies".into())
            .spawn(move || {
                loop {
                    let polled = consumer.poll(Duration::from_millis(100));
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    match polled {
                        Some(Ok(message)) => {
                            match message.payload().and_then(|p| postcard::from_bytes::<ReplyRecord>(p).ok()) {
                                Some(record) => Mesh { inner }.on_reply(record),
                                None => tracing::warn!("skipping an undecodable reply"),
                            }
                        }
                        Some(Err(e)) => tracing::warn!(error = %e, "reading replies"),
                        None => {}
                    }
                }
            })
            .map_err(|e| kafka_error("spawn reply reader", e))?;
        Ok(())
    }

    fn on_reply(&self, record: ReplyRecord) {
        match record {
            ReplyRecord::Outcome { request_id, outcome } => self.resolve(&request_id, outcome),
            ReplyRecord::Answer { query, running } => {
                if let Some(waiter) = self.inner.queries.lock().unwrap_or_else(|e| e.into_inner()).remove(&query) {
                    let _ = waiter.send(running);
                }
            }
            ReplyRecord::Query { query, invocation_id, attempt, asker } => {
                let running = self.inner.engine.get().is_some_and(|e| e.caller_running(&invocation_id, attempt));
                self.send_reply(&asker, &invocation_id, ReplyRecord::Answer { query, running });
            }
        }
    }

    /// Sends a record to a runtime's reply topic, in the background.
    fn send_reply(&self, runtime: &str, key: &str, record: ReplyRecord) {
        let mesh = self.clone();
        let topic = self.reply_topic(runtime);
        let key = key.to_owned();
        let Ok(value) = postcard::to_stdvec(&record) else { return };
        self.inner.handle.spawn(async move {
            // A runtime that is gone has no reply topic; whoever waited there is gone too.
            if let Err(e) = mesh.produce(&topic, 0, &key, &value).await {
                tracing::debug!(%topic, error = %e, "cannot send a reply");
            }
        });
    }

    /// Asks the caller's runtime whether the calling attempt is running; on
    /// silence, looks whether the caller's partition failed over meanwhile.
    async fn caller_alive(&self, caller: Caller) -> bool {
        if caller.runtime == self.inner.runtime_id {
            return self.inner.engine.get().is_some_and(|e| e.caller_running(&caller.request_id, caller.attempt));
        }
        let key = format!("epoch.{}", caller.partition);
        loop {
            let query = self.inner.next_query.fetch_add(1, Ordering::Relaxed);
            let (sender, answer) = oneshot::channel();
            self.inner.queries.lock().unwrap_or_else(|e| e.into_inner()).insert(query, sender);
            let record = ReplyRecord::Query {
                query,
                invocation_id: caller.request_id.clone(),
                attempt: caller.attempt,
                asker: self.inner.runtime_id.clone(),
            };
            self.send_reply(&caller.runtime, &caller.request_id, record);
            let answered = tokio::time::timeout(QUERY_WAIT, answer).await;
            self.inner.queries.lock().unwrap_or_else(|e| e.into_inner()).remove(&query);
            if let Ok(Ok(running)) = answered {
                return running;
            }
            let moved_on = match self.inner.store.metadata(&key).await {
                Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).parse::<u64>().is_ok_and(|now| now > caller.epoch),
                _ => false,
            };
            if moved_on || self.inner.stopping.load(Ordering::Relaxed) {
                return false;
            }
        }
    }

    async fn produce(&self, topic: &str, partition: i32, key: &str, value: &[u8]) -> Result<(), Error> {
        let record = FutureRecord::to(topic).partition(partition).key(key).payload(value);
        self.inner.producer.send(record, KAFKA_TIMEOUT).await.map_err(|(e, _)| kafka_error("produce", e))?;
        Ok(())
    }

    async fn forward_inner(&self, partition: String, request: Request, wait: bool) -> Result<Outcome, Error> {
        let Some((group, index)) = split_partition(&partition) else {
            return Err(Error::InvalidArgument(format!("mesh: bad partition name {partition:?}")));
        };
        let topic = self.inbox_topic(group);
        self.ensure_topic(&topic, self.inner.config.partitions as i32, false).await?;
        let id = request.id.clone();
        let forward = Forward { request, reply_to: wait.then(|| self.inner.runtime_id.clone()) };
        let value = postcard::to_stdvec(&forward).map_err(|e| kafka_error("encode", e))?;
        let answer = wait.then(|| {
            let (sender, receiver) = oneshot::channel();
            self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner()).entry(id.clone()).or_default().push(sender);
            receiver
        });
        let _cleanup = Cleanup { mesh: self, id: &id };
        self.produce(&topic, index, &id, &value).await?;
        let Some(mut answer) = answer else { return Ok(Outcome::Value(bytes::Bytes::new())) };
        loop {
            tokio::select! {
                outcome = &mut answer => {
                    return outcome.map_err(|_| Error::Unavailable(format!("mesh: the wait for {id} was dropped")));
                }
                _ = tokio::time::sleep(REFORWARD_EVERY) => {
                    tracing::debug!(request = %id, %partition, "no answer yet; forwarding again");
                    if let Err(e) = self.produce(&topic, index, &id, &value).await {
                        tracing::warn!(request = %id, error = %e, "cannot repeat a forward");
                    }
                }
            }
        }
    }

    /// Joins or leaves groups so that this runtime is a member of exactly the
    /// groups of the targets its components host.
    async fn reconcile(&self, targets: Vec<String>) {
        let _membership = self.inner.membership.lock().await;
        if self.inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let wanted: HashSet<String> = targets.iter().map(|k| group_of_key(k)).collect();
        let leaving: Vec<Member> = {
            let mut groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<String> = groups.keys().filter(|g| !wanted.contains(*g)).cloned().collect();
            gone.iter().filter_map(|g| groups.remove(g)).collect()
        };
        if !leaving.is_empty() {
            let _ = tokio::task::spawn_blocking(move || leaving.into_iter().for_each(Member::leave)).await;
        }
        for group in wanted {
            if self.inner.groups.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&group) {
                continue;
            }
            match self.join(&group).await {
                Ok(member) => {
                    self.inner.groups.lock().unwrap_or_else(|e| e.into_inner()).insert(group, member);
                }
                Err(e) => tracing::error!(%group, error = %e, "cannot join the group"),
            }
        }
    }

    /// Joins the consumer group of a type's or service's inbox.
    async fn join(&self, group: &str) -> Result<Member, Error> {
        let topic = self.inbox_topic(group);
        self.ensure_topic(&topic, self.inner.config.partitions as i32, false).await?;
        let session = self.inner.config.session_timeout.as_millis().max(6000);
        let context = GroupContext {
            mesh: Arc::downgrade(&self.inner),
            group: group.to_owned(),
            consumer: OnceLock::new(),
            offsets: Arc::default(),
        };
        let consumer: BaseConsumer<GroupContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.inner.config.brokers)
            .set("group.id", self.topic(group))
            .set("client.id", format!("{}.{}", self.inner.runtime_id, group))
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 6).max(500).to_string())
            .set("max.poll.interval.ms", "300000")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.error.backoff.ms", "20")
            .create_with_context(context)
            .map_err(|e| kafka_error("group consumer", e))?;
        consumer.subscribe(&[&topic]).map_err(|e| kafka_error("subscribe", e))?;
        let consumer = Arc::new(consumer);
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        let stop = Arc::new(AtomicBool::new(false));
        let mesh = Arc::downgrade(&self.inner);
        let thread = {
            let stop = stop.clone();
            let group = group.to_owned();
            thread::Builder::new()
                .name(format!("kar-mesh-{group}"))
                .spawn(move || poll_group(mesh, consumer, stop))
                .map_err(|e| kafka_error("spawn group member", e))?
        };
        tracing::info!(%group, "joined the group");
        Ok(Member { stop, thread: Some(thread) })
    }

    /// Accepts a forwarded record into `partition`'s journal, retrying while
    /// the partition is still owned here; false if it moved away first (the
    /// next owner reads the record again).
    async fn accept(&self, partition: &str, forward: Forward) -> bool {
        let Some(engine) = self.inner.engine.get() else { return false };
        let mut delay = Duration::from_millis(20);
        loop {
            match engine.accept(partition, forward.request.clone(), forward.reply_to.clone()).await {
                Ok(()) => return true,
                Err(e) => {
                    let owned = self.inner.owned.lock().unwrap_or_else(|e| e.into_inner()).contains(partition);
                    if !owned || self.inner.stopping.load(Ordering::Relaxed) {
                        return false;
                    }
                    tracing::debug!(request = %forward.request.id, error = %e, "cannot accept a forwarded request yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Forgets a forwarder's wait when it ends, however it ends.
struct Cleanup<'a> {
    mesh: &'a Mesh,
    id: &'a str,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let mut waiting = self.mesh.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiters) = waiting.get_mut(self.id) {
            waiters.retain(|w| !w.is_closed());
            if waiters.is_empty() {
                waiting.remove(self.id);
            }
        }
    }
}

impl Member {
    /// Leaves the group: closing the consumer revokes its partitions, which
    /// releases them. Blocking.
    fn leave(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The offsets of one inbox partition whose records are being accepted:
/// the committed position only passes records whose acceptance is durable.
#[derive(Default)]
struct Offsets {
    in_flight: BTreeSet<i64>,
    next: i64,
}

/// Polls a group's consumer until told to stop, then closes it (dropping it
/// serves the final revocation).
fn poll_group(mesh: Weak<Inner>, consumer: Arc<BaseConsumer<GroupContext>>, stop: Arc<AtomicBool>) {
    let offsets = consumer.context().offsets.clone();
    while !stop.load(Ordering::SeqCst) {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "group consumer");
                continue;
            }
        };
        let Some(inner) = mesh.upgrade() else { return };
        let mesh = Mesh { inner };
        let (topic, partition, offset) = (message.topic().to_owned(), message.partition(), message.offset());
        let name = format!("{}.{partition}", consumer.context().group);
        let Some(forward) = message.payload().and_then(|p| postcard::from_bytes::<Forward>(p).ok()) else {
            tracing::warn!(%topic, partition, offset, "skipping an undecodable record");
            continue;
        };
        offsets.lock().unwrap_or_else(|e| e.into_inner()).entry(partition).or_default().in_flight.insert(offset);
        // The tasks hold the consumer weakly: it must be closed on this
        // thread, where the final revocation may block.
        let consumer = Arc::downgrade(&consumer);
        let offsets = offsets.clone();
        mesh.inner.handle.clone().spawn(async move {
            let accepted = mesh.accept(&name, forward).await;
            let mut offsets = offsets.lock().unwrap_or_else(|e| e.into_inner());
            let state = offsets.entry(partition).or_default();
            if !accepted {
                // Left in flight: no later offset is stored past it, so the
                // partition's next owner reads it again.
                return;
            }
            state.in_flight.remove(&offset);
            state.next = state.next.max(offset + 1);
            let position = state.in_flight.first().copied().unwrap_or(state.next);
            let Some(consumer) = consumer.upgrade() else { return };
            // `store_offsets` takes the position to resume from as is
            // (`store_offset` would add one to it).
            let mut list = TopicPartitionList::new();
            let stored = list
                .add_partition_offset(&topic, partition, Offset::Offset(position))
                .and_then(|()| consumer.store_offsets(&list));
            if let Err(e) = stored {
                tracing::debug!(error = %e, "cannot store an inbox offset");
            }
        });
    }
    drop(consumer);
}

/// Turns group rebalances into adopting and releasing partitions.
struct GroupContext {
    mesh: Weak<Inner>,
    group: String,
    /// The consumer this context belongs to (set once it exists).
    consumer: OnceLock<Weak<BaseConsumer<GroupContext>>>,
    /// The records being accepted, per inbox partition of this ownership.
    offsets: Arc<Mutex<HashMap<i32, Offsets>>>,
}

impl ClientContext for GroupContext {}

impl GroupContext {
    fn partitions(&self, list: &TopicPartitionList) -> Vec<String> {
        list.elements().iter().map(|e| format!("{}.{}", self.group, e.partition())).collect()
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else { return };
        let mut offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        for element in list.elements() {
            offsets.remove(&element.partition());
        }
        drop(offsets);
        let Some(inner) = self.mesh.upgrade() else { return };
        let Some(engine) = inner.engine.get().cloned() else { return };
        let partitions = self.partitions(list);
        tracing::info!(group = %self.group, ?partitions, "partitions revoked");
        inner.handle.block_on(futures::future::join_all(partitions.iter().map(|p| engine.release(p, RELEASE_GRACE))));
        let mut owned = inner.owned.lock().unwrap_or_else(|e| e.into_inner());
        for p in &partitions {
            owned.remove(p);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(list) = rebalance else { return };
        let mut offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        for element in list.elements() {
            offsets.insert(element.partition(), Offsets::default());
        }
        drop(offsets);
        let Some(inner) = self.mesh.upgrade() else { return };
        let Some(engine) = inner.engine.get().cloned() else { return };
        let partitions = self.partitions(list);
        if partitions.is_empty() {
            return;
        }
        let inbox: Vec<(String, i32)> = list.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        let consumer = self.consumer.get().cloned().unwrap_or_default();
        tracing::info!(group = %self.group, ?partitions, "partitions assigned");
        let config = inner.config.clone();
        // Nothing of the partition is read before it is adopted: this blocks
        // the group's polling, and retries until it succeeds (a runtime that
        // cannot recover a partition must not serve it, and Kafka moves it
        // away if this takes longer than the poll interval).
        inner.handle.block_on(futures::future::join_all(partitions.iter().zip(&inbox).map(|(p, (topic, index))| {
            let engine = engine.clone();
            let config = config.clone();
            let inner = inner.clone();
            let consumer = consumer.clone();
            async move {
                let mut delay = Duration::from_millis(100);
                // Adopting fences the partition's current writer: only a
                // member that still holds the assignment may do it, which the
                // log checks at the last moment.
                let lost = Arc::new(AtomicBool::new(false));
                let guard: OwnershipGuard = {
                    let lost = lost.clone();
                    let (topic, index, partition) = (topic.clone(), *index, p.clone());
                    Arc::new(move || {
                        let consumer = consumer.upgrade().ok_or_else(|| LogError::Fenced("the group is closed".into()))?;
                        match still_assigned(&consumer, &topic, index) {
                            Ok(true) => Ok(()),
                            Ok(false) => {
                                lost.store(true, Ordering::SeqCst);
                                Err(LogError::Fenced(format!("{partition} is no longer assigned to this runtime")))
                            }
                            Err(e) => Err(LogError::Storage(format!("cannot confirm the assignment of {partition}: {e}"))),
                        }
                    })
                };
                loop {
                    let log = KafkaLog::new(&config.brokers, &config.app, p).map(|log| {
                        log.with_replication_factor(config.replication_factor).with_guard(guard.clone())
                    });
                    let result = match log {
                        Ok(log) => engine.adopt(p, Arc::new(log)).await,
                        Err(e) => Err(Error::from(e)),
                    };
                    match result {
                        Ok(_) => {
                            inner.owned.lock().unwrap_or_else(|e| e.into_inner()).insert(p.clone());
                            return;
                        }
                        Err(_) if lost.load(Ordering::SeqCst) => {
                            tracing::warn!(partition = %p, "no longer assigned here (this runtime stalled past its session timeout); not adopting");
                            return;
                        }
                        Err(e) if !inner.stopping.load(Ordering::Relaxed) => {
                            tracing::error!(partition = %p, error = %e, "cannot adopt a partition; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                        Err(_) => return,
                    }
                }
            }
        })));
    }
}

/// How long the assignment check waits for the group coordinator.
const ASSIGNMENT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether this member still holds `topic`/`partition`, as the group
/// coordinator sees it: it commits the partition's committed offset again
/// (no change to the offsets), which the coordinator refuses from a member it
/// has evicted or of an older generation. A runtime frozen past its session
/// timeout in the middle of adopting learns here that the partition has
/// moved on, before its next attempt fences the new owner. (A rebalance in
/// progress does not say the member lost anything: it may go on.)
fn still_assigned(consumer: &BaseConsumer<GroupContext>, topic: &str, partition: i32) -> Result<bool, KafkaError> {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let committed = consumer.committed_offsets(list, ASSIGNMENT_CHECK_TIMEOUT)?;
    let offset = match committed.find_partition(topic, partition).map(|e| e.offset()) {
        Some(Offset::Offset(offset)) => offset,
        _ => consumer.fetch_watermarks(topic, partition, ASSIGNMENT_CHECK_TIMEOUT)?.0,
    };
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    match consumer.commit(&list, CommitMode::Sync) {
        Ok(()) => Ok(true),
        Err(KafkaError::ConsumerCommit(
            RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::FencedInstanceId
            | RDKafkaErrorCode::State,
        )) => Ok(false),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress)) => Ok(true),
        Err(e) => Err(e),
    }
}

impl Remote for Mesh {
    fn forward(&self, partition: &str, request: Request, wait: bool) -> BoxFuture<'static, Result<Outcome, Error>> {
        let mesh = self.clone();
        let partition = partition.to_owned();
        async move { mesh.forward_inner(partition, request, wait).await }.boxed()
    }

    fn reply(&self, runtime: &str, request_id: &str, outcome: &Outcome) {
        if runtime == self.inner.runtime_id {
            return self.resolve(request_id, outcome.clone());
        }
        let record = ReplyRecord::Outcome { request_id: request_id.to_owned(), outcome: outcome.clone() };
        self.send_reply(runtime, request_id, record);
    }

    fn caller_alive(&self, caller: &Caller) -> BoxFuture<'static, bool> {
        let mesh = self.clone();
        let caller = caller.clone();
        async move { mesh.caller_alive(caller).await }.boxed()
    }

    fn hosting(&self, targets: Vec<String>) {
        let mesh = self.clone();
        self.inner.handle.spawn(async move { mesh.reconcile(targets).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::types::ActorId;

    #[test]
    fn placement_is_stable_and_spreads_instances() {
        let placement = HashPlacement::new(4);
        let a = Target::Actor(ActorId::new("Account", "alice"));
        assert_eq!(placement.partition_of(&a, "x"), placement.partition_of(&a, "y"), "actors ignore the request id");
        let used: HashSet<String> = (0..64)
            .map(|i| placement.partition_of(&Target::Actor(ActorId::new("Account", format!("a{i}"))), ""))
            .collect();
        assert_eq!(used.len(), 4, "{used:?}");
        assert!(used.iter().all(|p| p.starts_with("actor.Account.")));
        let s = placement.partition_of(&Target::Service("greeter".into()), "req-1");
        assert!(s.starts_with("svc.greeter."), "{s}");
        assert_eq!(split_partition("actor.Account.3"), Some(("actor.Account", 3)));
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c, "FNV-1a, fixed forever: placement depends on it");
    }

    #[test]
    fn groups_name_types_and_services() {
        assert_eq!(group_of_key("actor:Account"), "actor.Account");
        assert_eq!(group_of_key("service:greeter"), "svc.greeter");
    }
}
