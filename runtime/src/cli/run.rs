//! `kar run`: starts a runtime and, if a command follows `--`, that command
//! as a child component with `KAR_RUNTIME_ADDR` set. The child's exit ends
//! the runtime (with the child's exit code); SIGINT/SIGTERM end both.
//!
//! With `--app-port N` (and `--actors`, `--service`) the runtime also
//! attaches, on behalf of a legacy HTTP app on 127.0.0.1:N, the actor types
//! and service it hosts, and delivers their invocations to it as JSON POSTs
//! (see `crate::legacy`); the child then also gets `KAR_APP_PORT`.

use crate::api::Limits;
use crate::config::{Config, Overrides};
use crate::embedded::EmbeddedDb;
use crate::engine::{Engine, EngineOptions, new_runtime_id};
use crate::log::EmbeddedLog;
use crate::mesh::{HashPlacement, Mesh, MeshConfig};
use crate::sidecar::{DISTRIBUTED, EMBEDDED, SidecarInfo};
use crate::store::{EmbeddedStateStore, RedisStateStore, StateStore};
use crate::topics::{EmbeddedTopics, KafkaTopics};
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Arguments of `kar run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A TOML configuration file (default: `kar.toml` if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub dump_config: bool,
    /// The application (mesh) name.
    #[arg(long)]
    pub app: Option<String>,
    /// The address to listen on.
    #[arg(long)]
    pub host: Option<String>,
    /// The port to listen on (0 picks a free port).
    #[arg(long, short)]
    pub port: Option<u16>,
    /// Where the embedded runtime keeps its log and state.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Deactivate actor instances unused for this long (e.g. `60s`).
    #[arg(long)]
    pub actor_idle_timeout: Option<String>,
    /// Keep outcomes of completed requests this long (e.g. `1h`), for
    /// callers that repeat a request.
    #[arg(long)]
    pub outcome_retention: Option<String>,
    /// The largest payload or state value accepted, in bytes.
    #[arg(long)]
    pub max_payload_bytes: Option<usize>,
    /// Kafka bootstrap brokers (distributed deployment).
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Redis URL (distributed deployment).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Partitions per actor type and per service (distributed deployment;
    /// the same on every runtime of an app).
    #[arg(long)]
    pub partitions: Option<u32>,
    /// How long a runtime that stopped answering keeps its partitions, e.g.
    /// `10s` (distributed deployment; at least 6s).
    #[arg(long)]
    pub session_timeout: Option<String>,
    /// The tracing filter, e.g. `info` or `kar_runtime=debug`.
    #[arg(long)]
    pub log: Option<String>,
    /// The port of a legacy HTTP app on 127.0.0.1 that hosts `--actors`
    /// and/or `--service`: the runtime posts their invocations to it as JSON.
    #[arg(long)]
    pub app_port: Option<u16>,
    /// The actor types the legacy app on `--app-port` hosts (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub actors: Option<Vec<String>>,
    /// The service the legacy app on `--app-port` serves.
    #[arg(long)]
    pub service: Option<String>,
    /// Once listening, write the address (host:port) to this file.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// The component to start, with its arguments.
    #[arg(last = true)]
    pub command: Vec<String>,
}

impl RunArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            app: self.app.clone(),
            host: self.host.clone(),
            port: self.port,
            data_dir: self.data_dir.clone(),
            actor_idle_timeout: self.actor_idle_timeout.clone(),
            outcome_retention: self.outcome_retention.clone(),
            max_payload_bytes: self.max_payload_bytes,
            kafka_brokers: self.kafka_brokers.clone(),
            redis_url: self.redis_url.clone(),
            partitions: self.partitions,
            session_timeout: self.session_timeout.clone(),
            log: self.log.clone(),
            app_port: self.app_port,
            actors: self.actors.clone(),
            service: self.service.clone(),
        }
    }
}

/// Runs `kar run`.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref(), Config::environment(), &args.overrides())?;
    if args.dump_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    init_tracing(&config.log)?;
    let legacy = legacy_options(&config)?;
    crate::config::check_app_name(&config.app).map_err(|e| anyhow::anyhow!(e))?;
    let mut options = EngineOptions {
        actor_idle_timeout: config.actor_idle_timeout,
        outcome_retention: config.outcome_retention,
        ..EngineOptions::default()
    };
    let (engine, mesh) = match distributed(&config)? {
        None => {
            let db = EmbeddedDb::open(&config.data_dir)
                .with_context(|| format!("cannot open the data dir {}", config.data_dir.display()))?;
            let engine = Engine::start(
                Arc::new(EmbeddedLog::new(db.clone())),
                Arc::new(EmbeddedStateStore::new(db.clone())),
                Arc::new(EmbeddedTopics::new(db)),
                options,
            )
            .await?;
            (engine, None)
        }
        Some((brokers, redis_url)) => {
            let store: Arc<dyn StateStore> = Arc::new(RedisStateStore::connect(redis_url, &config.app).await?);
            let topics = Arc::new(KafkaTopics::new(brokers, &config.app)?);
            let runtime_id = new_runtime_id();
            let mesh_config = MeshConfig {
                brokers: brokers.to_owned(),
                app: config.app.clone(),
                partitions: config.partitions,
                session_timeout: config.session_timeout,
                replication_factor: 1,
            };
            let mesh = Mesh::connect(mesh_config, &runtime_id, store.clone()).await?;
            let placement = Arc::new(HashPlacement::new(config.partitions));
            // Kafka may evict a silent runtime from its groups as early as a
            // session timeout less one heartbeat interval (a sixth) after
            // its last heartbeat: its components give up well before that.
            options.component_lease = config.session_timeout / 3;
            let engine =
                Engine::new(runtime_id, placement, Some(Arc::new(mesh.clone())), store, topics, options).await?;
            mesh.run(engine.clone());
            (engine, Some(mesh))
        }
    };
    let listener = TcpListener::bind((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let address = listener.local_addr()?;
    let limits = Limits { max_payload_bytes: config.max_payload_bytes };

    let (stop, stopped) = watch::channel(false);
    let mut server_stopped = stopped.clone();
    let server = tokio::spawn(crate::server::serve(engine.clone(), limits, listener, async move {
        let _ = server_stopped.wait_for(|s| *s).await;
    }));
    let legacy = legacy.map(|options| {
        let engine = engine.clone();
        AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = crate::legacy::serve(engine, options).await {
                tracing::error!(error = %e, "the legacy app channel failed");
            }
        }))
    });
    let heartbeat = {
        let engine = engine.clone();
        let mesh = mesh.clone();
        let app = config.app.clone();
        let address = address.to_string();
        let started_at_ms = crate::engine::types::now_millis();
        crate::sidecar::spawn_heartbeat(
            engine.store().clone(),
            move || sidecar_info(&engine, mesh.as_ref(), &app, &address, started_at_ms),
            std::time::Duration::from_secs(2),
        )
    };
    match &mesh {
        None => {
            tracing::info!(%address, data_dir = %config.data_dir.display(), epoch = engine.epoch(), "kar runtime ready (embedded)")
        }
        Some(_) => {
            tracing::info!(%address, runtime = engine.runtime_id(), app = %config.app, "kar runtime ready (distributed)")
        }
    }
    if let Some(path) = &args.ready_file {
        std::fs::write(path, address.to_string()).with_context(|| format!("cannot write {}", path.display()))?;
    }

    let code = if args.command.is_empty() {
        wait_for_signal().await;
        ExitCode::SUCCESS
    } else {
        run_child(&args.command, &address.to_string(), config.app_port).await?
    };
    drop(legacy);
    heartbeat.abort();
    let _ = heartbeat.await;
    if let Some(mesh) = &mesh {
        // Hand the partitions over now rather than after the session timeout.
        mesh.shutdown().await;
    }
    if let Err(e) = crate::sidecar::deregister(engine.store().as_ref(), engine.runtime_id()).await {
        tracing::warn!(error = %e, "cannot leave the sidecar registry");
    }
    let _ = stop.send(true);
    match tokio::time::timeout(std::time::Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "server failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        _ => {}
    }
    Ok(code)
}

/// The Kafka brokers and Redis URL of the distributed deployment; `None` for
/// the embedded one. Setting only one of them is an error.
fn distributed(config: &Config) -> anyhow::Result<Option<(&str, &str)>> {
    match (config.kafka_brokers.as_deref(), config.redis_url.as_deref()) {
        (None, None) => Ok(None),
        (Some(_), None) => bail!("kafka_brokers is set but redis_url is not: the distributed deployment needs both"),
        (None, Some(_)) => bail!("redis_url is set but kafka_brokers is not: the distributed deployment needs both"),
        (Some(brokers), Some(redis)) => {
            if !(1..=1024).contains(&config.partitions) {
                bail!("partitions must be between 1 and 1024 (got {})", config.partitions);
            }
            if config.session_timeout < std::time::Duration::from_secs(6) {
                bail!("session_timeout must be at least 6s (Kafka's minimum)");
            }
            Ok(Some((brokers, redis)))
        }
    }
}

/// What this runtime says about itself in the sidecar registry.
fn sidecar_info(engine: &Engine, mesh: Option<&Mesh>, app: &str, address: &str, started_at_ms: u64) -> SidecarInfo {
    let components = engine.components();
    let mut actor_types: Vec<String> = components.iter().flat_map(|c| c.registration.actor_types.clone()).collect();
    actor_types.sort();
    actor_types.dedup();
    let mut services: Vec<String> = components.iter().filter_map(|c| c.registration.service.clone()).collect();
    services.sort();
    services.dedup();
    SidecarInfo {
        runtime_id: engine.runtime_id().to_owned(),
        address: address.to_owned(),
        app: app.to_owned(),
        deployment: if mesh.is_some() { DISTRIBUTED } else { EMBEDDED }.to_owned(),
        started_at_ms,
        actor_types,
        services,
        partitions: match mesh {
            Some(mesh) => mesh.owned(),
            None => vec![crate::engine::SINGLE_PARTITION.to_owned()],
        },
    }
}

/// The legacy app channel's options, if `app_port` is set; what it hosts
/// without `app_port` (or the reverse) is a configuration error.
fn legacy_options(config: &Config) -> anyhow::Result<Option<crate::legacy::Options>> {
    let service = config.service.clone().filter(|s| !s.is_empty());
    match config.app_port {
        None if config.actors.is_empty() && service.is_none() => Ok(None),
        None => bail!("actors and service name what the legacy app on app_port hosts: set app_port too"),
        Some(_) if config.actors.is_empty() && service.is_none() => {
            bail!("app_port needs actors and/or service: what the legacy app hosts")
        }
        Some(0) => bail!("app_port must not be 0"),
        Some(port) => Ok(Some(crate::legacy::Options {
            port,
            actor_types: config.actors.clone(),
            service,
            max_body_bytes: config.max_payload_bytes + 64 * 1024,
        })),
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_child(command: &[String], address: &str, app_port: Option<u16>) -> anyhow::Result<ExitCode> {
    let mut child = tokio::process::Command::new(&command[0]);
    child.args(&command[1..]).env("KAR_RUNTIME_ADDR", format!("http://{address}"));
    if let Some(port) = app_port {
        child.env("KAR_APP_PORT", port.to_string());
    }
    let mut child = child.kill_on_drop(true).spawn().with_context(|| format!("cannot start {}", command[0]))?;
    tokio::select! {
        status = child.wait() => {
            let status = status?;
            tracing::info!(%status, "component exited; stopping the runtime");
            Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
        }
        _ = wait_for_signal() => {
            if let Some(pid) = child.id() {
                // Ask the component to stop first; kill it if it lingers.
                let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            }
            if tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn init_tracing(filter: &str) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).with_context(|| format!("bad log filter {filter:?}"))?;
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    Ok(())
}
