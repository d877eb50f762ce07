//! The durable state of one actor: a map of JSON values in which an entry may
//! be a submap (JSON values addressed by key and subkey).
//!
//! Obtained from [`Client::state`](crate::Client::state),
//! [`ActorProxy::state`](crate::ActorProxy::state) or, inside an actor
//! handler, [`Context::state`](crate::Context::state).

use std::collections::HashMap;

use kar_proto::v1::{
    ActorRef, ClearSubmapRequest, DeleteAllRequest, DeleteRequest, GetAllRequest, GetRequest, GetSubmapRequest,
    KeyList, SetRequest, Submap, UpdateRequest, state_service_client::StateServiceClient,
};
use serde_json::Value;

use crate::client::{Caller, Client, Rpc, check_actor, check_non_empty, with_deadline};
use crate::error::Result;
use crate::json::{json_to_value, value_to_json};

/// A JSON map, as stored in actor state.
pub type JsonMap = HashMap<String, Value>;

/// The whole state of one actor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActorState {
    /// The top-level entries.
    pub entries: JsonMap,
    /// The submaps, by name.
    pub submaps: HashMap<String, JsonMap>,
}

/// A batch of state changes applied atomically by [`StateClient::update`]:
/// removals first, then updates.
///
/// ```
/// use kar_client::StateUpdate;
/// use serde_json::json;
///
/// let update = StateUpdate::new()
///     .set("balance", json!(100))
///     .remove("overdraft")
///     .set_sub("history", "2024-01-01", json!({"deposit": 100}));
/// assert!(!update.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateUpdate {
    /// Top-level entries to write.
    pub updates: JsonMap,
    /// Top-level entries to remove.
    pub removals: Vec<String>,
    /// Submap entries to write, by submap name.
    pub submap_updates: HashMap<String, JsonMap>,
    /// Submap entries to remove, by submap name.
    pub submap_removals: HashMap<String, Vec<String>>,
}

impl StateUpdate {
    /// An empty batch.
    pub fn new() -> StateUpdate {
        StateUpdate::default()
    }

    /// Writes a top-level entry.
    pub fn set(mut self, key: impl Into<String>, value: Value) -> StateUpdate {
        self.updates.insert(key.into(), value);
        self
    }

    /// Removes a top-level entry.
    pub fn remove(mut self, key: impl Into<String>) -> StateUpdate {
        self.removals.push(key.into());
        self
    }

    /// Writes an entry of a submap.
    pub fn set_sub(mut self, submap: impl Into<String>, key: impl Into<String>, value: Value) -> StateUpdate {
        self.submap_updates.entry(submap.into()).or_default().insert(key.into(), value);
        self
    }

    /// Removes an entry of a submap.
    pub fn remove_sub(mut self, submap: impl Into<String>, key: impl Into<String>) -> StateUpdate {
        self.submap_removals.entry(submap.into()).or_default().push(key.into());
        self
    }

    /// True if the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
            && self.removals.is_empty()
            && self.submap_updates.is_empty()
            && self.submap_removals.is_empty()
    }

    fn into_request(self, actor: ActorRef) -> UpdateRequest {
        UpdateRequest {
            actor: Some(actor),
            updates: to_values(self.updates),
            removals: self.removals,
            submap_updates: self
                .submap_updates
                .into_iter()
                .map(|(name, entries)| (name, Submap { entries: to_values(entries) }))
                .collect(),
            submap_removals: self.submap_removals.into_iter().map(|(name, keys)| (name, KeyList { keys })).collect(),
        }
    }
}

/// What [`StateClient::update`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateCounts {
    /// Entries created (overwritten ones are not counted).
    pub added: u32,
    /// Entries removed.
    pub removed: u32,
}

/// The state of one actor instance. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StateClient {
    client: Client,
    caller: Caller,
    actor: ActorRef,
}

impl StateClient {
    pub(crate) fn new(client: Client, caller: Caller, actor: ActorRef) -> StateClient {
        StateClient { client, caller, actor }
    }

