//! The OpenAPI 3 document of the JSON gateway, generated from the same
//! descriptors and route table that serve the requests: one operation per
//! HTTP binding, schemas in their proto3 JSON form, descriptions from the
//! comments of the `.proto` files.
//!
//! The runtime serves it at `/openapi.json`; `kar openapi` writes it to
//! `runtime/openapi.json`, which a test keeps in step with the code.

use super::descriptors::Descriptors;
use super::routes::{BodyRule, Route, RouteTable};
use super::transcode::is_scalar_like;
use prost_reflect::{FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};

/// The OpenAPI document of the `kar.v1` JSON API.
pub fn document() -> Result<Json, super::Error> {
    let descriptors = Descriptors::load()?;
    let routes = RouteTable::build(&descriptors)?;
    Ok(build(&routes))
}

/// The document as written to the repository: pretty JSON and a final
/// newline.
pub fn document_text() -> Result<String, super::Error> {
    let mut text = serde_json::to_string_pretty(&document()?).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

const ERROR_SCHEMA: &str = "google.rpc.Status";

const DESCRIPTION: &str = "The JSON API of a KAR runtime, transcoded from the gRPC API `kar.v1` \
following its `google.api.http` annotations and the proto3 JSON mapping. It is served on the \
runtime's gRPC port (HTTP/1.1 and h2c side by side).\n\n\
Headers carried into the call: `kar-request-id` (idempotency key: repeating a request with the same \
id returns its recorded outcome), `kar-flow-id`, `kar-caller-id` and `kar-call-seq` (the invocation \
context of a call made from a handler), `traceparent` and `tracestate`, and `grpc-timeout` (a \
deadline in the gRPC format, e.g. `5S` or `200m`; the gateway answers 504 once it passes).\n\n\
Errors are a JSON `google.rpc.Status` with the HTTP status matching the gRPC code: 400 for bad \
input (the `BadRequest` detail names the field), 404 for an unknown target or route, 413 for an \
oversized body, 503 when the runtime's storage is unavailable, 504 when the deadline passed.";

/// Builds the document from the route table.
pub(crate) fn build(routes: &RouteTable) -> Json {
    let mut schemas = Schemas::default();
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut tags = BTreeMap::new();
    for route in routes.routes() {
        let service = route.rpc.parent_service();
        tags.entry(service.name().to_owned())
            .or_insert_with(|| comments(&service.parent_file(), service.path()).unwrap_or_default());
        let operation = operation(route, &mut schemas);
        paths
            .entry(route.template.openapi_path())
            .or_default()
            .insert(route.method.as_str().to_ascii_lowercase(), operation);
    }
    schemas.error();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "KAR runtime JSON API",
            "version": "kar.v1",
            "description": DESCRIPTION,
        },
        "tags": tags.into_iter().map(|(name, description)| json!({"name": name, "description": description})).collect::<Vec<_>>(),
        "paths": paths,
        "components": {"schemas": schemas.done},
    })
}

fn operation(route: &Route, schemas: &mut Schemas) -> Json {
    let rpc = &route.rpc;
    let description = comments(&rpc.parent_file(), rpc.path()).unwrap_or_default();
    let summary = description.split(". ").next().unwrap_or_default().trim_end_matches('.').to_owned();
    let input = rpc.input();
    let mut parameters = Vec::new();
    for variable in route.template.variables() {
        let Ok(leaf) = super::routes::resolve(&input, &variable.field_path) else { continue };
        let mut description = field_comment(&leaf);
        if variable.field_path.len() > 1 {
            description = format!("Sets `{}`. {description}", variable.name());
        }
        if route.template.is_multi_segment(variable) {
            description.push_str(" May contain '/'.");
        }
        parameters.push(json!({
            "name": variable.openapi_name(),
            "in": "path",
            "required": true,
            "description": description.trim(),
            "schema": schemas.field(&leaf),
        }));
    }
    if !matches!(route.body, BodyRule::Whole) {
        let mut visiting = BTreeSet::new();
        query_parameters(route, &input, &mut Vec::new(), &mut visiting, schemas, &mut parameters);
    }
    let mut op = Map::new();
    op.insert("operationId".into(), json!(route.operation_id));
    op.insert("tags".into(), json!([rpc.parent_service().name()]));
    op.insert("summary".into(), json!(summary));
    op.insert("description".into(), json!(description));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Json::Array(parameters));
    }
    match &route.body {
        BodyRule::None => {}
        BodyRule::Whole => {
            op.insert("requestBody".into(), request_body(whole_body(route, &input, schemas), false));
        }
        BodyRule::Field(field) => {
            op.insert("requestBody".into(), request_body(schemas.field(field), false));
        }
    }
    let output = match &route.response_body {
        None => schemas.message(&rpc.output()),
        Some(field) => schemas.field(field),
    };
    op.insert(
        "responses".into(),
        json!({
            "200": {"description": "The result.", "content": {"application/json": {"schema": output}}},
            "default": {
                "description": "An error: a google.rpc.Status with the HTTP status matching its gRPC code.",
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{ERROR_SCHEMA}")}}},
            },
        }),
    );
    Json::Object(op)
}

