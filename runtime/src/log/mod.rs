//! The log: the durable journal of requests and their completions.
//!
//! The engine writes every accepted request to the log before it acts on it,
//! and completes it with one atomic step that removes it from the pending set,
//! records its outcome and appends the requests that follow from it (a tail
//! call). After a crash, [`Log::recover`] hands back exactly the requests that
//! were accepted and not completed, so that the engine can retry them.
//!
//! # The contract every implementation follows
//!
//! 1. **Durable before resolved.** The future returned by [`Log::append`] or
//!    [`Log::complete`] resolves `Ok` only once the write survives a crash of
//!    this process.
//! 2. **Ordered.** Writes take effect in the order the calls were made (not
//!    the order their futures are polled): a completion issued after an append
//!    is never durable without that append.
//! 3. **Atomic completion.** A [`Completion`] takes effect entirely or not at
//!    all: the pending request disappears, its outcome (if any) is recorded and
//!    its `next` requests become pending, in one indivisible step.
//! 4. **Recovery.** [`Log::recover`] starts a new ownership epoch (strictly
//!    greater than any before it) and returns every pending request in the
//!    order it was appended. After it, a writer of an older epoch can no
//!    longer change the log (fencing).
//! 5. **Outcomes.** [`Log::outcome`] returns the outcome recorded for a
//!    completed request until [`Log::expire_outcomes`] forgets it.
//!
//! This module knows nothing of gRPC, the engine's scheduling or components.

pub mod embedded;
pub mod kafka;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod kafka_test_broker;

use crate::engine::types::{Outcome, Request};
use futures::future::BoxFuture;

pub use embedded::EmbeddedLog;
pub use kafka::KafkaLog;

/// A failure of the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage underneath failed.
    #[error("log storage failed: {0}")]
    Storage(String),
    /// This process no longer owns the log (a newer epoch took over).
    #[error("log ownership lost: {0}")]
    Fenced(String),
}

impl From<crate::embedded::Error> for Error {
    fn from(e: crate::embedded::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

/// What [`Log::recover`] found.
#[derive(Debug)]
pub struct Recovery {
    /// The new ownership epoch.
    pub epoch: u64,
    /// The requests accepted and not completed, in append order.
    pub pending: Vec<Request>,
}

/// The atomic end of one request.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The request that ends.
    pub request_id: String,
    /// The outcome to record, if it must be retrievable later. `None` drops
    /// the request without a record (it may then be submitted again).
    pub outcome: Option<Outcome>,
    /// Requests that become pending in the same step (the next step of a
    /// tail call).
    pub next: Vec<Request>,
}

/// A future that resolves once a write is durable.
pub type Durable = BoxFuture<'static, Result<(), Error>>;

/// The durable journal of requests. See the module docs for the contract.
pub trait Log: Send + Sync + 'static {
    /// Starts a new ownership epoch and returns the pending requests.
    fn recover(&self) -> BoxFuture<'_, Result<Recovery, Error>>;

    /// Makes `requests` pending. Appending an id that is already pending
    /// replaces nothing and is not an error.
    fn append(&self, requests: Vec<Request>) -> Durable;

    /// Like [`Log::append`], for requests a durable record already stands
    /// for (a call made from a handler, a request read from an inbox) and
    /// whose caller is told nothing before a later durable write (their
    /// completion) that implies them: the future may resolve once the append
    /// is ordered, and the append must be durable within a short bound
    /// (about ten milliseconds) or with the next durable write, whichever
    /// comes first. Such a call thus costs one durable write instead of two.
    /// The default is a plain, durable append.
    fn append_lazily(&self, requests: Vec<Request>) -> Durable {
        self.append(requests)
    }

    /// Proves that this process still owns the log: resolves with
    /// [`Error::Fenced`] if a newer epoch took over (for a runtime that may
    /// have been frozen). The default, for logs only one process can own,
    /// resolves `Ok` at once.
    fn probe(&self) -> Durable {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Ends requests atomically, each as its [`Completion`] says.
    fn complete(&self, completions: Vec<Completion>) -> Durable;

    /// The recorded outcome of a completed request.
    fn outcome(&self, request_id: &str) -> BoxFuture<'_, Result<Option<Outcome>, Error>>;

    /// Forgets the outcomes recorded before `before` (unix milliseconds);
    /// returns how many. A request repeated after its outcome is forgotten
    /// runs again, so retention bounds how late a retried caller may come.
    fn expire_outcomes(&self, before: u64) -> BoxFuture<'static, Result<usize, Error>>;
}
