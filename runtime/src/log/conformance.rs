//! The conformance suite every [`Log`] implementation must pass. Each
//! implementation's tests call [`run_all`] with a factory of fresh logs.

use super::{Completion, Log};
use crate::engine::types::{Failure, Outcome, Request, RequestKind, Target};
use bytes::Bytes;
use std::any::Any;

/// A tell to a service, with the given id.
pub(crate) fn request(id: &str) -> Request {
    Request {
        id: id.to_owned(),
        kind: RequestKind::Tell,
        target: Target::Service("svc".into()),
        method: "m".into(),
        payload: Bytes::from_static(b"payload"),
        flow: format!("flow-{id}"),
        caller: None,
        deadline: None,
        keep_outcome: true,
        step: 0,
    }
}

fn ids(requests: &[Request]) -> Vec<&str> {
    requests.iter().map(|r| r.id.as_str()).collect()
}

/// Runs every check against fresh logs made by `fresh`. The first element of
/// the pair keeps the log's resources alive (a temp dir, a topic).
pub(crate) async fn run_all<L, F, Fut>(fresh: F)
where
    L: Log,
    F: Fn() -> Fut,
    Fut: Future<Output = (Box<dyn Any + Send>, L)>,
{
    let (_guard, log) = fresh().await;
    recovery_starts_a_new_epoch_each_time(&log).await;
    let (_guard, log) = fresh().await;
    pending_requests_come_back_in_append_order(&log).await;
    let (_guard, log) = fresh().await;
    completion_removes_records_and_appends_atomically(&log).await;
    let (_guard, log) = fresh().await;
    appending_a_pending_id_again_changes_nothing(&log).await;
    let (_guard, log) = fresh().await;
    expired_outcomes_are_forgotten(&log).await;
    let (_guard, log) = fresh().await;
    lazy_appends_are_ordered_and_become_durable(&log).await;
}

async fn lazy_appends_are_ordered_and_become_durable(log: &impl Log) {
    log.recover().await.expect("recover");
    log.append_lazily(vec![request("lazy-1")]).await.expect("lazy append");
    log.append(vec![request("durable-2")]).await.expect("append");
    log.append_lazily(vec![request("lazy-3")]).await.expect("lazy append");
    log.complete(vec![Completion { request_id: "lazy-1".into(), outcome: None, next: vec![] }])
        .await
        .expect("complete");
    let recovery = log.recover().await.expect("recover");
    assert_eq!(ids(&recovery.pending), vec!["durable-2", "lazy-3"]);
}

async fn expired_outcomes_are_forgotten(log: &impl Log) {
    log.recover().await.expect("recover");
    log.append(vec![request("old")]).await.expect("append");
    let value = Outcome::Value(Bytes::from_static(b"v"));
    log.complete(vec![Completion { request_id: "old".into(), outcome: Some(value.clone()), next: vec![] }])
        .await
        .expect("complete");
    assert_eq!(log.expire_outcomes(1).await.expect("expire"), 0, "nothing is that old");
    assert_eq!(log.outcome("old").await.expect("outcome"), Some(value));
    let future = crate::engine::types::now_millis() + 60_000;
    assert_eq!(log.expire_outcomes(future).await.expect("expire"), 1);
    assert_eq!(log.outcome("old").await.expect("outcome"), None);
}

async fn recovery_starts_a_new_epoch_each_time(log: &impl Log) {
    let first = log.recover().await.expect("recover");
    let second = log.recover().await.expect("recover");
    assert!(second.epoch > first.epoch, "epochs must grow: {} then {}", first.epoch, second.epoch);
    assert!(second.pending.is_empty());
}

async fn pending_requests_come_back_in_append_order(log: &impl Log) {
    log.recover().await.expect("recover");
    log.append(vec![request("r1"), request("r2")]).await.expect("append");
    log.append(vec![request("r3")]).await.expect("append");
    let recovery = log.recover().await.expect("recover");
    assert_eq!(ids(&recovery.pending), vec!["r1", "r2", "r3"]);
    assert_eq!(recovery.pending[0], request("r1"), "a request comes back unchanged");
}

async fn completion_removes_records_and_appends_atomically(log: &impl Log) {
    log.recover().await.expect("recover");
    log.append(vec![request("a"), request("b"), request("c")]).await.expect("append");
    let value = Outcome::Value(Bytes::from_static(b"result"));
    log.complete(vec![
        Completion { request_id: "a".into(), outcome: Some(value.clone()), next: vec![request("a2")] },
        Completion { request_id: "b".into(), outcome: None, next: vec![] },
        Completion { request_id: "c".into(), outcome: Some(Outcome::Failed(Failure::Cancelled)), next: vec![] },
    ])
    .await
    .expect("complete");
    assert_eq!(log.outcome("a").await.expect("outcome"), Some(value));
    assert_eq!(log.outcome("b").await.expect("outcome"), None, "a dropped request leaves no record");
    assert_eq!(log.outcome("c").await.expect("outcome"), Some(Outcome::Failed(Failure::Cancelled)));
    assert_eq!(log.outcome("never").await.expect("outcome"), None);
    let recovery = log.recover().await.expect("recover");
    assert_eq!(ids(&recovery.pending), vec!["a2"]);
}

async fn appending_a_pending_id_again_changes_nothing(log: &impl Log) {
    log.recover().await.expect("recover");
    log.append(vec![request("x")]).await.expect("append");
    let mut changed = request("x");
    changed.method = "other".into();
    log.append(vec![changed]).await.expect("append again");
    let recovery = log.recover().await.expect("recover");
    assert_eq!(recovery.pending, vec![request("x")]);
}
