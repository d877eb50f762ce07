//! End-to-end: the distributed deployment. Runtimes started with the same
//! `--app` on Kafka and Redis form one mesh: a component attached to any
//! runtime serves calls, tells, nested calls, tail calls and reminders that
//! reach the mesh through any other, and a runtime that dies or stalls is
//! replaced by the others without running anything twice.
//!
//! Each test starts its own [`Cluster`] (a fresh mesh name and a private
//! Redis; Kafka from `KAFKA_BROKERS`, which the test command starts), bounds
//! its steps in time and stops every process. A failing test keeps its work
//! dir and reports the end of each runtime's log.

use anyhow::Context;
use kar_client::ReminderSpec;
use kar_tests::{Attempt, Cluster, within};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The bound of each test's scenario (cluster start-up excluded).
const LIMIT: Duration = Duration::from_secs(180);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The attempts logged with `event` for `tag` on actors whose target starts
/// with `target_prefix`.
fn logged<'a>(attempts: &'a [Attempt], event: &str, target_prefix: &str, tag: &str) -> Vec<&'a Attempt> {
    attempts.iter().filter(|a| a.event == event && a.tag == tag && a.target.starts_with(target_prefix)).collect()
}

/// The components that ran `tag` to its end.
fn finishers(attempts: &[Attempt], tag: &str) -> Vec<String> {
    attempts.iter().filter(|a| a.event == "end" && a.tag == tag).map(|a| a.component.clone()).collect()
}

