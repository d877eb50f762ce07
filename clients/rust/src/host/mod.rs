//! Hosting actors and services: the component side of `AppService/Attach`.
//!
//! An [`ActorHost`] opens the attach stream, registers the actor types and
//! the service it hosts, and then runs every [`Invocation`] it receives in its
//! own task, answering each with exactly one `InvocationResult`:
//!
//! - `ACTIVATE` makes the instance with the type's factory and runs
//!   [`Actor::activate`]; `DEACTIVATE` runs [`Actor::deactivate`] and drops it;
//! - an actor method on an instance that is not active here (e.g. after a
//!   reconnection) activates it first;
//! - a handler's error becomes an application error; a handler's panic
//!   becomes an `INTERNAL` application error and the host keeps running.
//!
//! The host holds no lock across a handler's `await`: the runtime decides
//! which invocations may run together (one flow per actor, reentrant calls
//! admitted), and the host runs whatever it is given.

mod context;
mod handler;

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use kar_proto::v1::{
    ActorRef, AttachRequest, AttachResponse, Invocation, InvocationKind, InvocationResult, Register, Registered,
    app_service_client::AppServiceClient, attach_request, attach_response, invocation_result,
};
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

pub use context::Context;
use context::Target;
pub use handler::{Actor, AppError, HandlerFn, Reply, Service, TailCall, handler_fn};

use crate::client::Client;
use crate::error::{Error, Result};

/// The first and the longest pause before attaching again after the stream to
/// the runtime ended (the runtime restarted, or is not up yet).
const REATTACH_MIN: Duration = Duration::from_millis(50);
const REATTACH_MAX: Duration = Duration::from_secs(2);

/// How many results may wait to be sent to the runtime.
const OUTGOING_BUFFER: usize = 1024;

/// How long, after the host stopped sending, it waits for the runtime to
/// close the stream, so that the last results are flushed.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Makes the instance of an actor type for an id.
type ActorFactory = Arc<dyn Fn(&str) -> Arc<dyn Actor> + Send + Sync>;

/// Hosts actor types and a service for the runtime: a builder, then
/// [`ActorHost::start`] or [`ActorHost::run`].
///
/// ```no_run
/// use kar_client::{Client, host::{ActorHost, Reply}};
///
/// # async fn demo() -> kar_client::Result<()> {
/// let client = Client::from_env().await?;
/// ActorHost::new(client)
///     .name("echo-app")
///     .actor_fn("Echo", |ctx, method, args| async move {
///         match method.as_str() {
///             "echo" => Ok(Reply::from(args)),
///             _ => Err(ctx.no_such_method()),
///         }
///     })
///     .run_until_signal()
///     .await
/// # }
/// ```
#[derive(Clone)]
pub struct ActorHost {
    client: Client,
    name: String,
    actors: HashMap<String, ActorFactory>,
    service: Option<(String, Arc<dyn Service>)>,
    max_concurrency: u32,
    /// How long a shutdown lets in-flight invocations finish.
    shutdown_grace: Duration,
}

impl ActorHost {
    /// A host that attaches through `client` and hosts nothing yet.
    pub fn new(client: Client) -> ActorHost {
        ActorHost {
            client,
            name: "rust-app".to_owned(),
            actors: HashMap::new(),
            service: None,
            max_concurrency: 0,
            shutdown_grace: Duration::from_secs(5),
        }
    }

    /// The component name shown by `kar get components`.
    pub fn name(mut self, name: impl Into<String>) -> ActorHost {
        self.name = name.into();
        self
    }

    /// Hosts an actor type: `factory` makes the instance for an id on
    /// activation.
    pub fn actor<A, F>(mut self, actor_type: impl Into<String>, factory: F) -> ActorHost
    where
        A: Actor,
        F: Fn(&str) -> A + Send + Sync + 'static,
    {
        let factory: ActorFactory = Arc::new(move |id: &str| Arc::new(factory(id)) as Arc<dyn Actor>);
        self.actors.insert(actor_type.into(), factory);
        self
    }

