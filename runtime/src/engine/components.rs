//! The components attached to this runtime and the deliveries in flight to
//! each. A component is reachable through an unbounded queue of
//! [`Delivery`]s that the app channel (the `Attach` stream) drains.

use super::types::{Delivery, DeliveryResult};
use std::collections::HashMap;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};

/// What a component said it hosts when it attached.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    /// A human-readable name.
    pub name: String,
    /// The actor types it can host.
    pub actor_types: Vec<String>,
    /// The service it serves, if any.
    pub service: Option<String>,
}

/// A snapshot of one attached component, for introspection.
#[derive(Clone, Debug)]
pub struct ComponentInfo {
    /// The id the runtime gave it.
    pub id: String,
    /// What it registered.
    pub registration: Registration,
    /// When it attached.
    pub connected_at: SystemTime,
    /// Deliveries it has not answered yet.
    pub in_flight: usize,
}

/// One attached component.
pub(super) struct Component {
    pub(super) registration: Registration,
    pub(super) connected_at: SystemTime,
    /// Where deliveries go; the app channel drains it.
    pub(super) outbox: mpsc::UnboundedSender<Delivery>,
    /// Deliveries sent and not answered, by delivery id. Dropping a sender
    /// tells the waiting attempt that the component is gone.
    pub(super) in_flight: HashMap<u64, oneshot::Sender<DeliveryResult>>,
}

impl Component {
    pub(super) fn info(&self, id: &str) -> ComponentInfo {
        ComponentInfo {
            id: id.to_owned(),
            registration: self.registration.clone(),
            connected_at: self.connected_at,
            in_flight: self.in_flight.len(),
        }
    }
}
