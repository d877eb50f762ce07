//! A Kafka broker for the tests: the one named by `KAFKA_BROKERS` if set,
//! else a private one started with `deploy/kafka/start.sh` on a free port in
//! a temporary directory, shared by the tests that overlap in time and
//! stopped (and its directory deleted) when the last of them drops it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

/// A broker the tests may use.
pub(crate) struct TestBroker {
    /// Its `bootstrap.servers`.
    pub(crate) brokers: String,
    /// The directory of a broker this process started (stopped on drop).
    started: Option<tempfile::TempDir>,
}

static SHARED: Mutex<Weak<TestBroker>> = Mutex::new(Weak::new());

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The broker for a test: `KAFKA_BROKERS`, or a private one (see the module docs).
pub(crate) fn broker() -> Arc<TestBroker> {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(broker) = shared.upgrade() {
        return broker;
    }
    let broker = Arc::new(match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => TestBroker { brokers, started: None },
        _ => start(),
    });
    *shared = Arc::downgrade(&broker);
    broker
}

fn start() -> TestBroker {
    let dir = tempfile::Builder::new().prefix("kar-test-kafka-").tempdir().expect("tempdir for kafka");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let output = Command::new(repo_root().join("deploy/kafka/start.sh"))
        .args(["--port", &port, "--dir"])
        .arg(dir.path())
        .output()
        .expect("run deploy/kafka/start.sh");
    let broker = TestBroker { brokers: format!("127.0.0.1:{port}"), started: Some(dir) };
    assert!(output.status.success(), "deploy/kafka/start.sh failed: {}", String::from_utf8_lossy(&output.stderr));
    broker
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(dir) = self.started.take() {
            let stopped = Command::new(repo_root().join("deploy/kafka/stop.sh"))
                .arg("--dir")
                .arg(dir.path())
                .arg("--clean")
                .output();
            if !stopped.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("stopping the test broker in {} failed: {stopped:?}", dir.path().display());
            }
        }
    }
}
