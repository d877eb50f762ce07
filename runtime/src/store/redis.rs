//! [`RedisStateStore`]: actor state, reminders, subscriptions and metadata in
//! Redis, for the distributed deployment.
//!
//! # Key layout
//!
//! Every key of an application starts with `kar:<app>:` (the app name may not
//! contain `:`, so no app's keys are a prefix of another's). Actor type and
//! id are length-prefixed (byte lengths, decimal), so ids containing `:` or
//! looking like a suffix cannot collide:
//! `A = kar:<app>:state:<len(type)>:<type>:<len(id)>:<id>`.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `A:top` | hash | the actor's top-level entries: key → value |
//! | `A:sub:<submap>` | hash | one submap's entries: key → value |
//! | `A:subs` | set | the names of the actor's non-empty submaps |
//! | `kar:<app>:meta` | hash | runtime metadata: key → value |
//! | `kar:<app>:reminders` | hash | reminder → `<next_due>:<postcard ReminderRecord>` |
//! | `kar:<app>:reminders:due` | sorted set | reminder, scored by its next due time (ms) |
//! | `kar:<app>:reminders:index` | sorted set | reminder, all scores 0 (a lexicographic index) |
//! | `kar:<app>:subscriptions` | hash | id → `<next_offset>:<postcard SubscriptionRecord>` |
//! | `kar:<app>:sidecar:<runtime id>` | string | a registered runtime's info, expiring (`PX`) |
//! | `kar:<app>:sidecars` | set | the runtime ids that may have a live `sidecar:` key |
//!
//! A sidecar entry's expiry is Redis's own key expiry, so the server's clock
//! alone decides when a runtime that stopped refreshing disappears. The set
//! lets `sidecars` read the registry without scanning the keyspace; reading
//! drops the ids whose key has expired.
//!
//! Values are opaque bytes. A reminder is named by the order-preserving
//! tuple encoding of `(type, id, reminder id)` (each part with `\0` escaped
//! as `\0\xff`, followed by `\0\0`), so `ZRANGEBYLEX` on the index lists the
//! reminders of one actor or one type, ordered like the embedded store, and
//! ties of due time are broken in the same order.
//!
//! The decimal before the first `:` of a reminder or subscription value is
//! the authoritative `next_due` / `next_offset` (the copy inside the postcard
//! encoding is ignored on read); it lets the Lua scripts compare and move
//! the position exactly (a sorted-set score is a double, exact only to 2^53).
//!
//! # Atomicity and round trips
//!
//! Every operation is one round trip. Operations that touch more than one
//! key, or read before writing, run as one Lua script (`update`, `set`,
//! `delete`, `delete_all`, `get_all`, `cancel_reminders` of an actor,
//! `list_reminders`, `due_reminders`, `advance_reminder`,
//! `advance_subscription`, `sidecars`) or one `MULTI`/`EXEC` pipeline
//! (`clear_submap`, `put_reminder`, cancelling one reminder, `put_sidecar`,
//! `remove_sidecar`); Redis runs either without
//! interleaving other clients' commands, so readers see all or nothing of
//! an update. The rest are single commands. The scripts build the submap
//! keys of an actor from its key prefix, so they assume a single Redis (or a
//! replicated primary), not Redis Cluster.
//!
//! # Durability
//!
//! A write is acknowledged once Redis executed it. It is durable to the
//! extent of the server's persistence settings: with `appendonly yes` the
//! write reached the append-only file (the OS) before the reply, so it
//! survives a crash of `redis-server`; surviving a crash of the machine too
//! needs `appendfsync always` (the project's `deploy/redis/start.sh` uses
//! `everysec`, which can lose the last second).

use super::{Entry, Error, Fence, ReminderRecord, Result, StateStore, SubscriptionRecord, Update, UpdateCounts};
use crate::engine::types::{ActorId, UnixMillis};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// How long a command may take before it fails. Generous: a failed write's
/// effect is unknown, so time-outs should mean a broken connection, not a
/// busy server.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the connection manager retries connecting before an operation
/// fails (with exponential backoff from 100 ms).
const CONNECTION_RETRIES: usize = 6;

/// The fence every state write script starts with: `KEYS[1]` is the
/// metadata hash, `ARGV[1]` the fence's field in it (empty: no fence) and
/// `ARGV[2]` the writer's epoch; a newer published epoch refuses the write.
/// The script's own arguments start at `ARGV[3]`.
const FENCE: &str = r"
if ARGV[1] ~= '' then
  local current = redis.call('HGET', KEYS[1], ARGV[1])
  if current and tonumber(current) > tonumber(ARGV[2]) then
    return redis.error_reply('KARFENCED ' .. ARGV[1] .. ' is at epoch ' .. current .. ', the writer at ' .. ARGV[2])
  end
end
";

/// A state write script: [`FENCE`], then `body`.
fn fenced_script(body: &str) -> Script {
    Script::new(&format!("{FENCE}{body}"))
}

/// Applies an [`Update`] (after [`FENCE`]): `ARGV[3..] = [actor key prefix,
/// number of removals, (submap, key)…, (submap, key, value)…]`; returns
/// `{added, removed}`.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    fenced_script(
        r"
local base = ARGV[3]
local function map(sub)
  if sub == '' then return base .. ':top' end
  return base .. ':sub:' .. sub