fn request_body(schema: Json, required: bool) -> Json {
    json!({"required": required, "content": {"application/json": {"schema": schema}}})
}

/// The body of a `body: "*"` rule: the request's fields less those the path
/// binds entirely.
fn whole_body(route: &Route, input: &MessageDescriptor, schemas: &mut Schemas) -> Json {
    let mut properties = Map::new();
    for field in input.fields() {
        let path = vec![field.name().to_owned()];
        let bound = route.bound_by_path(&path)
            || match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() => {
                    m.fields().all(|sub| route.bound_by_path(&[field.name().to_owned(), sub.name().to_owned()]))
                }
                _ => false,
            };
        if !bound {
            properties.insert(field.json_name().to_owned(), schemas.property(&field));
        }
    }
    json!({"type": "object", "description": comments_of_message(input), "properties": properties})
}

/// Query parameters for every leaf field not bound by the path or the body.
fn query_parameters(
    route: &Route,
    message: &MessageDescriptor,
    prefix: &mut Vec<String>,
    visiting: &mut BTreeSet<String>,
    schemas: &mut Schemas,
    out: &mut Vec<Json>,
) {
    if !visiting.insert(message.full_name().to_owned()) {
        return;
    }
    for field in message.fields() {
        prefix.push(field.name().to_owned());
        let under_body = matches!(&route.body, BodyRule::Field(body) if prefix[0] == body.name());
        if !under_body && !route.bound_by_path(prefix) && !field.is_map() {
            match field.kind() {
                Kind::Message(m) if !is_scalar_like(&m) => {
                    if !field.is_list() {
                        query_parameters(route, &m, prefix, visiting, schemas, out);
                    }
                }
                _ => out.push(json!({
                    "name": prefix.join("."),
                    "in": "query",
                    "required": false,
                    "description": field_comment(&field).trim(),
                    "schema": schemas.field(&field),
                })),
            }
        }
        prefix.pop();
    }
    visiting.remove(message.full_name());
}

/// The component schemas, filled as messages are referenced.
#[derive(Default)]
struct Schemas {
    done: BTreeMap<String, Json>,
}

impl Schemas {
    /// The schema of a field's value, repeated and map included.
    fn field(&mut self, field: &FieldDescriptor) -> Json {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else { return json!({}) };
            let value = self.kind(&entry.map_entry_value_field().kind());
            return json!({"type": "object", "additionalProperties": value});
        }
        let item = self.kind(&field.kind());
        if field.is_list() { json!({"type": "array", "items": item}) } else { item }
    }

    /// A field's schema with its description, where OpenAPI 3.0 allows one
    /// (not beside a `$ref`).
    fn property(&mut self, field: &FieldDescriptor) -> Json {
        let mut schema = self.field(field);
        if let Json::Object(map) = &mut schema
            && !map.contains_key("$ref")
        {
            let description = field_comment(field);
            if !description.is_empty() {
                map.insert("description".into(), json!(description));
            }
        }
        schema
    }

    fn kind(&mut self, kind: &Kind) -> Json {
        match kind {
            Kind::Double => json!({"type": "number", "format": "double"}),
            Kind::Float => json!({"type": "number", "format": "float"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({"type": "integer", "format": "int32"}),
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"})
            }
            Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "format": "byte"}),
            Kind::Enum(e) => {
                json!({"type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>()})
            }
            Kind::Message(m) => self.message(m),
        }
    }

    /// A `$ref` to a message's schema, defining it on first use.
    fn message(&mut self, message: &MessageDescriptor) -> Json {
        let name = message.full_name().to_owned();
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        if self.done.contains_key(&name) {
            return reference;
        }
        if let Some(schema) = well_known(message) {
            self.done.insert(name, schema);
            return reference;
        }
        // Placeholder first, so recursive messages terminate.
        self.done.insert(name.clone(), json!({}));
        let mut properties = Map::new();
        for field in message.fields() {
            properties.insert(field.json_name().to_owned(), self.property(&field));
        }
        let mut description = comments_of_message(message);
        for oneof in message.oneofs().filter(|o| !o.is_synthetic()) {
            let names: Vec<_> = oneof.fields().map(|f| f.json_name().to_owned()).collect();
            if !description.is_empty() {
                description.push_str("\n\n");
            }
            description.push_str(&format!("At most one of {} may be set.", names.join(", ")));
        }
        self.done.insert(name, json!({"type": "object", "description": description, "properties": properties}));
        reference
    }

    fn error(&mut self) {
        self.done.insert(
            ERROR_SCHEMA.to_owned(),
            json!({
                "type": "object",
                "description": "An error: the gRPC status code, a message, and details such as \
                    google.rpc.BadRequest (naming the offending field) or google.rpc.ErrorInfo.",
                "properties": {
                    "code": {"type": "integer", "format": "int32", "description": "The google.rpc.Code."},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"$ref": "#/components/schemas/google.protobuf.Any"}},
                },
                "required": ["code", "message"],
            }),
        );
        self.done.entry("google.protobuf.Any".to_owned()).or_insert_with(any_schema);
    }
}

