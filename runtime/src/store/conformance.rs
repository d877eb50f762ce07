//! The conformance suite every [`StateStore`] implementation must pass. The
//! checks use distinct actor ids, so one store serves the whole suite.

use super::{Entry, ReminderRecord, StateStore, SubscriptionRecord, Update, UpdateCounts};
use crate::engine::types::{ActorId, Target};
use bytes::Bytes;
use std::time::Duration;

fn entry(submap: &str, key: &str, value: &'static str) -> Entry {
    Entry { submap: submap.into(), key: key.into(), value: Bytes::from_static(value.as_bytes()) }
}

/// Runs every check against `store`.
pub(crate) async fn run_all(store: &impl StateStore) {
    set_get_delete_one_entry(store).await;
    submaps_are_separate_from_top_level_entries(store).await;
    update_applies_removals_then_updates(store).await;
    actors_do_not_share_state(store).await;
    delete_all_and_clear_submap(store).await;
    metadata_round_trips(store).await;
    reminders_are_stored_listed_and_come_due(store).await;
    advancing_a_reminder_is_conditional(store).await;
    subscriptions_are_stored_and_advanced_conditionally(store).await;
    sidecars_are_listed_until_they_expire_or_are_removed(store).await;
}

fn reminder(kind: &str, id: &str, rid: &str, due: u64, period_ms: Option<u64>) -> ReminderRecord {
    ReminderRecord {
        actor: ActorId::new(kind, id),
        id: rid.into(),
        method: "tick".into(),
        payload: Bytes::from_static(b"p"),
        next_due: due,
        period_ms,
    }
}

async fn reminders_are_stored_listed_and_come_due(store: &impl StateStore) {
    assert!(!store.put_reminder(reminder("R", "a", "r1", 100, None)).await.expect("put"));
    assert!(!store.put_reminder(reminder("R", "a", "r2", 300, Some(50))).await.expect("put"));
    assert!(!store.put_reminder(reminder("R", "b", "r1", 200, None)).await.expect("put"));
    assert!(!store.put_reminder(reminder("S", "a", "r1", 50, None)).await.expect("put"));
    assert!(store.put_reminder(reminder("R", "a", "r1", 150, None)).await.expect("put"), "same id replaces");
    let of_a = store.list_reminders(Some("R"), Some("a")).await.expect("list");
    assert_eq!(of_a.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["r1", "r2"]);
    assert_eq!(of_a[0].next_due, 150);
    assert_eq!(store.list_reminders(Some("R"), None).await.expect("list").len(), 3);
    assert_eq!(store.list_reminders(None, None).await.expect("list").len(), 4);
    let due = store.due_reminders(200, 10).await.expect("due");
    let due: Vec<(&str, &str, u64)> =
        due.iter().map(|r| (r.actor.kind.as_str(), r.actor.id.as_str(), r.next_due)).collect();
    assert_eq!(due, vec![("S", "a", 50), ("R", "a", 150), ("R", "b", 200)], "due ones, earliest first");
    assert_eq!(store.due_reminders(200, 1).await.expect("due").len(), 1, "limit holds");
    assert_eq!(store.cancel_reminders(&ActorId::new("R", "a"), None).await.expect("cancel"), 2);
    assert_eq!(store.cancel_reminders(&ActorId::new("R", "b"), Some("r1")).await.expect("cancel"), 1);
    assert_eq!(store.cancel_reminders(&ActorId::new("R", "b"), Some("r1")).await.expect("cancel"), 0);
    let left = store.due_reminders(u64::MAX, 10).await.expect("due");
    assert_eq!(left.len(), 1, "cancelled reminders are no longer due");
    store.cancel_reminders(&ActorId::new("S", "a"), None).await.expect("cancel");
}

async fn advancing_a_reminder_is_conditional(store: &impl StateStore) {
    let actor = ActorId::new("Adv", "x");
    store.put_reminder(reminder("Adv", "x", "p", 100, Some(10))).await.expect("put");
    store.advance_reminder(&actor, "p", 100, Some(110)).await.expect("advance");
    assert_eq!(store.list_reminders(Some("Adv"), Some("x")).await.expect("list")[0].next_due, 110);
    store.advance_reminder(&actor, "p", 100, Some(999)).await.expect("stale advance");
    assert_eq!(
        store.list_reminders(Some("Adv"), Some("x")).await.expect("list")[0].next_due,
        110,
        "a stale advance changes nothing"
    );
    assert!(store.due_reminders(105, 10).await.expect("due").iter().all(|r| r.actor != actor));
    store.advance_reminder(&actor, "p", 110, None).await.expect("finish");
    assert!(store.list_reminders(Some("Adv"), None).await.expect("list").is_empty(), "a one-shot is deleted");
}

