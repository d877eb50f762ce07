//! The configuration of `kar run`, layered: built-in defaults, then a TOML
//! file (`--config`, default `kar.toml` if present), then `KAR_*` environment
//! variables, then command-line flags. `kar run --dump-config` prints the
//! result.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The effective configuration of a runtime.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The application (mesh) name.
    pub app: String,
    /// The address to listen on.
    pub host: String,
    /// The port to listen on (0 picks a free one).
    pub port: u16,
    /// Where the embedded deployment keeps its log and state.
    pub data_dir: PathBuf,
    /// An actor instance unused for this long is deactivated.
    #[serde(with = "humantime_serde")]
    pub actor_idle_timeout: Duration,
    /// How long the outcome of a completed request is kept, so that a caller
    /// repeating the request gets it instead of running it again.
    #[serde(with = "humantime_serde")]
    pub outcome_retention: Duration,
    /// The largest payload or state value accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Kafka bootstrap brokers (distributed deployment).
    pub kafka_brokers: Option<String>,
    /// Redis URL (distributed deployment).
    pub redis_url: Option<String>,
    /// Partitions per actor type and per service (distributed deployment;
    /// every runtime of an app must use the same number).
    pub partitions: u32,
    /// How long a runtime that stopped answering keeps its partitions
    /// (distributed deployment; Kafka's consumer group session timeout).
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// The tracing filter (e.g. `info`, `kar_runtime=debug`).
    pub log: String,
    /// The port of a legacy HTTP app on 127.0.0.1 to deliver invocations to
    /// as JSON POSTs (see `legacy`); unset for none.
    pub app_port: Option<u16>,
    /// The actor types the legacy app hosts (a list, or a comma-separated
    /// string as in `KAR_ACTORS=A,B`).
    #[serde(default, deserialize_with = "comma_list")]
    pub actors: Vec<String>,
    /// The service the legacy app serves.
    pub service: Option<String>,
}

/// Checks an application name: it prefixes Kafka topics (`kar.<app>.…`) and
/// Redis keys (`kar:<app>:…`), so it is limited to ASCII letters, digits,
/// `_` and `-` (a `.` would make one app's topics look like another's).
pub fn check_app_name(app: &str) -> Result<(), String> {
    if app.is_empty() || app.len() > 100 || !app.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        return Err(format!("invalid app name {app:?}: use 1 to 100 ASCII letters, digits, '_' or '-'"));
    }
    Ok(())
}

/// A list given as a list or as one comma-separated string.
fn comma_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        One(String),
        Many(Vec<String>),
    }
    let items = match List::deserialize(deserializer)? {
        List::One(s) => s.split(',').map(str::to_owned).collect(),
        List::Many(v) => v,
    };
    Ok(items.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
}

impl Default for Config {
    fn default() -> Self {
        Self {
            app: "default".into(),
            host: "127.0.0.1".into(),
            port: 3500,
            data_dir: PathBuf::from(".kar-data"),
            actor_idle_timeout: Duration::from_secs(60),
            outcome_retention: Duration::from_secs(3600),
            max_payload_bytes: crate::api::Limits::default().max_payload_bytes,
            kafka_brokers: None,
            redis_url: None,
            partitions: 4,
            session_timeout: Duration::from_secs(10),
            log: "info".into(),
            app_port: None,
            actors: Vec::new(),
            service: None,
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers be.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome_retention: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_payload_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_brokers: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actors: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// A configuration that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct Error(String);

impl Config {
    /// Layers the defaults, the file, the environment and the overrides.
    /// `file` must exist when given; without it `kar.toml` is read if present.
    pub fn load(file: Option<&Path>, env: Env, overrides: &Overrides) -> Result<Config, Error> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(Error(format!("config file {} does not exist", path.display())));
            }
            Some(path) => figment = figment.merge(Toml::file(path)),
            None => figment = figment.merge(Toml::file("kar.toml")),
        }
        figment.merge(env).merge(Serialized::defaults(overrides)).extract().map_err(|e| Error(e.to_string()))
    }

    /// The `KAR_*` environment layer.
    pub fn environment() -> Env {
        Env::prefixed("KAR_").only(&[
            "app",
            "host",
            "port",
            "data_dir",
            "actor_idle_timeout",
            "outcome_retention",
            "max_payload_bytes",
            "kafka_brokers",
            "redis_url",
            "partitions",
            "session_timeout",
            "log",
            "app_port",
            "actors",
            "service",
        ])
    }

    /// The configuration as TOML, for `--dump-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's test jail returns figment::Error
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("kar.toml", "port = 4000\napp = \"from-file\"\ndata_dir = \"file-dir\"")?;
            jail.set_env("KAR_PORT", "5000");
            jail.set_env("KAR_ACTOR_IDLE_TIMEOUT", "5s");
            let overrides = Overrides { data_dir: Some("flag-dir".into()), ..Overrides::default() };
            let config = Config::load(None, Config::environment(), &overrides).map_err(|e| e.to_string())?;
            assert_eq!(config.app, "from-file");
            assert_eq!(config.port, 5000, "env beats file");
            assert_eq!(config.data_dir, PathBuf::from("flag-dir"), "flags beat everything");
            assert_eq!(config.actor_idle_timeout, Duration::from_secs(5));
            assert_eq!(config.host, "127.0.0.1", "defaults fill the rest");
            Ok(())
        });
    }

    #[test]
    fn the_legacy_app_is_configured_from_env_file_and_flags() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KAR_APP_PORT", "8080");
            jail.set_env("KAR_ACTORS", "Counter, Other");
            let config = Config::load(None, Config::environment(), &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(config.app_port, Some(8080));
            assert_eq!(config.actors, vec!["Counter".to_owned(), "Other".to_owned()]);
            assert_eq!(config.service, None);
            jail.create_file("kar.toml", "actors = [\"A\"]\nservice = \"s\"")?;
            let overrides = Overrides { app_port: Some(9090), ..Overrides::default() };
            jail.set_env("KAR_ACTORS", "");
            let config = Config::load(None, Config::environment(), &overrides).map_err(|e| e.to_string())?;
            assert_eq!(config.app_port, Some(9090));
            assert!(config.actors.is_empty(), "the environment beats the file");
            assert_eq!(config.service.as_deref(), Some("s"));
            let round_trip: Config = toml::from_str(&config.to_toml()).map_err(|e| e.to_string())?;
            assert_eq!(round_trip, config);
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_is_reported_with_its_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KAR_PORT", "not-a-port");
            let error = Config::load(None, Config::environment(), &Overrides::default()).expect_err("bad port");
            assert!(error.to_string().contains("port"), "{error}");
            Ok(())
        });
    }
}
