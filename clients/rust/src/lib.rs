//! The Rust SDK for KAR: call and tell actors and services, keep actor state,
//! and host actors and services in your own process.
//!
//! # Layout
//!
//! - [`Client`]: a cheap-to-clone connection to the runtime (`KAR_RUNTIME_ADDR`)
//!   with calls, tells, actor removal and mesh introspection; [`ActorProxy`]
//!   addresses one actor; [`StateClient`] reads and writes one actor's state.
//! - [`host`]: the component side. An [`ActorHost`] attaches to the runtime,
//!   registers [`Actor`] types and a [`Service`], and runs the invocations it
//!   receives. Handlers get a [`Context`] whose calls carry the invocation
//!   context, so the runtime can admit reentrant calls and deduplicate
//!   retries.
//! - [`json`]: JSON ⇄ `google.protobuf.Value` conversions.
//! - [`Error`]: every failure, with [`Error::is_application_error`] telling an
//!   error raised by a handler from a failure of the runtime.
//!
//! Arguments are JSON; by convention an array of the method's arguments.
//! Typed protobuf payloads go through the `*_payload` variants.
//!
//! # Example
//!
//! ```no_run
//! use kar_client::{Client, host::{ActorHost, AppError, Context, Reply}};
//! use serde_json::json;
//!
//! #[tokio::main]
//! async fn main() -> kar_client::Result<()> {
//!     let client = Client::from_env().await?;
//!
//!     // Host a `Counter` actor whose count lives in actor state.
//!     let host = ActorHost::new(client.clone())
//!         .name("counter-app")
//!         .actor_fn("Counter", |ctx: Context, method, args| async move {
//!             match method.as_str() {
//!                 "add" => {
//!                     let (n,): (i64,) = serde_json::from_value(args)?;
//!                     let state = ctx.state();
//!                     let count = state.get("count").await?.and_then(|v| v.as_i64()).unwrap_or(0) + n;
//!                     state.set("count", json!(count)).await?;
//!                     Ok(Reply::from(json!(count)))
//!                 }
//!                 _ => Err(ctx.no_such_method()),
//!             }
//!         })
//!         .start()
//!         .await?;
//!
//!     // Call it like any other client would.
//!     let count = client.actor("Counter", "c1").call("add", json!([2])).await?;
//!     println!("count is now {count}");
//!
//!     match client.call_actor("Counter", "c1", "fly", json!([])).await {
//!         Err(err) if err.is_application_error() => println!("refused: {}", err.message()),
//!         other => println!("unexpected: {other:?}"),
//!     }
//!     host.shutdown().await
//! }
//! ```

#![warn(missing_docs, unreachable_pub)]

mod bindings;
mod client;
pub mod error;
pub mod host;
pub mod json;
mod state;

pub use async_trait::async_trait;
pub use bindings::ReminderSpec;
pub use client::{ActorProxy, Client, DEFAULT_RUNTIME_ADDR, RUNTIME_ADDR_ENV};
pub use error::{Error, Result};
pub use host::{Actor, ActorHost, AppError, Context, Reply, RunningHost, Service};
pub use kar_proto;
pub use kar_proto::v1::{ActiveActor, Component, Payload, Sidecar};
pub use kar_proto::v1::{Reminder, Subscription};
pub use state::{ActorState, JsonMap, StateClient, StateUpdate, UpdateCounts};
