//! The components attached to this runtime and the deliveries in flight to
//! each. A component is reachable through an unbounded queue of
//! [`Delivery`]s that the app channel (the `Attach` stream) drains; a
//! component that registered a concurrency limit gets at most that many
//! unanswered deliveries at once, the rest wait here in arrival order.

use super::types::{Delivery, DeliveryResult};
use std::collections::{HashMap, VecDeque};
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
    /// How many deliveries it takes at once; 0 for no limit.
    pub max_concurrency: u32,
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
    /// Deliveries it has not answered yet, including those held back by its
    /// concurrency limit.
    pub in_flight: usize,
}

/// A delivery sent to a component and not answered yet.
struct Sent {
    /// Dropping it tells the waiting attempt that the component is gone.
    answer: oneshot::Sender<DeliveryResult>,
    flow: String,
}

/// One attached component.
pub(super) struct Component {
    pub(super) registration: Registration,
    pub(super) connected_at: SystemTime,
    /// Where deliveries go; the app channel drains it.
    outbox: mpsc::UnboundedSender<Delivery>,
    /// Deliveries sent and not answered, by delivery id.
    sent: HashMap<u64, Sent>,
    /// Deliveries waiting for room under the concurrency limit.
    held: VecDeque<(Delivery, oneshot::Sender<DeliveryResult>)>,
}

impl Component {
    pub(super) fn new(registration: Registration, outbox: mpsc::UnboundedSender<Delivery>) -> Component {
        Component { registration, connected_at: SystemTime::now(), outbox, sent: HashMap::new(), held: VecDeque::new() }
    }

    pub(super) fn info(&self, id: &str) -> ComponentInfo {
        ComponentInfo {
            id: id.to_owned(),
            registration: self.registration.clone(),
            connected_at: self.connected_at,
            in_flight: self.in_flight(),
        }
    }

    /// Deliveries not answered yet, held ones included.
    pub(super) fn in_flight(&self) -> usize {
        self.sent.len() + self.held.len()
    }

    /// Whether a delivery in `flow` would be sent at once. A delivery in a
    /// flow that already has one here is a nested call made by a handler
    /// this component is running (or a reentrant one): holding it back
    /// would leave that handler waiting on its own slot, so it always goes.
    pub(super) fn has_room_for(&self, flow: &str) -> bool {
        let max = self.registration.max_concurrency as usize;
        max == 0 || self.sent.len() < max || (!flow.is_empty() && self.sent.values().any(|s| s.flow == flow))
    }

    /// Sends a delivery, or holds it until the component has room. `false`
    /// if the component's channel is closed.
    pub(super) fn offer(&mut self, delivery: Delivery, answer: oneshot::Sender<DeliveryResult>) -> bool {
        if self.has_room_for(&delivery.flow) {
            self.send(delivery, answer)
        } else {
            self.held.push_back((delivery, answer));
            true
        }
    }

    /// Takes the waiting attempt of an answered delivery and sends what the
    /// freed room allows. `None` for an id that was never sent here.
    pub(super) fn answered(&mut self, delivery_id: u64) -> Option<oneshot::Sender<DeliveryResult>> {
        let sent = self.sent.remove(&delivery_id)?;
        while let Some((delivery, _)) = self.held.front()
            && self.has_room_for(&delivery.flow)
        {
            let (delivery, answer) = self.held.pop_front().expect("a front exists");
            if !self.send(delivery, answer) {
                // The channel is closed: the component detaches, which
                // abandons what it holds.
                break;
            }
        }
        Some(sent.answer)
    }

    fn send(&mut self, delivery: Delivery, answer: oneshot::Sender<DeliveryResult>) -> bool {
        let (id, flow) = (delivery.delivery_id, delivery.flow.clone());
        if self.outbox.send(delivery).is_err() {
            return false;
        }
        self.sent.insert(id, Sent { answer, flow });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::types::{DeliveryKind, Target};

    fn delivery(id: u64, flow: &str) -> Delivery {
        Delivery {
            delivery_id: id,
            kind: DeliveryKind::ServiceMethod,
            target: Target::Service("s".into()),
            method: "m".into(),
            payload: bytes::Bytes::new(),
            flow: flow.into(),
            request_id: format!("r{id}"),
            attempt: 1,
            deadline: None,
        }
    }

    fn component(max: u32) -> (Component, mpsc::UnboundedReceiver<Delivery>) {
        let (outbox, deliveries) = mpsc::unbounded_channel();
        let registration =
            Registration { name: "c".into(), service: Some("s".into()), max_concurrency: max, ..Default::default() };
        (Component::new(registration, outbox), deliveries)
    }

    fn received(deliveries: &mut mpsc::UnboundedReceiver<Delivery>) -> Vec<u64> {
        std::iter::from_fn(|| deliveries.try_recv().ok()).map(|d| d.delivery_id).collect()
    }

    #[test]
    fn a_limited_component_gets_no_more_than_its_limit_and_the_rest_in_order() {
        let (mut c, mut deliveries) = component(2);
        let mut answers = Vec::new();
        for id in 1..=5 {
            let (answer, result) = oneshot::channel();
            assert!(c.offer(delivery(id, &format!("f{id}")), answer));
            answers.push(result);
        }
        assert_eq!(received(&mut deliveries), vec![1, 2]);
        assert_eq!(c.in_flight(), 5);
        c.answered(2).expect("2 was sent").send(DeliveryResult::Value(bytes::Bytes::new())).unwrap();
        assert_eq!(received(&mut deliveries), vec![3]);
        assert!(c.answered(4).is_none(), "a held delivery cannot be answered");
        c.answered(1);
        c.answered(3);
        assert_eq!(received(&mut deliveries), vec![4, 5]);
    }

    #[test]
    fn a_nested_call_in_a_running_flow_is_not_held_back() {
        let (mut c, mut deliveries) = component(1);
        let (a, _ra) = oneshot::channel();
        let (b, _rb) = oneshot::channel();
        let (n, _rn) = oneshot::channel();
        assert!(c.offer(delivery(1, "flow-1"), a));
        assert!(c.offer(delivery(2, "flow-2"), b));
        assert!(c.offer(delivery(3, "flow-1"), n));
        assert_eq!(received(&mut deliveries), vec![1, 3]);
    }

    #[test]
    fn no_limit_sends_everything() {
        let (mut c, mut deliveries) = component(0);
        for id in 1..=100 {
            let (answer, _) = oneshot::channel();
            assert!(c.offer(delivery(id, ""), answer));
        }
        assert_eq!(received(&mut deliveries).len(), 100);
    }
}
