//! `StateService`: actor state, read and written directly in the store.

use super::{Limits, convert, status};
use crate::engine::Engine;
use crate::store::{Entry, StateStore, Update};
use kar_proto::v1::{self, state_service_server::StateService};
use std::collections::HashMap;
use tonic::{Request, Response, Status};

/// Serves `kar.v1.StateService`.
pub struct StateApi {
    engine: Engine,
    limits: Limits,
}

impl StateApi {
    /// The service over `engine`'s store.
    pub fn new(engine: Engine, limits: Limits) -> Self {
        Self { engine, limits }
    }

    /// The store a state write goes to: fenced by the invocation that makes
    /// it, if a handler does (its `kar-caller-id`).
    fn writer(&self, metadata: &tonic::metadata::MetadataMap) -> Result<std::sync::Arc<dyn StateStore>, Status> {
        self.engine.state_writer(convert::caller_id(metadata)?).map_err(status::from_engine)
    }
}

fn required(value: &str, field: &str) -> Result<String, Status> {
    if value.is_empty() {
        return Err(status::invalid(field, &format!("{field} is required")));
    }
    Ok(value.to_owned())
}

/// The (submap, key) a key/subkey pair addresses: `key` alone is a top-level
/// entry; `key` + `subkey` is entry `subkey` of submap `key`.
fn address(key: &str, subkey: &str) -> Result<(String, String), Status> {
    let key = required(key, "key")?;
    Ok(if subkey.is_empty() { (String::new(), key) } else { (key, subkey.to_owned()) })
}

#[tonic::async_trait]
impl StateService for StateApi {
    async fn get(&self, request: Request<v1::GetRequest>) -> Result<Response<v1::GetResponse>, Status> {
        let r = request.into_inner();
        let actor = convert::actor_ref(r.actor.as_ref())?;
        let (submap, key) = address(&r.key, &r.subkey)?;
        let value = self.engine.store().get(&actor, &submap, &key).await.map_err(status::from_store)?;
        Ok(Response::new(v1::GetResponse { found: value.is_some(), value: value.map(|b| convert::decode_value(&b)) }))
    }

    async fn set(&self, request: Request<v1::SetRequest>) -> Result<Response<v1::SetResponse>, Status> {
        let store = self.writer(request.metadata())?;
        let r = request.into_inner();
        let actor = convert::actor_ref(r.actor.as_ref())?;
        let (submap, key) = address(&r.key, &r.subkey)?;
        let value = convert::encode_value(r.value.as_ref(), "value", self.limits.max_payload_bytes)?;
        let created = store.set(&actor, Entry { submap, key, value }).await.map_err(status::from_store)?;
        Ok(Response::new(v1::SetResponse { created }))
    }

    async fn delete(&self, request: Request<v1::DeleteRequest>) -> Result<Response<v1::DeleteResponse>, Status> {
        let store = self.writer(request.metadata())?;
        let r = request.into_inner();
        let actor = convert::actor_ref(r.actor.as_ref())?;
        let (submap, key) = address(&r.key, &r.subkey)?;
        let deleted = store.delete(&actor, &submap, &key).await.map_err(status::from_store)?;
        Ok(Response::new(v1::DeleteResponse { deleted }))
    }

    async fn get_all(&self, request: Request<v1::GetAllRequest>) -> Result<Response<v1::GetAllResponse>, Status> {
        let r = request.into_inner();
        let actor = convert::actor_ref(r.actor.as_ref())?;
        let entries = self.engine.store().get_all(&actor).await.map_err(status::from_store)?;
        let mut response = v1::GetAllResponse::default();
        for entry in entries {
            let value = convert::decode_value(&entry.value);
            if entry.submap.is_empty() {
                response.entries.insert(entry.key, value);
            } else {
                response.submaps.entry(entry.submap).or_default().entries.insert(entry.key, value);
            }
        }
        Ok(Response::new(response))
    }

    async fn update(&self, request: Request<v1::UpdateRequest>) -> Result<Response<v1::UpdateResponse>, Status> {
        let store = self.writer(request.metadata())?;
        let r = request.into_inner();
        let actor = convert::actor_ref(r.actor.as_ref())?;
        let limit = self.limits.max_payload_bytes;
        let mut update = Update::default();
        for key in r.removals {
            update.removals.push((String::new(), required(&key, "removals")?));
        }
        for (submap, keys) in r.submap_removals {
            let submap = required(&submap, "submap_removals")?;
            for key in keys.keys {
                update.removals.push((submap.clone(), required(&key, "submap_removals")?));
            }
        }
        for (key, value) in r.updates {
            let field = format!("updates[{key}]");
            let key = required(&key, "updates")?;
            update.updates.push(Entry {
                submap: String::new(),
                key,
                value: convert::encode_value(Some(&value), &field, limit)?,
            });
        }
        for (submap, entries) in r.submap_updates {
            let submap = required(&submap, "submap_updates")?;
            for (key, value) in entries.entries {
                let field = format!("submap_updates[{submap}][{key}]");
                let key = required(&key, "submap_updates")?;
                update.updates.push(Entry {
                    submap: submap.clone(),
                    key,
                    value: convert::encode_value(Some(&value), &field, limit)?,
                });
            }
        }
        let counts = store.update(&actor, update).await.map_err(status::from_store)?;
        Ok(Response::new(v1::UpdateResponse { added: counts.added, removed: counts.removed }))
    }

    async fn delete_all(
        &self,
        request: Request<v1::DeleteAllRequest>,
    ) -> Result<Response<v1::DeleteAllResponse>, Status> {
        let store = self.writer(request.metadata())?;
        let r = request.into_inner();
        let actor = convert::actor_ref(r.actor.as_ref())?;
        let removed = store.delete_all(&actor).await.map_err(status::from_store)?;
        Ok(Response::new(v1::DeleteAllResponse { removed }))
    }

    async fn get_submap(
        &self,
        request: Request<v1::GetSubmapRequest>,
    ) -> Result<Response<v1::GetSubmapResponse>, Status> {
        let r = request.into_inner();
        let actor = convert::actor_ref(r.actor.as_ref())?;
        let submap = required(&r.submap, "submap")?;
        let entries = self.engine.store().get_submap(&actor, &submap).await.map_err(status::from_store)?;
        let entries: HashMap<_, _> = entries.into_iter().map(|e| (e.key, convert::decode_value(&e.value))).collect();
        Ok(Response::new(v1::GetSubmapResponse { entries }))
    }

    async fn clear_submap(
        &self,
        request: Request<v1::ClearSubmapRequest>,
    ) -> Result<Response<v1::ClearSubmapResponse>, Status> {
        let store = self.writer(request.metadata())?;
        let r = request.into_inner();
        let actor = convert::actor_ref(r.actor.as_ref())?;
        let submap = required(&r.submap, "submap")?;
        let removed = store.clear_submap(&actor, &submap).await.map_err(status::from_store)?;
        Ok(Response::new(v1::ClearSubmapResponse { removed }))
    }
}