    /// Hosts an actor type whose methods are one closure (no per-instance
    /// data): `|ctx, method, args| async move { ... }`.
    pub fn actor_fn<F, Fut>(self, actor_type: impl Into<String>, f: F) -> ActorHost
    where
        F: Fn(Context, String, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Reply, AppError>> + Send + 'static,
    {
        let handler = handler_fn(f);
        self.actor(actor_type, move |_| handler.clone())
    }

    /// Serves the service `name` (a component serves at most one; a second
    /// call replaces the first).
    pub fn service<S: Service>(mut self, name: impl Into<String>, service: S) -> ActorHost {
        self.service = Some((name.into(), Arc::new(service)));
        self
    }

    /// Serves the service `name` with one closure.
    pub fn service_fn<F, Fut>(self, name: impl Into<String>, f: F) -> ActorHost
    where
        F: Fn(Context, String, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Reply, AppError>> + Send + 'static,
    {
        self.service(name, handler_fn(f))
    }

    /// How many invocations the runtime may deliver at once; 0 (the default)
    /// means no limit.
    pub fn max_concurrency(mut self, max: u32) -> ActorHost {
        self.max_concurrency = max;
        self
    }

    /// How long a shutdown lets in-flight invocations finish before it
    /// abandons them to the runtime's retry (default 5 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> ActorHost {
        self.shutdown_grace = grace;
        self
    }

    /// Attaches to the runtime, registers, and returns once the runtime has
    /// accepted the registration; invocations are then served in the
    /// background until [`RunningHost::shutdown`] (or the handle is dropped).
    pub async fn start(self) -> Result<RunningHost> {
        if self.actors.is_empty() && self.service.is_none() {
            return Err(Error::InvalidArgument("an ActorHost must host at least one actor type or a service".into()));
        }
        let mut actor_types: Vec<String> = self.actors.keys().cloned().collect();
        actor_types.sort();
        let register = Register {
            name: self.name.clone(),
            actor_types,
            service: self.service.as_ref().map(|(name, _)| name.clone()).unwrap_or_default(),
            max_concurrency: self.max_concurrency,
        };

        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_BUFFER);
        outgoing
            .send(AttachRequest { message: Some(attach_request::Message::Register(register)) })
            .await
            .map_err(|_| protocol_error("the attach stream closed before registration"))?;
        let mut app = AppServiceClient::new(self.client.channel().clone());
        let mut incoming = app.attach(ReceiverStream::new(outgoing_rx)).await?.into_inner();
        let registered = match incoming.message().await? {
            Some(AttachResponse { message: Some(attach_response::Message::Registered(registered)) }) => registered,
            Some(_) => {
                return Err(protocol_error("the runtime sent an invocation before accepting the registration"));
            }
            None => {
                return Err(protocol_error("the runtime closed the attach stream without accepting the registration"));
            }
        };
        tracing::info!(component_id = %registered.component_id, runtime_id = %registered.runtime_id, name = %self.name, "registered with the runtime");

        let dispatcher = Arc::new(Dispatcher {
            client: self.client,
            factories: self.actors,
            service: self.service,
            instances: Mutex::new(HashMap::new()),
        });
        let (stop, stop_rx) = oneshot::channel();
        let lease = registered.lease.and_then(|d| Duration::try_from(d).ok()).filter(|d| !d.is_zero());
        let task = tokio::spawn(serve(incoming, outgoing, dispatcher, stop_rx, lease, self.shutdown_grace));
        Ok(RunningHost { registered, stop: Some(stop), task })
    }

    /// Attaches, registers and serves invocations until `shutdown` resolves
    /// (then lets in-flight invocations finish, within the grace period).
    /// Whenever the stream ends — the runtime restarted or is not up yet —
    /// it attaches again, with a backoff of up to two seconds; it gives up
    /// only if the runtime refuses the registration itself.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let mut backoff = REATTACH_MIN;
        loop {
            let attached = tokio::select! {
                () = &mut shutdown => return Ok(()),
                attached = self.clone().start() => attached,
            };
            match attached {
                Ok(mut running) => {
                    backoff = REATTACH_MIN;
                    let ended = tokio::select! {
                        () = &mut shutdown => return running.shutdown().await,
                        finished = &mut running.task => flatten(finished),
                    };
                    match ended {
                        Ok(()) => tracing::warn!("the runtime closed the attach stream; attaching again"),
                        Err(err) => tracing::warn!(error = %err, "the attach stream broke; attaching again"),
                    }
                }
                // The runtime refused what this host registers: retrying
                // cannot help.
                Err(err) if err.code() == tonic::Code::InvalidArgument => return Err(err),
                Err(err) => tracing::debug!(error = %err, "cannot attach yet; retrying"),
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(REATTACH_MAX);
        }
    }

    /// [`ActorHost::run`] until Ctrl-C (or, on Unix, SIGTERM).
    pub async fn run_until_signal(self) -> Result<()> {
        self.run(shutdown_signal()).await
    }
}

/// A host that is registered and serving. Dropping it shuts the host down
/// without waiting.
#[derive(Debug)]
pub struct RunningHost {
    registered: Registered,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<()>>,
}

