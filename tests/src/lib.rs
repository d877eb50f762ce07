//! The end-to-end test harness: starts real `kar` runtimes and real test
//! components as child processes on 127.0.0.1, and reads the attempt logs the
//! components write.
//!
//! * [`Mesh`]: one embedded runtime, its components and a client;
//! * [`Cluster`]: the distributed deployment — a private [`Redis`], several
//!   runtimes on the Kafka of `KAFKA_BROKERS` forming one mesh, components
//!   attached to chosen runtimes, a client of each; runtimes can be
//!   SIGKILLed, restarted, SIGSTOPped and resumed.
//!
//! Every process started here is killed when its handle is dropped, so a
//! failing test leaves nothing behind.

pub mod chaos;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

    /// The process id of the running runtime (none after [`kill`](Self::kill)).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// SIGSTOPs the runtime: it keeps its sockets but does nothing until
    /// [`resume`](Self::resume).
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("STOP")
    }

    /// SIGCONTs a paused runtime.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("the runtime is not running")?;
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed: {status}");
        }
        Ok(())
    }

    /// Where the runtime's files live (its logs, one per start, are
    /// `kar-<n>.log` there).
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The log (stdout and stderr) of the current or last start.
    pub fn log_file(&self) -> PathBuf {
        self.work_dir.join(format!("kar-{}.log", self.starts))
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
    /// `start`, `end`, or `abort` (the SDK abandoned the attempt).
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

/// The tail (`lines` last lines) of a text file, or a note that it cannot
/// be read.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} cannot be read: {e})", path.display()),
    }
}

/// Runs `work` for at most `limit`: a test step that hangs fails instead.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| bail!("{what} did not finish within {limit:?}"))
}

/// A private `redis-server` on a free 127.0.0.1 port, its data (an
/// append-only file, fsynced every second; no RDB snapshots) and its log in
/// a directory of the caller's; killed when dropped.
pub struct Redis {
    process: Process,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts it with its files in `dir` and waits until it answers `PING`.
    pub fn start(dir: &Path) -> anyhow::Result<Redis> {
        std::fs::create_dir_all(dir)?;
        let log = dir.join("redis.log");
        let mut failure = String::new();
        // A port the OS said was free can be taken before the server binds
        // it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut command = Command::new("redis-server");
            command
                .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
                .args(["--appendonly", "yes", "--appendfsync", "everysec"])
                .arg("--dir")
                .arg(dir)
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = match command.spawn() {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "redis-server is not installed (not found on PATH): run `deploy/redis/start.sh --install-only` \
                     (it installs Debian's redis-server) or `apt-get install -y redis-server`"
                ),
                Err(e) => return Err(e).context("cannot run redis-server"),
            };
            let mut process = Process { child, name: "redis-server".into() };
            let ready = wait_for(Duration::from_secs(15), "redis-server to answer PING", || {
                if process.exited() {
                    return Some(false);
                }
                redis_ping(port).then_some(true)
            });
            match ready {
                Ok(true) => return Ok(Redis { process, port, dir: dir.to_path_buf() }),
                Ok(false) => failure = format!("redis-server exited at start; its log:\n{}", log_tail(&log, 20)),
                Err(e) => failure = format!("{e}; its log:\n{}", log_tail(&log, 20)),
            }
        }
        bail!("could not start a private redis-server: {failure}")
    }

    /// The URL runtimes connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its data and log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

fn redis_ping(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// The Kafka brokers of the distributed tests and chaos runs, from
/// `KAFKA_BROKERS`. Unset is an error, not a skip.
pub fn kafka_brokers() -> anyhow::Result<String> {
    match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => Ok(brokers),
        _ => bail!(
            "KAFKA_BROKERS is not set: the distributed tests need a Kafka broker. The test command \
             (deploy/test.sh) starts one and exports KAFKA_BROKERS; by hand, start one with \
             `deploy/kafka/start.sh --port 39092` and export the KAFKA_BROKERS=... line it prints"
        ),
    }
}

/// A mesh (`--app`) name that no other test or run uses:
/// `<prefix><pid>-<nanoseconds>-<n>`. Kafka topics and groups outlive a test,
/// so each test gets a fresh mesh.
pub fn unique_app_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// How long a runtime of a mesh may stay silent before Kafka hands its
/// partitions to the others: short, so that failover tests are quick.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// The `kar run` flags that make a runtime a member of the distributed mesh
/// `app`; every distributed runtime of the harness is started with these.
pub fn distributed_args(brokers: &str, redis_url: &str, app: &str) -> Vec<String> {
    let session = format!("{}ms", SESSION_TIMEOUT.as_millis());
    ["--kafka-brokers", brokers, "--redis-url", redis_url, "--app", app, "--session-timeout", &session]
        .map(str::to_owned)
        .to_vec()
}