async fn subscriptions_are_stored_and_advanced_conditionally(store: &impl StateStore) {
    let sub = SubscriptionRecord {
        id: "s1".into(),
        topic: "t".into(),
        target: Target::Actor(ActorId::new("A", "1")),
        method: "on".into(),
        next_offset: 0,
    };
    assert!(store.put_subscription(sub.clone()).await.expect("put"));
    assert!(!store.put_subscription(SubscriptionRecord { next_offset: 9, ..sub.clone() }).await.expect("put again"));
    assert_eq!(store.subscription("s1").await.expect("get"), Some(sub.clone()));
    assert!(store.advance_subscription("s1", 0, 1).await.expect("advance"));
    assert!(!store.advance_subscription("s1", 0, 5).await.expect("stale advance"));
    assert_eq!(store.subscription("s1").await.expect("get").map(|s| s.next_offset), Some(1));
    assert_eq!(store.list_subscriptions().await.expect("list").len(), 1);
    assert!(store.delete_subscription("s1").await.expect("delete"));
    assert!(!store.delete_subscription("s1").await.expect("delete"));
    assert!(!store.advance_subscription("s1", 1, 2).await.expect("advance deleted"));
    assert_eq!(store.subscription("s1").await.expect("get"), None);
}

async fn set_get_delete_one_entry(store: &impl StateStore) {
    let a = ActorId::new("T", "set-get");
    assert_eq!(store.get(&a, "", "k").await.expect("get"), None);
    assert!(store.set(&a, entry("", "k", "1")).await.expect("set"), "first set creates");
    assert!(!store.set(&a, entry("", "k", "2")).await.expect("set"), "second set overwrites");
    assert_eq!(store.get(&a, "", "k").await.expect("get"), Some(Bytes::from_static(b"2")));
    assert!(store.delete(&a, "", "k").await.expect("delete"));
    assert!(!store.delete(&a, "", "k").await.expect("delete"), "deleting twice finds nothing");
    assert_eq!(store.get(&a, "", "k").await.expect("get"), None);
}

async fn submaps_are_separate_from_top_level_entries(store: &impl StateStore) {
    let a = ActorId::new("T", "submaps");
    store.set(&a, entry("", "m", "top")).await.expect("set");
    store.set(&a, entry("m", "x", "1")).await.expect("set");
    store.set(&a, entry("m", "y", "2")).await.expect("set");
    store.set(&a, entry("n", "x", "3")).await.expect("set");
    assert_eq!(store.get(&a, "m", "x").await.expect("get"), Some(Bytes::from_static(b"1")));
    assert_eq!(store.get(&a, "", "m").await.expect("get"), Some(Bytes::from_static(b"top")));
    let submap = store.get_submap(&a, "m").await.expect("submap");
    assert_eq!(submap, vec![entry("m", "x", "1"), entry("m", "y", "2")]);
    let all = store.get_all(&a).await.expect("all");
    assert_eq!(all, vec![entry("", "m", "top"), entry("m", "x", "1"), entry("m", "y", "2"), entry("n", "x", "3")]);
}

async fn update_applies_removals_then_updates(store: &impl StateStore) {
    let a = ActorId::new("T", "update");
    store.set(&a, entry("", "old", "1")).await.expect("set");
    store.set(&a, entry("s", "gone", "1")).await.expect("set");
    let counts = store
        .update(
            &a,
            Update {
                removals: vec![("".into(), "old".into()), ("s".into(), "gone".into()), ("".into(), "missing".into())],
                updates: vec![entry("", "old", "new"), entry("", "fresh", "f"), entry("s", "k", "v")],
            },
        )
        .await
        .expect("update");
    assert_eq!(counts, UpdateCounts { added: 3, removed: 2 });
    let all = store.get_all(&a).await.expect("all");
    assert_eq!(all, vec![entry("", "fresh", "f"), entry("", "old", "new"), entry("s", "k", "v")]);
}