/// Calls `Slow/<prefix><n>.work` through runtime `via` for n = 0, 1, ...
/// until every component of `components` has served one (the mesh has
/// spread the type's partitions over their runtimes); returns each actor
/// called with the component that served it.
async fn spread(
    cluster: &Cluster,
    via: usize,
    prefix: &str,
    components: &[&str],
) -> anyhow::Result<Vec<(String, String)>> {
    let start = Instant::now();
    let mut served: Vec<(String, String)> = Vec::new();
    for n in 0.. {
        let id = format!("{prefix}{n}");
        let answer = cluster.client(via).call_actor("Slow", &id, "work", json!([0, id])).await?;
        anyhow::ensure!(answer == json!(id), "Slow/{id} answered {answer}");
        let by = finishers(&cluster.attempts(), &id);
        anyhow::ensure!(by.len() == 1, "Slow/{id} ran to its end {} times: {by:?}", by.len());
        served.push((id, by[0].clone()));
        if components.iter().all(|name| served.iter().any(|(_, by)| by == name)) {
            return Ok(served);
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "within 60 s, not every component of {components:?} served an actor: {served:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

/// Repeats `call` (with the same idempotency key, which the caller bakes in)
/// until it is answered, for at most `limit`: the runtime it goes through
/// may still be finding out that the mesh moved on.
async fn answered<F, Fut>(limit: Duration, what: &str, mut call: F) -> anyhow::Result<Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, kar_client::Error>>,
{
    let start = Instant::now();
    loop {
        let failure = match tokio::time::timeout(Duration::from_secs(30), call()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if e.is_application_error() => return Err(e.into()),
            Ok(Err(e)) => format!("{:?}: {}", e.code(), e.message()),
            Err(_) => "no answer within 30 s".to_owned(),
        };
        anyhow::ensure!(start.elapsed() < limit, "{what}: not answered within {limit:?}; last: {failure}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_one_runtime_calls_and_tells_actors_hosted_on_another() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(2).await?;
    let outcome = within(LIMIT, "the scenario", cross_runtime_calls_and_tells(&mut cluster)).await;
    cluster.finish(outcome)
}

async fn cross_runtime_calls_and_tells(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.add_component(0, "slow-0", "Slow", "").await?;
    let remote = cluster.client(1);
    for i in 0..4 {
        let (id, call, tell) = (format!("a{i}"), format!("call-{i}"), format!("tell-{i}"));
        assert_eq!(remote.call_actor("Slow", &id, "work", json!([0, call])).await?, json!(call));
        remote.tell_actor("Slow", &id, "work", json!([0, tell])).await?;
    }
    // A call queued behind a tell on the same actor returns only after the
    // tell completed.
    for i in 0..4 {
        let probe = format!("probe-{i}");
        assert_eq!(remote.call_actor("Slow", &format!("a{i}"), "work", json!([0, probe])).await?, json!(probe));
    }
    let log = cluster.attempts();
    for tag in (0..4).flat_map(|i| [format!("call-{i}"), format!("tell-{i}")]) {
        assert_eq!(logged(&log, "start", "Slow/", &tag).len(), 1, "{tag} started once");
        assert_eq!(finishers(&log, &tag), ["slow-0"], "{tag} ran to its end once, on runtime 0's component");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_call_crosses_runtimes_and_back() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(2).await?;
    let outcome = within(LIMIT, "the scenario", nested_call_across_runtimes(&mut cluster)).await;
    cluster.finish(outcome)
}

async fn nested_call_across_runtimes(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.add_component(0, "callers-0", "Caller", "").await?;
    cluster.add_component(1, "slow-1", "Slow", "").await?;
    // Caller/n<i> (runtime 0) calls Slow/s<i> (runtime 1); the client enters
    // through each runtime in turn.
    for (i, via) in [(0, 1), (1, 0)] {
        let tag = format!("nested-{i}");
        let answer = cluster
            .client(via)
            .call_actor("Caller", &format!("n{i}"), "call", json!([format!("s{i}"), tag, 50]))
            .await?;
        assert_eq!(answer, json!(tag));
        let log = cluster.attempts();
        let callers = logged(&log, "end", "Caller/", &tag);
        let callees = logged(&log, "end", "Slow/", &tag);
        assert_eq!(logged(&log, "start", "Caller/", &tag).len(), 1, "{tag}: the caller started once");
        assert_eq!(logged(&log, "start", "Slow/", &tag).len(), 1, "{tag}: the callee started once");
        assert_eq!((callers.len(), callees.len()), (1, 1), "{tag}: each ran to its end once");
        assert_eq!((callers[0].component.as_str(), callees[0].component.as_str()), ("callers-0", "slow-1"));
        assert!(
            callees[0].request_id.starts_with(&format!("{}.", callers[0].request_id)),
            "the nested call's id {} derives from its caller's {}",
            callees[0].request_id,
            callers[0].request_id
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_on_a_killed_runtime_completes_once_on_a_survivor() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let outcome = within(LIMIT, "the scenario", failover_of_a_call_in_flight(&mut cluster)).await;
    cluster.finish(outcome)
}

async fn failover_of_a_call_in_flight(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.add_component(0, "slow-0", "Slow", "").await?;
    cluster.add_component(1, "slow-1", "Slow", "").await?;
    spread(cluster, 2, "warm-", &["slow-0", "slow-1"]).await?;

    // A long call from runtime 2, which hosts nothing.
    let caller = cluster.client(2).with_request_id("failover-call");
    let args = json!([5000, "failover"]);
    let call = {
        let (caller, args) = (caller.clone(), args.clone());
        tokio::spawn(async move { caller.call_actor("Slow", "f1", "work", args).await })
    };
    cluster
        .wait_log("the long call to start", |log| log.iter().any(|a| a.tag == "failover" && a.event == "start"))
        .await?;
    let first = cluster.attempts().into_iter().find(|a| a.tag == "failover").map(|a| a.component).unwrap_or_default();
    let victim = cluster.runtime_of(&first).expect("the component that started the call");
    let survivor = if first == "slow-0" { "slow-1" } else { "slow-0" };
    cluster.kill_runtime(victim);

    // The caller waits; if its first wait fails it repeats the call once
    // with its idempotency key.
    let result = match tokio::time::timeout(Duration::from_secs(90), call).await {
        Ok(Ok(Ok(value))) => value,
        first_wait => {
            eprintln!("the first wait failed ({first_wait:?}); repeating the call");
            tokio::time::timeout(Duration::from_secs(90), caller.call_actor("Slow", "f1", "work", args))
                .await
                .map_err(|_| anyhow::anyhow!("the repeated call was not answered within 90 s"))??
        }
    };
    assert_eq!(result, json!("failover"));
    let log = cluster.attempts();
    assert_eq!(logged(&log, "start", "Slow/f1", "failover").len(), 2, "interrupted once, retried once");
    assert_eq!(finishers(&log, "failover"), [survivor], "completed once, on the survivor");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_call_whose_callers_runtime_died_is_not_started() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let outcome = within(LIMIT, "the scenario", orphan_across_runtimes(&mut cluster)).await;
    cluster.finish(outcome)
}

async fn orphan_across_runtimes(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.add_component(0, "callers-0", "Caller", "").await?;
    cluster.add_component(1, "callers-1", "Caller", "").await?;
    cluster.add_component(2, "slow-2", "Slow", "").await?;
    // Keep the callee busy so the nested call has to wait for its turn.
    cluster.client(2).tell_actor("Slow", "b", "work", json!([3000, "blocker"])).await?;
    cluster.wait_log("the blocker to start", |log| log.iter().any(|a| a.tag == "blocker")).await?;
    let caller = cluster.client(2).with_request_id("orphan-call");
    let call = {
        let caller = caller.clone();
        tokio::spawn(async move { caller.call_actor("Caller", "a", "call", json!(["b", "orphan", 0])).await })
    };
    cluster.wait_log("the caller to start", |log| log.iter().any(|a| a.target == "Caller/a")).await?;
    let first =
        cluster.attempts().into_iter().find(|a| a.target == "Caller/a").map(|a| a.component).unwrap_or_default();
    // Let the nested call reach the callee's runtime, then kill the caller's.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = cluster.runtime_of(&first).expect("the component running the caller");
    cluster.kill_runtime(victim);

    // The survivor takes the caller's partition over and retries it; the
    // retried caller issues the nested call again (same id), which runs.
    let result = answered(Duration::from_secs(120), "the caller", || {
        let caller = caller.clone();
        async move { caller.call_actor("Caller", "a", "call", json!(["b", "orphan", 0])).await }
    })
    .await?;
    assert_eq!(result, json!("orphan"));
    call.abort();
    let log = cluster.attempts();
    let callers = logged(&log, "start", "Caller/a", "orphan");
    let callees = logged(&log, "start", "Slow/b", "orphan");
    assert_eq!(callers.len(), 2, "the caller ran, died with its runtime, and was retried: {callers:?}");
    assert_eq!(callees.len(), 1, "the nested call started once: {callees:?}");
    let retried_at = callers.iter().map(|a| a.at_ms).max().unwrap_or_default();
    assert!(
        callees[0].at_ms >= retried_at,
        "the nested call started at {} before the retried caller (at {retried_at}): it ran as an orphan",
        callees[0].at_ms
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_whose_last_component_of_a_type_left_hands_the_type_over() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(2).await?;
    let outcome = within(LIMIT, "the scenario", hand_over_on_detach(&mut cluster)).await;
    cluster.finish(outcome)
}

async fn hand_over_on_detach(cluster: &mut Cluster) -> anyhow::Result<()> {
    let slow0 = cluster.add_component(0, "slow-0", "Slow", "").await?;
    cluster.add_component(1, "slow-1", "Slow", "").await?;
    let served = spread(cluster, 0, "h", &["slow-0", "slow-1"]).await?;
    // Runtime 0 loses its only `Slow` component (the runtime stays up): it
    // leaves the type's group, and runtime 1 takes its partitions over, so
    // every actor is served again, through either runtime, by slow-1.
    cluster.kill_component(slow0);
    for (i, (id, _)) in served.iter().enumerate() {
        let tag = format!("after-{id}");
        let via = i % 2;
        let answer = answered(Duration::from_secs(60), &tag, || {
            let client = cluster.client(via).with_request_id(&tag);
            let (id, tag) = (id.clone(), tag.clone());
            async move { client.call_actor("Slow", &id, "work", json!([0, tag])).await }
        })
        .await?;
        assert_eq!(answer, json!(tag));
        assert_eq!(finishers(&cluster.attempts(), &tag), ["slow-1"], "{tag} ran once, on the remaining component");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_runtime_is_replaced_and_serves_again_when_it_resumes() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let outcome = within(LIMIT, "the scenario", stall_and_resume(&mut cluster)).await;
    cluster.finish(outcome)
}

async fn stall_and_resume(cluster: &mut Cluster) -> anyhow::Result<()> {
    for i in 0..3 {
        cluster.add_component(i, &format!("slow-{i}"), "Slow", "").await?;
    }
    let served = spread(cluster, 1, "d", &["slow-0", "slow-1", "slow-2"]).await?;
    let stalled: Vec<String> = served.iter().filter(|(_, by)| by == "slow-0").map(|(id, _)| id.clone()).collect();

    // Runtime 0 stops, holding its partitions, past the session timeout.
    cluster.pause_runtime(0)?;
    let calls = stalled.iter().map(|id| {
        let client = cluster.client(1).with_request_id(format!("paused-{id}"));
        let tag = format!("paused-{id}");
        async move {
            let value =
                answered(Duration::from_secs(90), &tag, || client.call_actor("Slow", id, "work", json!([0, tag])))
                    .await?;
            anyhow::ensure!(value == json!(tag), "{tag} answered {value}");
            Ok(())
        }
    });
    futures::future::try_join_all(calls).await?;
    cluster.client(2).tell_actor("Slow", &stalled[0], "work", json!([0, "paused-tell"])).await?;
    cluster.wait_log("the tell", |log| log.iter().any(|a| a.tag == "paused-tell" && a.event == "end")).await?;
    let log = cluster.attempts();
    for a in log.iter().filter(|a| a.tag.starts_with("paused-")) {
        assert_ne!(a.component, "slow-0", "the stalled runtime's component ran {a:?}");
    }

    // Runtime 0 resumes: calls through it succeed, for every actor.
    cluster.resume_runtime(0)?;
    for (id, _) in &served {
        let client = cluster.client(0).with_request_id(format!("resumed-{id}"));
        let tag = format!("resumed-{id}");
        let value =
            answered(Duration::from_secs(90), &tag, || client.call_actor("Slow", id, "work", json!([0, tag]))).await?;
        assert_eq!(value, json!(tag));
    }
    // It rejoins the mesh: its component serves actors again.
    spread(cluster, 0, "again-", &["slow-0"]).await?;

    // Nothing ran to its end twice (allow a late duplicate to show up).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ends: HashMap<String, Vec<String>> = HashMap::new();
    for a in cluster.attempts().into_iter().filter(|a| a.event == "end") {
        ends.entry(a.tag).or_default().push(a.component);
    }
    let twice: Vec<_> = ends.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "completed more than once: {twice:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_write_in_flight_through_a_stalled_runtime_never_lands() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let outcome = within(LIMIT, "the scenario", stale_state_write(&mut cluster)).await;
    cluster.finish(outcome)
}

async fn stale_state_write(cluster: &mut Cluster) -> anyhow::Result<()> {
    for i in 0..3 {
        cluster.add_component(i, &format!("slow-{i}"), "Slow", "").await?;
    }
    let served = spread(cluster, 1, "w", &["slow-0", "slow-1", "slow-2"]).await?;
    // The latest actor slow-0 served: an earlier one may have moved when a
    // runtime that joined later took its partition over.
    let id = served.iter().rev().find(|(_, by)| by == "slow-0").map(|(id, _)| id.clone()).expect("spread");

    // A handler starts that writes state in 3 s; the runtime it runs
    // through is frozen meanwhile. (It is slow-0's, unless placement moved
    // since `spread`.)
    cluster.client(1).tell_actor("Slow", &id, "write", json!([3000, "zombie"])).await?;
    cluster.wait_log("the write to start", |log| log.iter().any(|a| a.tag == "zombie" && a.event == "start")).await?;
    let stalled = cluster.attempts().into_iter().find(|a| a.tag == "zombie").map(|a| a.component).unwrap_or_default();
    let frozen = cluster.runtime_of(&stalled).context("the writer's runtime")?;
    let survivor = (frozen + 1) % 3;
    cluster.pause_runtime(frozen)?;

    // The tell is retried on a survivor, which writes its own value.
    cluster
        .wait_log("the retried write to end on a survivor", |log| {
            log.iter().any(|a| a.tag == "zombie" && a.event == "end" && a.component != stalled)
        })
        .await?;
    let state = cluster.client(survivor).state("Slow", &id);
    let fresh = state.get("written").await?.context("the survivor's write")?;
    anyhow::ensure!(fresh != json!(format!("zombie:{stalled}")), "the survivor wrote {fresh}");

    // The stalled component heard nothing from its runtime for a lease and
    // abandoned the attempt before the retry started: no overlap.
    let log = cluster.attempts();
    let zombie = |event: &str, on_stalled: bool| -> Vec<u64> {
        let on = |a: &Attempt| (a.component == stalled) == on_stalled;
        log.iter().filter(|a| a.tag == "zombie" && a.event == event && on(a)).map(|a| a.at_ms).collect()
    };
    let abandoned = zombie("abort", true).into_iter().min().context("the stale attempt was not abandoned")?;
    let retried = zombie("start", false).into_iter().min().context("the retry's start")?;
    assert!(abandoned < retried, "the stale attempt was abandoned at {abandoned}, after its retry began at {retried}");
    assert!(zombie("end", true).is_empty(), "the stale attempt ran to its end");

    // Its write had gone out from a task of its own, though, and waits in
    // the frozen runtime's socket. The runtime resumes and serves it:
    // refused (its partition has a newer epoch), so the survivor's value
    // stays.
    cluster.resume_runtime(frozen)?;
    cluster
        .wait_log("the stale write's answer", |log| {
            log.iter().any(|a| a.tag == "zombie" && a.component == stalled && a.event != "start" && a.event != "abort")
        })
        .await?;
    let answers: Vec<String> = cluster
        .attempts()
        .into_iter()
        .filter(|a| a.tag == "zombie" && a.component == stalled && a.event != "start" && a.event != "abort")
        .map(|a| a.event)
        .collect();
    assert_eq!(answers, ["refused"], "the stale write");
    assert_eq!(state.get("written").await?, Some(fresh), "the stalled runtime's write landed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_call_chain_alternates_between_types_on_different_runtimes() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(2).await?;
    let outcome = within(LIMIT, "the scenario", chain_across_runtimes(&mut cluster)).await;
    cluster.finish(outcome)
}

async fn chain_across_runtimes(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.add_component(0, "chain-a", "Chain", "").await?;
    cluster.add_component(1, "chain-b", "ChainB", "").await?;
    const STEPS: i64 = 5;
    // Entered on either type, through either runtime; mode "cross" hands
    // each step to the other type.
    for (entry, via, tag) in [("Chain", 1, "cross-a"), ("ChainB", 0, "cross-b")] {
        let answer = cluster.client(via).call_actor(entry, "x", "step", json!([1, STEPS, tag, 20, "cross"])).await?;
        assert_eq!(answer, json!(format!("{tag}#done")));
        let log = cluster.attempts();
        for n in 1..=STEPS {
            let step = format!("{tag}#{n}");
            let on_entry_type = n % 2 == 1;
            let (kind, component) = match (entry == "Chain") == on_entry_type {
                true => ("Chain/", "chain-a"),
                false => ("ChainB/", "chain-b"),
            };
            assert_eq!(logged(&log, "start", "", &step).len(), 1, "step {n} of {tag} started once");
            let ends = logged(&log, "end", kind, &step);
            assert_eq!(ends.len(), 1, "step {n} of {tag} ran to its end once on {kind}");
            assert_eq!(ends[0].component, component);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_scheduled_through_one_runtime_fires_on_another() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(2).await?;
    let outcome = within(LIMIT, "the scenario", reminder_across_runtimes(&mut cluster)).await;
    cluster.finish(outcome)
}

async fn reminder_across_runtimes(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.add_component(0, "ticker-0", "Ticker", "").await?;
    let ticks = |cluster: &Cluster, actor: &str| -> Vec<(u64, String)> {
        let prefix = format!("reminder:Ticker/{actor}/r@");
        cluster
            .attempts()
            .into_iter()
            .filter(|a| a.event == "end")
            .filter_map(|a| Some((a.tag.strip_prefix(&prefix)?.parse().ok()?, a.component)))
            .collect()
    };

    // A one-shot reminder fires once, at its time, on runtime 0's component.
    let scheduled = now_ms();
    cluster
        .client(1)
        .schedule_reminder("Ticker", "once", ReminderSpec::new("r", "tick").after(Duration::from_millis(500)))
        .await?;
    cluster.wait_log("the one-shot reminder", |_| !ticks(cluster, "once").is_empty()).await?;

    // A periodic one ticks until it is cancelled through runtime 1.
    cluster
        .client(1)
        .schedule_reminder("Ticker", "every", ReminderSpec::new("r", "tick").every(Duration::from_millis(200)))
        .await?;
    cluster.wait_log("three ticks", |_| ticks(cluster, "every").len() >= 3).await?;
    assert_eq!(cluster.client(1).cancel_reminder("Ticker", "every", Some("r")).await?, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_cancel = ticks(cluster, "every").len();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let once = ticks(cluster, "once");
    assert_eq!(once.len(), 1, "the one-shot reminder fired once: {once:?}");
    assert!(once[0].0 >= scheduled + 500, "not before its time: {once:?}");
    assert_eq!(once[0].1, "ticker-0");
    let every = ticks(cluster, "every");
    assert_eq!(every.len(), after_cancel, "no tick after the cancellation: {every:?}");
    let mut due: Vec<u64> = every.iter().map(|(due, _)| *due).collect();
    due.sort();
    let fired = due.len();
    due.dedup();
    assert_eq!(due.len(), fired, "each due time fired once: {every:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_events_cross_runtimes() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(2).await?;
    let outcome = within(LIMIT, "the scenario", services_and_events_across_runtimes(&mut cluster)).await;
    cluster.finish(outcome)
}

async fn services_and_events_across_runtimes(cluster: &mut Cluster) -> anyhow::Result<()> {
    // The service and the subscriber actor live on runtime 0's component;
    // everything reaches them through runtime 1.
    cluster.add_component(0, "svc-0", "Sink", "svc").await?;
    let remote = cluster.client(1).clone();

    assert_eq!(remote.call_service("svc", "echo", json!(["hello"])).await?, json!(["hello"]));
    const TELLS: i64 = 5;
    for _ in 0..TELLS {
        remote.tell_service("svc", "incr", json!([])).await?;
    }
    cluster
        .wait_log("the service tells", |log| {
            log.iter().filter(|a| a.event == "end" && a.target == "svc" && a.method == "incr").count() >= TELLS as usize
        })
        .await?;
    let log = cluster.attempts();
    let incr = |event: &str| log.iter().filter(|a| a.event == event && a.target == "svc" && a.method == "incr").count();
    assert_eq!((incr("start"), incr("end")), (TELLS as usize, TELLS as usize), "each told increment ran once");
    assert!(
        cluster.attempts().iter().filter(|a| a.target == "svc").all(|a| a.component == "svc-0"),
        "the service ran on runtime 0's component"
    );

    // Events published through runtime 1 reach the actor subscriber on
    // runtime 0 once each, in order.
    assert!(remote.create_topic("orders", 1).await?);
    assert!(remote.subscribe_actor("orders-sink", "orders", ("Sink", "s1"), "event", true).await?);
    const EVENTS: usize = 20;
    for i in 0..EVENTS {
        remote.publish("orders", json!([format!("ev-{i}")])).await?;
    }
    cluster
        .wait_log("every event delivered", |log| {
            log.iter().filter(|a| a.event == "end" && a.tag.starts_with("ev-")).count() >= EVENTS
        })
        .await?;
    let delivered: Vec<(String, String)> = cluster
        .attempts()
        .into_iter()
        .filter(|a| a.event == "end" && a.tag.starts_with("ev-"))
        .map(|a| (a.tag, a.component))
        .collect();
    let expected: Vec<(String, String)> = (0..EVENTS).map(|i| (format!("ev-{i}"), "svc-0".to_owned())).collect();
    assert_eq!(delivered, expected, "each event delivered once, in order, on runtime 0's component");
    let subscriptions = cluster.client(0).list_subscriptions(Some("orders")).await?;
    assert_eq!(subscriptions.len(), 1, "the subscription made through runtime 1 is seen through runtime 0");
    Ok(())
}
