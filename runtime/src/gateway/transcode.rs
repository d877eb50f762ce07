//! JSON ⇄ protobuf for one route: the request message built from the path
//! variables, the query parameters and the body as the rule says; the
//! response message (or its `response_body` field) as proto3 JSON; and the
//! gRPC length-prefixed framing of both.
//!
//! Every source is turned into a JSON object shaped like the request message
//! and decoded with the descriptors, then merged in protobuf order (body,
//! query, path: the path wins), so one decoder and its error paths serve all.

use super::descriptors::Descriptors;
use super::error::ErrorReply;
use super::routes::{BodyRule, Route, resolve};
use super::template::Variable;
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json};

/// Builds the request message of `route`.
pub(crate) fn request_message(
    route: &Route,
    captures: Vec<(Variable, String)>,
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, ErrorReply> {
    let input = route.rpc.input();
    let mut message = DynamicMessage::new(input.clone());

    let body_json = match &route.body {
        BodyRule::None => None,
        _ if body.iter().all(u8::is_ascii_whitespace) => None,
        _ => Some(
            serde_json::from_slice::<Json>(body)
                .map_err(|e| ErrorReply::invalid("body", format!("malformed JSON: {e}")))?,
        ),
    };
    match (&route.body, body_json) {
        (BodyRule::Whole, Some(json)) => merge(&mut message, &input, json)?,
        (BodyRule::Field(field), Some(json)) => {
            let mut wrapper = Map::new();
            wrapper.insert(field.name().to_owned(), json);
            merge(&mut message, &input, Json::Object(wrapper))?;
        }
        _ => {}
    }

    if let Some(query) = query.filter(|q| !q.is_empty()) {
        let json = query_json(route, &input, query)?;
        merge(&mut message, &input, json)?;
    }

    let mut path = Json::Object(Map::new());
    for (variable, value) in captures {
        let name = variable.name();
        if value.is_empty() {
            return Err(ErrorReply::invalid(&name, format!("the path variable {name} is missing")));
        }
        let leaf = resolve(&input, &variable.field_path).map_err(|e| ErrorReply::invalid(&name, e))?;
        insert(&mut path, &variable.field_path, scalar_json(&leaf, value))
            .map_err(|e| ErrorReply::invalid(&name, e))?;
    }
    merge(&mut message, &input, path)?;
    Ok(message)
}

/// Decodes `json` as a `message`-shaped object and merges it in. Errors
/// name the field path (`actor.id`, `updates.k`) and say what was wrong.
fn merge(message: &mut DynamicMessage, desc: &MessageDescriptor, json: Json) -> Result<(), ErrorReply> {
    let decoded = decode(desc, &json).map_err(|(field, error)| ErrorReply::invalid(&field, error))?;
    message
        .merge(decoded.encode_to_vec().as_slice())
        .map_err(|e| ErrorReply::invalid("body", format!("cannot merge the request: {e}")))
}

/// Decodes `json` as a `desc` message, refusing unknown fields. An error
/// comes with the field path (`body` for the whole) and a message that
/// starts with it.
pub(crate) fn decode(desc: &MessageDescriptor, json: &Json) -> Result<DynamicMessage, (String, String)> {
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let mut track = serde_path_to_error::Track::new();
    DynamicMessage::deserialize_with_options(
        desc.clone(),
        serde_path_to_error::Deserializer::new(json, &mut track),
        &options,
    )
    .map_err(|error| {
        let path = track.path().to_string();
        let field = if path == "." || path.is_empty() { "body".to_owned() } else { path };
        let message = format!("{field}: {error}");
        (field, message)
    })
}

/// The query parameters as a request-shaped JSON object. A parameter names
/// a field path (proto or JSON names, dotted) not bound by the path or the
/// body; a repeated field takes the parameter repeated.
fn query_json(route: &Route, input: &MessageDescriptor, query: &str) -> Result<Json, ErrorReply> {
    if matches!(route.body, BodyRule::Whole) {
        let name = query.split('&').next().and_then(|p| p.split('=').next()).unwrap_or_default();
        return Err(ErrorReply::invalid(&decode_query(name), "this route takes no query parameters; use the body"));
    }
    let mut grouped: Vec<(Vec<String>, FieldDescriptor, String, Vec<String>)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode_query(name), decode_query(value));
        let (path, leaf) = resolve_param(input, &name).map_err(|e| ErrorReply::invalid(&name, e))?;
        if route.bound_by_path(&path) {
            return Err(ErrorReply::invalid(&name, format!("{name} is bound by the path")));
        }
        if let BodyRule::Field(body) = &route.body
            && path[0] == body.name()
        {
            return Err(ErrorReply::invalid(&name, format!("{name} is bound by the body")));
        }
        match grouped.iter_mut().find(|g| g.0 == path) {
            Some(group) if leaf.is_list() => group.3.push(value),
            Some(_) => return Err(ErrorReply::invalid(&name, format!("{name} is given more than once"))),
            None => grouped.push((path, leaf, name, vec![value])),
        }
    }
    let mut json = Json::Object(Map::new());
    for (path, leaf, name, values) in grouped {
        let value = if leaf.is_list() {
            Json::Array(values.into_iter().map(|v| scalar_json(&leaf, v)).collect())
        } else {
            values.into_iter().next().map(|v| scalar_json(&leaf, v)).unwrap_or(Json::Null)
        };
        insert(&mut json, &path, value).map_err(|e| ErrorReply::invalid(&name, e))?;
    }
    Ok(json)
}