async fn actors_do_not_share_state(store: &impl StateStore) {
    let a = ActorId::new("T", "a");
    let ab = ActorId::new("T", "a-b");
    let other_type = ActorId::new("U", "a");
    store.set(&a, entry("", "k", "a")).await.expect("set");
    store.set(&ab, entry("", "k", "ab")).await.expect("set");
    store.set(&other_type, entry("", "k", "u")).await.expect("set");
    assert_eq!(store.get_all(&a).await.expect("all"), vec![entry("", "k", "a")]);
    assert_eq!(store.delete_all(&a).await.expect("delete all"), 1);
    assert_eq!(store.get(&ab, "", "k").await.expect("get"), Some(Bytes::from_static(b"ab")));
    assert_eq!(store.get(&other_type, "", "k").await.expect("get"), Some(Bytes::from_static(b"u")));
}

async fn delete_all_and_clear_submap(store: &impl StateStore) {
    let a = ActorId::new("T", "clear");
    store.set(&a, entry("", "k", "1")).await.expect("set");
    store.set(&a, entry("s", "x", "1")).await.expect("set");
    store.set(&a, entry("s", "y", "1")).await.expect("set");
    store.set(&a, entry("t", "x", "1")).await.expect("set");
    assert_eq!(store.clear_submap(&a, "s").await.expect("clear"), 2);
    assert_eq!(store.get_all(&a).await.expect("all"), vec![entry("", "k", "1"), entry("t", "x", "1")]);
    assert_eq!(store.delete_all(&a).await.expect("delete all"), 2);
    assert!(store.get_all(&a).await.expect("all").is_empty());
}

async fn metadata_round_trips(store: &impl StateStore) {
    assert_eq!(store.metadata("absent").await.expect("metadata"), None);
    store.set_metadata("k", Bytes::from_static(b"v")).await.expect("set metadata");
    assert_eq!(store.metadata("k").await.expect("metadata"), Some(Bytes::from_static(b"v")));
}

async fn sidecars_are_listed_until_they_expire_or_are_removed(store: &impl StateStore) {
    const LONG: Duration = Duration::from_secs(60);
    let listed = |list: Vec<(String, Bytes)>| -> Vec<(String, String)> {
        list.into_iter().map(|(id, info)| (id, String::from_utf8_lossy(&info).into_owned())).collect()
    };
    let pair = |id: &str, info: &str| (id.to_owned(), info.to_owned());
    assert!(store.sidecars().await.expect("sidecars").is_empty());

    store.put_sidecar("rt-b", Bytes::from_static(b"b1"), LONG).await.expect("put");
    store.put_sidecar("rt:a", Bytes::from_static(b"a1"), LONG).await.expect("put");
    store.put_sidecar("rt-b", Bytes::from_static(b"b2"), LONG).await.expect("put again");
    assert_eq!(
        listed(store.sidecars().await.expect("sidecars")),
        vec![pair("rt-b", "b2"), pair("rt:a", "a1")],
        "a put replaces the info; ordered by runtime id"
    );

    store.put_sidecar("rt-short", Bytes::from_static(b"s"), Duration::from_millis(50)).await.expect("put");
    store.put_sidecar("rt-renewed", Bytes::from_static(b"r"), Duration::from_millis(50)).await.expect("put");
    store.put_sidecar("rt-renewed", Bytes::from_static(b"r"), LONG).await.expect("refresh");
    assert_eq!(store.sidecars().await.expect("sidecars").len(), 4);
    // Expiry is a deadline of the backend's clock; nothing to await but time.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        listed(store.sidecars().await.expect("sidecars")),
        vec![pair("rt-b", "b2"), pair("rt-renewed", "r"), pair("rt:a", "a1")],
        "an entry not refreshed within its ttl is gone; the last put's ttl holds"
    );

    store.remove_sidecar("rt:a").await.expect("remove");
    store.remove_sidecar("rt:a").await.expect("removing twice is no error");
    store.remove_sidecar("rt-unknown").await.expect("removing an unknown runtime is no error");
    assert_eq!(listed(store.sidecars().await.expect("sidecars")), vec![pair("rt-b", "b2"), pair("rt-renewed", "r")]);
    store.put_sidecar("rt-short", Bytes::from_static(b"back"), LONG).await.expect("put after expiry");
    assert_eq!(store.sidecars().await.expect("sidecars").len(), 3, "an expired runtime can register again");
    for id in ["rt-b", "rt-renewed", "rt-short"] {
        store.remove_sidecar(id).await.expect("remove");
    }
    assert!(store.sidecars().await.expect("sidecars").is_empty());
}
