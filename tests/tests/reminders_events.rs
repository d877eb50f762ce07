//! End-to-end: reminders (G7) and events across runtime crashes, and actor
//! removal.

use kar_client::ReminderSpec;
use kar_tests::{Mesh, attempts, count};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The due times of the ticks of `actor`'s reminder `rid` that completed,
/// with the times their handlers ended.
fn ticks(mesh: &Mesh, actor: &str, rid: &str) -> HashMap<u64, Vec<u64>> {
    let prefix = format!("reminder:Ticker/{actor}/{rid}@");
    let mut due: HashMap<u64, Vec<u64>> = HashMap::new();
    for a in attempts(&mesh.log_dir()) {
        if a.event == "end"
            && let Some(at) = a.tag.strip_prefix(&prefix).and_then(|t| t.parse::<u64>().ok())
        {
            due.entry(at).or_default().push(a.at_ms);
        }
    }
    due
}

/// Checks that each due time fired once. The one exception is a tick whose
/// handler had ended when the runtime was killed at `killed_at`, before its
/// completion was recorded: it runs again after the restart (a retry of the
/// same firing, not a second firing).
fn assert_fired_once(fired: &HashMap<u64, Vec<u64>>, killed_at: u64) {
    for (due, ends) in fired {
        let before = ends.iter().filter(|t| **t <= killed_at).count();
        let after = ends.len() - before;
        assert!(
            ends.len() == 1 || (before == 1 && after == 1),
            "due time {due} fired {} times (ends at {ends:?}, kill at {killed_at})",
            ends.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_periodic_reminder_ticks_across_a_runtime_restart_without_duplicates() -> anyhow::Result<()> {
    let mut mesh = Mesh::start("Ticker", "").await?;
    let period = Duration::from_millis(200);
    mesh.client.schedule_reminder("Ticker", "t1", ReminderSpec::new("r", "tick").every(period)).await?;
    mesh.wait_log("three ticks", |_| ticks(&mesh, "t1", "r").len() >= 3).await?;
    mesh.runtime.kill();
    let killed_at = now_ms();
    mesh.runtime.restart()?;
    let before = ticks(&mesh, "t1", "r").len();
    mesh.wait_log("three more ticks", |_| ticks(&mesh, "t1", "r").len() >= before + 3).await?;
    assert_eq!(mesh.client.cancel_reminder("Ticker", "t1", Some("r")).await?, 1);

    let fired = ticks(&mesh, "t1", "r");
    assert_fired_once(&fired, killed_at);
    let mut due: Vec<u64> = fired.keys().copied().collect();
    due.sort();
    for pair in due.windows(2) {
        assert_eq!((pair[1] - pair[0]) % 200, 0, "due times follow the period: {due:?}");
    }
    let listed = mesh.client.list_reminders(Some("Ticker"), Some("t1")).await?;
    assert!(listed.is_empty(), "cancelled");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_are_coalesced_after_a_long_outage() -> anyhow::Result<()> {
    let mut mesh = Mesh::start("Ticker", "").await?;
    mesh.client
        .schedule_reminder("Ticker", "t2", ReminderSpec::new("r", "tick").every(Duration::from_millis(100)))
        .await?;
    mesh.wait_log("two ticks", |_| ticks(&mesh, "t2", "r").len() >= 2).await?;
    mesh.runtime.kill();
    let down_at = now_ms();
    let killed_at = down_at;
    // The outage itself: twenty periods with no runtime.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let up_at = now_ms();
    mesh.runtime.restart()?;
    let before = ticks(&mesh, "t2", "r").len();
    mesh.wait_log("three ticks after the outage", |_| ticks(&mesh, "t2", "r").len() >= before + 3).await?;
    mesh.client.cancel_reminder("Ticker", "t2", None).await?;

    let fired = ticks(&mesh, "t2", "r");
    let during_outage = fired.keys().filter(|at| **at > down_at && **at < up_at).count();
    assert!(during_outage <= 1, "the ~20 missed ticks fired {during_outage} times: {fired:?}");
    assert_fired_once(&fired, killed_at);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_reminder_fires_once_at_its_time() -> anyhow::Result<()> {
    let mesh = Mesh::start("Ticker", "").await?;
    let scheduled = now_ms();
    mesh.client
        .schedule_reminder("Ticker", "once", ReminderSpec::new("r", "tick").after(Duration::from_millis(300)))
        .await?;
    assert_eq!(mesh.client.list_reminders(Some("Ticker"), None).await?.len(), 1);
    mesh.wait_log("the reminder", |_| !ticks(&mesh, "once", "r").is_empty()).await?;
    let fired = ticks(&mesh, "once", "r");
    assert_eq!(fired.len(), 1);
    assert!(fired.keys().all(|at| *at >= scheduled + 300));
    // Once fired, a one-shot reminder is gone.
    let start = std::time::Instant::now();
    while !mesh.client.list_reminders(Some("Ticker"), None).await?.is_empty() {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(10), "the one-shot reminder was not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_an_actor_subscriber_once_in_order_across_runtime_crashes() -> anyhow::Result<()> {
    let mut mesh = Mesh::start("Sink", "").await?;
    assert!(mesh.client.create_topic("orders", 1).await?);
    assert!(!mesh.client.create_topic("orders", 1).await?);
    assert!(mesh.client.subscribe_actor("sink-1", "orders", ("Sink", "s1"), "event", true).await?);
    const EVENTS: usize = 60;
    for i in 0..EVENTS {
        if i == 20 || i == 40 {
            mesh.runtime.kill();
            mesh.runtime.restart()?;
        }
        mesh.client.publish("orders", json!([format!("ev-{i}")])).await?;
    }
    mesh.wait_log("every event delivered", |log| {
        let distinct: std::collections::HashSet<&str> =
            log.iter().filter(|a| a.event == "end" && a.tag.starts_with("ev-")).map(|a| a.tag.as_str()).collect();
        distinct.len() >= EVENTS
    })
    .await?;
    let mut delivered: Vec<String> = attempts(&mesh.log_dir())
        .into_iter()
        .filter(|a| a.event == "end" && a.tag.starts_with("ev-"))
        .map(|a| a.tag)
        .collect();
    // An event whose handler had returned when the runtime died, before its
    // completion was recorded, runs again right away (its retry). Nothing
    // else may repeat, and the order must hold.
    let ends = delivered.len();
    delivered.dedup();
    let reruns = ends - delivered.len();
    let expected: Vec<String> = (0..EVENTS).map(|i| format!("ev-{i}")).collect();
    assert_eq!(delivered, expected, "each event delivered, in order");
    assert!(reruns <= 2, "{reruns} events ran again; only those in flight at the two crashes may");
    // The position moves once the last delivery is recorded.
    let start = std::time::Instant::now();
    loop {
        let subscriptions = mesh.client.list_subscriptions(Some("orders")).await?;
        assert_eq!(subscriptions.len(), 1);
        if subscriptions[0].next_offset == EVENTS as u64 {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(10),
            "the position stopped at {}",
            subscriptions[0].next_offset
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let handled = mesh.client.state("Sink", "s1").get("events").await?.and_then(|v| v.as_u64()).unwrap_or(0);
    assert!(
        (EVENTS..=EVENTS + 2).contains(&(handled as usize)),
        "the subscriber handled {handled} events (reruns: {reruns})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_from_the_newest_event_skips_older_ones_and_a_service_can_subscribe() -> anyhow::Result<()> {
    let mesh = Mesh::start("Sink", "svc").await?;
    mesh.client.create_topic("news", 1).await?;
    mesh.client.publish("news", json!(["old"])).await?;
    mesh.client.subscribe_actor("fresh", "news", ("Sink", "fresh"), "event", false).await?;
    mesh.client.subscribe_service("svc-sub", "news", "svc", "echo", true).await?;
    mesh.client.publish("news", json!(["new"])).await?;
    mesh.wait_log("the new event", |log| log.iter().any(|a| a.event == "end" && a.tag == "new")).await?;
    mesh.wait_log("both events at the service", |log| {
        log.iter().filter(|a| a.event == "end" && a.target == "svc" && a.method == "echo").count() >= 2
    })
    .await?;
    assert_eq!(count(&mesh.log_dir(), "end", |a| a.tag == "old"), 0, "the actor subscribed after 'old'");
    assert!(mesh.client.unsubscribe("fresh").await?);
    assert!(!mesh.client.unsubscribe("fresh").await?);
    assert!(mesh.client.delete_topic("news").await?);
    assert!(mesh.client.list_subscriptions(None).await?.is_empty(), "deleting a topic ends its subscriptions");
    let err = mesh.client.publish("news", json!(1)).await.expect_err("no topic");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = mesh.client.create_topic("bad topic!", 1).await.expect_err("bad name");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_actor_deletes_its_state_reminders_and_subscriptions() -> anyhow::Result<()> {
    let mesh = Mesh::start("Sink,Ticker", "").await?;
    let client = &mesh.client;
    client.state("Sink", "doomed").set("a", json!(1)).await?;
    client.state("Sink", "doomed").set_sub("m", "k", json!(2)).await?;
    client
        .schedule_reminder("Sink", "doomed", ReminderSpec::new("later", "event").after(Duration::from_secs(3600)))
        .await?;
    client.create_topic("t", 1).await?;
    client.subscribe_actor("doomed-sub", "t", ("Sink", "doomed"), "event", true).await?;
    client.subscribe_actor("other-sub", "t", ("Sink", "spared"), "event", true).await?;
    client.actor("Sink", "doomed").call("event", json!(["activate-it"])).await?;

    let removed = client.remove_actor("Sink", "doomed").await?;
    assert_eq!(removed, 3, "the entries a, m/k and the events counter");
    assert!(client.state("Sink", "doomed").get_all().await?.entries.is_empty());
    assert!(client.list_reminders(Some("Sink"), Some("doomed")).await?.is_empty());
    let subs: Vec<String> = client.list_subscriptions(None).await?.into_iter().map(|s| s.subscription_id).collect();
    assert_eq!(subs, vec!["other-sub"]);
    assert!(
        !client.list_actors(Some("Sink")).await?.iter().any(|a| a.actor.as_ref().is_some_and(|r| r.id == "doomed"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminder_input_is_checked() -> anyhow::Result<()> {
    let mesh = Mesh::start("Ticker", "").await?;
    let err = mesh
        .client
        .schedule_reminder("Ticker", "x", ReminderSpec::new("r", "tick").every(Duration::from_millis(1)))
        .await
        .expect_err("period too short");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("period"));
    let err =
        mesh.client.schedule_reminder("Nobody", "x", ReminderSpec::new("r", "tick")).await.expect_err("unknown type");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = mesh.client.schedule_reminder("Ticker", "x", ReminderSpec::new("", "tick")).await.expect_err("no id");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    Ok(())
}