end
local added, removed = 0, 0
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local sub, key = ARGV[i], ARGV[i + 1]
  i = i + 2
  if redis.call('HDEL', map(sub), key) == 1 then
    removed = removed + 1
    if sub ~= '' and redis.call('EXISTS', map(sub)) == 0 then
      redis.call('SREM', base .. ':subs', sub)
    end
  end
end
while i <= #ARGV do
  local sub = ARGV[i]
  added = added + redis.call('HSET', map(sub), ARGV[i + 1], ARGV[i + 2])
  if sub ~= '' then redis.call('SADD', base .. ':subs', sub) end
  i = i + 3
end
return {added, removed}
",
    )
});

/// Reads every entry of an actor: `ARGV = [actor key prefix]`; returns
/// `submap, key, value` triples, flat and unordered.
static GET_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local base = ARGV[1]
local out = {}
local function add(sub, key)
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    out[#out + 1] = sub
    out[#out + 1] = flat[i]
    out[#out + 1] = flat[i + 1]
  end
end
add('', base .. ':top')
for _, sub in ipairs(redis.call('SMEMBERS', base .. ':subs')) do
  add(sub, base .. ':sub:' .. sub)
end
return out
",
    )
});

/// Deletes every entry of an actor (after [`FENCE`]): `ARGV[3] = actor key
/// prefix`; returns how many entries there were.
static DELETE_ALL: LazyLock<Script> = LazyLock::new(|| {
    fenced_script(
        r"
local base = ARGV[3]
local n = redis.call('HLEN', base .. ':top')
redis.call('DEL', base .. ':top')
for _, sub in ipairs(redis.call('SMEMBERS', base .. ':subs')) do
  local key = base .. ':sub:' .. sub
  n = n + redis.call('HLEN', key)
  redis.call('DEL', key)
end
redis.call('DEL', base .. ':subs')
return n
",
    )
});

/// Deletes one submap of an actor (after [`FENCE`]): `ARGV[3..] = [actor key
/// prefix, submap]`; returns how many entries it had.
static CLEAR_SUBMAP: LazyLock<Script> = LazyLock::new(|| {
    fenced_script(
        r"
local base, sub = ARGV[3], ARGV[4]
local key = base .. ':sub:' .. sub
if sub == '' then key = base .. ':top' end
local n = redis.call('HLEN', key)
redis.call('DEL', key)
redis.call('SREM', base .. ':subs', sub)
return n
",
    )
});

/// Deletes the reminders in a range of the index: `KEYS = [reminders, due,
/// index]`, `ARGV = [min, max]` (`ZRANGEBYLEX` bounds); returns how many.
static CANCEL_RANGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[3], ARGV[1], ARGV[2])) do
  n = n + redis.call('HDEL', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
  redis.call('ZREM', KEYS[3], m)
end
return n
",
    )
});

/// Reads the reminders in a range of the index: `KEYS = [reminders,
/// index]`, `ARGV = [min, max]`; returns their values in index order.
static LIST_RANGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2])) do
  local v = redis.call('HGET', KEYS[1], m)
  if v then out[#out + 1] = v end
end
return out
",
    )
});

/// Reads the due reminders: `KEYS = [reminders, due]`, `ARGV = [now,
/// limit]`; returns their values, earliest first.
static DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local v = redis.call('HGET', KEYS[1], m)
  if v then out[#out + 1] = v end
end
return out
",
    )
});

/// Moves a reminder if it is still due at `fired`: `KEYS = [reminders, due,
/// index]`, `ARGV = [reminder, fired, next or '' to delete]`; returns 1 if
/// it changed it.
static ADVANCE_REMINDER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local sep = string.find(v, ':', 1, true)
if not sep or string.sub(v, 1, sep - 1) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. string.sub(v, sep))
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
return 1
",
    )
});

/// Moves a subscription if it is still at `from`: `KEYS = [subscriptions]`,
/// `ARGV = [id, from, to]`; returns 1 if it moved.
static ADVANCE_SUBSCRIPTION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local sep = string.find(v, ':', 1, true)
if not sep or string.sub(v, 1, sep - 1) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. string.sub(v, sep))
return 1
",
    )
});

/// Reads the live sidecar entries: `KEYS = [sidecars]`, `ARGV = [sidecar
/// key prefix]`; returns `runtime id, info` pairs, flat and unordered, and
/// forgets the ids whose key expired.
static SIDECARS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local info = redis.call('GET', ARGV[1] .. id)
  if info then
    out[#out + 1] = id
    out[#out + 1] = info
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
",
    )
});

/// The application-wide keys.
struct Keys {
    /// `kar:<app>:state:`, the start of every actor's keys.
    state: String,
    meta: String,
    reminders: String,
    reminders_due: String,
    reminders_index: String,
    subscriptions: String,
    /// `kar:<app>:sidecar:`, the start of every sidecar entry's key.
    sidecar: String,
    sidecars: String,
}

impl Keys {
    fn new(app: &str) -> Self {
        let p = format!("kar:{app}:");
        Self {
            state: format!("{p}state:"),
            meta: format!("{p}meta"),
            reminders: format!("{p}reminders"),
            reminders_due: format!("{p}reminders:due"),
            reminders_index: format!("{p}reminders:index"),
            subscriptions: format!("{p}subscriptions"),
            sidecar: format!("{p}sidecar:"),
            sidecars: format!("{p}sidecars"),
        }
    }

