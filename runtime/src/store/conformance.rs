//! The conformance suite every [`StateStore`] implementation must pass. The
//! checks use distinct actor ids, so one store serves the whole suite.

use super::{Entry, StateStore, Update, UpdateCounts};
use crate::engine::types::ActorId;
use bytes::Bytes;

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
