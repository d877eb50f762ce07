//! The engine: invocations, virtual actors and retry orchestration.
//!
//! The engine accepts requests (calls, tells, removals), journals them in the
//! [`Log`], gives each actor one flow at a time, delivers work to attached
//! components, retries an attempt whose component vanished, and completes
//! each request with one atomic log step. It is written once against the
//! [`Log`] and [`StateStore`] traits; the deployments supply implementations.
//!
//! It knows nothing of gRPC, HTTP, redb, Kafka or Redis: payloads are opaque
//! bytes and components are queues of [`Delivery`]s.
//!
//! # How the promises are kept
//!
//! * G1: a request is journalled before it is acknowledged (tells) or before
//!   its result is returned (calls); an attempt that fails because its
//!   component vanished is retried; [`Engine::start`] retries what the log
//!   holds after a crash.
//! * G2: an attempt is only retried after the previous one is known dead (the
//!   component's channel closed, and components abandon in-flight work when it
//!   does), and one task at a time drives a request.
//! * G3: completion removes the request from the log atomically with
//!   recording its outcome, so a completed request is never recovered, and a
//!   repeated id gets the recorded outcome.
//! * G4: a call is started only while its caller waits for it: a call made
//!   from a handler must come from the caller's current attempt, and a call
//!   whose caller dropped the wait is cancelled instead of started. After a
//!   crash, pending calls made from handlers are dropped: the retried caller
//!   issues them again under the same deterministic id.
//! * G6: each actor has a turn held by one flow; calls of the same flow
//!   re-enter, others queue in arrival order.
//!
//! # Partitions
//!
//! Requests are journalled in partitions: each is a [`Log`] of its own, with
//! its own ownership epoch. [`Placement`] maps a request to its partition;
//! the engine runs the requests of the partitions it has adopted
//! ([`Engine::adopt`]) and hands every other request to the [`Remote`] owner.
//! The embedded deployment has one partition that holds everything; in a mesh
//! partitions move between runtimes ([`Engine::release`] lets one go). A tail
//! call whose next step belongs to another partition is journalled where the
//! current step ran, as a proxy that forwards the step to its partition and
//! completes with its outcome, so that the hand-off stays one atomic write.

pub mod components;
pub mod events;
pub mod reminders;
pub mod types;

use crate::log::{Completion, Log};
use crate::store::StateStore;
use crate::topics::Topics;
use components::{Component, ComponentInfo, Registration};
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use types::*;

/// A failure the engine reports to a caller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request names something that cannot be served.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The call from a handler does not come from its caller's live attempt.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Durable storage failed; the request may or may not have been accepted.
    #[error("{0}")]
    Unavailable(String),
}

impl From<crate::log::Error> for Error {
    fn from(e: crate::log::Error) -> Self {
        Error::Unavailable(e.to_string())
    }
}

impl From<crate::store::Error> for Error {
    fn from(e: crate::store::Error) -> Self {
        match e {
            crate::store::Error::Fenced(_) => Error::FailedPrecondition(e.to_string()),
            crate::store::Error::Storage(_) => Error::Unavailable(e.to_string()),
        }
    }
}

/// How the engine behaves.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// An actor instance unused for this long is deactivated.
    pub actor_idle_timeout: Duration,
    /// How long recorded outcomes are kept for callers that repeat a request.
    pub outcome_retention: Duration,
    /// How often due reminders are looked for.
    pub reminder_interval: Duration,
    /// How long a component may go without hearing from this runtime before
    /// it abandons its running invocations (`Registered.lease`). In a mesh it
    /// must end before another runtime can take this one's partitions over.
    pub component_lease: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            actor_idle_timeout: Duration::from_secs(60),
            outcome_retention: Duration::from_secs(3600),
            reminder_interval: Duration::from_millis(50),
            component_lease: Duration::from_secs(10),
        }
    }
}

/// Where a call made from inside a handler comes from, as the handler's SDK
/// reports it (the invocation context).
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The flow of the calling invocation.
    pub flow: String,
    /// The request id of the calling invocation.
    pub caller_id: String,
    /// The sequence number of this call within the calling attempt (from 1).
    pub seq: u64,
}

/// A request as submitted through the API.
#[derive(Clone, Debug)]
pub struct Submission {
    /// Who runs it.
    pub target: Target,
    /// The method.
    pub method: String,
    /// The encoded `kar.v1.Payload`.
    pub payload: bytes::Bytes,
    /// The invocation context, for requests made from handlers.
    pub context: Option<CallContext>,
    /// An idempotency key chosen by a caller outside any handler.
    pub request_id: Option<String>,
    /// When the caller stops waiting.
    pub deadline: Option<UnixMillis>,
}

/// An actor instance the engine currently tracks, for introspection.
#[derive(Clone, Debug)]
pub struct ActiveActor {
    /// The instance.
    pub actor: ActorId,
    /// The component it is activated on.
    pub component_id: String,
}

/// The name of the one partition of the embedded deployment.
pub const SINGLE_PARTITION: &str = "all";

/// Maps requests to the partitions that journal and run them.
pub trait Placement: Send + Sync + 'static {
    /// The partition of a request to `target` with id `request_id` (actors
    /// are placed by instance; service requests may be spread by id).
    fn partition_of(&self, target: &Target, request_id: &str) -> String;
}

/// The placement of the embedded deployment: one partition for everything.
pub struct SinglePartition;

impl Placement for SinglePartition {
    fn partition_of(&self, _target: &Target, _request_id: &str) -> String {
        SINGLE_PARTITION.to_owned()
    }
}

/// The rest of a mesh, as the engine sees it: the owners of the partitions
/// this runtime has not adopted.
pub trait Remote: Send + Sync + 'static {
    /// Hands `request` to the owner of `partition`. With `wait`, resolves
    /// with the request's outcome; otherwise once the request is durably
    /// accepted (with an empty value). Repeating a forward is harmless: the
    /// owner deduplicates by request id.
    fn forward(&self, partition: &str, request: Request, wait: bool) -> BoxFuture<'static, Result<Outcome, Error>>;

    /// Sends the outcome of a forwarded request to the runtime waiting for it.
    fn reply(&self, runtime: &str, request_id: &str, outcome: &Outcome);

    /// Whether the attempt that issued a call is still live: asked of the
    /// caller's runtime; false once that says no, or once the caller's
    /// partition has a newer ownership epoch (its runtime failed).
    fn caller_alive(&self, caller: &Caller) -> BoxFuture<'static, bool>;

    /// The actor types and services (`actor:T`, `service:S`) that components
    /// attached here host, after it changed.
    fn hosting(&self, targets: Vec<String>);
}

/// The engine. Cheap to clone; every clone drives the same engine.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    placement: Arc<dyn Placement>,
    remote: Option<Arc<dyn Remote>>,
    store: Arc<dyn StateStore>,
    topics: Arc<dyn Topics>,
    /// Wakes the event delivery tasks when something is published.
    published: tokio::sync::Notify,
    options: EngineOptions,
    /// Identifies this runtime process.
    runtime_id: String,
    next_delivery: AtomicU64,
    next_component: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The partitions adopted by this runtime.
    partitions: HashMap<String, Partition>,
    /// Every accepted request not yet completed, by id.
    requests: HashMap<String, Entry>,
    /// Outcomes of recently completed requests with kept outcomes, in two
    /// generations, so a repeat racing with the completion still finds them.
    recent: [HashMap<String, Outcome>; 2],
    actors: HashMap<ActorId, Slot>,
    components: HashMap<String, Component>,
    /// Requests waiting for a component that hosts their target.
    parked: HashMap<Target, Vec<String>>,
    /// Names of actor types and services ever registered (`actor:T`, `service:S`).
    known: HashSet<String>,
    round_robin: usize,
    /// Subscriptions whose delivery task is running.
    delivering: HashSet<String>,
    /// Actors whose queue may hold requests (pruned when searched).
    contended: HashSet<ActorId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Waiting for its turn, a component, or a retry.
    Pending,
    /// Delivered to a component (or being activated for).
    Running,
    /// The outcome is being made durable.
    Completing,
}

/// A partition adopted by this runtime.
struct Partition {
    log: Arc<dyn Log>,
    /// This runtime's ownership epoch of the partition.
    epoch: u64,
    /// Being released: nothing new is accepted into it.
    releasing: bool,
    /// When the latest write that proved this runtime still owns the
    /// partition was issued (not when it came back: the process may have
    /// stalled while it was in flight).
    verified: Instant,
}

/// In a mesh, an attempt is delivered only if a write proved the ownership of
/// its partition this recently; otherwise the log is probed first. A runtime
/// that was frozen past its session timeout finds out it was fenced before it
/// runs anything, instead of when it tries to record the result.
const OWNERSHIP_PROOF: Duration = Duration::from_secs(2);

