//! Topics: durable, ordered streams of events that subscriptions read.
//!
//! # The contract every implementation follows
//!
//! 1. `publish` returns once the event is durable, with its offset; offsets
//!    of one topic grow by one from 0, in publication order.
//! 2. `read` returns events in offset order, starting at the given offset.
//! 3. Deleting a topic deletes its events; publishing to or reading from a
//!    topic that does not exist is an error ([`Error::NoSuchTopic`]).
//!
//! The embedded implementation keeps one ordered sequence per topic (the
//! `partitions` of `create` are recorded but ordering is total); the Kafka
//! one ([`KafkaTopics`]) keeps every event in partition 0 of its topic.
//!
//! This module knows nothing of gRPC, the engine or components.

pub mod embedded;
pub mod kafka;

#[cfg(test)]
pub(crate) mod conformance;

use bytes::Bytes;
use futures::future::BoxFuture;

pub use embedded::EmbeddedTopics;
pub use kafka::KafkaTopics;

/// A failure of the topics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topic does not exist.
    #[error("no topic named {0:?}")]
    NoSuchTopic(String),
    /// The storage underneath failed.
    #[error("topic storage failed: {0}")]
    Storage(String),
}

impl From<crate::embedded::Error> for Error {
    fn from(e: crate::embedded::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

/// The result type of topic operations.
pub type Result<T> = std::result::Result<T, Error>;

/// One event read from a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its position in the topic.
    pub offset: u64,
    /// The encoded `kar.v1.Payload`.
    pub payload: Bytes,
}

/// Durable ordered topics. See the module docs for the contract.
pub trait Topics: Send + Sync + 'static {
    /// Creates a topic; false if it existed.
    fn create(&self, topic: &str, partitions: u32) -> BoxFuture<'static, Result<bool>>;

    /// Deletes a topic and its events; false if it did not exist.
    fn delete(&self, topic: &str) -> BoxFuture<'static, Result<bool>>;

    /// The offset the next published event will get, or `None` if the topic
    /// does not exist.
    fn end_offset<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<u64>>>;

    /// Appends an event; returns its offset.
    fn publish(&self, topic: &str, payload: Bytes) -> BoxFuture<'static, Result<u64>>;

    /// Reads up to `max` events from offset `from`.
    fn read<'a>(&'a self, topic: &'a str, from: u64, max: usize) -> BoxFuture<'a, Result<Vec<Event>>>;
}
