//! The conformance suite every [`Topics`] implementation must pass.

use super::{Error, Topics};
use bytes::Bytes;

/// Runs every check against `topics`.
pub(crate) async fn run_all(topics: &impl Topics) {
    events_come_back_in_order_from_any_offset(topics).await;
    a_missing_topic_is_an_error(topics).await;
    deleting_a_topic_deletes_its_events(topics).await;
}

async fn events_come_back_in_order_from_any_offset(topics: &impl Topics) {
    assert!(topics.create("orders", 1).await.expect("create"));
    assert!(!topics.create("orders", 1).await.expect("create again"));
    assert_eq!(topics.end_offset("orders").await.expect("end"), Some(0));
    for i in 0..5u8 {
        assert_eq!(topics.publish("orders", Bytes::from(vec![i])).await.expect("publish"), u64::from(i));
    }
    let all = topics.read("orders", 0, 100).await.expect("read");
    assert_eq!(
        all.iter().map(|e| (e.offset, e.payload[0])).collect::<Vec<_>>(),
        vec![(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]
    );
    let tail = topics.read("orders", 3, 1).await.expect("read");
    assert_eq!(tail.iter().map(|e| e.offset).collect::<Vec<_>>(), vec![3]);
    assert!(topics.read("orders", 5, 10).await.expect("read").is_empty());
    assert_eq!(topics.end_offset("orders").await.expect("end"), Some(5));
}

async fn a_missing_topic_is_an_error(topics: &impl Topics) {
    assert!(matches!(topics.publish("nope", Bytes::new()).await, Err(Error::NoSuchTopic(_))));
    assert!(matches!(topics.read("nope", 0, 1).await, Err(Error::NoSuchTopic(_))));
    assert_eq!(topics.end_offset("nope").await.expect("end"), None);
}

async fn deleting_a_topic_deletes_its_events(topics: &impl Topics) {
    topics.create("gone", 1).await.expect("create");
    topics.publish("gone", Bytes::from_static(b"x")).await.expect("publish");
    assert!(topics.delete("gone").await.expect("delete"));
    assert!(!topics.delete("gone").await.expect("delete again"));
    topics.create("gone", 1).await.expect("recreate");
    assert!(topics.read("gone", 0, 10).await.expect("read").is_empty(), "a recreated topic starts empty");
}