struct Entry {
    request: Arc<Request>,
    /// The partition whose log journals the request.
    partition: String,
    /// Runtimes waiting for the outcome of a forwarded request.
    reply_to: Vec<String>,
    attempt: u32,
    status: Status,
    /// Callers waiting for the outcome.
    waiters: Vec<oneshot::Sender<Outcome>>,
    /// Whether the request's record is durable yet.
    journal: Journal,
    /// The component of the latest attempt.
    component: Option<String>,
}

/// The durability of a request's record.
enum Journal {
    /// On disk.
    Durable,
    /// Being written; these submitters wait to hear whether it made it.
    Writing(Vec<oneshot::Sender<bool>>),
}

/// The turn and placement of one actor instance.
#[derive(Default)]
struct Slot {
    /// The flow holding the turn, if any.
    flow: Option<String>,
    /// How many invocations of that flow are under way (reentrancy nests).
    holders: u32,
    /// Requests of other flows waiting for the turn, in arrival order.
    queue: VecDeque<String>,
    /// The component on which the instance is activated.
    activated_on: Option<String>,
    last_used: Option<Instant>,
}

fn target_key(target: &Target) -> String {
    match target {
        Target::Actor(a) => format!("actor:{}", a.kind),
        Target::Service(s) => format!("service:{s}"),
    }
}

/// Which component group serves a target, used to park requests.
fn park_key(target: &Target) -> Target {
    match target {
        Target::Actor(a) => Target::Actor(ActorId::new(a.kind.clone(), "")),
        Target::Service(s) => Target::Service(s.clone()),
    }
}

const KNOWN_TARGETS: &str = "known_targets";