    /// The prefix of every key of `actor`.
    fn actor(&self, actor: &ActorId) -> String {
        format!("{}{}:{}:{}:{}", self.state, actor.kind.len(), actor.kind, actor.id.len(), actor.id)
    }
}

/// The hash holding `submap` of the actor whose keys start with `base`.
fn map_key(base: &str, submap: &str) -> String {
    if submap.is_empty() { format!("{base}:top") } else { format!("{base}:sub:{submap}") }
}

/// Appends one part of the order-preserving tuple encoding.
fn push_part(out: &mut Vec<u8>, part: &str) {
    for &b in part.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// The name of a reminder in the reminder keys.
fn reminder_member(kind: &str, id: &str, rid: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(kind.len() + id.len() + rid.len() + 6);
    push_part(&mut out, kind);
    push_part(&mut out, id);
    push_part(&mut out, rid);
    out
}

/// `ZRANGEBYLEX` bounds of the index entries starting with the given parts
/// (all of them for none).
fn index_range(parts: &[&str]) -> (Vec<u8>, Vec<u8>) {
    if parts.is_empty() {
        return (b"-".to_vec(), b"+".to_vec());
    }
    let mut prefix = Vec::new();
    for part in parts {
        push_part(&mut prefix, part);
    }
    // Every encoding starting with `prefix` (which ends with `\0\0`) sorts
    // before the prefix ending with `\0\1` instead.
    let mut min = vec![b'['];
    min.extend_from_slice(&prefix);
    let mut max = vec![b'('];
    max.extend_from_slice(&prefix[..prefix.len() - 1]);
    max.push(1);
    (min, max)
}

/// `<position>:<postcard value>`.
fn encode_positioned<T: serde::Serialize>(position: u64, value: &T) -> Result<Vec<u8>> {
    let mut out = format!("{position}:").into_bytes();
    let encoded = postcard::to_stdvec(value).map_err(|e| Error::Storage(format!("encode: {e}")))?;
    out.extend_from_slice(&encoded);
    Ok(out)
}

/// Splits `<position>:<postcard value>`.
fn decode_positioned<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(u64, T)> {
    let corrupt = || Error::Storage("redis: malformed record (no position prefix)".into());
    let sep = bytes.iter().position(|&b| b == b':').ok_or_else(corrupt)?;
    let position = std::str::from_utf8(&bytes[..sep]).ok().and_then(|s| s.parse().ok()).ok_or_else(corrupt)?;
    let value = postcard::from_bytes(&bytes[sep + 1..]).map_err(|e| Error::Storage(format!("decode: {e}")))?;
    Ok((position, value))
}

fn decode_reminder(bytes: &[u8]) -> Result<ReminderRecord> {
    let (next_due, mut record): (u64, ReminderRecord) = decode_positioned(bytes)?;
    record.next_due = next_due;
    Ok(record)
}

fn decode_subscription(bytes: &[u8]) -> Result<SubscriptionRecord> {
    let (next_offset, mut record): (u64, SubscriptionRecord) = decode_positioned(bytes)?;
    record.next_offset = next_offset;
    Ok(record)
}

fn utf8(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::Storage("redis: a stored key or submap name is not UTF-8".into()))
}

/// Maps a Redis failure of `op` to a store error.
fn failed(op: &'static str) -> impl FnOnce(::redis::RedisError) -> Error {
    move |e| Error::Storage(format!("redis {op}: {e}"))
}

/// Like [`failed`], for a state write script: its fence's refusal is
/// [`Error::Fenced`].
fn write_failed(op: &'static str) -> impl FnOnce(::redis::RedisError) -> Error {
    move |e| match e.to_string() {
        message if message.contains("KARFENCED") => Error::Fenced(format!("redis {op}: {message}")),
        message => Error::Storage(format!("redis {op}: {message}")),
    }
}

/// Actor state, reminders, subscriptions and metadata of one application in
/// Redis. Cheap to clone; clones share one connection (commands from all of
/// them are pipelined on it), which reconnects by itself after failures.
#[derive(Clone)]
pub struct RedisStateStore {
    conn: ConnectionManager,
    keys: Arc<Keys>,
    /// The fence of this view's state writes (see [`StateStore::fenced`]).
    fence: Option<Arc<Fence>>,
}