/// Resolves a query parameter name to proto field names and the leaf field.
/// Maps and (non well-known) messages cannot be set from the query.
fn resolve_param(input: &MessageDescriptor, name: &str) -> Result<(Vec<String>, FieldDescriptor), String> {
    let mut current = input.clone();
    let mut path = Vec::new();
    let parts: Vec<&str> = name.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))
            .ok_or_else(|| format!("unknown query parameter {name:?}"))?;
        path.push(field.name().to_owned());
        let last = i + 1 == parts.len();
        match field.kind() {
            Kind::Message(m) if !last && !field.is_list() && !field.is_map() => current = m,
            _ if !last => return Err(format!("{} is not a singular message field", path.join("."))),
            Kind::Message(m) if field.is_map() || !is_scalar_like(&m) => {
                return Err(format!("{name} cannot be set from the query"));
            }
            _ => return Ok((path, field)),
        }
    }
    Err(format!("unknown query parameter {name:?}"))
}

/// Well-known types whose JSON form is a scalar, so a string can carry them.
pub(crate) fn is_scalar_like(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.Value"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

/// The JSON for a path or query string destined for `field`: booleans
/// become JSON booleans, everything else stays a string (the proto3 JSON
/// mapping accepts numbers, enums, bytes and scalar well-known types as
/// strings, and reports a bad one naming the field).
fn scalar_json(field: &FieldDescriptor, value: String) -> Json {
    let boolean = match field.kind() {
        Kind::Bool => true,
        Kind::Message(m) => m.full_name() == "google.protobuf.BoolValue",
        _ => false,
    };
    match value.as_str() {
        "true" if boolean => Json::Bool(true),
        "false" if boolean => Json::Bool(false),
        _ => Json::String(value),
    }
}

/// Sets `value` at `path` in a JSON object, creating the objects between.
fn insert(json: &mut Json, path: &[String], value: Json) -> Result<(), String> {
    let mut current = json;
    for (i, name) in path.iter().enumerate() {
        let Json::Object(map) = current else { return Err(format!("{} is not an object", path[..i].join("."))) };
        if i + 1 == path.len() {
            map.insert(name.clone(), value);
            return Ok(());
        }
        current = map.entry(name.clone()).or_insert_with(|| Json::Object(Map::new()));
    }
    Ok(())
}

fn decode_query(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

/// The response as JSON: the whole message, or its `response_body` field
/// (`null` when that field is an unset message).
pub(crate) fn response_json(
    route: &Route,
    message: &DynamicMessage,
    descriptors: &Descriptors,
) -> Result<Json, serde_json::Error> {
    let json = descriptors.to_json(message)?;
    Ok(match &route.response_body {
        None => json,
        Some(field) => json.get(field.json_name()).cloned().unwrap_or(Json::Null),
    })
}

/// A message in a gRPC length-prefixed frame (uncompressed).
pub(crate) fn frame(message: &DynamicMessage) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    message.encode_raw(&mut buf);
    buf.freeze()
}

/// The message in the one frame of a unary gRPC response body.
pub(crate) fn unframe(output: MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, String> {
    let [compressed, a, b, c, d, rest @ ..] = body else { return Err("the response has no message".into()) };
    if *compressed != 0 {
        return Err("the response is compressed".into());
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    let payload = rest.get(..len).ok_or("the response message is truncated")?;
    DynamicMessage::decode(output, payload).map_err(|e| format!("cannot decode the response: {e}"))
}

#[cfg(test)]
mod tests {
    use super::super::routes::{Lookup, RouteTable};
    use super::*;

    fn build(method: http::Method, path_and_query: &str, body: &str) -> Result<Json, ErrorReply> {
        let descriptors = Descriptors::load().expect("descriptors");
        let table = RouteTable::build(&descriptors).expect("routes");
        let (path, query) = path_and_query.split_once('?').map_or((path_and_query, None), |(p, q)| (p, Some(q)));
        let Lookup::Found(route, captures) = table.find(&method, path) else { panic!("no route for {path}") };
        let message = request_message(route, captures, query, body.as_bytes())?;
        Ok(descriptors.to_json(&message).expect("json"))
    }

    #[test]
    fn a_named_body_field_takes_the_whole_body() {
        let json = build(http::Method::POST, "/kar/v1/actor/Echo/7/call/ping", r#"[1, {"a": null}]"#).expect("ok");
        assert_eq!(json["actor"], serde_json::json!({"type": "Echo", "id": "7"}));
        assert_eq!(json["method"], "ping");
        assert_eq!(json["json"], serde_json::json!([1, {"a": null}]));
    }

    #[test]
    fn a_null_body_is_a_json_null_payload() {
        let json = build(http::Method::POST, "/kar/v1/actor/Echo/7/call/ping", "null").expect("ok");
        assert_eq!(json["json"], Json::Null);
        assert!(json.as_object().expect("object").contains_key("json"));
    }

    #[test]
    fn the_path_wins_over_a_whole_body() {
        let json = build(
            http::Method::PUT,
            "/kar/v1/actor/A/1/reminders/r",
            r#"{"reminderId": "other", "method": "m", "period": "1.5s", "fireTime": "2030-01-01T00:00:00Z"}"#,
        )
        .expect("ok");
        assert_eq!(json["reminderId"], "r");
        assert_eq!(json["period"], "1.500s");
        assert_eq!(json["fireTime"], "2030-01-01T00:00:00Z");
    }

    #[test]
    fn query_parameters_fill_the_remaining_fields() {
        let json = build(http::Method::GET, "/kar/v1/reminders?actor.type=A&actor.id=x%20y", "").expect("ok");
        assert_eq!(json["actor"], serde_json::json!({"type": "A", "id": "x y"}));
        let json = build(http::Method::GET, "/kar/v1/actor/A/1/state/k?subkey=s", "").expect("ok");
        assert_eq!(json["subkey"], "s");
    }

    #[test]
    fn wrong_types_and_unknown_fields_name_the_field() {
        let err = build(http::Method::PUT, "/kar/v1/event/t", r#"{"partitions": "many"}"#).expect_err("bad");
        assert_eq!(err.http_status(), 400);
        assert!(err.status().message().starts_with("partitions"), "{}", err.status().message());
        let err = build(http::Method::PUT, "/kar/v1/event/t", r#"{"nope": 1}"#).expect_err("bad");
        assert!(err.status().message().contains("nope"), "{}", err.status().message());
        let err = build(http::Method::PUT, "/kar/v1/event/t", r#"{"partitions": "#).expect_err("bad");
        assert!(err.status().message().contains("malformed JSON"), "{}", err.status().message());
        let err = build(http::Method::GET, "/kar/v1/subscriptions?tpoic=x", "").expect_err("bad");
        assert!(err.status().message().contains("tpoic"), "{}", err.status().message());
        let err = build(http::Method::GET, "/kar/v1/actor/A//state", "").expect_err("bad");
        assert!(err.status().message().contains("actor.id"), "{}", err.status().message());
    }

    #[test]
    fn frames_round_trip() {
        let descriptors = Descriptors::load().expect("descriptors");
        let desc = descriptors.pool().get_message_by_name("kar.v1.ActorRef").expect("ActorRef");
        let mut message = DynamicMessage::new(desc.clone());
        message.set_field_by_name("type", prost_reflect::Value::String("A".into()));
        let framed = frame(&message);
        assert_eq!(unframe(desc, &framed).expect("decodes"), message);
    }
}