/// A fresh id for a runtime process.
pub fn new_runtime_id() -> String {
    format!("kar-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The metadata key under which a partition's current epoch is published.
fn epoch_key(partition: &str) -> String {
    format!("epoch.{partition}")
}

/// The metadata key that records that some component hosts a target.
fn known_key(target_key: &str) -> String {
    format!("known.{target_key}")
}

impl Engine {
    /// Starts the engine of the embedded deployment: one partition, `log`,
    /// recovered at once (pending requests are retried, except calls made
    /// from handlers, which their retried callers reissue).
    pub async fn start(
        log: Arc<dyn Log>,
        store: Arc<dyn StateStore>,
        topics: Arc<dyn Topics>,
        options: EngineOptions,
    ) -> Result<Engine, Error> {
        let engine = Engine::new(new_runtime_id(), Arc::new(SinglePartition), None, store, topics, options).await?;
        engine.adopt(SINGLE_PARTITION, log).await?;
        Ok(engine)
    }

    /// Starts an engine that owns no partition yet: [`Engine::adopt`] gives it
    /// some; requests for the others go to `remote`.
    pub async fn new(
        runtime_id: String,
        placement: Arc<dyn Placement>,
        remote: Option<Arc<dyn Remote>>,
        store: Arc<dyn StateStore>,
        topics: Arc<dyn Topics>,
        options: EngineOptions,
    ) -> Result<Engine, Error> {
        let known: HashSet<String> = match store.metadata(KNOWN_TARGETS).await? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            None => HashSet::new(),
        };
        let engine = Engine {
            shared: Arc::new(Shared {
                placement,
                remote,
                store,
                topics,
                published: tokio::sync::Notify::new(),
                options,
                runtime_id,
                next_delivery: AtomicU64::new(1),
                next_component: AtomicU64::new(1),
                state: Mutex::new(State { known, ..State::default() }),
            }),
        };
        engine.spawn_housekeeping();
        engine.spawn_reminder_ticker();
        Ok(engine)
    }

    /// Takes ownership of a partition: recovers its log (which fences the
    /// previous owner), retries its pending requests (except calls made from
    /// handlers, which their retried callers reissue) and starts delivering
    /// the events of its subscriptions. Returns the new epoch.
    pub async fn adopt(&self, partition: &str, log: Arc<dyn Log>) -> Result<u64, Error> {
        // A proof of ownership dates from before the write that makes it:
        // this process may have stalled since (see OWNERSHIP_PROOF).
        let proving = Instant::now();
        let recovery = log.recover().await?;
        let epoch = recovery.epoch;
        if self.shared.remote.is_some() {
            // Lets other runtimes tell orphans of this partition's callers.
            self.shared.store.set_metadata(&epoch_key(partition), epoch.to_string().into()).await?;
        }
        let mut orphans = Vec::new();
        {
            let mut state = self.lock();
            state.partitions.insert(
                partition.to_owned(),
                Partition { log: log.clone(), epoch, releasing: false, verified: proving },
            );
            let mut retried = 0;
            for request in recovery.pending {
                if request.kind == RequestKind::Call && request.caller.is_some() && request.step == 0 {
                    orphans.push(Completion { request_id: request.id.clone(), outcome: None, next: vec![] });
                    continue;
                }
                if state.requests.contains_key(&request.id) {
                    continue;
                }
                let id = request.id.clone();
                state.requests.insert(
                    id.clone(),
                    Entry {
                        request: Arc::new(request),
                        partition: partition.to_owned(),
                        reply_to: vec![],
                        attempt: 0,
                        status: Status::Pending,
                        waiters: vec![],
                        journal: Journal::Durable,
                        component: None,
                    },
                );
                self.schedule(&mut state, &id);
                retried += 1;
            }
            tracing::info!(partition, epoch, retried, orphans = orphans.len(), "partition adopted");
        }
        if !orphans.is_empty() {
            log.complete(orphans).await?;
        }
        self.spawn_deliveries().await?;
        Ok(epoch)
    }

    /// Lets a partition go (it moves to another runtime): nothing new is
    /// accepted into it, its running attempts are given up to `grace` to
    /// finish, then its requests leave this runtime. Callers here that wait
    /// for one of them keep waiting: their request is forwarded to the new
    /// owner, which finds it in the log.
    pub async fn release(&self, partition: &str, grace: Duration) {
        {
            let mut state = self.lock();
            match state.partitions.get_mut(partition) {
                Some(p) => p.releasing = true,
                None => return,
            }
        }
        let deadline = Instant::now() + grace;
        loop {
            let busy: HashSet<String> = self
                .lock()
                .requests
                .values()
                .filter(|e| e.partition == partition && e.status != Status::Pending && !self.is_proxy(e))
                .filter_map(|e| e.component.clone())
                .collect();
            if busy.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                // The next owner must not start an attempt that may still
                // run here (G2): end the streams of the components running
                // them, which abandon their attempts and attach again.
                tracing::warn!(partition, components = ?busy, "attempts outlived the release grace; detaching their components");
                for component in &busy {
                    self.detach(component);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut handed_over = Vec::new();
        let removed = {
            let mut state = self.lock();
            let removed = state.partitions.remove(partition);
            let ids: Vec<String> =
                state.requests.iter().filter(|(_, e)| e.partition == partition).map(|(id, _)| id.clone()).collect();
            for id in &ids {
                if let Some(entry) = state.requests.remove(id)
                    && !entry.waiters.is_empty()
                {
                    handed_over.push(entry);
                }
            }
            let placement = self.shared.placement.clone();
            state.actors.retain(|actor, _| placement.partition_of(&Target::Actor(actor.clone()), "") != partition);
            for queue in state.parked.values_mut() {
                queue.retain(|id| !ids.contains(id));
            }
            tracing::info!(partition, requests = ids.len(), "partition released");
            removed
        };
        // Dropping a log may wait for its writer to finish what is queued.
        let _ = tokio::task::spawn_blocking(move || drop(removed)).await;
        for entry in handed_over {
            let engine = self.clone();
            let partition = partition.to_owned();
            tokio::spawn(async move {
                let request = (*entry.request).clone();
                let outcome = engine.forward_until_done(&partition, request, true).await;
                for waiter in entry.waiters {
                    let _ = waiter.send(outcome.clone());
                }
            });
        }
    }

    /// Whether attempt `attempt` of invocation `invocation_id` is running
    /// here (asked by the owner of a call it made, before starting it).
    pub fn caller_running(&self, invocation_id: &str, attempt: u32) -> bool {
        running_invocation(&self.lock(), invocation_id).is_some_and(|e| e.attempt == attempt)
    }

    /// The partitions this runtime owns, with their epochs.
    pub fn partitions(&self) -> Vec<(String, u64)> {
        let state = self.lock();
        let mut list: Vec<_> =
            state.partitions.iter().filter(|(_, p)| !p.releasing).map(|(n, p)| (n.clone(), p.epoch)).collect();
        list.sort();
        list
    }

    /// Whether this runtime owns (and is not releasing) the partition of a
    /// target.
    fn owns(&self, target: &Target, request_id: &str) -> bool {
        let partition = self.shared.placement.partition_of(target, request_id);
        self.lock().partitions.get(&partition).is_some_and(|p| !p.releasing)
    }

    /// Forwards a request to the owner of its partition until it gets an
    /// answer (a forward fails only while the mesh's transport does).
    async fn forward_until_done(&self, partition: &str, request: Request, wait: bool) -> Outcome {
        let Some(remote) = self.shared.remote.clone() else {
            return Outcome::Failed(Failure::NotFound(format!("partition {partition} has no owner")));
        };
        loop {
            match remote.forward(partition, request.clone(), wait).await {
                Ok(outcome) => return outcome,
                Err(e) => {
                    tracing::warn!(request = %request.id, partition, error = %e, "cannot forward; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// The id of this runtime process.
    pub fn runtime_id(&self) -> &str {
        &self.shared.runtime_id
    }

    /// The lease this runtime's components are held to.
    pub fn component_lease(&self) -> Duration {
        self.shared.options.component_lease
    }

    /// The highest ownership epoch among the partitions owned here.
    pub fn epoch(&self) -> u64 {
        self.lock().partitions.values().map(|p| p.epoch).max().unwrap_or_default()
    }

    /// The state store, for the state API.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.shared.store
    }

    /// The store through which the invocation `caller_id` (a handler's
    /// state call names it) writes its actor's state. Its writes are refused
    /// unless the invocation is running here; in a mesh they are also fenced
    /// by the ownership epoch of its partition, so they stop landing the
    /// moment a newer owner publishes its epoch (a runtime frozen past its
    /// session timeout cannot write through what its components had in
    /// flight). Writes from outside a handler (`None`) are not fenced.
    pub fn state_writer(&self, caller_id: Option<&str>) -> Result<Arc<dyn StateStore>, Error> {
        let Some(caller_id) = caller_id else { return Ok(self.shared.store.clone()) };
        let fence = {
            let state = self.lock();
            let entry = running_invocation(&state, caller_id);
            let epoch = entry.and_then(|e| state.partitions.get(&e.partition).map(|p| (&e.partition, p.epoch)));
            let Some((partition, epoch)) = epoch else {
                return Err(Error::FailedPrecondition(format!(
                    "the invocation {caller_id} is not running here (its attempt was abandoned or it already completed): its state writes are refused"
                )));
            };
            // One runtime owns everything in the embedded deployment.
            self.shared.remote.is_some().then(|| crate::store::Fence { key: epoch_key(partition), epoch })
        };
        Ok(fence.and_then(|fence| self.shared.store.fenced(fence)).unwrap_or_else(|| self.shared.store.clone()))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in the engine; the
        // state is still consistent enough to keep serving, so don't cascade.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Calls: accepts the request and waits for its outcome.
    pub async fn call(&self, submission: Submission) -> Result<(String, Outcome), Error> {
        let (id, accepted) = self.submit(RequestKind::Call, submission).await?;
        match accepted {
            Accepted::Done(outcome) => Ok((id, outcome)),
            Accepted::Wait(receiver) => match receiver.await {
                Ok(outcome) => Ok((id, outcome)),
                Err(_) => Err(Error::Unavailable(format!("request {id} was abandoned by the runtime"))),
            },
        }
    }

    /// Tells: accepts the request durably and returns its id.
    pub async fn tell(&self, submission: Submission) -> Result<String, Error> {
        let (id, _) = self.submit(RequestKind::Tell, submission).await?;
        Ok(id)
    }

    /// Tells, and waits until the tell has completed (event delivery).
    async fn tell_and_wait(&self, submission: Submission) -> Result<Outcome, Error> {
        let (id, accepted) = self.submit_in_flow(RequestKind::Tell, submission, None, true).await?;
        match accepted {
            Accepted::Done(outcome) => Ok(outcome),
            Accepted::Wait(receiver) => {
                receiver.await.map_err(|_| Error::Unavailable(format!("request {id} was abandoned by the runtime")))
            }
        }
    }

    /// Fails with `NotFound` unless a component ever registered the target
    /// (here, or anywhere in the mesh).
    async fn check_known(&self, target: &Target) -> Result<(), Error> {
        self.learn_known(target).await?;
        if self.lock().known.contains(&target_key(target)) {
            return Ok(());
        }
        Err(Error::NotFound(match target {
            Target::Actor(a) => format!("no component hosts actor type {:?}", a.kind),
            Target::Service(s) => format!("no component serves service {s:?}"),
        }))
    }

    /// Looks a target unknown here up in the store, where every runtime of a
    /// mesh records the targets its components registered.
    async fn learn_known(&self, target: &Target) -> Result<(), Error> {
        let key = target_key(target);
        if self.lock().known.contains(&key) {
            return Ok(());
        }
        if self.shared.store.metadata(&known_key(&key)).await?.is_some() {
            self.lock().known.insert(key);
        }
        Ok(())
    }

    /// Removes an actor in its turn: deactivates it and deletes its state.
    /// Returns how many state entries were deleted.
    /// A removal made from inside a handler passes the handler's `flow`, so
    /// it runs within that flow's turn instead of queueing behind it.
    pub async fn remove(
        &self,
        actor: ActorId,
        request_id: Option<String>,
        deadline: Option<UnixMillis>,
        flow: Option<String>,
    ) -> Result<u32, Error> {
        let submission = Submission {
            target: Target::Actor(actor),
            method: String::new(),
            payload: bytes::Bytes::new(),
            context: None,
            request_id,
            deadline,
        };
        let (id, accepted) = self.submit_in_flow(RequestKind::Remove, submission, flow, false).await?;
        let outcome = match accepted {
            Accepted::Done(outcome) => outcome,
            Accepted::Wait(receiver) => {
                receiver.await.map_err(|_| Error::Unavailable(format!("request {id} was abandoned")))?
            }
        };
        match outcome {
            Outcome::Value(bytes) if bytes.len() == 4 => {
                Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            }
            Outcome::Value(_) => Ok(0),
            Outcome::AppError { message, .. } => Err(Error::Unavailable(message)),
            Outcome::Failed(Failure::NotFound(m)) => Err(Error::NotFound(m)),
            Outcome::Failed(f) => Err(Error::Unavailable(format!("{f:?}"))),
        }
    }

    async fn submit(&self, kind: RequestKind, submission: Submission) -> Result<(String, Accepted), Error> {
        self.submit_in_flow(kind, submission, None, false).await
    }

    /// Accepts a request. `flow` puts it in an existing flow; `wait_tell`
    /// keeps the submitter waiting for a tell's outcome.
    async fn submit_in_flow(
        &self,
        kind: RequestKind,
        submission: Submission,
        flow: Option<String>,
        wait_tell: bool,
    ) -> Result<(String, Accepted), Error> {
        self.learn_known(&submission.target).await?;
        let mut request = self.build_request(kind, submission)?;
        if let Some(flow) = flow {
            request.flow = flow;
        }
        // A tell's submitter waits for durability only; an event delivery
        // (`wait_tell`) and a call wait for the outcome.
        let waits_for_outcome = kind != RequestKind::Tell || wait_tell;
        let partition = self.shared.placement.partition_of(&request.target, &request.id);
        if !self.owns_partition(&partition) {
            return self.submit_remote(partition, request, waits_for_outcome).await;
        }
        if let Some(remote) = self.shared.remote.clone()
            && kind != RequestKind::Tell
            && request.caller.is_none()
        {
            // In a mesh, a call from outside a handler is recorded in its
            // partition's inbox first (one acknowledged produce, cheaper than
            // a transaction of its own) and then admitted as if read from
            // there: it may start at once, its append riding with its
            // completion. The inbox record is read here again later and joins
            // the entry, or finds its recorded outcome.
            request.keep_outcome = true;
            remote.forward(&partition, request.clone(), false).await?;
            if !self.owns_partition(&partition) {
                return self.submit_remote(partition, request, waits_for_outcome).await;
            }
            return self.admit(partition, request, waits_for_outcome, None, true).await;
        }
        self.admit(partition, request, waits_for_outcome, None, false).await
    }

    /// Accepts a request forwarded by another runtime to `partition`, owned
    /// here; once it completes, its outcome goes to `reply_to`. Resolves once
    /// the request's record is durable (so the forward may be acknowledged).
    /// The partition is the one the request was sent to, which is not its
    /// target's for a request handed over mid-chain (see [`Engine::release`]):
    /// its id is then pending or completed there, and the forward joins it.
    pub async fn accept(&self, partition: &str, request: Request, reply_to: Option<String>) -> Result<(), Error> {
        let partition = partition.to_owned();
        if !self.owns_partition(&partition) {
            return Err(Error::Unavailable(format!("partition {partition} is not owned by this runtime")));
        }
        let (id, accepted) = self.admit(partition, request, false, reply_to.clone(), true).await?;
        if let (Accepted::Done(outcome), Some(runtime), Some(remote)) = (accepted, reply_to, &self.shared.remote) {
            remote.reply(&runtime, &id, &outcome);
        }
        Ok(())
    }

    fn owns_partition(&self, partition: &str) -> bool {
        self.lock().partitions.get(partition).is_some_and(|p| !p.releasing)
    }

    /// Hands a request for a partition owned elsewhere to its owner: a tell
    /// is accepted once the forward is durable; a call's outcome comes back.
    async fn submit_remote(
        &self,
        partition: String,
        mut request: Request,
        wait: bool,
    ) -> Result<(String, Accepted), Error> {
        let Some(remote) = self.shared.remote.clone() else {
            return Err(Error::Unavailable(format!("partition {partition} is not owned by this runtime")));
        };
        // The owner deduplicates repeated forwards by the recorded outcome.
        request.keep_outcome = true;
        let id = request.id.clone();
        let (mut waiter, receiver) = oneshot::channel();
        if !wait {
            remote.forward(&partition, request, false).await?;
            return Ok((id, Accepted::Wait(receiver)));
        }
        let engine = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                outcome = engine.forward_until_done(&partition, request, true) => {
                    let _ = waiter.send(outcome);
                }
                _ = waiter.closed() => {}
            }
        });
        Ok((id, Accepted::Wait(receiver)))
    }

    /// Admits a request into a partition owned here. `reply_to` names a
    /// runtime that forwarded it and waits for its outcome; `forwarded` says
    /// it was read from this partition's inbox (and waits for the record to
    /// be durable whatever the request's kind, so the inbox record may be
    /// let go).
    async fn admit(
        &self,
        partition: String,
        request: Request,
        waits_for_outcome: bool,
        reply_to: Option<String>,
        forwarded: bool,
    ) -> Result<(String, Accepted), Error> {
        let kind = request.kind;
        let id = request.id.clone();
        let log = {
            let state = self.lock();
            match state.partitions.get(&partition) {
                Some(p) => p.log.clone(),
                None => return Err(Error::Unavailable(format!("partition {partition} is not owned by this runtime"))),
            }
        };
        // A repeated id whose outcome is on record gets it back (G3, G4).
        let in_flight = self.lock().requests.contains_key(&id);
        if request.keep_outcome
            && !in_flight
            && let Some(outcome) = log.outcome(&id).await?
        {
            return Ok((id, Accepted::Done(outcome)));
        }
        let (waiter, receiver) = oneshot::channel();
        let (journaled, is_journaled) = oneshot::channel();
        let await_durable = forwarded || kind == RequestKind::Tell;
        // A request may start before its own record is durable only if a
        // durable record already stands for it: the inbox record it was read
        // from (which is let go only once this append is durable), or, for a
        // call made from a handler, its durable caller, whose retry reissues
        // it under the same id. Anything else (a tell, a call from outside a
        // handler) starts only once its record is durable, so a crash never
        // leaves a started request that nobody retries (G1).
        let covered = kind != RequestKind::Tell && (forwarded || request.caller.is_some());
        let admitted = {
            let mut state = self.lock();
            if let Some(entry) = state.requests.get_mut(&id) {
                // The same request again: a retried caller reissuing it, or a
                // client repeating an idempotent call. Join the original.
                if request.caller.is_some() && entry.request.caller != request.caller {
                    Arc::make_mut(&mut entry.request).caller = request.caller.clone();
                }
                if waits_for_outcome {
                    entry.waiters.push(waiter);
                }
                if let Some(runtime) = reply_to
                    && !entry.reply_to.contains(&runtime)
                {
                    entry.reply_to.push(runtime);
                }
                match &mut entry.journal {
                    Journal::Durable => Admitted::Joined { writing: false },
                    Journal::Writing(submitters) => {
                        submitters.push(journaled);
                        Admitted::Joined { writing: true }
                    }
                }
            } else if let Some(outcome) = state.recent.iter().find_map(|g| g.get(&id)) {
                Admitted::Done(outcome.clone())
            } else {
                let request = Arc::new(request);
                // A covered request's append may ride along lazily with the
                // next durable write (at the latest its completion, which is
                // ordered after it and so implies it).
                let durable = if covered {
                    log.append_lazily(vec![(*request).clone()])
                } else {
                    log.append(vec![(*request).clone()])
                };
                let entry = Entry {
                    request,
                    partition,
                    reply_to: reply_to.into_iter().collect(),
                    attempt: 0,
                    status: Status::Pending,
                    waiters: if waits_for_outcome { vec![waiter] } else { vec![] },
                    journal: Journal::Writing(vec![journaled]),
                    component: None,
                };
                state.requests.insert(id.clone(), entry);
                if covered {
                    self.schedule(&mut state, &id);
                }
                Admitted::New(durable)
            }
        };
        let durable = match admitted {
            Admitted::Done(outcome) => return Ok((id, Accepted::Done(outcome))),
            Admitted::Joined { writing } => {
                if await_durable && writing && is_journaled.await != Ok(true) {
                    return Err(Error::Unavailable(format!("request {id} could not be journalled")));
                }
                return Ok((id, Accepted::Wait(receiver)));
            }
            Admitted::New(durable) => durable,
        };
        // The append is awaited in a task of its own, so that a submitter that
        // goes away (its RPC dropped) cannot leave an accepted tell behind
        // unscheduled.
        let engine = self.clone();
        let journalled_id = id.clone();
        tokio::spawn(async move { engine.journalled(&journalled_id, covered, durable.await) });
        if await_durable && is_journaled.await != Ok(true) {
            return Err(Error::Unavailable(format!("request {id} could not be journalled")));
        }
        Ok((id, Accepted::Wait(receiver)))
    }

    /// Records that a request's append finished: tells the submitters
    /// waiting for it and schedules a request that was not `covered` (it
    /// runs only once its record is durable).
    fn journalled(&self, id: &str, covered: bool, result: Result<(), crate::log::Error>) {
        let mut state = self.lock();
        let Some(entry) = state.requests.get_mut(id) else { return };
        let submitters = match std::mem::replace(&mut entry.journal, Journal::Durable) {
            Journal::Writing(submitters) => submitters,
            Journal::Durable => vec![],
        };
        let ok = result.is_ok();
        if let Err(e) = result {
            tracing::error!(request = id, error = %e, "cannot journal a request");
            if !covered {
                // Nobody was told it was accepted and it never started:
                // forget it (a waiting caller hears it was abandoned).
                state.requests.remove(id);
            }
        } else if !covered {
            self.schedule(&mut state, id);
        }
        for submitter in submitters {
            let _ = submitter.send(ok);
        }
    }

    /// Validates a submission and turns it into a request.
    fn build_request(&self, kind: RequestKind, submission: Submission) -> Result<Request, Error> {
        let Submission { target, method, payload, context, request_id, deadline } = submission;
        match &target {
            Target::Actor(a) if a.kind.is_empty() => {
                return Err(Error::InvalidArgument("actor.type is required".into()));
            }
            Target::Actor(a) if a.id.is_empty() => return Err(Error::InvalidArgument("actor.id is required".into())),
            Target::Service(s) if s.is_empty() => return Err(Error::InvalidArgument("service is required".into())),
            _ => {}
        }
        if kind != RequestKind::Remove && method.is_empty() {
            return Err(Error::InvalidArgument("method is required".into()));
        }
        let state = self.lock();
        if !state.known.contains(&target_key(&target)) {
            return Err(Error::NotFound(match &target {
                Target::Actor(a) => format!("no component hosts actor type {:?}", a.kind),
                Target::Service(s) => format!("no component serves service {s:?}"),
            }));
        }
        let (id, flow, caller, keep_outcome) = match context {
            Some(context) => {
                let entry = running_invocation(&state, &context.caller_id);
                let epoch = entry.and_then(|e| state.partitions.get(&e.partition)).map(|p| p.epoch);
                let (Some(entry), Some(epoch)) = (entry, epoch) else {
                    return Err(Error::FailedPrecondition(format!(
                        "the calling invocation {} is not running here (its attempt was abandoned or it already completed)",
                        context.caller_id
                    )));
                };
                let caller = Caller {
                    request_id: context.caller_id.clone(),
                    runtime: self.shared.runtime_id.clone(),
                    partition: entry.partition.clone(),
                    epoch,
                    attempt: entry.attempt,
                };
                let id = format!("{}.{}", context.caller_id, context.seq);
                let flow = if kind == RequestKind::Tell { id.clone() } else { context.flow };
                (id, flow, Some(caller), true)
            }
            None => match request_id {
                Some(id) => (id.clone(), id, None, true),
                None => {
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    (id.clone(), id, None, false)
                }
            },
        };
        Ok(Request { id, kind, target, method, payload, flow, caller, deadline, keep_outcome, step: 0 })
    }

    /// Gives a request its turn (actors) or starts it (services). Called with
    /// the state locked; spawns the attempt task when the request may run.
    fn schedule(&self, state: &mut State, id: &str) {
        let Some(entry) = state.requests.get(id) else { return };
        let request = entry.request.clone();
        if self.is_proxy(entry) {
            // The step runs in its own partition, which keeps the turn.
            self.spawn_drive(id.to_owned());
            return;
        }
        match &request.target {
            Target::Actor(actor) => {
                let slot = state.actors.entry(actor.clone()).or_default();
                slot.last_used = Some(Instant::now());
                match &slot.flow {
                    None => {
                        slot.flow = Some(request.flow.clone());
                        slot.holders = 1;
                    }
                    Some(flow) if *flow == request.flow => slot.holders += 1,
                    Some(_) => {
                        slot.queue.push_back(id.to_owned());
                        state.contended.insert(actor.clone());
                        // Only a call made by a handler waits while its flow
                        // holds an actor, so only such a call can close a cycle.
                        if request.caller.is_some()
                            && request.kind == RequestKind::Call
                            && let Some(cycle) = wait_cycle(state, &request.flow, actor)
                        {
                            tracing::warn!(request = id, %cycle, "failing a call that would deadlock");
                            if let Some(slot) = state.actors.get_mut(actor) {
                                slot.queue.retain(|queued| queued != id);
                            }
                            let (engine, id) = (self.clone(), id.to_owned());
                            let outcome = Outcome::Failed(Failure::Deadlock(cycle));
                            tokio::spawn(async move { engine.finish(&id, outcome, false).await });
                        }
                        return;
                    }
                }
            }
            Target::Service(_) => {}
        }
        self.spawn_drive(id.to_owned());
    }

    /// Starts the task that drives a request holding its turn. (A plain
    /// function, so that `drive` may lead back here without making its own
    /// future recursive.)
    fn spawn_drive(&self, id: String) {
        let engine = self.clone();
        tokio::spawn(async move { engine.drive(id).await });
    }

    /// In a mesh, makes sure the partition of a request about to be delivered
    /// is still this runtime's (see [`OWNERSHIP_PROOF`]). If the log says a
    /// newer owner took over, the partition stops taking work, the attempt
    /// is not delivered, and false is returned; the group's revocation then
    /// releases the partition.
    async fn still_owned(&self, id: &str) -> bool {
        if self.shared.remote.is_none() {
            return true;
        }
        let (partition, log) = {
            let state = self.lock();
            let Some(entry) = state.requests.get(id) else { return false };
            match state.partitions.get(&entry.partition) {
                Some(p) if p.verified.elapsed() < OWNERSHIP_PROOF => return true,
                Some(p) => (entry.partition.clone(), p.log.clone()),
                None => return false,
            }
        };
        let proving = Instant::now();
        let proved = log.probe().await;
        let mut state = self.lock();
        match proved {
            Ok(()) => {
                if let Some(p) = state.partitions.get_mut(&partition) {
                    p.verified = p.verified.max(proving);
                }
                true
            }
            Err(e) => {
                tracing::warn!(%partition, error = %e, "not delivering: this runtime no longer owns the partition");
                if let Some(p) = state.partitions.get_mut(&partition) {
                    p.releasing = true;
                }
                if let Some(entry) = state.requests.get_mut(id) {
                    entry.status = Status::Pending;
                }
                false
            }
        }
    }

    /// Whether an entry is a step journalled here whose target belongs to
    /// another partition (the next step of a tail call).
    fn is_proxy(&self, entry: &Entry) -> bool {
        self.shared.placement.partition_of(&entry.request.target, &entry.request.id) != entry.partition
    }

    /// The caller of a call about to start for the first time, when that
    /// caller's partition is owned elsewhere (so its liveness is asked of the
    /// mesh rather than read here).
    fn remote_caller(&self, id: &str) -> Option<Caller> {
        let state = self.lock();
        let entry = state.requests.get(id)?;
        let request = &entry.request;
        if request.kind != RequestKind::Call || entry.attempt > 0 || request.step > 0 {
            return None;
        }
        request.caller.clone().filter(|c| !state.partitions.contains_key(&c.partition))
    }

    /// Drives one request that holds its turn until it completes or parks.
    async fn drive(&self, id: String) {
        while let Some(caller) = self.remote_caller(&id)
            && let Some(remote) = self.shared.remote.clone()
            && !remote.caller_alive(&caller).await
        {
            let mut state = self.lock();
            // A retried caller may have reissued the call meanwhile (same
            // id, new caller): then that caller is the one to check.
            if state.requests.get(&id).is_some_and(|e| e.request.caller.as_ref() == Some(&caller)) {
                tracing::debug!(request = %id, "not starting a call whose caller is gone");
                self.drop_orphan(&mut state, &id);
                return;
            }
        }
        loop {
            match self.next_step(&id) {
                Step::Finish(outcome) => return self.complete(&id, outcome).await,
                Step::Park | Step::Gone => return,
                Step::Forward { partition, request, wait } => {
                    let outcome = self.forward_until_done(&partition, *request, wait).await;
                    return self.complete(&id, outcome).await;
                }
                Step::Remove(actor, deactivate_on) => {
                    let outcome = self.remove_now(&actor, deactivate_on).await;
                    return self.complete(&id, outcome).await;
                }
                Step::Deliver { component, delivery, activate } => {
                    if !self.still_owned(&id).await {
                        return;
                    }
                    if let Some(activation) = activate {
                        match self.deliver(&component, *activation).await {
                            Some(DeliveryResult::Value(_)) => {
                                if let Target::Actor(actor) = &delivery.target
                                    && let Some(slot) = self.lock().actors.get_mut(actor)
                                {
                                    slot.activated_on = Some(component.clone());
                                }
                            }
                            Some(DeliveryResult::AppError { code, message }) => {
                                return self.complete(&id, Outcome::AppError { code, message }).await;
                            }
                            Some(DeliveryResult::TailCall(_)) => {
                                let message = "an activation cannot end with a tail call".to_owned();
                                return self.complete(&id, Outcome::AppError { code: 9, message }).await;
                            }
                            None => {
                                self.retry_later(&id).await;
                                continue;
                            }
                        }
                    }
                    match self.deliver(&component, *delivery).await {
                        Some(DeliveryResult::Value(bytes)) => return self.complete(&id, Outcome::Value(bytes)).await,
                        Some(DeliveryResult::TailCall(next)) => return self.tail_call(&id, next).await,
                        Some(DeliveryResult::AppError { code, message }) => {
                            return self.complete(&id, Outcome::AppError { code, message }).await;
                        }
                        None => self.retry_later(&id).await,
                    }
                }
            }
        }
    }

    /// Decides what to do next with a request that holds its turn.
    fn next_step(&self, id: &str) -> Step {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(entry) = state.requests.get_mut(id) else { return Step::Gone };
        let request = entry.request.clone();
        if request.deadline.is_some_and(|d| now_millis() > d) {
            return Step::Finish(Outcome::Failed(Failure::DeadlineExceeded));
        }
        if self.is_proxy(entry) {
            entry.status = Status::Running;
            entry.attempt += 1;
            // The step is forwarded as a request of its own, named by its
            // invocation id; the owner deduplicates repeats by that id.
            let step = Request {
                id: request.invocation_id(),
                step: 0,
                caller: None,
                keep_outcome: true,
                ..(*request).clone()
            };
            let partition = self.shared.placement.partition_of(&step.target, &step.id);
            let wait = request.kind != RequestKind::Tell;
            return Step::Forward { partition, request: Box::new(step), wait };
        }
        if request.kind == RequestKind::Call && entry.attempt == 0 && request.step == 0 {
            let abandoned = !entry.waiters.is_empty() && entry.waiters.iter().all(|w| w.is_closed());
            let orphaned = request.caller.as_ref().is_some_and(|caller| {
                // A caller owned elsewhere was checked by `drive`.
                let Some(partition) = state.partitions.get(&caller.partition) else { return false };
                caller.epoch != partition.epoch
                    || running_invocation(state, &caller.request_id).is_none_or(|p| p.attempt != caller.attempt)
            });
            if abandoned || orphaned {
                tracing::debug!(request = id, "not starting a call whose caller failed");
                self.drop_orphan(state, id);
                return Step::Gone;
            }
        }
        let Some(entry) = state.requests.get_mut(id) else { return Step::Gone };
        let kind_name = park_key(&request.target);
        let component = match &request.target {
            Target::Actor(actor) => {
                let placed = state.actors.get(actor).and_then(|s| s.activated_on.clone());
                if request.kind == RequestKind::Remove {
                    entry.status = Status::Running;
                    return Step::Remove(actor.clone(), placed.filter(|c| state.components.contains_key(c)));
                }
                match placed.filter(|c| state.components.contains_key(c)) {
                    Some(c) => Some(c),
                    None => pick(&state.components, &mut state.round_robin, &request.flow, |r| {
                        r.actor_types.contains(&actor.kind)
                    }),
                }
            }
            Target::Service(name) => {
                pick(&state.components, &mut state.round_robin, &request.flow, |r| r.service.as_deref() == Some(name))
            }
        };
        let Some(component) = component else {
            entry.status = Status::Pending;
            state.parked.entry(kind_name).or_default().push(id.to_owned());
            return Step::Park;
        };
        entry.attempt += 1;
        entry.status = Status::Running;
        entry.component = Some(component.clone());
        let delivery = Delivery {
            delivery_id: self.shared.next_delivery.fetch_add(1, Ordering::Relaxed),
            kind: match request.target {
                Target::Actor(_) => DeliveryKind::ActorMethod,
                Target::Service(_) => DeliveryKind::ServiceMethod,
            },
            target: request.target.clone(),
            method: request.method.clone(),
            payload: request.payload.clone(),
            flow: request.flow.clone(),
            request_id: request.invocation_id(),
            attempt: entry.attempt,
            deadline: request.deadline,
        };
        let activate = match &request.target {
            Target::Actor(actor) => {
                let slot = state.actors.entry(actor.clone()).or_default();
                slot.last_used = Some(Instant::now());
                (slot.activated_on.as_deref() != Some(component.as_str())).then(|| Delivery {
                    delivery_id: self.shared.next_delivery.fetch_add(1, Ordering::Relaxed),
                    kind: DeliveryKind::Activate,
                    request_id: String::new(),
                    method: String::new(),
                    payload: bytes::Bytes::new(),
                    ..delivery.clone()
                })
            }
            Target::Service(_) => None,
        };
        Step::Deliver { component, delivery: Box::new(delivery), activate: activate.map(Box::new) }
    }

    /// Ends a call that must not start because its caller failed (G4). It
    /// leaves the table at once, in the same critical section as the check,
    /// so that the retried caller's reissue (same id) can only ever create a
    /// fresh request, never join this one and inherit its cancellation. Its
    /// record is dropped from the log without an outcome; the drop is queued
    /// now, so it is ordered before any reissue's append.
    fn drop_orphan(&self, state: &mut State, id: &str) {
        let Some(entry) = state.requests.remove(id) else { return };
        if let Some(partition) = state.partitions.get(&entry.partition) {
            let drop =
                partition.log.complete(vec![Completion { request_id: id.to_owned(), outcome: None, next: vec![] }]);
            tokio::spawn(async move {
                if let Err(e) = drop.await {
                    // Harmless: after a restart, recovery drops pending nested calls.
                    tracing::warn!(error = %e, "cannot drop an orphaned call from the log");
                }
            });
        }
        for waiter in entry.waiters {
            let _ = waiter.send(Outcome::Failed(Failure::Cancelled));
        }
        if let Target::Actor(actor) = &entry.request.target {
            self.release_turn(state, actor);
        }
    }

    /// Sends a delivery and waits for the answer; `None` if the component went
    /// away first (the attempt is then known to be abandoned).
    async fn deliver(&self, component: &str, delivery: Delivery) -> Option<DeliveryResult> {
        let (answer, result) = oneshot::channel();
        {
            let mut state = self.lock();
            if !state.components.get_mut(component)?.offer(delivery, answer) {
                return None;
            }
        }
        result.await.ok()
    }

    /// Marks a request whose attempt was abandoned as pending again, after a
    /// pause that keeps a flapping component from spinning the retry loop.
    async fn retry_later(&self, id: &str) {
        if let Some(entry) = self.lock().requests.get_mut(id) {
            tracing::info!(request = id, attempt = entry.attempt, "attempt abandoned; retrying");
            entry.status = Status::Pending;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    async fn remove_now(&self, actor: &ActorId, deactivate_on: Option<String>) -> Outcome {
        if let Some(component) = deactivate_on {
            let _ = self.deliver(&component, self.deactivation(actor)).await;
        }
        if let Some(slot) = self.lock().actors.get_mut(actor) {
            slot.activated_on = None;
        }
        match self.forget_actor(actor).await {
            Ok(removed) => Outcome::Value(bytes::Bytes::copy_from_slice(&removed.to_le_bytes())),
            Err(e) => Outcome::AppError { code: 14, message: e.to_string() },
        }
    }

    /// Deletes an actor's state, reminders and subscriptions; returns how
    /// many state entries there were.
    async fn forget_actor(&self, actor: &ActorId) -> Result<u32, Error> {
        self.shared.store.cancel_reminders(actor, None).await?;
        let target = Target::Actor(actor.clone());
        for subscription in self.shared.store.list_subscriptions().await? {
            if subscription.target == target {
                self.shared.store.delete_subscription(&subscription.id).await?;
            }
        }
        self.shared.published.notify_waiters();
        Ok(self.shared.store.delete_all(actor).await?)
    }

    fn deactivation(&self, actor: &ActorId) -> Delivery {
        Delivery {
            delivery_id: self.shared.next_delivery.fetch_add(1, Ordering::Relaxed),
            kind: DeliveryKind::Deactivate,
            target: Target::Actor(actor.clone()),
            method: String::new(),
            payload: bytes::Bytes::new(),
            flow: String::new(),
            request_id: String::new(),
            attempt: 1,
            deadline: None,
        }
    }

    /// Hands a request over to its next step: one atomic log step ends the
    /// current step and makes the next one pending under the same id (G5);
    /// then the next step is scheduled — in the same turn for a tail call to
    /// the same actor that keeps it, through the target's queue otherwise.
    async fn tail_call(&self, id: &str, next: TailCall) {
        let _ = self.learn_known(&next.target).await;
        let (current, known, log) = {
            let state = self.lock();
            let Some(entry) = state.requests.get(id) else { return };
            let Some(partition) = state.partitions.get(&entry.partition) else { return };
            (entry.request.clone(), state.known.contains(&target_key(&next.target)), partition.log.clone())
        };
        if !known {
            let message = format!("the tail call names {}, which no component hosts", next.target);
            return self.complete(id, Outcome::Failed(Failure::NotFound(message))).await;
        }
        let next_request = Request {
            target: next.target.clone(),
            method: next.method.clone(),
            payload: next.payload.clone(),
            step: current.step + 1,
            ..(*current).clone()
        };
        if next_request.method.is_empty() {
            let message = "tail_call.method is required".to_owned();
            return self.complete(id, Outcome::AppError { code: 3, message }).await;
        }
        let completion = Completion { request_id: id.to_owned(), outcome: None, next: vec![next_request.clone()] };
        if let Err(e) = log.complete(vec![completion]).await {
            tracing::error!(request = id, error = %e, "cannot journal a tail call");
            if let Some(entry) = self.lock().requests.get_mut(id) {
                entry.waiters.clear();
            }
            return;
        }
        tracing::debug!(request = id, step = next_request.step, target = %next_request.target, "tail call");
        let keeps_turn =
            matches!(current.target, Target::Actor(_)) && current.target == next.target && !next.release_turn;
        let mut state = self.lock();
        let Some(entry) = state.requests.get_mut(id) else { return };
        entry.request = Arc::new(next_request);
        entry.attempt = 0;
        entry.status = Status::Pending;
        if keeps_turn {
            self.spawn_drive(id.to_owned());
            return;
        }
        if let Target::Actor(actor) = &current.target {
            self.release_turn(&mut state, actor);
        }
        self.schedule(&mut state, id);
    }

    /// Completes a request: makes the completion durable, answers the waiting
    /// callers and passes the actor's turn on.
    async fn complete(&self, id: &str, outcome: Outcome) {
        self.finish(id, outcome, true).await
    }

    /// Completes a request that holds its actor's turn (`holds_turn`, which
    /// then passes on) or one that never got it.
    async fn finish(&self, id: &str, outcome: Outcome, holds_turn: bool) {
        let (request, log) = {
            let mut state = self.lock();
            let state = &mut *state;
            let Some(entry) = state.requests.get_mut(id) else { return };
            let Some(partition) = state.partitions.get(&entry.partition) else { return };
            entry.status = Status::Completing;
            (entry.request.clone(), partition.log.clone())
        };
        let keep = request.keep_outcome;
        let completion = Completion { request_id: id.to_owned(), outcome: keep.then(|| outcome.clone()), next: vec![] };
        let proving = Instant::now();
        if let Err(e) = log.complete(vec![completion]).await {
            // The outcome is not durable: the request stays pending and runs
            // again after the runtime restarts. Callers hear the failure.
            tracing::error!(request = id, error = %e, "cannot journal a completion");
            let mut state = self.lock();
            if let Some(entry) = state.requests.get_mut(id) {
                entry.waiters.clear();
            }
            return;
        }
        let mut state = self.lock();
        let Some(mut entry) = state.requests.remove(id) else { return };
        if let Some(p) = state.partitions.get_mut(&entry.partition) {
            p.verified = p.verified.max(proving);
        }
        if let Journal::Writing(submitters) = std::mem::replace(&mut entry.journal, Journal::Durable) {
            // The durable completion implies the append it follows.
            for submitter in submitters {
                let _ = submitter.send(true);
            }
        }
        let proxy = self.is_proxy(&entry);
        for waiter in entry.waiters {
            let _ = waiter.send(outcome.clone());
        }
        if let Some(remote) = &self.shared.remote {
            for runtime in &entry.reply_to {
                remote.reply(runtime, id, &outcome);
            }
        }
        if keep {
            state.recent[0].insert(id.to_owned(), outcome);
        }
        if let Target::Actor(actor) = &request.target
            && !proxy
            && holds_turn
        {
            self.release_turn(&mut state, actor);
        }
    }

    /// Ends one holder's use of an actor's turn and hands the turn to the next
    /// waiting flow when the last holder is done.
    fn release_turn(&self, state: &mut State, actor: &ActorId) {
        let Some(slot) = state.actors.get_mut(actor) else { return };
        slot.holders = slot.holders.saturating_sub(1);
        slot.last_used = Some(Instant::now());
        if slot.holders > 0 {
            return;
        }
        slot.flow = None;
        let Some(next) = slot.queue.pop_front() else { return };
        let flow = state.requests.get(&next).map(|e| e.request.flow.clone());
        self.schedule(state, &next);
        // Requests of the same flow queued behind it share the turn.
        if let Some(flow) = flow {
            let same_flow: Vec<String> = state
                .actors
                .get(actor)
                .map(|slot| {
                    slot.queue
                        .iter()
                        .filter(|id| state.requests.get(*id).is_some_and(|e| e.request.flow == flow))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if let Some(slot) = state.actors.get_mut(actor) {
                slot.queue.retain(|id| !same_flow.contains(id));
            }
            for id in same_flow {
                self.schedule(state, &id);
            }
        }
    }

    /// Attaches a component: returns its id and the queue of its deliveries.
    pub fn attach(&self, registration: Registration) -> Result<(String, mpsc::UnboundedReceiver<Delivery>), Error> {
        if registration.actor_types.is_empty() && registration.service.is_none() {
            return Err(Error::InvalidArgument(
                "register: a component must host at least one actor type or a service".into(),
            ));
        }
        if registration.actor_types.iter().any(|t| t.is_empty()) {
            return Err(Error::InvalidArgument("register.actor_types: an actor type name is empty".into()));
        }
        let n = self.shared.next_component.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-c{n}", self.shared.runtime_id);
        let (outbox, deliveries) = mpsc::unbounded_channel();
        let mut keys: Vec<String> = registration.actor_types.iter().map(|t| format!("actor:{t}")).collect();
        keys.extend(registration.service.iter().map(|s| format!("service:{s}")));
        let mut groups: Vec<Target> =
            registration.actor_types.iter().map(|t| Target::Actor(ActorId::new(t.clone(), ""))).collect();
        groups.extend(registration.service.iter().map(|s| Target::Service(s.clone())));
        let mut state = self.lock();
        let newly_known: Vec<String> = keys.iter().filter(|k| !state.known.contains(*k)).cloned().collect();
        state.known.extend(keys);
        if !newly_known.is_empty() {
            let store = self.shared.store.clone();
            tokio::spawn(async move {
                for key in newly_known {
                    if let Err(e) = store.set_metadata(&known_key(&key), bytes::Bytes::from_static(b"1")).await {
                        tracing::error!(error = %e, "cannot record the known targets");
                    }
                }
            });
        }
        tracing::info!(component = %id, name = %registration.name, types = ?registration.actor_types, service = ?registration.service, "component attached");
        state.components.insert(id.clone(), Component::new(registration, outbox));
        for group in groups {
            for parked in state.parked.remove(&group).unwrap_or_default() {
                if state.requests.get(&parked).is_some_and(|e| e.status == Status::Pending) {
                    self.spawn_drive(parked);
                }
            }
        }
        self.hosting_changed(&state);
        Ok((id, deliveries))
    }

    /// Tells the mesh which targets the attached components host now.
    fn hosting_changed(&self, state: &State) {
        let Some(remote) = &self.shared.remote else { return };
        let mut targets: Vec<String> = state
            .components
            .values()
            .flat_map(|c| {
                let r = &c.registration;
                r.actor_types
                    .iter()
                    .map(|t| format!("actor:{t}"))
                    .chain(r.service.iter().map(|s| format!("service:{s}")))
            })
            .collect();
        targets.sort();
        targets.dedup();
        remote.hosting(targets);
    }

    /// Records a component's answer to a delivery.
    pub fn answer(&self, component: &str, delivery_id: u64, result: DeliveryResult) {
        let mut state = self.lock();
        if let Some(answer) = state.components.get_mut(component).and_then(|c| c.answered(delivery_id)) {
            let _ = answer.send(result);
        }
    }

    /// Detaches a component whose channel closed: the attempts it was running
    /// are abandoned and retried.
    pub fn detach(&self, component: &str) {
        let mut state = self.lock();
        if let Some(c) = state.components.remove(component) {
            tracing::info!(component, abandoned = c.in_flight(), "component detached");
        }
        for slot in state.actors.values_mut() {
            if slot.activated_on.as_deref() == Some(component) {
                slot.activated_on = None;
            }
        }
        self.hosting_changed(&state);
    }

    /// The attached components.
    pub fn components(&self) -> Vec<ComponentInfo> {
        let state = self.lock();
        let mut list: Vec<_> = state.components.iter().map(|(id, c)| c.info(id)).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// The activated actor instances, optionally of one type.
    pub fn active_actors(&self, kind: Option<&str>) -> Vec<ActiveActor> {
        let state = self.lock();
        let mut list: Vec<_> = state
            .actors
            .iter()
            .filter(|(a, _)| kind.is_none_or(|k| a.kind == k))
            .filter_map(|(a, s)| s.activated_on.clone().map(|c| ActiveActor { actor: a.clone(), component_id: c }))
            .collect();
        list.sort_by(|a, b| a.actor.cmp(&b.actor));
        list
    }

    fn spawn_housekeeping(&self) {
        let weak = Arc::downgrade(&self.shared);
        let period =
            (self.shared.options.actor_idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            let mut generations = 0u32;
            loop {
                ticker.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let engine = Engine { shared };
                engine.deactivate_idle();
                generations += 1;
                if generations == 1 {
                    let retention = engine.shared.options.outcome_retention.as_millis() as u64;
                    let before = now_millis().saturating_sub(retention);
                    let logs: Vec<_> = engine.lock().partitions.values().map(|p| p.log.clone()).collect();
                    for log in logs {
                        match log.expire_outcomes(before).await {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(expired = n, "forgot old outcomes"),
                            Err(e) => tracing::warn!(error = %e, "cannot expire old outcomes"),
                        }
                    }
                }
                if u64::from(generations) * period.as_millis() as u64 >= 30_000 {
                    generations = 0;
                    let mut state = engine.lock();
                    let older = std::mem::take(&mut state.recent[0]);
                    state.recent[1] = older;
                }
            }
        });
    }

    /// Deactivates instances idle for longer than the idle timeout. The
    /// deactivation takes the actor's turn, so it never overlaps a flow.
    fn deactivate_idle(&self) {
        let idle = self.shared.options.actor_idle_timeout;
        let mut state = self.lock();
        let mut forget = Vec::new();
        let mut deactivate = Vec::new();
        for (actor, slot) in state.actors.iter_mut() {
            let unused =
                slot.flow.is_none() && slot.queue.is_empty() && slot.last_used.is_none_or(|t| t.elapsed() >= idle);
            if !unused {
                continue;
            }
            match slot.activated_on.clone() {
                None => forget.push(actor.clone()),
                Some(component) => {
                    slot.flow = Some(format!("deactivate-{}", uuid::Uuid::new_v4().simple()));
                    slot.holders = 1;
                    deactivate.push((actor.clone(), component));
                }
            }
        }
        for actor in forget {
            state.actors.remove(&actor);
        }
        drop(state);
        for (actor, component) in deactivate {
            let engine = self.clone();
            tokio::spawn(async move {
                let _ = engine.deliver(&component, engine.deactivation(&actor)).await;
                let mut state = engine.lock();
                if let Some(slot) = state.actors.get_mut(&actor) {
                    slot.activated_on = None;
                }
                engine.release_turn(&mut state, &actor);
                if state.actors.get(&actor).is_some_and(|s| s.flow.is_none() && s.queue.is_empty()) {
                    state.actors.remove(&actor);
                }
            });
        }
    }
}

enum Accepted {
    Done(Outcome),
    Wait(oneshot::Receiver<Outcome>),
}

/// How `submit` admitted a request.
enum Admitted {
    /// Its outcome is on record.
    Done(Outcome),
    /// It joined the same request in flight, whose record may still be
    /// being written.
    Joined { writing: bool },
    /// It is new; the future resolves when its record is durable.
    New(crate::log::Durable),
}

enum Step {
    Finish(Outcome),
    Park,
    Gone,
    Remove(ActorId, Option<String>),
    /// The step belongs to another partition: hand it over and wait.
    Forward {
        partition: String,
        request: Box<Request>,
        wait: bool,
    },
    Deliver {
        component: String,
        delivery: Box<Delivery>,
        activate: Option<Box<Delivery>>,
    },
}

/// The entry of an invocation (a request id, `~<step>`-suffixed after tail
/// calls) whose attempt is running here. A request forwarded to this
/// partition as a proxied step carries the suffixed id as its own id.
fn running_invocation<'a>(state: &'a State, invocation_id: &str) -> Option<&'a Entry> {
    // `<base>~<k>` is step k of request `<base>`, or step k - j of the step
    // forwarded here as request `<base>~<j>`.
    let (base, k) = split_invocation_id(invocation_id);
    (0..=k).rev().find_map(|j| {
        let id = if j == 0 { base.to_owned() } else { format!("{base}~{j}") };
        state.requests.get(&id).filter(|e| e.status == Status::Running && e.request.step == k - j)
    })
}

/// The cycle that flow `flow`, queued for `actor`'s turn, would close: the
/// holder of `actor` waits (a request of its flow is queued) for an actor
/// whose holder waits for ... an actor that `flow` holds, described for the
/// caller. Sees the actors of this runtime's partitions only.
fn wait_cycle(state: &mut State, flow: &str, actor: &ActorId) -> Option<String> {
    let actors = &state.actors;
    state.contended.retain(|a| actors.get(a).is_some_and(|slot| !slot.queue.is_empty()));
    let waits_for = |holder: &str| -> Vec<&ActorId> {
        state
            .contended
            .iter()
            .filter(|a| {
                actors[*a].queue.iter().any(|id| state.requests.get(id).is_some_and(|e| e.request.flow == holder))
            })
            .collect()
    };
    let mut seen = HashSet::new();
    let mut stack: Vec<(&ActorId, Vec<(&ActorId, &str)>)> = vec![(actor, Vec::new())];
    while let Some((next, mut path)) = stack.pop() {
        if !seen.insert(next) {
            continue;
        }
        let Some(holder) = actors.get(next).and_then(|slot| slot.flow.as_deref()) else { continue };
        path.push((next, holder));
        if holder == flow {
            let chain: String = path[..path.len() - 1]
                .iter()
                .map(|(a, f)| format!("{}/{}, held by flow {f}, which waits for ", a.kind, a.id))
                .collect();
            return Some(format!(
                "deadlock: this call would wait for {chain}{}/{}, held by this call's own flow {flow}",
                next.kind, next.id
            ));
        }
        for waited in waits_for(holder) {
            stack.push((waited, path.clone()));
        }
    }
    None
}

/// Picks a component that matches, spreading load round robin over those
/// with room under their concurrency limit (over all of them when none has).
fn pick(
    components: &HashMap<String, Component>,
    round_robin: &mut usize,
    flow: &str,
    matches: impl Fn(&Registration) -> bool,
) -> Option<String> {
    let mut candidates: Vec<(&String, bool)> =
        components.iter().filter(|(_, c)| matches(&c.registration)).map(|(id, c)| (id, c.has_room_for(flow))).collect();
    if candidates.iter().any(|(_, room)| *room) {
        candidates.retain(|(_, room)| *room);
    }
    if candidates.is_empty() {
        return None;
    }
    candidates.sort();
    *round_robin = round_robin.wrapping_add(1);
    Some(candidates[*round_robin % candidates.len()].0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedDb;
    use crate::log::{Completion, Durable, EmbeddedLog, Recovery};
    use crate::store::EmbeddedStateStore;
    use crate::topics::EmbeddedTopics;
    use futures::FutureExt;
    use futures::future::BoxFuture;

    /// A log whose appends take `delay` to become durable (their order is
    /// kept: the write is queued at once).
    struct SlowLog {
        inner: EmbeddedLog,
        delay: Duration,
    }

    impl Log for SlowLog {
        fn recover(&self) -> BoxFuture<'_, Result<Recovery, crate::log::Error>> {
            self.inner.recover()
        }
        fn append(&self, requests: Vec<Request>) -> Durable {
            let written = self.inner.append(requests);
            let delay = self.delay;
            async move {
                tokio::time::sleep(delay).await;
                written.await
            }
            .boxed()
        }
        fn complete(&self, completions: Vec<Completion>) -> Durable {
            self.inner.complete(completions)
        }
        fn outcome(&self, request_id: &str) -> BoxFuture<'_, Result<Option<Outcome>, crate::log::Error>> {
            self.inner.outcome(request_id)
        }
        fn expire_outcomes(&self, before: u64) -> BoxFuture<'static, Result<usize, crate::log::Error>> {
            self.inner.expire_outcomes(before)
        }
    }

    async fn engine_with_slow_appends(dir: &std::path::Path) -> Engine {
        let db = EmbeddedDb::open(dir).expect("open");
        let log = SlowLog { inner: EmbeddedLog::new(db.clone()), delay: Duration::from_millis(200) };
        Engine::start(
            Arc::new(log),
            Arc::new(EmbeddedStateStore::new(db.clone())),
            Arc::new(EmbeddedTopics::new(db)),
            EngineOptions::default(),
        )
        .await
        .expect("start")
    }

    fn tell_to(actor: &str) -> Submission {
        Submission {
            target: Target::Actor(ActorId::new("T", actor)),
            method: "m".into(),
            payload: bytes::Bytes::new(),
            context: None,
            request_id: Some(format!("tell-{actor}")),
            deadline: None,
        }
    }

    /// Answers deliveries until an actor method arrives; returns its request id.
    async fn next_method(
        engine: &Engine,
        component: &str,
        deliveries: &mut mpsc::UnboundedReceiver<Delivery>,
    ) -> String {
        loop {
            let delivery = tokio::time::timeout(Duration::from_secs(5), deliveries.recv())
                .await
                .expect("a delivery in time")
                .expect("the channel is open");
            engine.answer(component, delivery.delivery_id, DeliveryResult::Value(bytes::Bytes::new()));
            if delivery.kind == DeliveryKind::ActorMethod {
                return delivery.request_id;
            }
        }
    }

    #[tokio::test]
    async fn a_tell_whose_submitter_went_away_mid_append_still_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine_with_slow_appends(dir.path()).await;
        let registration = Registration { name: "t".into(), actor_types: vec!["T".into()], ..Default::default() };
        let (component, mut deliveries) = engine.attach(registration).expect("attach");
        // The submitter (an RPC handler) is dropped while the append is being
        // written, as when its client's connection dies.
        let submitter = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.tell(tell_to("a")).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        submitter.abort();
        assert_eq!(next_method(&engine, &component, &mut deliveries).await, "tell-a");
    }

    #[tokio::test]
    async fn a_repeated_tell_is_acknowledged_only_once_its_record_is_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine_with_slow_appends(dir.path()).await;
        let registration = Registration { name: "t".into(), actor_types: vec!["T".into()], ..Default::default() };
        let (component, mut deliveries) = engine.attach(registration).expect("attach");
        let first = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.tell(tell_to("b")).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        engine.tell(tell_to("b")).await.expect("the repeat is accepted");
        assert!(started.elapsed() >= Duration::from_millis(100), "the repeat waited for the append");
        first.await.expect("join").expect("accepted");
        assert_eq!(next_method(&engine, &component, &mut deliveries).await, "tell-b");
    }
}
