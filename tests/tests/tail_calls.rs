//! End-to-end: tail-call chains (G5). Each step runs to completion exactly
//! once, earlier steps never run again after a crash, and the caller gets the
//! result of the last step.

use kar_tests::{Mesh, count};
use serde_json::json;

const STEPS: i64 = 4;

fn step_tag(tag: &str, n: i64) -> String {
    format!("{tag}#{n}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_in_every_mode_return_the_last_steps_result() -> anyhow::Result<()> {
    let mesh = Mesh::start("Chain", "").await?;
    for mode in ["same", "release", "hop"] {
        let tag = format!("plain-{mode}");
        let result = mesh.client.call_actor("Chain", "p", "step", json!([1, STEPS, tag, 0, mode])).await?;
        assert_eq!(result, json!(format!("{tag}#done")));
        for n in 1..=STEPS {
            assert_eq!(count(&mesh.log_dir(), "end", |a| a.tag == step_tag(&tag, n)), 1, "{mode}: step {n}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_keeping_the_turn_runs_before_queued_flows() -> anyhow::Result<()> {
    let mesh = Mesh::start("Chain,Slow", "").await?;
    let chain = {
        let client = mesh.client.clone();
        tokio::spawn(
            async move { client.call_actor("Chain", "turn", "step", json!([1, 3, "kept", 300, "same"])).await },
        )
    };
    mesh.wait_log("the chain to start", |log| log.iter().any(|a| a.tag == "kept#1")).await?;
    // Queued behind the chain's flow: it must only start after the last step.
    let other = mesh.client.call_actor("Chain", "turn", "step", json!([3, 3, "other", 0, "same"])).await?;
    assert_eq!(other, json!("other#done"));
    assert_eq!(chain.await??, json!("kept#done"));
    let log = kar_tests::attempts(&mesh.log_dir());
    let last_chain_step = log.iter().position(|a| a.tag == "kept#3" && a.event == "end").expect("step 3 ended");
    let other_start = log.iter().position(|a| a.tag == "other#3" && a.event == "start").expect("other started");
    assert!(other_start > last_chain_step, "the turn was kept across the chain's steps");
    Ok(())
}

/// Runs a chain, kills the component in the middle of step `crash_at`, and
/// checks that only that step ran again.
async fn chain_with_component_crash(crash_at: i64) -> anyhow::Result<()> {
    let mut mesh = Mesh::start("Chain", "").await?;
    let tag = format!("comp-crash-{crash_at}");
    let call = {
        let client = mesh.client.clone();
        let tag = tag.clone();
        tokio::spawn(async move { client.call_actor("Chain", "c", "step", json!([1, STEPS, tag, 400, "hop"])).await })
    };
    let target = step_tag(&tag, crash_at);
    mesh.wait_log("the step to start", |log| log.iter().any(|a| a.tag == target)).await?;
    mesh.components[0].kill();
    mesh.add_component("app-2", "Chain", "").await?;
    assert_eq!(call.await??, json!(format!("{tag}#done")));
    let log = mesh.log_dir();
    for n in 1..=STEPS {
        let starts = count(&log, "start", |a| a.tag == step_tag(&tag, n));
        let ends = count(&log, "end", |a| a.tag == step_tag(&tag, n));
        assert_eq!(ends, 1, "step {n} completed once");
        assert_eq!(starts, if n == crash_at { 2 } else { 1 }, "step {n} starts (crash at {crash_at})");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_crash_at_any_step_reruns_only_that_step() -> anyhow::Result<()> {
    for crash_at in 1..=STEPS {
        chain_with_component_crash(crash_at).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_crash_at_any_step_reruns_only_that_step() -> anyhow::Result<()> {
    for crash_at in 1..=STEPS {
        let mut mesh = Mesh::start("Chain", "").await?;
        let tag = format!("rt-crash-{crash_at}");
        let idempotent = mesh.client.with_request_id(format!("chain-{crash_at}"));
        let call = {
            let client = idempotent.clone();
            let tag = tag.clone();
            tokio::spawn(
                async move { client.call_actor("Chain", "r", "step", json!([1, STEPS, tag, 400, "same"])).await },
            )
        };
        let target = step_tag(&tag, crash_at);
        mesh.wait_log("the step to start", |log| log.iter().any(|a| a.tag == target)).await?;
        mesh.runtime.kill();
        assert!(call.await?.is_err());
        mesh.runtime.restart()?;
        // The caller repeats its call and gets the last step's result.
        let result = idempotent.call_actor("Chain", "r", "step", json!([1, STEPS, tag, 400, "same"])).await?;
        assert_eq!(result, json!(format!("{tag}#done")));
        let log = mesh.log_dir();
        for n in 1..=STEPS {
            let starts = count(&log, "start", |a| a.tag == step_tag(&tag, n));
            let ends = count(&log, "end", |a| a.tag == step_tag(&tag, n));
            assert_eq!(ends, 1, "step {n} completed once (crash at {crash_at})");
            assert_eq!(starts, if n == crash_at { 2 } else { 1 }, "step {n} starts (crash at {crash_at})");
        }
    }
    Ok(())
}