/// The clusters of one test process take turns: their failover timing
/// (session timeouts, rebalances) needs the machine.
static CLUSTER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test component of a [`Cluster`].
pub struct Member {
    /// Its name (also the stem of its attempt log files).
    pub name: String,
    /// The runtime it attaches to.
    pub runtime: usize,
    /// The actor types it hosts (comma-separated).
    pub actor_types: String,
    /// The service it serves (empty: none).
    pub service: String,
    component: Component,
}

/// A distributed mesh for one test: a private Redis, N `kar run` runtimes
/// on the Kafka of `KAFKA_BROKERS` with a mesh name of their own, test
/// components attached to chosen runtimes, and a client of each runtime.
///
/// Each runtime has its own port and work dir (`<dir>/rt<i>`, with one log
/// per start, `kar-<n>.log`); components log their attempts under
/// `<dir>/attempts`. Everything is killed when the cluster is dropped; the
/// work dir is deleted unless the test failed (see [`finish`](Self::finish))
/// or panicked, in which case it is kept and its path printed.
pub struct Cluster {
    // Dropped in this order: components, runtimes, Redis, then the dir.
    components: Vec<Member>,
    runtimes: Vec<Runtime>,
    clients: Vec<kar_client::Client>,
    redis: Redis,
    app: String,
    path: PathBuf,
    dir: Option<tempfile::TempDir>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts Redis and `runtimes` runtimes forming one mesh (waiting for
    /// its turn if another cluster of this process runs).
    pub async fn start(runtimes: usize) -> anyhow::Result<Cluster> {
        let turn = CLUSTER_TURN.lock().await;
        let brokers = kafka_brokers()?;
        let dir = tempfile::Builder::new().prefix("kar-cluster-").tempdir()?;
        let path = dir.path().to_path_buf();
        let redis = Redis::start(&path.join("redis"))?;
        let app = unique_app_name("t");
        let args = distributed_args(&brokers, &redis.url(), &app);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut started = Vec::new();
        for i in 0..runtimes {
            let work = path.join(format!("rt{i}"));
            std::fs::create_dir_all(&work)?;
            let runtime = Runtime::start_with(&work, &args).map_err(|e| {
                anyhow::anyhow!("runtime {i} did not start: {e:#}\nits log:\n{}", log_tail(&work.join("kar-1.log"), 40))
            })?;
            started.push(runtime);
        }
        let clients =
            started.iter().map(|r| kar_client::Client::connect_lazy(&r.addr())).collect::<Result<Vec<_>, _>>()?;
        Ok(Cluster {
            components: Vec::new(),
            runtimes: started,
            clients,
            redis,
            app,
            path,
            dir: Some(dir),
            _turn: turn,
        })
    }

    /// The mesh name the runtimes share.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The URL of the cluster's Redis.
    pub fn redis_url(&self) -> String {
        self.redis.url()
    }

    /// The work dir.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where components log their attempts.
    pub fn log_dir(&self) -> PathBuf {
        self.path.join("attempts")
    }

    /// How many runtimes the cluster has.
    pub fn size(&self) -> usize {
        self.runtimes.len()
    }

    /// Runtime `i`.
    pub fn runtime(&self, i: usize) -> &Runtime {
        &self.runtimes[i]
    }

    /// A client of runtime `i` (it reconnects after a restart).
    pub fn client(&self, i: usize) -> &kar_client::Client {
        &self.clients[i]
    }

    /// The components started so far (killed ones included).
    pub fn members(&self) -> &[Member] {
        &self.components
    }

    /// The runtime the component named `name` attaches to.
    pub fn runtime_of(&self, name: &str) -> Option<usize> {
        self.components.iter().find(|m| m.name == name).map(|m| m.runtime)
    }

    /// Starts a `testapp` named `name` hosting `actor_types` and `service`
    /// on runtime `runtime`, waits until it is attached and returns its
    /// index.
    pub async fn add_component(
        &mut self,
        runtime: usize,
        name: &str,
        actor_types: &str,
        service: &str,
    ) -> anyhow::Result<usize> {
        let component = Component::start(&self.runtimes[runtime].addr(), &self.log_dir(), name, actor_types, service)?;
        self.components.push(Member {
            name: name.to_owned(),
            runtime,
            actor_types: actor_types.to_owned(),
            service: service.to_owned(),
            component,
        });
        self.wait_attached(runtime, name).await?;
        Ok(self.components.len() - 1)
    }

    /// SIGKILLs component `c`.
    pub fn kill_component(&mut self, c: usize) {
        self.components[c].component.kill();
    }

    /// Starts component `c` again (same name, runtime, types) and waits until
    /// it is attached.
    pub async fn restart_component(&mut self, c: usize) -> anyhow::Result<()> {
        let member = &mut self.components[c];
        member.component.kill();
        member.component = Component::start(
            &self.runtimes[member.runtime].addr(),
            &self.path.join("attempts"),
            &member.name,
            &member.actor_types,
            &member.service,
        )?;
        let (runtime, name) = (member.runtime, member.name.clone());
        self.wait_attached(runtime, &name).await
    }

    /// SIGKILLs runtime `i`.
    pub fn kill_runtime(&mut self, i: usize) {
        self.runtimes[i].kill();
    }

    /// Starts runtime `i` again with the same flags, port and work dir.
    pub fn restart_runtime(&mut self, i: usize) -> anyhow::Result<()> {
        let runtime = &mut self.runtimes[i];
        runtime.kill();
        runtime.restart().map_err(|e| {
            anyhow::anyhow!("runtime {i} did not restart: {e:#}\nits log:\n{}", log_tail(&runtime.log_file(), 40))
        })
    }

    /// SIGSTOPs runtime `i`.
    pub fn pause_runtime(&self, i: usize) -> anyhow::Result<()> {
        self.runtimes[i].pause()
    }

    /// SIGCONTs runtime `i`.
    pub fn resume_runtime(&self, i: usize) -> anyhow::Result<()> {
        self.runtimes[i].resume()
    }

    /// Waits (bounded) until runtime `runtime` lists a component named `name`.
    pub async fn wait_attached(&self, runtime: usize, name: &str) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(list) = self.clients[runtime].list_components().await
                && list.iter().any(|c| c.name == name)
            {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("component {name} did not attach to runtime {runtime} within 60s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most 60 s) until `check` holds on the attempt log.
    pub async fn wait_log(&self, what: &str, check: impl Fn(&[Attempt]) -> bool) -> anyhow::Result<()> {
        self.wait_log_for(Duration::from_secs(60), what, check).await
    }

    /// Waits (at most `limit`) until `check` holds on the attempt log.
    pub async fn wait_log_for(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&[Attempt]) -> bool,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if check(&attempts(&self.log_dir())) {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("timed out after {limit:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every attempt logged so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        attempts(&self.log_dir())
    }

    /// What to look at when a test failed: where the work dir is, and the
    /// end of each runtime's current log and of each component's output.
    pub fn diagnosis(&self) -> String {
        let mut out = format!("cluster {} in {}", self.app, self.path.display());
        for (i, runtime) in self.runtimes.iter().enumerate() {
            let state = runtime.pid().map(|pid| format!("pid {pid}")).unwrap_or_else(|| "killed".into());
            out.push_str(&format!(
                "\n--- runtime {i} ({state}, port {}), {}:\n{}",
                runtime.port,
                runtime.log_file().display(),
                log_tail(&runtime.log_file(), 40)
            ));
        }
        for member in &self.components {
            let file = self.log_dir().join(format!("{}.out", member.name));
            out.push_str(&format!(
                "\n--- component {} on runtime {}, {}:\n{}",
                member.name,
                member.runtime,
                file.display(),
                log_tail(&file, 5)
            ));
        }
        out
    }

    /// Keeps the work dir (logs, attempt logs, Redis data) after the cluster
    /// is dropped; returns where it is.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.path.clone()
    }

    /// Ends a test with its outcome: on failure, keeps the work dir and
    /// appends the [`diagnosis`](Self::diagnosis) to the error. Stops every
    /// process either way.
    pub fn finish(mut self, outcome: anyhow::Result<()>) -> anyhow::Result<()> {
        outcome.map_err(|e| {
            let diagnosis = self.diagnosis();
            self.keep();
            anyhow::anyhow!("{e:#}\n\nwork dir kept: {diagnosis}")
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() && self.dir.is_some() {
            eprintln!("the test panicked; work dir kept: {}", self.diagnosis());
            self.keep();
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
