//! A private `redis-server` for tests: started on a free 127.0.0.1 port in a
//! temporary directory, killed when dropped.
//!
//! A missing `redis-server` is a test failure, not a skip: the message says
//! how to install it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer `PING` after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running private `redis-server`.
pub(crate) struct RedisTestServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    persistent: bool,
}

impl RedisTestServer {
    /// A server without persistence (`--save "" --appendonly no`).
    pub(crate) fn start() -> Self {
        Self::start_with(false)
    }

    /// A server with an append-only file, so its data survives
    /// [`restart`](Self::restart).
    pub(crate) fn start_persistent() -> Self {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        // A port picked by the OS can be taken by someone else before the
        // server binds it; try a few.
        let mut last_failure = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn(dir.path(), port, persistent);
            match wait_ready(&mut child, port, dir.path()) {
                Ok(()) => return Self { child: Some(child), dir, port, persistent },
                Err(failure) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_failure = failure;
                }
            }
        }
        panic!("could not start a private redis-server: {last_failure}");
    }

    /// The URL to connect to it.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and
    /// directory.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let mut child = spawn(self.dir.path(), self.port, self.persistent);
        if let Err(failure) = wait_ready(&mut child, self.port, self.dir.path()) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("could not restart the private redis-server: {failure}");
        }
        self.child = Some(child);
    }

    /// Kills the server; [`restart`](Self::restart) starts it again.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisTestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local address").port()
}

fn spawn(dir: &Path, port: u16, persistent: bool) -> Child {
    let result = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", if persistent { "yes" } else { "no" }])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match result {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "redis-server is not installed (not found on PATH); the Redis store tests need it. \
             Run deploy/redis/start.sh once (it installs Debian's redis-server) or \
             `apt-get install -y redis-server`."
        ),
        Err(e) => panic!("could not run redis-server: {e}"),
    }
}

/// Waits until the server answers `PING`, or says why it did not.
fn wait_ready(child: &mut Child, port: u16, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited with {status}; its log:\n{}", log_tail(dir)));
        }
        if ping(port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "redis-server on port {port} did not answer PING within {READY_TIMEOUT:?}; its log:\n{}",
                log_tail(dir)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