    /// The actor type.
    pub fn actor_type(&self) -> &str {
        &self.actor.r#type
    }

    /// The actor id.
    pub fn actor_id(&self) -> &str {
        &self.actor.id
    }

    /// Reads a top-level entry.
    pub async fn get(&self, key: &str) -> Result<Option<Value>> {
        check_non_empty("key", key)?;
        self.get_entry(key, "").await
    }

    /// Reads the entry `subkey` of submap `key`.
    pub async fn get_sub(&self, key: &str, subkey: &str) -> Result<Option<Value>> {
        check_non_empty("key", key)?;
        check_non_empty("subkey", subkey)?;
        self.get_entry(key, subkey).await
    }

    /// True if the top-level entry exists.
    pub async fn contains(&self, key: &str) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// True if the entry `subkey` of submap `key` exists.
    pub async fn contains_sub(&self, key: &str, subkey: &str) -> Result<bool> {
        Ok(self.get_sub(key, subkey).await?.is_some())
    }

    /// Writes a top-level entry; returns true if it did not exist before.
    pub async fn set(&self, key: &str, value: Value) -> Result<bool> {
        check_non_empty("key", key)?;
        self.set_entry(key, "", value).await
    }

    /// Writes the entry `subkey` of submap `key`; returns true if it did not
    /// exist before.
    pub async fn set_sub(&self, key: &str, subkey: &str, value: Value) -> Result<bool> {
        check_non_empty("key", key)?;
        check_non_empty("subkey", subkey)?;
        self.set_entry(key, subkey, value).await
    }

