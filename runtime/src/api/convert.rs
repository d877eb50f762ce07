//! Conversions between `kar.v1` wire messages and the engine's types, and the
//! reading of the invocation context and deadline from gRPC metadata.

use crate::engine::CallContext;
use crate::engine::types::{ActorId, UnixMillis, now_millis};
use bytes::Bytes;
use kar_proto::metadata as keys;
use kar_proto::v1;
use prost::Message;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Reads a required actor reference, naming the field when it is missing.
pub(crate) fn actor_ref(actor: Option<&v1::ActorRef>) -> Result<ActorId, Status> {
    let actor = actor.ok_or_else(|| super::status::invalid("actor", "actor is required"))?;
    if actor.r#type.is_empty() {
        return Err(super::status::invalid("actor.type", "actor.type is required"));
    }
    if actor.id.is_empty() {
        return Err(super::status::invalid("actor.id", "actor.id is required"));
    }
    Ok(ActorId::new(actor.r#type.clone(), actor.id.clone()))
}

/// The wire form of an actor id.
pub(crate) fn to_actor_ref(actor: &ActorId) -> v1::ActorRef {
    v1::ActorRef { r#type: actor.kind.clone(), id: actor.id.clone() }
}

/// Encodes a payload oneof (JSON or typed) as the engine's opaque bytes,
/// enforcing the size limit.
pub(crate) fn encode_payload(payload: Option<v1::payload::Kind>, limit: usize) -> Result<Bytes, Status> {
    let bytes = Bytes::from(v1::Payload { kind: payload }.encode_to_vec());
    if bytes.len() > limit {
        return Err(super::status::invalid(
            "payload",
            &format!("payload is {} bytes, more than the limit of {limit} bytes", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// Decodes the engine's opaque payload bytes.
pub(crate) fn decode_payload(bytes: &[u8]) -> v1::Payload {
    v1::Payload::decode(bytes).unwrap_or_default()
}

/// Encodes a state value, enforcing the size limit.
pub(crate) fn encode_value(value: Option<&prost_types::Value>, field: &str, limit: usize) -> Result<Bytes, Status> {
    let value = value.ok_or_else(|| super::status::invalid(field, &format!("{field} is required")))?;
    let bytes = Bytes::from(value.encode_to_vec());
    if bytes.len() > limit {
        return Err(super::status::invalid(
            field,
            &format!("{field} is {} bytes, more than the limit of {limit} bytes", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// Decodes a stored state value.
pub(crate) fn decode_value(bytes: &[u8]) -> prost_types::Value {
    prost_types::Value::decode(bytes).unwrap_or_default()
}

fn text<'a>(metadata: &'a MetadataMap, key: &str) -> Result<Option<&'a str>, Status> {
    match metadata.get(key) {
        None => Ok(None),
        Some(v) => {
            v.to_str().map(Some).map_err(|_| super::status::invalid(key, &format!("metadata {key} is not valid ASCII")))
        }
    }
}

/// The invocation a request made from inside a handler names
/// (`kar-caller-id`), if any.
pub(crate) fn caller_id(metadata: &MetadataMap) -> Result<Option<&str>, Status> {
    Ok(text(metadata, keys::CALLER_ID)?.filter(|s| !s.is_empty()))
}

/// Reads the invocation context of a call made from inside a handler.
pub(crate) fn call_context(metadata: &MetadataMap) -> Result<Option<CallContext>, Status> {
    let Some(caller) = caller_id(metadata)? else { return Ok(None) };
    let flow = text(metadata, keys::FLOW_ID)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| super::status::invalid(keys::FLOW_ID, "kar-flow-id is required with kar-caller-id"))?;
    let seq = text(metadata, keys::CALL_SEQ)?
        .ok_or_else(|| super::status::invalid(keys::CALL_SEQ, "kar-call-seq is required with kar-caller-id"))?;
    let seq = seq
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| super::status::invalid(keys::CALL_SEQ, "kar-call-seq must be a positive integer"))?;
    Ok(Some(CallContext { flow: flow.to_owned(), caller_id: caller.to_owned(), seq }))
}

/// Reads the flow of the calling handler, if any.
pub(crate) fn flow(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    Ok(text(metadata, keys::FLOW_ID)?.filter(|s| !s.is_empty()).map(str::to_owned))
}

/// Reads the idempotency key of a caller outside any handler.
pub(crate) fn request_id(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    let id = text(metadata, keys::REQUEST_ID)?.filter(|s| !s.is_empty());
    if id.is_some_and(|id| id.len() > 256) {
        return Err(super::status::invalid(keys::REQUEST_ID, "kar-request-id is longer than 256 characters"));
    }
    Ok(id.map(str::to_owned))
}

/// Reads the deadline from `grpc-timeout` (e.g. `100m`, `5S`).
pub(crate) fn deadline(metadata: &MetadataMap) -> Result<Option<UnixMillis>, Status> {
    let Some(timeout) = text(metadata, "grpc-timeout")? else { return Ok(None) };
    let bad = || super::status::invalid("grpc-timeout", &format!("grpc-timeout {timeout:?} is malformed"));
    if timeout.len() < 2 {
        return Err(bad());
    }
    let (amount, unit) = timeout.split_at(timeout.len() - 1);
    let amount: u64 = amount.parse().map_err(|_| bad())?;
    let millis = match unit {
        "H" => amount.saturating_mul(3_600_000),
        "M" => amount.saturating_mul(60_000),
        "S" => amount.saturating_mul(1_000),
        "m" => amount,
        "u" => amount / 1_000,
        "n" => amount / 1_000_000,
        _ => return Err(bad()),
    };
    Ok(Some(now_millis().saturating_add(millis)))
}

/// A unix-millisecond instant as a protobuf timestamp.
pub(crate) fn timestamp(millis: UnixMillis) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: (millis / 1000) as i64, nanos: ((millis % 1000) * 1_000_000) as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().expect("ascii"));
        }
        m
    }

    #[test]
    fn grpc_timeout_units_are_read() {
        let now = now_millis();
        let d = deadline(&metadata(&[("grpc-timeout", "2S")])).expect("ok").expect("some");
        assert!(d >= now + 2000 && d < now + 3000);
        assert!(deadline(&metadata(&[("grpc-timeout", "5x")])).is_err());
        assert!(deadline(&metadata(&[])).expect("ok").is_none());
    }

    #[test]
    fn the_call_context_needs_all_three_keys() {
        let full = metadata(&[("kar-caller-id", "r1"), ("kar-flow-id", "f"), ("kar-call-seq", "3")]);
        let context = call_context(&full).expect("ok").expect("some");
        assert_eq!((context.caller_id.as_str(), context.flow.as_str(), context.seq), ("r1", "f", 3));
        assert!(call_context(&metadata(&[("kar-caller-id", "r1")])).is_err());
        let zero = metadata(&[("kar-caller-id", "r1"), ("kar-flow-id", "f"), ("kar-call-seq", "0")]);
        assert!(call_context(&zero).is_err());
        assert!(call_context(&metadata(&[])).expect("ok").is_none());
    }

    #[test]
    fn oversized_payloads_are_refused_with_the_field_named() {
        let big = v1::payload::Kind::Json(prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("x".repeat(100))),
        });
        let status = encode_payload(Some(big), 50).expect_err("too big");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("payload"));
    }
}
