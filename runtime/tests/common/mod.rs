//! What the runtime's integration tests share: a real `kar run` process on a
//! free port with its own data dir, killed when dropped.

// Each test crate includes this module and uses only part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `kar` binary under test.
pub const KAR: &str = env!("CARGO_BIN_EXE_kar");

/// A `kar run` process; killed when dropped.
pub struct KarRun {
    child: Child,
    /// `host:port` it listens on.
    pub address: String,
    /// Holds the data dir, the ready file and the log until the test ends.
    pub dir: tempfile::TempDir,
}

impl KarRun {
    /// Starts `kar run` with `extra_args` on a free port and waits (bounded)
    /// until it listens.
    pub fn start(extra_args: &[&str]) -> KarRun {
        let dir = tempfile::tempdir().expect("temp dir");
        let ready = dir.path().join("ready");
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let child = Command::new(KAR)
            .args(["run", "--port", "0", "--host", "127.0.0.1"])
            .args(extra_args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--ready-file")
            .arg(&ready)
            .env_remove("KAR_RUNTIME_ADDR")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kar run");
        let mut run = KarRun { child, address: String::new(), dir };
        run.address = wait_for_address(&ready, &mut run.child);
        run
    }
}

impl Drop for KarRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_address(ready: &Path, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(address) = std::fs::read_to_string(ready)
            && !address.is_empty()
        {
            return address.trim().to_owned();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("kar run exited early: {status}");
        }
        assert!(Instant::now() < deadline, "kar run did not write its ready file within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