    /// Deletes a top-level entry; returns true if it existed.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        check_non_empty("key", key)?;
        self.delete_entry(key, "").await
    }

    /// Deletes the entry `subkey` of submap `key`; returns true if it existed.
    pub async fn delete_sub(&self, key: &str, subkey: &str) -> Result<bool> {
        check_non_empty("key", key)?;
        check_non_empty("subkey", subkey)?;
        self.delete_entry(key, subkey).await
    }

    /// Reads the whole state.
    pub async fn get_all(&self) -> Result<ActorState> {
        check_actor(&self.actor)?;
        let message = GetAllRequest { actor: Some(self.actor.clone()) };
        let request = self.client.request(&self.caller, Rpc::Scoped, message)?;
        let response = with_deadline(request.timeout, self.rpc().get_all(request.inner)).await?;
        Ok(ActorState {
            entries: to_json(response.entries),
            submaps: response.submaps.into_iter().map(|(name, submap)| (name, to_json(submap.entries))).collect(),
        })
    }

    /// Applies a batch of removals and then updates atomically.
    pub async fn update(&self, update: StateUpdate) -> Result<UpdateCounts> {
        check_actor(&self.actor)?;
        let request = self.client.request(&self.caller, Rpc::Scoped, update.into_request(self.actor.clone()))?;
        let response = with_deadline(request.timeout, self.rpc().update(request.inner)).await?;
        Ok(UpdateCounts { added: response.added, removed: response.removed })
    }

    /// Deletes the whole state; returns how many entries (submap entries
    /// included) were removed.
    pub async fn delete_all(&self) -> Result<u32> {
        check_actor(&self.actor)?;
        let message = DeleteAllRequest { actor: Some(self.actor.clone()) };
        let request = self.client.request(&self.caller, Rpc::Scoped, message)?;
        Ok(with_deadline(request.timeout, self.rpc().delete_all(request.inner)).await?.removed)
    }

    /// Reads all entries of a submap (empty if it does not exist).
    pub async fn submap(&self, name: &str) -> Result<JsonMap> {
        check_actor(&self.actor)?;
        check_non_empty("submap", name)?;
        let message = GetSubmapRequest { actor: Some(self.actor.clone()), submap: name.to_owned() };
        let request = self.client.request(&self.caller, Rpc::Scoped, message)?;
        let response = with_deadline(request.timeout, self.rpc().get_submap(request.inner)).await?;
        Ok(to_json(response.entries))
    }

    /// The keys of a submap, sorted.
    pub async fn submap_keys(&self, name: &str) -> Result<Vec<String>> {
        let mut keys: Vec<String> = self.submap(name).await?.into_keys().collect();
        keys.sort();
        Ok(keys)
    }

    /// How many entries a submap has.
    pub async fn submap_size(&self, name: &str) -> Result<usize> {
        Ok(self.submap(name).await?.len())
    }

    /// Deletes all entries of a submap; returns how many were removed.
    pub async fn clear_submap(&self, name: &str) -> Result<u32> {
        check_actor(&self.actor)?;
        check_non_empty("submap", name)?;
        let message = ClearSubmapRequest { actor: Some(self.actor.clone()), submap: name.to_owned() };
        let request = self.client.request(&self.caller, Rpc::Scoped, message)?;
        Ok(with_deadline(request.timeout, self.rpc().clear_submap(request.inner)).await?.removed)
    }

    async fn get_entry(&self, key: &str, subkey: &str) -> Result<Option<Value>> {
        check_actor(&self.actor)?;
        let message = GetRequest { actor: Some(self.actor.clone()), key: key.to_owned(), subkey: subkey.to_owned() };
        let request = self.client.request(&self.caller, Rpc::Scoped, message)?;
        let response = with_deadline(request.timeout, self.rpc().get(request.inner)).await?;
        Ok(response.found.then(|| response.value.map(value_to_json).unwrap_or(Value::Null)))
    }

    async fn set_entry(&self, key: &str, subkey: &str, value: Value) -> Result<bool> {
        check_actor(&self.actor)?;
        let message = SetRequest {
            actor: Some(self.actor.clone()),
            key: key.to_owned(),
            subkey: subkey.to_owned(),
            value: Some(json_to_value(value)),
        };
        let request = self.client.request(&self.caller, Rpc::Scoped, message)?;
        Ok(with_deadline(request.timeout, self.rpc().set(request.inner)).await?.created)
    }

    async fn delete_entry(&self, key: &str, subkey: &str) -> Result<bool> {
        check_actor(&self.actor)?;
        let message = DeleteRequest { actor: Some(self.actor.clone()), key: key.to_owned(), subkey: subkey.to_owned() };
        let request = self.client.request(&self.caller, Rpc::Scoped, message)?;
        Ok(with_deadline(request.timeout, self.rpc().delete(request.inner)).await?.deleted)
    }

    fn rpc(&self) -> StateServiceClient<tonic::transport::Channel> {
        StateServiceClient::new(self.client.channel().clone())
    }
}

fn to_values(map: JsonMap) -> HashMap<String, prost_types::Value> {
    map.into_iter().map(|(k, v)| (k, json_to_value(v))).collect()
}

fn to_json(map: HashMap<String, prost_types::Value>) -> JsonMap {
    map.into_iter().map(|(k, v)| (k, value_to_json(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_update_builds_the_wire_request() {
        let update = StateUpdate::new()
            .set("balance", json!(10))
            .remove("old")
            .set_sub("history", "t1", json!("deposit"))
            .remove_sub("history", "t0");
        let request = update.into_request(ActorRef { r#type: "Account".into(), id: "a".into() });
        assert_eq!(request.updates.len(), 1);
        assert_eq!(request.removals, vec!["old".to_owned()]);
        assert_eq!(request.submap_updates["history"].entries.len(), 1);
        assert_eq!(request.submap_removals["history"].keys, vec!["t0".to_owned()]);
    }

    #[tokio::test]
    async fn a_state_client_without_an_actor_is_refused_locally() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap();
        let state = client.state("", "");
        assert_eq!(state.get("k").await.unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(client.state("A", "1").get_sub("k", "").await.unwrap_err().message(), "subkey must not be empty");
    }
}