impl RedisStateStore {
    /// Connects to the Redis at `url` (`redis://host:port[/db]`) and keeps
    /// the state of application `app` (non-empty, without `:`) there.
    pub async fn connect(url: &str, app: &str) -> Result<Self> {
        if app.is_empty() || app.contains(':') {
            return Err(Error::Storage(format!("redis: invalid app name {app:?} (must be non-empty, without ':')")));
        }
        let client = Client::open(url).map_err(|e| Error::Storage(format!("redis: invalid URL {url:?}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(CONNECTION_RETRIES);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| Error::Storage(format!("redis: cannot connect to {url}: {e}")))?;
        Ok(Self { conn, keys: Arc::new(Keys::new(app)), fence: None })
    }

    /// Starts a state write script: the metadata hash and the fence
    /// arguments [`FENCE`] reads.
    fn write_invocation<'a>(&self, script: &'a Script) -> ::redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation.key(&self.keys.meta);
        match &self.fence {
            Some(fence) => invocation.arg(&fence.key).arg(fence.epoch),
            None => invocation.arg("").arg(0),
        };
        invocation
    }

    /// Applies `update` to `actor` in one script.
    fn apply(&self, actor: &ActorId, update: Update) -> BoxFuture<'static, Result<UpdateCounts>> {
        let mut conn = self.conn.clone();
        let base = self.keys.actor(actor);
        let mut invocation = self.write_invocation(&UPDATE);
        async move {
            if update.removals.is_empty() && update.updates.is_empty() {
                return Ok(UpdateCounts::default());
            }
            invocation.arg(&base).arg(update.removals.len());
            for (submap, key) in &update.removals {
                invocation.arg(submap).arg(key);
            }
            for entry in &update.updates {
                invocation.arg(&entry.submap).arg(&entry.key).arg(entry.value.as_ref());
            }
            let (added, removed): (u32, u32) =
                invocation.invoke_async(&mut conn).await.map_err(write_failed("update"))?;
            Ok(UpdateCounts { added, removed })
        }
        .boxed()
    }

    /// Runs a `ZRANGEBYLEX` range of the reminder index through `LIST_RANGE`.
    async fn list_range(&self, parts: &[&str]) -> Result<Vec<ReminderRecord>> {
        let (min, max) = index_range(parts);
        let values: Vec<Vec<u8>> = LIST_RANGE
            .key(&self.keys.reminders)
            .key(&self.keys.reminders_index)
            .arg(min)
            .arg(max)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(failed("list reminders"))?;
        values.iter().map(|v| decode_reminder(v)).collect()
    }
}

