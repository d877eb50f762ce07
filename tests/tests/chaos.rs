//! The short chaos run (`shared/DESIGN.md` §7): about a minute of workload
//! while the runtime and the components are SIGKILLed and restarted at
//! random, then the checker. It must find no violation of G1–G7, with at least
//! ten kills and a workload that ran. (The checker's own tests, one per kind
//! of violation, are unit tests of `kar_tests::chaos::checker`.)
//!
//! The long run is `tests/chaos/run --backend embedded --seconds 600`.

use std::process::{Command, Stdio};
use std::time::Duration;

/// The value of `key=` in the final line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}=")).and_then(|v| v.parse().ok()))
}

#[test]
fn a_minute_of_chaos_breaks_no_promise() {
    let seed = std::env::var("CHAOS_SEED").unwrap_or_else(|_| {
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 100_000).to_string()
    });
    let mut child = Command::new(kar_tests::binary("chaos"))
        .args([
            "--backend",
            "embedded",
            "--seconds",
            "60",
            "--seed",
            &seed,
            "--fault-interval",
            "1200..4000",
            "--quiesce",
            "90",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the chaos binary");
    // Bounded: 60 s of workload, at most 90 s of quiescence, and set-up.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chaos") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the chaos run took more than 240 s (seed {seed})");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout"), &mut out).expect("read the output");
    print!("{out}");
    let last = out.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("chaos: backend=embedded runtimes=1 kills="), "final line: {last:?} (seed {seed})");
    for key in ["runtimes", "kills", "invocations", "violations", "G1", "G2", "G3", "G4", "G5", "G6", "G7"] {
        assert!(field(&last, key).is_some(), "{key} missing from {last:?}");
    }
    assert_eq!(field(&last, "violations"), Some(0), "violations (seed {seed}): {last}");
    assert!(field(&last, "kills").unwrap() >= 10, "too few kills (seed {seed}): {last}");
    assert!(field(&last, "invocations").unwrap() > 0, "the workload did not run (seed {seed}): {last}");
    assert!(status.success(), "chaos exited with {status} (seed {seed})");
}