impl RunningHost {
    /// The id the runtime gave this connection.
    pub fn component_id(&self) -> &str {
        &self.registered.component_id
    }

    /// The id of the runtime the host is attached to.
    pub fn runtime_id(&self) -> &str {
        &self.registered.runtime_id
    }

    /// Stops taking invocations, lets in-flight ones finish (within the grace
    /// period; the runtime retries the others), closes the stream and waits
    /// for all of it.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        flatten((&mut self.task).await)
    }

    /// Waits until the runtime closes the stream (`Ok`) or it fails (`Err`).
    pub async fn closed(mut self) -> Result<()> {
        let result = flatten((&mut self.task).await);
        self.stop.take();
        result
    }
}

fn flatten(joined: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    joined.unwrap_or_else(|err| Err(protocol_error(&format!("the host task failed: {err}"))))
}

fn protocol_error(message: &str) -> Error {
    Error::Status(tonic::Status::internal(message.to_owned()))
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what `kar run` sends its child).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Reads invocations until stopped or the stream ends, running each in a
/// task whose result goes back through `outgoing`. A runtime silent for its
/// `lease` ends the stream too: it is frozen or cut off, and another runtime
/// may soon retry what runs here.
async fn serve(
    mut incoming: Streaming<AttachResponse>,
    outgoing: mpsc::Sender<AttachRequest>,
    dispatcher: Arc<Dispatcher>,
    mut stop: oneshot::Receiver<()>,
    lease: Option<Duration>,
    grace: Duration,
) -> Result<()> {
    let mut in_flight = JoinSet::new();
    // Without a lease the timer is never polled.
    let silence = tokio::time::sleep(lease.unwrap_or_default());
    tokio::pin!(silence);
    let outcome = loop {
        tokio::select! {
            _ = &mut stop => break None,
            () = &mut silence, if lease.is_some() => {
                break Some(Err(Error::Status(tonic::Status::unavailable(format!(
                    "the runtime sent nothing for {:?} (its lease): abandoning the invocations running here",
                    lease.unwrap_or_default()
                )))));
            }
            message = incoming.message() => {
                // Whatever comes from the runtime shows it alive.
                if let Some(lease) = lease {
                    silence.as_mut().reset(tokio::time::Instant::now() + lease);
                }
                match message {
                    Ok(Some(AttachResponse { message: Some(attach_response::Message::Invocation(invocation)) })) => {
                        let dispatcher = Arc::clone(&dispatcher);
                        let outgoing = outgoing.clone();
                        in_flight.spawn(async move {
                            let result = dispatcher.dispatch(invocation).await;
                            let message = AttachRequest { message: Some(attach_request::Message::Result(result)) };
                            if outgoing.send(message).await.is_err() {
                                tracing::debug!("attach stream closed; result dropped");
                            }
                        });
                    }
                    Ok(Some(AttachResponse { message: Some(attach_response::Message::Heartbeat(_)) })) => {}
                    Ok(Some(_)) => tracing::warn!("ignoring an unexpected message from the runtime"),
                    Ok(None) => break Some(Ok(())),
                    Err(status) => break Some(Err(Error::Status(status))),
                }
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    };
    match outcome {
        Some(result) => {
            // The stream is gone: results can no longer be delivered.
            in_flight.abort_all();
            if let Err(err) = &result {
                tracing::warn!(error = %err, "attach stream failed");
            }
            result
        }
        None => {
            let drained = tokio::time::timeout(grace, async { while in_flight.join_next().await.is_some() {} }).await;
            if drained.is_err() {
                tracing::warn!(
                    abandoned = in_flight.len(),
                    "shutdown grace period over; the runtime will retry the rest"
                );
                in_flight.abort_all();
            }
            drop(in_flight);
            // Ending our half of the stream tells the runtime we are done;
            // waiting for its end makes sure the last results were flushed.
            drop(outgoing);
            let _ =
                tokio::time::timeout(CLOSE_WAIT, async { while let Ok(Some(_)) = incoming.message().await {} }).await;
            Ok(())
        }
    }
}

/// Runs invocations against the hosted actor types and service.
struct Dispatcher {
    client: Client,
    factories: HashMap<String, ActorFactory>,
    service: Option<(String, Arc<dyn Service>)>,
    /// The instances active in this component, by (type, id).
    instances: Mutex<HashMap<(String, String), Arc<Instance>>>,
}

/// One actor instance and whether its activation has completed.
struct Instance {
    actor: Arc<dyn Actor>,
    activated: OnceCell<()>,
}

impl Instance {
    /// Runs the activation once; a failed (or panicked) activation is tried
    /// again by the next invocation.
    async fn ensure_active(&self, ctx: &Context) -> std::result::Result<(), AppError> {
        self.activated.get_or_try_init(|| self.actor.activate(ctx)).await.map(|_| ())
    }
}

impl Dispatcher {
    /// Runs one invocation and builds its result; never fails and never
    /// unwinds.
    async fn dispatch(&self, invocation: Invocation) -> InvocationResult {
        let delivery_id = invocation.delivery_id;
        let outcome = AssertUnwindSafe(self.run(invocation)).catch_unwind().await.unwrap_or_else(|panic| {
            let message = panic_message(panic.as_ref());
            tracing::error!(delivery_id, panic = %message, "handler panicked");
            Err(AppError::internal(format!("handler panicked: {message}")))
        });
        let outcome = match outcome {
            Ok(reply) => reply.into_outcome(),
            Err(err) => invocation_result::Outcome::Error(err.into_proto()),
        };
        InvocationResult { delivery_id, outcome: Some(outcome) }
    }

    async fn run(&self, invocation: Invocation) -> std::result::Result<Reply, AppError> {
        let kind = InvocationKind::try_from(invocation.kind).unwrap_or(InvocationKind::Unspecified);
        let target = match kind {
            InvocationKind::ServiceMethod => Target::Service(invocation.service.clone()),
            _ => {
                let actor = invocation.actor.clone().unwrap_or_default();
                Target::Actor { actor_type: actor.r#type, id: actor.id }
            }
        };
        let ctx = self.context(&invocation, target);
        let args = invocation.payload.unwrap_or_default();
        match kind {
            InvocationKind::Activate => {
                let instance = self.instance(invocation.actor.as_ref())?;
                instance.ensure_active(&ctx).await?;
                Ok(Reply::none())
            }
            InvocationKind::Deactivate => {
                if let Some(instance) = self.remove_instance(invocation.actor.as_ref())
                    && instance.activated.initialized()
                {
                    instance.actor.deactivate(&ctx).await;
                }
                Ok(Reply::none())
            }
            InvocationKind::ActorMethod => {
                let instance = self.instance(invocation.actor.as_ref())?;
                instance.ensure_active(&ctx).await?;
                instance.actor.invoke_payload(&ctx, &invocation.method, args).await
            }
            InvocationKind::ServiceMethod => match &self.service {
                Some((name, service)) if *name == invocation.service => {
                    service.invoke_payload(&ctx, &invocation.method, args).await
                }
                _ => {
                    Err(AppError::not_found(format!("this component does not serve service {:?}", invocation.service)))
                }
            },
            InvocationKind::Unspecified => {
                Err(AppError::invalid_argument(format!("unknown invocation kind {}", invocation.kind)))
            }
        }
    }

    fn context(&self, invocation: &Invocation, target: Target) -> Context {
        let invocation_context = invocation.context.clone().unwrap_or_default();
        let deadline = invocation.deadline.and_then(|ts| SystemTime::try_from(ts).ok());
        Context::new(
            self.client.clone(),
            target,
            invocation.method.clone(),
            invocation.attempt,
            invocation_context.flow_id,
            invocation_context.request_id,
            deadline,
        )
    }

    /// The active instance for `actor`, made with the type's factory if there
    /// is none yet.
    fn instance(&self, actor: Option<&ActorRef>) -> std::result::Result<Arc<Instance>, AppError> {
        let actor = actor.ok_or_else(|| AppError::invalid_argument("actor invocation without an actor"))?;
        let key = (actor.r#type.clone(), actor.id.clone());
        if let Some(instance) = self.instances().get(&key) {
            return Ok(Arc::clone(instance));
        }
        let factory = self.factories.get(&actor.r#type).ok_or_else(|| {
            AppError::not_found(format!("this component does not host actor type {:?}", actor.r#type))
        })?;
        // The factory is user code: run it outside the lock.
        let made = Arc::new(Instance { actor: factory(&actor.id), activated: OnceCell::new() });
        Ok(Arc::clone(self.instances().entry(key).or_insert(made)))
    }

    fn remove_instance(&self, actor: Option<&ActorRef>) -> Option<Arc<Instance>> {
        let actor = actor?;
        self.instances().remove(&(actor.r#type.clone(), actor.id.clone()))
    }

    fn instances(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Instance>>> {
        // No user code runs under this lock, so a poisoned lock still holds a
        // consistent map.
        self.instances.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "(no message)".to_owned()
    }
}
