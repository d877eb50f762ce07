//! The short chaos runs (`shared/DESIGN.md` §7): about a minute of workload
//! while the runtimes and the components are SIGKILLed and restarted at
//! random, then the checker. Each must find no violation of G1–G7, with
//! enough kills and a workload that ran. (The checker's own tests, one per
//! kind of violation, are unit tests of `kar_tests::chaos::checker`.)
//!
//! * embedded: one runtime; the long run is
//!   `tests/chaos/run --backend embedded --seconds 600`;
//! * distributed: three runtimes on the Kafka of `KAFKA_BROKERS` (the test
//!   command starts it) and a private Redis; the long run is
//!   `tests/chaos/run --backend distributed --seconds 600`.
//!
//! The two runs take turns: each needs the machine for its timing.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The value of `key=` in the final line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}=")).and_then(|v| v.parse().ok()))
}

/// Runs the chaos binary for a minute on `backend` with `extra` flags,
/// bounded by `limit`, and checks its final line: no violation, at least
/// `min_kills` kills, a workload that ran.
fn a_minute_of_chaos(backend: &str, runtimes: u64, extra: &[&str], min_kills: u64, limit: Duration) {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let seed = std::env::var("CHAOS_SEED").unwrap_or_else(|_| {
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 100_000).to_string()
    });
    let mut child = Command::new(kar_tests::binary("chaos"))
        .args(["--backend", backend, "--seconds", "60", "--seed", &seed])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the chaos binary");
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chaos") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {backend} chaos run took more than {limit:?} (seed {seed})");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout"), &mut out).expect("read the output");
    print!("{out}");
    let last = out.lines().last().unwrap_or_default().to_owned();
    let expected = format!("chaos: backend={backend} runtimes={runtimes} kills=");
    assert!(last.starts_with(&expected), "final line: {last:?} (seed {seed})");
    for key in ["runtimes", "kills", "invocations", "violations", "G1", "G2", "G3", "G4", "G5", "G6", "G7"] {
        assert!(field(&last, key).is_some(), "{key} missing from {last:?}");
    }
    assert_eq!(field(&last, "violations"), Some(0), "violations (seed {seed}): {last}");
    assert!(field(&last, "kills").unwrap() >= min_kills, "too few kills (seed {seed}): {last}");
    assert!(field(&last, "invocations").unwrap() > 0, "the workload did not run (seed {seed}): {last}");
    assert!(status.success(), "chaos exited with {status} (seed {seed})");
}

#[test]
fn a_minute_of_chaos_breaks_no_promise() {
    // Bounded: 60 s of workload, at most 90 s of quiescence, and set-up.
    let extra = ["--fault-interval", "1200..4000", "--quiesce", "90"];
    a_minute_of_chaos("embedded", 1, &extra, 10, Duration::from_secs(240));
}

#[test]
fn a_minute_of_chaos_on_a_three_runtime_mesh_breaks_no_promise() {
    // Failover waits for a session timeout: fewer faults, a longer bound.
    let extra = ["--runtimes", "3", "--fault-interval", "2500..6000", "--quiesce", "120"];
    a_minute_of_chaos("distributed", 3, &extra, 8, Duration::from_secs(330));
}
