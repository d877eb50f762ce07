//! End-to-end: a real `kar` runtime and a real test component; calls, tells,
//! state, reentrancy and clean errors.

use anyhow::Context as _;
use kar_tests::Mesh;
use serde_json::json;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_then_concurrent_calls_to_one_actor_give_exact_counts() -> anyhow::Result<()> {
    let mesh = Mesh::start("Counter", "").await?;
    let counter = mesh.client.actor("Counter", "exact");
    for i in 1..=500 {
        let count = counter.call("incr", json!([])).await?;
        assert_eq!(count, json!(i));
    }
    let calls = (0..250).map(|_| {
        let counter = counter.clone();
        async move { counter.call("incr", json!([])).await }
    });
    let results = futures::future::join_all(calls).await;
    let mut seen: Vec<i64> =
        results.into_iter().map(|r| r.map(|v| v.as_i64().unwrap_or(-1))).collect::<Result<_, _>>()?;
    seen.sort();
    assert_eq!(seen, (501..=750).collect::<Vec<i64>>(), "each concurrent call saw its own turn");
    assert_eq!(counter.state().get("count").await?, Some(json!(750)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_operations_cover_entries_and_submaps() -> anyhow::Result<()> {
    let mesh = Mesh::start("Counter", "").await?;
    let state = mesh.client.state("Counter", "stateful");
    assert_eq!(state.get("a").await?, None);
    assert!(state.set("a", json!({"x": 1})).await?, "first set creates");
    assert!(!state.set("a", json!(2)).await?, "second set overwrites");
    assert_eq!(state.get("a").await?, Some(json!(2)));
    assert!(state.contains("a").await?);
    assert!(state.set_sub("m", "k1", json!("v1")).await?);
    assert!(state.set_sub("m", "k2", json!([1, 2])).await?);
    assert_eq!(state.get_sub("m", "k2").await?, Some(json!([1, 2])));
    assert_eq!(state.submap_size("m").await?, 2);
    let mut keys = state.submap_keys("m").await?;
    keys.sort();
    assert_eq!(keys, vec!["k1", "k2"]);

    let counts = state
        .update(
            kar_client::StateUpdate::new()
                .remove("a")
                .set("b", json!(true))
                .set_sub("m", "k3", json!(3))
                .remove_sub("m", "k1"),
        )
        .await?;
    assert_eq!((counts.added, counts.removed), (2, 2));
    let all = state.get_all().await?;
    assert_eq!(all.entries.get("b"), Some(&json!(true)));
    assert!(!all.entries.contains_key("a"));
    let m = all.submaps.get("m").expect("submap m");
    assert_eq!(m.len(), 2);
    assert_eq!(m.get("k3"), Some(&json!(3)));

    assert!(state.delete_sub("m", "k3").await?);
    assert!(!state.delete_sub("m", "k3").await?);
    assert_eq!(state.clear_submap("m").await?, 1);
    assert!(state.delete("b").await?);
    state.set("c", json!(null)).await?;
    assert_eq!(state.delete_all().await?, 1);
    assert!(state.get_all().await?.entries.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reentrant_chain_a_b_a_completes() -> anyhow::Result<()> {
    let mesh = Mesh::start("Reent", "").await?;
    let answer = mesh.client.actor("Reent", "a").call("ping", json!(["b"])).await?;
    assert_eq!(answer, json!("ping>pong>leaf"));
    // Concurrent chains in opposite directions each complete too.
    let (rx, ry) = (mesh.client.actor("Reent", "x"), mesh.client.actor("Reent", "y"));
    let (x, y) = tokio::join!(rx.call("ping", json!(["y"])), ry.call("ping", json!(["z"])));
    assert_eq!(x?, json!("ping>pong>leaf"));
    assert_eq!(y?, json!("ping>pong>leaf"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_called_and_told() -> anyhow::Result<()> {
    let mesh = Mesh::start("Counter", "svc").await?;
    assert_eq!(
        mesh.client.call_service("svc", "echo", json!({"hello": [1, "two"]})).await?,
        json!({"hello": [1, "two"]})
    );
    // Tells to a service that calls an actor: the actor's turns serialize them.
    for _ in 0..3 {
        mesh.client.tell_service("svc", "counter", json!(["told"])).await?;
    }
    mesh.wait_log("three service tells", |log| {
        log.iter().filter(|a| a.event == "end" && a.method == "counter").count() == 3
    })
    .await?;
    assert_eq!(mesh.client.state("Counter", "told").get("count").await?, Some(json!(3)));
    assert_eq!(mesh.client.call_service("svc", "counter", json!(["told"])).await?, json!(4));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clean_errors() -> anyhow::Result<()> {
    let mesh = Mesh::start("Counter,Echo", "").await?;
    let client = &mesh.client;

    let err = client.call_actor("Counter", "c", "fly", json!([])).await.expect_err("no such method");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert!(err.is_application_error());
    assert!(err.message().contains("fly"), "{}", err.message());

    let err = client.call_actor("Counter", "c", "add", json!(["not a number"])).await.expect_err("bad argument");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.is_application_error());

    let err = client.call_actor("Echo", "e", "fail", json!(["why"])).await.expect_err("application error");
    assert_eq!(err.code(), Code::Unknown);
    assert!(err.is_application_error());
    assert!(err.message().contains("why"));

    let err = client.call_actor("Nobody", "x", "m", json!([])).await.expect_err("unknown type");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(!err.is_application_error());
    assert!(err.message().contains("Nobody"));

    let err = client.call_actor("Counter", "", "incr", json!([])).await.expect_err("empty id");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("actor.id"), "{}", err.message());

    let err = client.call_actor("Counter", "c", "", json!([])).await.expect_err("empty method");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("method"));

    let big = "x".repeat(5 * 1024 * 1024);
    let err = client.call_actor("Echo", "e", "echo", json!([big])).await.expect_err("oversized");
    assert!(matches!(err.code(), Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange), "{err:?}");
    let just_over = "x".repeat(4 * 1024 * 1024 - 32 * 1024);
    let err = client.call_actor("Echo", "e", "echo", json!([just_over])).await.expect_err("over the payload limit");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("payload"));

    let err = client.state("Counter", "c").get("").await.expect_err("empty key");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("key"));

    // The runtime is still healthy after all that.
    assert_eq!(client.call_actor("Echo", "e", "echo", json!([1])).await?, json!([1]));
    assert_eq!(client.call_actor("Echo", "e", "nothing", json!([])).await?, json!(null));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_is_not_started() -> anyhow::Result<()> {
    let mesh = Mesh::start("Slow", "").await?;
    let slow = mesh.client.actor("Slow", "busy");
    // Occupy the actor, then queue a call with a short deadline behind it.
    let blocker = {
        let slow = slow.clone();
        tokio::spawn(async move { slow.call("work", json!([1500, "blocker"])).await })
    };
    mesh.wait_log("the blocker to start", |log| log.iter().any(|a| a.tag == "blocker")).await?;
    let short = mesh.client.with_timeout(std::time::Duration::from_millis(300));
    let err = short.call_actor("Slow", "busy", "work", json!([0, "late"])).await.expect_err("deadline");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    blocker.await??;
    // Anything queued behind the late call has run; the late call never did.
    slow.call("work", json!([0, "after"])).await?;
    assert_eq!(kar_tests::count(&mesh.log_dir(), "start", |a| a.tag == "late"), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_lists_components_and_active_actors() -> anyhow::Result<()> {
    let mesh = Mesh::start("Counter", "svc").await?;
    mesh.client.actor("Counter", "seen").call("incr", json!([])).await?;
    let components = mesh.client.list_components().await?;
    assert_eq!(components.len(), 1);
    assert_eq!(components[0].actor_types, vec!["Counter"]);
    assert_eq!(components[0].service, "svc");
    let actors = mesh.client.list_actors(Some("Counter")).await?;
    assert!(actors.iter().any(|a| a.actor.as_ref().is_some_and(|r| r.id == "seen")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_the_services_and_calls_an_actor_through_reflection() -> anyhow::Result<()> {
    let mesh = Mesh::start("Echo", "").await?;
    let address = format!("127.0.0.1:{}", mesh.runtime.port);
    let grpcurl = |args: &[&str]| -> anyhow::Result<String> {
        let output = std::process::Command::new("grpcurl")
            .arg("-plaintext")
            .args(args)
            .output()
            .map_err(|e| anyhow::anyhow!("grpcurl is needed (deploy/install-tools.sh installs it): {e}"))?;
        anyhow::ensure!(output.status.success(), "grpcurl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let services = grpcurl(&[&address, "list"])?;
    for service in [
        "kar.v1.ActorsService",
        "kar.v1.StateService",
        "kar.v1.ServicesService",
        "kar.v1.AppService",
        "kar.v1.MeshService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(service), "{service} missing from:\n{services}");
    }
    let answer = grpcurl(&[
        "-d",
        r#"{"actor": {"type": "Echo", "id": "g"}, "method": "echo", "json": ["hi", 2]}"#,
        &address,
        "kar.v1.ActorsService/CallActor",
    ])?;
    let answer: serde_json::Value = serde_json::from_str(&answer)?;
    assert_eq!(answer["json"], json!(["hi", 2]));
    let health = grpcurl(&[&address, "grpc.health.v1.Health/Check"])?;
    assert!(health.contains("SERVING"), "{health}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_actor_is_deactivated_and_comes_back_with_its_state() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let runtime = kar_tests::Runtime::start_with(dir.path(), &["--actor-idle-timeout", "300ms"])?;
    let _component = kar_tests::Component::start(&runtime.addr(), &dir.path().join("attempts"), "app", "Counter", "")?;
    let client = kar_client::Client::connect(&runtime.addr()).await?;
    let start = std::time::Instant::now();
    let counter = client.actor("Counter", "idle");
    let first = loop {
        match counter.call("incr", json!([])).await {
            Ok(v) => break v,
            Err(_) if start.elapsed() < std::time::Duration::from_secs(30) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    assert_eq!(first, json!(1));
    let is_active =
        |actors: Vec<kar_client::ActiveActor>| actors.iter().any(|a| a.actor.as_ref().is_some_and(|r| r.id == "idle"));
    assert!(is_active(client.list_actors(Some("Counter")).await?));
    let start = std::time::Instant::now();
    while is_active(client.list_actors(Some("Counter")).await?) {
        anyhow::ensure!(start.elapsed() < std::time::Duration::from_secs(10), "the idle actor was not deactivated");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Reactivated on the next call, with its state intact.
    assert_eq!(counter.call("incr", json!([])).await?, json!(2));
    assert!(is_active(client.list_actors(Some("Counter")).await?));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_component_hears_from_its_runtime_within_its_lease() -> anyhow::Result<()> {
    use futures::StreamExt;
    use kar_proto::v1::{
        AttachRequest, Register, app_service_client::AppServiceClient, attach_request, attach_response,
    };
    let mesh = Mesh::start("Counter", "").await?;
    let register = Register { name: "idle".into(), actor_types: vec!["Idle".into()], ..Register::default() };
    // Our half stays open (and silent) after the registration.
    let outgoing =
        futures::stream::once(
            async move { AttachRequest { message: Some(attach_request::Message::Register(register)) } },
        )
        .chain(futures::stream::pending());
    let mut incoming = AppServiceClient::new(mesh.client.channel().clone()).attach(outgoing).await?.into_inner();
    let lease = match incoming.message().await? {
        Some(m) => match m.message {
            Some(attach_response::Message::Registered(r)) => {
                std::time::Duration::try_from(r.lease.unwrap_or_default())?
            }
            other => anyhow::bail!("expected Registered, got {other:?}"),
        },
        None => anyhow::bail!("the stream ended"),
    };
    assert!(!lease.is_zero(), "no lease");
    for _ in 0..2 {
        let next =
            tokio::time::timeout(lease / 2, incoming.message()).await.context("nothing heard for half a lease")?;
        let message = next?.and_then(|m| m.message);
        assert!(matches!(message, Some(attach_response::Message::Heartbeat(_))), "{message:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_gets_no_more_invocations_at_once_than_its_limit() -> anyhow::Result<()> {
    use kar_client::ActorHost;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    let dir = tempfile::tempdir()?;
    let runtime = kar_tests::Runtime::start(dir.path())?;
    let client = kar_client::Client::connect(&runtime.addr()).await?;
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, p) = (running.clone(), peak.clone());
    let limited = ActorHost::new(client.clone())
        .name("limited")
        .max_concurrency(2)
        .actor_fn("Gate", move |_ctx, _method, _args| {
            let (running, peak) = (r.clone(), p.clone());
            async move {
                peak.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(json!("done").into())
            }
        })
        .start()
        .await?;
    // One at a time: a handler's nested call in its own flow still gets in.
    let single = ActorHost::new(client.clone())
        .name("single")
        .max_concurrency(1)
        .actor_fn("Nest", |ctx, method, _args| async move {
            match method.as_str() {
                "outer" => Ok(ctx.call_actor("Nest", "inner", "inner", json!([])).await?.into()),
                _ => Ok(json!("inner").into()),
            }
        })
        .start()
        .await?;

    let calls = (0..8).map(|i| {
        let gate = client.actor("Gate", &format!("g{i}"));
        async move { gate.call("hold", json!([])).await }
    });
    let results = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(calls)).await?;
    for result in results {
        assert_eq!(result?, json!("done"));
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2, "eight calls at once reach the component two at a time");

    let outer = client.actor("Nest", "outer");
    assert_eq!(tokio::time::timeout(Duration::from_secs(30), outer.call("outer", json!([]))).await??, json!("inner"));

    limited.shutdown().await?;
    single.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_waiting_for_each_other_in_a_ring_get_a_deadlock_error_not_a_hang() -> anyhow::Result<()> {
    use kar_client::ActorHost;
    use std::time::Duration;

    let dir = tempfile::tempdir()?;
    let runtime = kar_tests::Runtime::start(dir.path())?;
    let client = kar_client::Client::connect(&runtime.addr()).await?;
    // `grab(other)` holds this actor's turn a while, then calls the other.
    let host = ActorHost::new(client.clone())
        .name("lockers")
        .actor_fn("Locker", |ctx, method, args| async move {
            match method.as_str() {
                "grab" => {
                    let (other,): (String,) = serde_json::from_value(args)?;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(ctx.call_actor("Locker", &other, "touch", json!([])).await?.into())
                }
                _ => Ok(json!(ctx.actor_id()).into()),
            }
        })
        .start()
        .await?;

    // Two flows, then three, each holding one actor and calling the next.
    for ring in [&["a", "b"][..], &["c", "d", "e"][..]] {
        let calls = ring.iter().enumerate().map(|(i, id)| {
            let (actor, next) = (client.actor("Locker", id), ring[(i + 1) % ring.len()]);
            async move { actor.call("grab", json!([next])).await }
        });
        let results = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(calls)).await?;
        let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(failed.len(), 1, "exactly one call of the ring {ring:?} fails: {results:?}");
        assert_eq!(failed[0].code(), Code::Aborted, "{}", failed[0]);
        assert!(failed[0].message().contains("deadlock") && failed[0].message().contains("Locker/"), "{}", failed[0]);
        // The actors are free again.
        for id in ring {
            assert_eq!(client.actor("Locker", id).call("touch", json!([])).await?, json!(id));
        }
    }
    host.shutdown().await?;
    Ok(())
}
