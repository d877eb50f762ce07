//! The end-to-end test harness: starts real `kar` runtimes and real test
//! components as child processes on 127.0.0.1, and reads the attempt logs the
//! components write.
//!
//! Every process started here is killed when its handle is dropped, so a
//! failing test leaves nothing behind.

pub mod chaos;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where cargo put the binaries of this workspace (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("target dir");
    // target/debug/deps/<test> → target/debug; a binary (target/debug/chaos)
    // already lives there.
    if dir.file_name().is_some_and(|n| n == "deps") { dir.parent().expect("target dir") } else { dir }.to_path_buf()
}

/// The path of a workspace binary, which must have been built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    path
}

/// A free TCP port on 127.0.0.1 (the OS picks it; it is free when returned).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Polls `check` until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is killed when dropped.
pub struct Process {
    child: Child,
    name: String,
}

impl Process {
    fn spawn(name: &str, command: &mut Command) -> anyhow::Result<Process> {
        let child = command.spawn().with_context(|| format!("cannot start {name}"))?;
        Ok(Process { child, name: name.to_owned() })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<Option<i32>> {
        let name = self.name.clone();
        wait_for(limit, &format!("{name} to exit"), || self.child.try_wait().ok().flatten()).map(|status| status.code())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `kar run` runtime on a fixed port and data dir, so it can be killed and
/// restarted in place.
pub struct Runtime {
    process: Option<Process>,
    /// The port it listens on, kept across restarts.
    pub port: u16,
    /// Its data dir, kept across restarts.
    pub data_dir: PathBuf,
    work_dir: PathBuf,
    extra_args: Vec<String>,
    starts: u32,
}

impl Runtime {
    /// Starts a runtime whose files live under `work_dir`.
    pub fn start(work_dir: &Path) -> anyhow::Result<Runtime> {
        Runtime::start_with(work_dir, &[])
    }

    /// Starts a runtime with extra `kar run` flags.
    pub fn start_with(work_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Runtime> {
        let mut runtime = Runtime {
            process: None,
            port: free_port(),
            data_dir: work_dir.join("data"),
            work_dir: work_dir.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            starts: 0,
        };
        runtime.restart()?;
        Ok(runtime)
    }

    /// The address components and clients use.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the runtime on the same port and data dir and waits until it
    /// listens.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let ready = self.work_dir.join(format!("ready-{}", self.starts));
        let log = std::fs::File::create(self.work_dir.join(format!("kar-{}.log", self.starts)))?;
        let mut command = Command::new(binary("kar"));
        command
            .arg("run")
            .args(["--port", &self.port.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--ready-file")
            .arg(&ready)
            .args(["--log", "info,kar_runtime=debug"])
            .args(&self.extra_args)
            .current_dir(&self.work_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut process = Process::spawn("kar", &mut command)?;
        wait_for(Duration::from_secs(30), "the runtime to listen", || {
            if process.exited() {
                return Some(());
            }
            ready.exists().then_some(())
        })?;
        if process.exited() {
            bail!("kar exited at start; see {}", self.work_dir.display());
        }
        self.process = Some(process);
        Ok(())
    }

    /// SIGKILLs the runtime.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}

/// A test component (the `testapp` binary) attached to a runtime.
pub struct Component {
    process: Process,
}

impl Component {
    /// Starts `testapp` hosting `actor_types` (comma-separated) and/or the
    /// service `svc`, logging its attempts under `log_dir`.
    pub fn start(
        runtime_addr: &str,
        log_dir: &Path,
        name: &str,
        actor_types: &str,
        service: &str,
    ) -> anyhow::Result<Component> {
        std::fs::create_dir_all(log_dir)?;
        let out = std::fs::File::create(log_dir.join(format!("{name}.out")))?;
        let mut command = Command::new(binary("testapp"));
        command
            .env("KAR_RUNTIME_ADDR", runtime_addr)
            .env("TESTAPP_LOG_DIR", log_dir)
            .env("TESTAPP_NAME", name)
            .env("TESTAPP_ACTORS", actor_types)
            .env("TESTAPP_SERVICE", service)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let process = Process::spawn(name, &mut command)?;
        Ok(Component { process })
    }

    /// SIGKILLs the component.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The component's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// One line of a test component's attempt log.
#[derive(Clone, Debug, Deserialize)]
pub struct Attempt {
    /// `start` or `end`.
    pub event: String,
    /// The invocation's request id.
    pub request_id: String,
    /// The attempt number the runtime gave.
    pub attempt: u32,
    /// `Type/id` or the service name.
    pub target: String,
    /// The method.
    pub method: String,
    /// The component's name.
    pub component: String,
    /// A free-form argument tag the test passed (e.g. a marker).
    #[serde(default)]
    pub tag: String,
    /// When it was logged (unix milliseconds).
    #[serde(default)]
    pub at_ms: u64,
}

/// Reads every attempt logged under `log_dir`.
pub fn attempts(log_dir: &Path) -> Vec<Attempt> {
    let mut all = Vec::new();
    let Ok(entries) = std::fs::read_dir(log_dir) else { return all };
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            all.extend(text.lines().filter_map(|line| serde_json::from_str::<Attempt>(line).ok()));
        }
    }
    all
}

/// How many `event`s were logged for invocations matching `filter`.
pub fn count(log_dir: &Path, event: &str, filter: impl Fn(&Attempt) -> bool) -> usize {
    attempts(log_dir).iter().filter(|a| a.event == event && filter(a)).count()
}

/// A runtime with one test component attached, and a client: the common
/// set-up of end-to-end tests.
pub struct Mesh {
    /// Keeps the work dir alive.
    pub dir: tempfile::TempDir,
    /// The runtime.
    pub runtime: Runtime,
    /// The attached components.
    pub components: Vec<Component>,
    /// A client of the runtime.
    pub client: kar_client::Client,
}

impl Mesh {
    /// Starts a runtime and a `testapp` hosting `actor_types` and `service`.
    pub async fn start(actor_types: &str, service: &str) -> anyhow::Result<Mesh> {
        let dir = tempfile::tempdir()?;
        let runtime = Runtime::start(dir.path())?;
        let client = kar_client::Client::connect(&runtime.addr()).await?;
        let mut mesh = Mesh { dir, runtime, components: Vec::new(), client };
        mesh.add_component("app", actor_types, service).await?;
        Ok(mesh)
    }

    /// Where components log their attempts.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("attempts")
    }

    /// Starts another component and waits until it is attached.
    pub async fn add_component(&mut self, name: &str, actor_types: &str, service: &str) -> anyhow::Result<usize> {
        let component = Component::start(&self.runtime.addr(), &self.log_dir(), name, actor_types, service)?;
        self.components.push(component);
        self.wait_attached(name).await?;
        Ok(self.components.len() - 1)
    }

    /// Waits (bounded) until a component named `name` is attached.
    pub async fn wait_attached(&self, name: &str) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(list) = self.client.list_components().await
                && list.iter().any(|c| c.name == name)
            {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("component {name} did not attach within 30s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until `check` holds on the attempt log.
    pub async fn wait_log(&self, what: &str, check: impl Fn(&[Attempt]) -> bool) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if check(&attempts(&self.log_dir())) {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The legacy Python component of the legacy tests (`tests/legacy/counter_app.py`).
pub fn counter_app_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("legacy").join("counter_app.py")
}

/// The legacy Python component (`counter_app.py`) started on its own (not as
/// the child of `kar run`), listening on `port` and logging its attempts
/// under `log_dir` like `testapp` does.
pub struct LegacyApp {
    process: Process,
}

impl LegacyApp {
    /// Starts `python3 counter_app.py` on 127.0.0.1:`port`, calling back the
    /// runtime at `runtime_addr`.
    pub fn start(runtime_addr: &str, port: u16, log_dir: &Path, name: &str) -> anyhow::Result<LegacyApp> {
        std::fs::create_dir_all(log_dir)?;
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log_dir.join(format!("{name}.out")))?;
        let mut command = Command::new("python3");
        command
            .arg(counter_app_script())
            .args(["--port", &port.to_string(), "--name", name])
            .arg("--log-dir")
            .arg(log_dir)
            .env("KAR_RUNTIME_ADDR", runtime_addr)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        Ok(LegacyApp { process: Process::spawn(name, &mut command)? })
    }

    /// SIGKILLs the app.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// One plain HTTP/1.1 request to `127.0.0.1:port` (a JSON client of the
/// gateway that knows nothing of KAR): returns the status and the body as
/// JSON (`null` when empty).
pub fn http_json(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use std::io::{Read as _, Write as _};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let reply = String::from_utf8(reply)?;
    let (head, body) = reply.split_once("\r\n\r\n").context("no end of headers in the reply")?;
    let status = head.split(' ').nth(1).context("no status in the reply")?.parse()?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        bail!("a chunked reply: {reply}");
    }
    let json = if body.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(body)? };
    Ok((status, json))
}
