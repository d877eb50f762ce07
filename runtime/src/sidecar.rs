//! The sidecar registry: every runtime of an application keeps an entry about
//! itself ([`SidecarInfo`]) in the application's store, refreshed by a
//! heartbeat and expiring when the heartbeat stops, so any runtime can list
//! the whole mesh (`kar.v1.MeshService/ListSidecars`, `kar get sidecars`).
//!
//! An entry is the JSON encoding of [`SidecarInfo`] under the runtime's id
//! ([`StateStore::put_sidecar`]); it lives three heartbeat periods, so one
//! or two missed beats (a slow store, a pause) do not drop a live runtime,
//! and a crashed one disappears within seconds.
//!
//! This module knows the [`StateStore`] trait only: nothing of the engine,
//! gRPC or a particular backend.

use crate::store::{self, StateStore};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// [`SidecarInfo::deployment`] of a runtime with an embedded log and store.
pub const EMBEDDED: &str = "embedded";
/// [`SidecarInfo::deployment`] of a runtime of the distributed mesh (Kafka
/// and Redis).
pub const DISTRIBUTED: &str = "distributed";

/// How many heartbeat periods an entry outlives its last refresh.
const TTL_PERIODS: u32 = 3;

/// What a runtime says about itself in the registry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SidecarInfo {
    /// The runtime's id (unique in the mesh).
    pub runtime_id: String,
    /// The `host:port` it serves gRPC and the JSON API on.
    pub address: String,
    /// The application (mesh) it belongs to.
    pub app: String,
    /// [`EMBEDDED`] or [`DISTRIBUTED`].
    pub deployment: String,
    /// When it started, in ms since the Unix epoch.
    pub started_at_ms: u64,
    /// The actor types its components host.
    #[serde(default)]
    pub actor_types: Vec<String>,
    /// The services its components serve.
    #[serde(default)]
    pub services: Vec<String>,
    /// The partitions it owns, e.g. `actor.Slow.3`.
    #[serde(default)]
    pub partitions: Vec<String>,
}

impl SidecarInfo {
    /// The JSON encoding stored in the registry.
    pub fn to_json(&self) -> Bytes {
        // Strings, integers and lists of strings: serializing cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a registry entry.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }
}

/// Registers the runtime described by `info` now and every `period` after
/// (calling `info` each time, so the entry follows what the runtime hosts),
/// each entry living `3 × period`. A failed refresh is logged and retried at
/// the next beat.
///
/// The task runs until aborted. To leave the mesh cleanly, abort it, await
/// the handle, then [`deregister`], so no beat re-registers the runtime
/// afterwards.
pub fn spawn_heartbeat(
    store: Arc<dyn StateStore>,
    info: impl Fn() -> SidecarInfo + Send + Sync + 'static,
    period: Duration,
) -> JoinHandle<()> {
    // `interval` panics on a zero period.
    let period = period.max(Duration::from_millis(1));
    let ttl = period * TTL_PERIODS;
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(period);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            beat.tick().await;
            let info = info();
            if let Err(error) = store.put_sidecar(&info.runtime_id, info.to_json(), ttl).await {
                tracing::warn!(runtime_id = %info.runtime_id, %error, "sidecar heartbeat failed");
            }
        }
    })
}

/// Removes the runtime `runtime_id` from the registry (see
/// [`spawn_heartbeat`] for the order of shutdown).
pub async fn deregister(store: &dyn StateStore, runtime_id: &str) -> store::Result<()> {
    store.remove_sidecar(runtime_id).await
}

/// The live runtimes of the registry, ordered by runtime id. An entry that
/// does not decode (written by an incompatible version) is logged and left
/// out rather than hiding the others.
pub async fn list(store: &dyn StateStore) -> store::Result<Vec<SidecarInfo>> {
    let entries = store.sidecars().await?;
    Ok(entries
        .into_iter()
        .filter_map(|(runtime_id, bytes)| match SidecarInfo::from_json(&bytes) {
            Ok(info) => Some(info),
            Err(error) => {
                tracing::warn!(%runtime_id, %error, "skipping a sidecar entry that does not decode");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedDb;
    use crate::store::EmbeddedStateStore;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    fn info(runtime_id: &str) -> SidecarInfo {
        SidecarInfo {
            runtime_id: runtime_id.into(),
            address: "127.0.0.1:3500".into(),
            app: "shop".into(),
            deployment: DISTRIBUTED.into(),
            started_at_ms: 1_700_000_000_123,
            actor_types: vec!["Cart".into(), "Slow".into()],
            services: vec!["pricing".into()],
            partitions: vec!["actor.Slow.3".into(), "service.pricing.0".into()],
        }
    }

    /// Polls `list` until `done` holds of it; an expiring heartbeat offers
    /// nothing to await.
    async fn wait_for(store: &dyn StateStore, done: impl Fn(&[SidecarInfo]) -> bool) -> Vec<SidecarInfo> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = list(store).await.expect("list");
            if done(&listed) {
                return listed;
            }
            assert!(Instant::now() < deadline, "the registry never reached the expected state: {listed:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn sidecar_info_round_trips_through_json() {
        let original = info("rt-1");
        let json: serde_json::Value = serde_json::from_slice(&original.to_json()).expect("valid JSON");
        assert_eq!(json["runtime_id"], "rt-1");
        assert_eq!(json["partitions"][0], "actor.Slow.3");
        assert_eq!(SidecarInfo::from_json(&original.to_json()).expect("decode"), original);
    }

    #[test]
    fn missing_lists_decode_as_empty() {
        let json = br#"{"runtime_id":"r","address":"a:1","app":"x","deployment":"embedded","started_at_ms":5}"#;
        let decoded = SidecarInfo::from_json(json).expect("decode");
        assert!(decoded.actor_types.is_empty() && decoded.services.is_empty() && decoded.partitions.is_empty());
    }

    #[tokio::test]
    async fn the_heartbeat_registers_refreshes_and_deregisters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn StateStore> = Arc::new(EmbeddedStateStore::new(EmbeddedDb::open(dir.path()).expect("open")));
        store.put_sidecar("garbage", Bytes::from_static(b"not json"), Duration::from_secs(60)).await.expect("put");
        let beats = Arc::new(AtomicUsize::new(0));
        let counted = beats.clone();
        let heartbeat = spawn_heartbeat(
            store.clone(),
            move || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                SidecarInfo { partitions: vec![format!("beat.{n}")], ..info("rt-1") }
            },
            Duration::from_millis(20),
        );

        let listed = wait_for(store.as_ref(), |l| !l.is_empty()).await;
        assert_eq!(listed[0].runtime_id, "rt-1", "undecodable entries are left out");
        wait_for(store.as_ref(), |l| l.first().is_some_and(|i| i.partitions != ["beat.0"])).await;

        heartbeat.abort();
        let _ = heartbeat.await;
        deregister(store.as_ref(), "rt-1").await.expect("deregister");
        assert!(list(store.as_ref()).await.expect("list").is_empty());
        assert!(beats.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn a_stopped_heartbeat_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn StateStore> = Arc::new(EmbeddedStateStore::new(EmbeddedDb::open(dir.path()).expect("open")));
        let heartbeat = spawn_heartbeat(store.clone(), || info("rt-1"), Duration::from_millis(20));
        wait_for(store.as_ref(), |l| l.len() == 1).await;
        heartbeat.abort();
        let _ = heartbeat.await;
        wait_for(store.as_ref(), |l| l.is_empty()).await;
    }
}
