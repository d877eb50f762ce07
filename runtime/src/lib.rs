//! The KAR runtime: virtual actors, services and durable state with retry
//! orchestration, served over gRPC to application components.
//!
//! # Layout
//!
//! * [`cli`]: the `kar` command line, one file per subcommand; `run` wires
//!   everything below together.
//! * [`config`]: the layered configuration of `kar run` (defaults < file <
//!   `KAR_*` environment < flags).
//! * [`server`]: the server: the `kar.v1` services, reflection, health over
//!   gRPC, and the JSON gateway over HTTP/1.1, on one port.
//! * [`gateway`]: the JSON API transcoded from the `google.api.http`
//!   annotations, and its OpenAPI document.
//! * [`legacy`]: the HTTP app channel of `kar run --app-port`: invocations
//!   posted as JSON to a component that cannot hold a gRPC stream.
//! * [`api`]: the `kar.v1` services, translating wire messages to the engine.
//! * [`engine`]: invocations, actor turns and retry orchestration, written
//!   against the [`log::Log`] and [`store::StateStore`] traits.
//! * [`log`] and [`store`]: the traits and their implementations.
//! * [`embedded`]: the `redb` file and group-commit writer behind the
//!   embedded log and store.
//! * [`sidecar`]: the registry of the application's runtimes, kept in the
//!   store by each runtime's heartbeat.
//!
//! Dependencies point one way: `cli` → `server` → `api` → `engine` → `log`,
//! `store` (traits) ← implementations. See `ARCHITECTURE.md` for the flow of
//! a call and the protocol behind each promise.

pub mod api;
pub mod cli;
pub mod config;
pub mod embedded;
pub mod engine;
pub mod gateway;
pub mod legacy;
pub mod log;
pub mod mesh;
pub mod server;
pub mod sidecar;
pub mod store;
pub mod topics;