fn any_schema() -> Json {
    json!({
        "type": "object",
        "description": "A typed message: its type URL in `@type` and its fields beside it (or `value` for \
            well-known types with a scalar JSON form).",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": true,
    })
}

/// The JSON form of the well-known types.
fn well_known(message: &MessageDescriptor) -> Option<Json> {
    let scalar = |kind: Json| Some(kind);
    match message.full_name() {
        "google.protobuf.Value" => Some(json!({"description": "Any JSON value.", "nullable": true})),
        "google.protobuf.Struct" => Some(json!({"type": "object", "additionalProperties": true})),
        "google.protobuf.ListValue" => Some(json!({"type": "array", "items": {}})),
        "google.protobuf.Any" => Some(any_schema()),
        "google.protobuf.Timestamp" => {
            Some(json!({"type": "string", "format": "date-time", "description": "An RFC 3339 time, in UTC."}))
        }
        "google.protobuf.Duration" => Some(json!({
            "type": "string",
            "pattern": "^-?[0-9]{1,12}(\\.[0-9]{1,9})?s$",
            "description": "A duration in seconds with an `s` suffix, e.g. `1.5s`.",
        })),
        "google.protobuf.FieldMask" => Some(json!({"type": "string"})),
        "google.protobuf.Empty" => Some(json!({"type": "object"})),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => scalar(json!({"type": "number"})),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => scalar(json!({"type": "integer"})),
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            scalar(json!({"type": "string", "pattern": "^-?[0-9]{1,20}$"}))
        }
        "google.protobuf.BoolValue" => scalar(json!({"type": "boolean"})),
        "google.protobuf.StringValue" => scalar(json!({"type": "string"})),
        "google.protobuf.BytesValue" => scalar(json!({"type": "string", "format": "byte"})),
        _ => None,
    }
}

fn comments_of_message(message: &MessageDescriptor) -> String {
    comments(&message.parent_file(), message.path()).unwrap_or_default()
}

fn field_comment(field: &FieldDescriptor) -> String {
    comments(&field.parent_file(), field.path()).unwrap_or_default()
}

/// The leading comment of the element at `path` in `file`, one paragraph
/// per blank-line-separated block.
fn comments(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let lines: Vec<&str> = text.lines().map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end()).collect();
    let mut out = String::new();
    for line in lines {
        if line.is_empty() {
            out.push_str("\n\n");
        } else if !out.is_empty() && !out.ends_with('\n') {
            // Keep indented lines (tables, examples) on lines of their own.
            out.push(if line.starts_with(' ') { '\n' } else { ' ' });
            out.push_str(line);
        } else {
            out.push_str(line);
        }
    }
    Some(out.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_an_operation_and_every_reference_resolves() {
        let doc = document().expect("document");
        let routes = RouteTable::build(&Descriptors::load().expect("descriptors")).expect("routes");
        let mut operations = 0;
        for (_, item) in doc["paths"].as_object().expect("paths") {
            operations += item.as_object().expect("item").len();
        }
        assert_eq!(operations, routes.routes().len());
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().expect("name");
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name} is referenced but not defined");
        }
    }

    #[test]
    fn path_and_query_parameters_are_described() {
        let doc = document().expect("document");
        let get = &doc["paths"]["/kar/v1/actor/{actor_type}/{actor_id}/state/{key}"]["get"];
        let names: Vec<_> = get["parameters"].as_array().expect("params").iter().map(|p| p["name"].clone()).collect();
        assert_eq!(names, [json!("actor_type"), json!("actor_id"), json!("key"), json!("subkey")]);
        let schedule = &doc["paths"]["/kar/v1/actor/{actor_type}/{actor_id}/reminders/{reminder_id}"]["put"];
        let body = &schedule["requestBody"]["content"]["application/json"]["schema"]["properties"];
        assert!(body.get("actor").is_none() && body.get("reminderId").is_none() && body.get("method").is_some());
    }
}