impl StateStore for RedisStateStore {
    fn get<'a>(&'a self, actor: &'a ActorId, submap: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        async move {
            let value: Option<Vec<u8>> = ::redis::cmd("HGET")
                .arg(map_key(&self.keys.actor(actor), submap))
                .arg(key)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(failed("get"))?;
            Ok(value.map(Bytes::from))
        }
        .boxed()
    }

    fn set(&self, actor: &ActorId, entry: Entry) -> BoxFuture<'static, Result<bool>> {
        self.apply(actor, Update { removals: Vec::new(), updates: vec![entry] })
            .map(|r| r.map(|c| c.added == 1))
            .boxed()
    }

    fn delete(&self, actor: &ActorId, submap: &str, key: &str) -> BoxFuture<'static, Result<bool>> {
        let update = Update { removals: vec![(submap.to_owned(), key.to_owned())], updates: Vec::new() };
        self.apply(actor, update).map(|r| r.map(|c| c.removed == 1)).boxed()
    }

    fn get_all<'a>(&'a self, actor: &'a ActorId) -> BoxFuture<'a, Result<Vec<Entry>>> {
        async move {
            let flat: Vec<Vec<u8>> = GET_ALL
                .arg(self.keys.actor(actor))
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(failed("get all"))?;
            if !flat.len().is_multiple_of(3) {
                return Err(Error::Storage("redis get all: malformed reply".into()));
            }
            let mut entries = Vec::with_capacity(flat.len() / 3);
            let mut parts = flat.into_iter();
            while let (Some(submap), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next()) {
                entries.push(Entry { submap: utf8(submap)?, key: utf8(key)?, value: Bytes::from(value) });
            }
            entries.sort_unstable_by(|a, b| (&a.submap, &a.key).cmp(&(&b.submap, &b.key)));
            Ok(entries)
        }
        .boxed()
    }

    fn get_submap<'a>(&'a self, actor: &'a ActorId, submap: &'a str) -> BoxFuture<'a, Result<Vec<Entry>>> {
        async move {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = ::redis::cmd("HGETALL")
                .arg(map_key(&self.keys.actor(actor), submap))
                .query_async(&mut self.conn.clone())
                .await
                .map_err(failed("get submap"))?;
            let mut entries = pairs
                .into_iter()
                .map(|(key, value)| Ok(Entry { submap: submap.to_owned(), key: utf8(key)?, value: Bytes::from(value) }))
                .collect::<Result<Vec<_>>>()?;
            entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            Ok(entries)
        }
        .boxed()
    }

    fn update(&self, actor: &ActorId, update: Update) -> BoxFuture<'static, Result<UpdateCounts>> {
        self.apply(actor, update)
    }

    fn delete_all(&self, actor: &ActorId) -> BoxFuture<'static, Result<u32>> {
        let mut conn = self.conn.clone();
        let base = self.keys.actor(actor);
        let mut invocation = self.write_invocation(&DELETE_ALL);
        invocation.arg(base);
        async move { invocation.invoke_async(&mut conn).await.map_err(write_failed("delete all")) }.boxed()
    }

    fn clear_submap(&self, actor: &ActorId, submap: &str) -> BoxFuture<'static, Result<u32>> {
        let mut conn = self.conn.clone();
        let mut invocation = self.write_invocation(&CLEAR_SUBMAP);
        invocation.arg(self.keys.actor(actor)).arg(submap);
        async move { invocation.invoke_async(&mut conn).await.map_err(write_failed("clear submap")) }.boxed()
    }

    fn fenced(&self, fence: Fence) -> Option<Arc<dyn StateStore>> {
        Some(Arc::new(Self { fence: Some(Arc::new(fence)), ..self.clone() }))
    }

    fn metadata<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        async move {
            let value: Option<Vec<u8>> = ::redis::cmd("HGET")
                .arg(&self.keys.meta)
                .arg(key)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(failed("metadata"))?;
            Ok(value.map(Bytes::from))
        }
        .boxed()
    }

    fn set_metadata(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<()>> {
        let mut conn = self.conn.clone();
        let (meta, key) = (self.keys.meta.clone(), key.to_owned());
        async move {
            ::redis::cmd("HSET")
                .arg(meta)
                .arg(key)
                .arg(value.as_ref())
                .exec_async(&mut conn)
                .await
                .map_err(failed("set metadata"))
        }
        .boxed()
    }

    fn put_reminder(&self, reminder: ReminderRecord) -> BoxFuture<'static, Result<bool>> {
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        async move {
            let member = reminder_member(&reminder.actor.kind, &reminder.actor.id, &reminder.id);
            let value = encode_positioned(reminder.next_due, &reminder)?;
            let (created,): (u32,) = ::redis::pipe()
                .atomic()
                .hset(&keys.reminders, &member, value)
                .zadd(&keys.reminders_due, &member, reminder.next_due)
                .ignore()
                .zadd(&keys.reminders_index, &member, 0)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(failed("put reminder"))?;
            Ok(created == 0)
        }
        .boxed()
    }

    fn cancel_reminders(&self, actor: &ActorId, id: Option<&str>) -> BoxFuture<'static, Result<u32>> {
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        let (actor, id) = (actor.clone(), id.map(str::to_owned));
        async move {
            match id {
                Some(rid) => {
                    let member = reminder_member(&actor.kind, &actor.id, &rid);
                    let (n,): (u32,) = ::redis::pipe()
                        .atomic()
                        .hdel(&keys.reminders, &member)
                        .zrem(&keys.reminders_due, &member)
                        .ignore()
                        .zrem(&keys.reminders_index, &member)
                        .ignore()
                        .query_async(&mut conn)
                        .await
                        .map_err(failed("cancel reminder"))?;
                    Ok(n)
                }
                None => {
                    let (min, max) = index_range(&[&actor.kind, &actor.id]);
                    CANCEL_RANGE
                        .key(&keys.reminders)
                        .key(&keys.reminders_due)
                        .key(&keys.reminders_index)
                        .arg(min)
                        .arg(max)
                        .invoke_async(&mut conn)
                        .await
                        .map_err(failed("cancel reminders"))
                }
            }
        }
        .boxed()
    }

    fn list_reminders<'a>(
        &'a self,
        kind: Option<&'a str>,
        id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ReminderRecord>>> {
        async move {
            match (kind, id) {
                (Some(kind), Some(id)) => self.list_range(&[kind, id]).await,
                (Some(kind), None) => self.list_range(&[kind]).await,
                // An id without a type: every reminder of an actor with that
                // id, whatever its type.
                (None, Some(id)) => Ok(self.list_range(&[]).await?.into_iter().filter(|r| r.actor.id == id).collect()),
                (None, None) => self.list_range(&[]).await,
            }
        }
        .boxed()
    }

    fn due_reminders(&self, now: UnixMillis, limit: usize) -> BoxFuture<'_, Result<Vec<ReminderRecord>>> {
        async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let values: Vec<Vec<u8>> = DUE
                .key(&self.keys.reminders)
                .key(&self.keys.reminders_due)
                .arg(now)
                .arg(limit.min(i64::MAX as usize))
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(failed("due reminders"))?;
            let mut due = Vec::with_capacity(values.len());
            for value in &values {
                let record = decode_reminder(value)?;
                // Scores are doubles; the exact due time decides.
                if record.next_due <= now {
                    due.push(record);
                }
            }
            Ok(due)
        }
        .boxed()
    }

    fn advance_reminder(
        &self,
        actor: &ActorId,
        id: &str,
        fired: UnixMillis,
        next: Option<UnixMillis>,
    ) -> BoxFuture<'static, Result<()>> {
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        let member = reminder_member(&actor.kind, &actor.id, id);
        async move {
            let next = next.map(|n| n.to_string()).unwrap_or_default();
            let _changed: u32 = ADVANCE_REMINDER
                .key(&keys.reminders)
                .key(&keys.reminders_due)
                .key(&keys.reminders_index)
                .arg(member)
                .arg(fired.to_string())
                .arg(next)
                .invoke_async(&mut conn)
                .await
                .map_err(failed("advance reminder"))?;
            Ok(())
        }
        .boxed()
    }

    fn put_subscription(&self, subscription: SubscriptionRecord) -> BoxFuture<'static, Result<bool>> {
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        async move {
            let value = encode_positioned(subscription.next_offset, &subscription)?;
            ::redis::cmd("HSETNX")
                .arg(&keys.subscriptions)
                .arg(&subscription.id)
                .arg(value)
                .query_async(&mut conn)
                .await
                .map_err(failed("put subscription"))
        }
        .boxed()
    }

    fn subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SubscriptionRecord>>> {
        async move {
            let value: Option<Vec<u8>> = ::redis::cmd("HGET")
                .arg(&self.keys.subscriptions)
                .arg(id)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(failed("subscription"))?;
            value.as_deref().map(decode_subscription).transpose()
        }
        .boxed()
    }

    fn delete_subscription(&self, id: &str) -> BoxFuture<'static, Result<bool>> {
        let mut conn = self.conn.clone();
        let (subscriptions, id) = (self.keys.subscriptions.clone(), id.to_owned());
        async move {
            ::redis::cmd("HDEL")
                .arg(subscriptions)
                .arg(id)
                .query_async(&mut conn)
                .await
                .map_err(failed("delete subscription"))
        }
        .boxed()
    }

    fn list_subscriptions(&self) -> BoxFuture<'_, Result<Vec<SubscriptionRecord>>> {
        async move {
            let values: Vec<Vec<u8>> = ::redis::cmd("HVALS")
                .arg(&self.keys.subscriptions)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(failed("list subscriptions"))?;
            let mut list = values.iter().map(|v| decode_subscription(v)).collect::<Result<Vec<_>>>()?;
            list.sort_unstable_by(|a, b| a.id.cmp(&b.id));
            Ok(list)
        }
        .boxed()
    }

    fn advance_subscription(&self, id: &str, from: u64, to: u64) -> BoxFuture<'static, Result<bool>> {
        let mut conn = self.conn.clone();
        let (subscriptions, id) = (self.keys.subscriptions.clone(), id.to_owned());
        async move {
            ADVANCE_SUBSCRIPTION
                .key(subscriptions)
                .arg(id)
                .arg(from.to_string())
                .arg(to.to_string())
                .invoke_async(&mut conn)
                .await
                .map_err(failed("advance subscription"))
        }
        .boxed()
    }

    fn put_sidecar(&self, runtime_id: &str, info: Bytes, ttl: Duration) -> BoxFuture<'static, Result<()>> {
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        let runtime_id = runtime_id.to_owned();
        // `PX 0` is an error in Redis; a zero ttl means "expire at once".
        let ttl_ms = ttl.as_millis().clamp(1, i64::MAX as u128) as u64;
        async move {
            ::redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(format!("{}{runtime_id}", keys.sidecar))
                .arg(info.as_ref())
                .arg("PX")
                .arg(ttl_ms)
                .ignore()
                .sadd(&keys.sidecars, &runtime_id)
                .ignore()
                .exec_async(&mut conn)
                .await
                .map_err(failed("put sidecar"))
        }
        .boxed()
    }

    fn sidecars(&self) -> BoxFuture<'_, Result<Vec<(String, Bytes)>>> {
        async move {
            let flat: Vec<Vec<u8>> = SIDECARS
                .key(&self.keys.sidecars)
                .arg(&self.keys.sidecar)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(failed("sidecars"))?;
            if !flat.len().is_multiple_of(2) {
                return Err(Error::Storage("redis sidecars: malformed reply".into()));
            }
            let mut list = Vec::with_capacity(flat.len() / 2);
            let mut parts = flat.into_iter();
            while let (Some(id), Some(info)) = (parts.next(), parts.next()) {
                list.push((utf8(id)?, Bytes::from(info)));
            }
            list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            Ok(list)
        }
        .boxed()
    }

    fn remove_sidecar(&self, runtime_id: &str) -> BoxFuture<'static, Result<()>> {
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        let runtime_id = runtime_id.to_owned();
        async move {
            ::redis::pipe()
                .atomic()
                .del(format!("{}{runtime_id}", keys.sidecar))
                .ignore()
                .srem(&keys.sidecars, &runtime_id)
                .ignore()
                .exec_async(&mut conn)
                .await
                .map_err(failed("remove sidecar"))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::types::Target;
    use crate::store::conformance;
    use crate::store::redis_test_server::RedisTestServer;

    fn entry(submap: &str, key: &str, value: &[u8]) -> Entry {
        Entry { submap: submap.into(), key: key.into(), value: Bytes::copy_from_slice(value) }
    }

    fn reminder(kind: &str, id: &str, rid: &str, due: u64) -> ReminderRecord {
        ReminderRecord {
            actor: ActorId::new(kind, id),
            id: rid.into(),
            method: "tick".into(),
            payload: Bytes::from_static(b"p"),
            next_due: due,
            period_ms: None,
        }
    }

    #[tokio::test]
    async fn redis_store_conforms() {
        let server = RedisTestServer::start();
        let store = RedisStateStore::connect(&server.url(), "conformance").await.expect("connect");
        conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn fenced_writes_stop_landing_once_a_newer_epoch_is_published() {
        let server = RedisTestServer::start();
        let store = RedisStateStore::connect(&server.url(), "app").await.expect("connect");
        let actor = ActorId::new("T", "1");
        store.set(&actor, entry("m", "x", b"0")).await.expect("set");
        store.set_metadata("epoch.actor.T.1", Bytes::from_static(b"3")).await.expect("publish epoch 3");
        let owner = store.fenced(Fence { key: "epoch.actor.T.1".into(), epoch: 3 }).expect("redis fences");
        assert!(owner.set(&actor, entry("", "k", b"v3")).await.expect("the owner writes"));

        // A new owner publishes epoch 4: every kind of write of the old one
        // is refused and changes nothing; the new owner's and unfenced
        // writes go on.
        store.set_metadata("epoch.actor.T.1", Bytes::from_static(b"4")).await.expect("publish epoch 4");
        let refused = |r: Result<_>| matches!(r, Err(Error::Fenced(_)));
        assert!(refused(owner.set(&actor, entry("", "k", b"stale")).await.map(|_| ())));
        assert!(refused(owner.delete(&actor, "", "k").await.map(|_| ())));
        let update = Update { removals: vec![], updates: vec![entry("", "k", b"stale")] };
        assert!(refused(owner.update(&actor, update).await.map(|_| ())));
        assert!(refused(owner.clear_submap(&actor, "m").await.map(|_| ())));
        assert!(refused(owner.delete_all(&actor).await.map(|_| ())));
        assert_eq!(store.get_all(&actor).await.expect("all"), vec![entry("", "k", b"v3"), entry("m", "x", b"0")]);

        let next = store.fenced(Fence { key: "epoch.actor.T.1".into(), epoch: 4 }).expect("redis fences");
        next.set(&actor, entry("", "k", b"v4")).await.expect("the new owner writes");
        assert_eq!(next.clear_submap(&actor, "m").await.expect("clear"), 1);
        assert_eq!(store.get_all(&actor).await.expect("all"), vec![entry("", "k", b"v4")]);
        assert_eq!(store.delete_all(&actor).await.expect("unfenced"), 1);
    }

    #[tokio::test]
    async fn state_survives_reconnecting() {
        let server = RedisTestServer::start();
        let actor = ActorId::new("T", "1");
        {
            let store = RedisStateStore::connect(&server.url(), "app").await.expect("connect");
            store.set(&actor, entry("", "k", b"v")).await.expect("set");
            store.set(&actor, entry("m", "x", b"1")).await.expect("set");
            store.set_metadata("epoch", Bytes::from_static(b"7")).await.expect("set metadata");
            store.put_reminder(reminder("T", "1", "r", 42)).await.expect("put reminder");
        }
        let store = RedisStateStore::connect(&server.url(), "app").await.expect("reconnect");
        assert_eq!(store.get_all(&actor).await.expect("all"), vec![entry("", "k", b"v"), entry("m", "x", b"1")]);
        assert_eq!(store.metadata("epoch").await.expect("metadata"), Some(Bytes::from_static(b"7")));
        assert_eq!(store.due_reminders(42, 10).await.expect("due"), vec![reminder("T", "1", "r", 42)]);
    }

    #[tokio::test]
    async fn apps_do_not_see_each_others_keys() {
        let server = RedisTestServer::start();
        let one = RedisStateStore::connect(&server.url(), "one").await.expect("connect");
        let two = RedisStateStore::connect(&server.url(), "two").await.expect("connect");
        let actor = ActorId::new("T", "a");
        one.set(&actor, entry("", "k", b"1")).await.expect("set");
        one.set(&actor, entry("s", "k", b"1")).await.expect("set");
        assert!(two.set(&actor, entry("", "k", b"2")).await.expect("set"), "the other app's entry is not seen");
        one.set_metadata("m", Bytes::from_static(b"1")).await.expect("set metadata");
        one.put_reminder(reminder("T", "a", "r", 10)).await.expect("put reminder");
        let sub = SubscriptionRecord {
            id: "s".into(),
            topic: "t".into(),
            target: Target::Service("svc".into()),
            method: "on".into(),
            next_offset: 0,
        };
        one.put_subscription(sub.clone()).await.expect("put subscription");

        assert_eq!(two.get_all(&actor).await.expect("all"), vec![entry("", "k", b"2")]);
        assert_eq!(two.metadata("m").await.expect("metadata"), None);
        assert!(two.list_reminders(None, None).await.expect("list").is_empty());
        assert!(two.due_reminders(u64::MAX, 10).await.expect("due").is_empty());
        assert!(two.list_subscriptions().await.expect("list").is_empty());
        assert!(two.put_subscription(sub).await.expect("put subscription"), "the other app's one is not seen");
        assert_eq!(two.delete_all(&actor).await.expect("delete all"), 1);
        assert_eq!(one.get_all(&actor).await.expect("all").len(), 2, "deleting in one app leaves the other alone");
        assert_eq!(one.list_reminders(None, None).await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn awkward_names_do_not_collide() {
        let server = RedisTestServer::start();
        let store = RedisStateStore::connect(&server.url(), "app").await.expect("connect");
        let plain = ActorId::new("T", "a");
        // Ids that spell out another actor's keys.
        let lookalikes =
            [ActorId::new("T", "a:top"), ActorId::new("T", "a:sub:s"), ActorId::new("T:1", "a"), ActorId::new("T", "")];
        store.set(&plain, entry("", "k", b"plain")).await.expect("set");
        store.set(&plain, entry("s", "k", b"plain-s")).await.expect("set");
        for (i, actor) in lookalikes.iter().enumerate() {
            let value = format!("other-{i}");
            store.set(actor, entry("", "k", value.as_bytes())).await.expect("set");
            store.set(actor, entry("s", "k", value.as_bytes())).await.expect("set");
        }
        assert_eq!(
            store.get_all(&plain).await.expect("all"),
            vec![entry("", "k", b"plain"), entry("s", "k", b"plain-s")]
        );

        // Submap names and keys with separators, NUL bytes, binary values.
        let a = ActorId::new("U", "x");
        let binary: &[u8] = &[0, 255, b':', 0, 10];
        store.set(&a, entry("s:top", "k", b"1")).await.expect("set");
        store.set(&a, entry("s", "top:k", b"2")).await.expect("set");
        store.set(&a, entry("", "s:k", b"3")).await.expect("set");
        store.set(&a, entry("n\0ul", "k\0", binary)).await.expect("set");
        assert_eq!(store.get(&a, "n\0ul", "k\0").await.expect("get").as_deref(), Some(binary));
        assert_eq!(store.get_submap(&a, "s").await.expect("submap"), vec![entry("s", "top:k", b"2")]);
        assert_eq!(store.get_submap(&a, "").await.expect("submap"), vec![entry("", "s:k", b"3")]);
        assert_eq!(store.get_all(&a).await.expect("all").len(), 4);
        assert_eq!(store.clear_submap(&a, "s").await.expect("clear"), 1);
        assert_eq!(store.clear_submap(&a, "s").await.expect("clear"), 0);
        assert!(store.delete(&a, "n\0ul", "k\0").await.expect("delete"));
        assert_eq!(store.get_all(&a).await.expect("all"), vec![entry("", "s:k", b"3"), entry("s:top", "k", b"1")]);
        assert_eq!(store.delete_all(&a).await.expect("delete all"), 2);
        assert!(store.get_all(&a).await.expect("all").is_empty());

        // Reminders of types and ids that extend one another.
        for (kind, id) in [("R", "a"), ("R", "a\0"), ("R", "ab"), ("R\0", "a"), ("RR", "a"), ("R", "")] {
            store.put_reminder(reminder(kind, id, "r", 5)).await.expect("put reminder");
        }
        let of_a = store.list_reminders(Some("R"), Some("a")).await.expect("list");
        assert_eq!(of_a, vec![reminder("R", "a", "r", 5)]);
        let of_r: Vec<String> =
            store.list_reminders(Some("R"), None).await.expect("list").into_iter().map(|r| r.actor.id).collect();
        assert_eq!(of_r, vec!["", "a", "a\0", "ab"], "ordered by id, other types left out");
        assert_eq!(store.cancel_reminders(&ActorId::new("R", "a"), None).await.expect("cancel"), 1);
        assert_eq!(store.list_reminders(None, None).await.expect("list").len(), 5);
        assert_eq!(store.list_reminders(None, Some("a")).await.expect("list").len(), 2);
    }

    #[tokio::test]
    async fn large_due_times_are_exact() {
        let server = RedisTestServer::start();
        let store = RedisStateStore::connect(&server.url(), "app").await.expect("connect");
        let actor = ActorId::new("T", "1");
        // Beyond 2^53 a sorted-set score cannot tell these apart.
        let due = (1u64 << 60) + 1;
        store.put_reminder(reminder("T", "1", "r", due)).await.expect("put");
        assert!(store.due_reminders(due - 1, 10).await.expect("due").is_empty());
        assert_eq!(store.due_reminders(due, 10).await.expect("due")[0].next_due, due);
        store.advance_reminder(&actor, "r", due - 1, Some(1)).await.expect("stale advance");
        assert_eq!(store.list_reminders(None, None).await.expect("list")[0].next_due, due, "stale advance ignored");
        store.advance_reminder(&actor, "r", due, Some(u64::MAX)).await.expect("advance");
        assert_eq!(store.list_reminders(None, None).await.expect("list")[0].next_due, u64::MAX);
    }

    #[tokio::test]
    async fn the_store_reconnects_after_redis_restarts() {
        let mut server = RedisTestServer::start_persistent();
        let store = RedisStateStore::connect(&server.url(), "app").await.expect("connect");
        let actor = ActorId::new("T", "1");
        store.set(&actor, entry("", "k", b"v")).await.expect("set");
        server.restart();
        // The first command after the restart may fail (the old connection
        // is broken); the connection manager then reconnects by itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let value = loop {
            match store.get(&actor, "", "k").await {
                Ok(value) => break value,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("after restart: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the store did not reconnect: {e}"),
            }
        };
        assert_eq!(value, Some(Bytes::from_static(b"v")), "acknowledged writes survive a restart with AOF");
        assert!(!store.set(&actor, entry("", "k", b"w")).await.expect("set after reconnecting"));
    }

    #[tokio::test]
    async fn bad_app_names_and_urls_are_errors() {
        assert!(RedisStateStore::connect("redis://127.0.0.1:1", "").await.is_err());
        assert!(RedisStateStore::connect("redis://127.0.0.1:1", "a:b").await.is_err());
        assert!(RedisStateStore::connect("not a url", "app").await.is_err());
    }

    #[test]
    fn the_index_range_covers_exactly_the_prefix() {
        let (min, max) = index_range(&["R", "a"]);
        let inside = reminder_member("R", "a", "zzz\u{10ffff}");
        let outside =
            [reminder_member("R", "a\0", ""), reminder_member("R", "ab", ""), reminder_member("R\0", "a", "")];
        assert!(min[1..] <= inside[..] && inside[..] < max[1..]);
        for member in outside {
            assert!(member[..] < min[1..] || member[..] >= max[1..], "{member:?} is outside");
        }
    }
}
