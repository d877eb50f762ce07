//! The JSON gateway: the `kar.v1` API as HTTP/1.1 JSON, transcoded from the
//! `google.api.http` annotations of the contract at run time, and its
//! OpenAPI document at `/openapi.json`.
//!
//! [`GatewayService`] sits in front of the gRPC services on the same port:
//! a request whose content type is `application/grpc*` goes through
//! untouched; any other is matched against the route table, turned into the
//! RPC's request message (path variables, query parameters, body), framed
//! and sent to the same gRPC services in-process, and the response or status
//! is turned back into JSON. No route is written by hand: the table, the
//! messages and the OpenAPI document all come from the descriptors.
//!
//! Layout: `template` (path templates), `routes` (rules → route table),
//! `transcode` (JSON ⇄ messages, framing), `error` (the one gRPC → HTTP
//! mapping), `openapi` (the document), `descriptors` (the pool).
//!
//! The gateway knows the contract and tonic's service interface only: it must
//! not depend on the engine, the log or the store, nor on `api` internals.

mod descriptors;
mod error;
pub mod openapi;
mod routes;
mod template;
mod transcode;

pub use routes::RuleError;

use bytes::Bytes;
use descriptors::Descriptors;
use error::ErrorReply;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use prost_reflect::DynamicMessage;
use routes::{Lookup, Route, RouteTable};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceExt};

/// The path of the OpenAPI document.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Request headers carried into the gRPC call as metadata.
const FORWARDED_HEADERS: &[&str] = &[
    kar_proto::metadata::FLOW_ID,
    kar_proto::metadata::CALLER_ID,
    kar_proto::metadata::CALL_SEQ,
    kar_proto::metadata::REQUEST_ID,
    "traceparent",
    "tracestate",
    "grpc-timeout",
];

/// A failure to build the gateway from the descriptors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The descriptor sets could not be loaded.
    #[error("descriptors: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// A `google.api.http` rule cannot be served.
    #[error("http rule: {0}")]
    Rule(#[from] RuleError),
}

/// The gateway: routes, descriptors and limits. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    descriptors: Descriptors,
    routes: RouteTable,
    /// The OpenAPI document, rendered once.
    openapi: Bytes,
    /// The largest request body read; a larger one is a 413.
    max_body_bytes: usize,
}

impl Gateway {
    /// Builds the gateway from the contract's descriptors; bodies over
    /// `max_body_bytes` are refused with 413.
    pub fn new(max_body_bytes: usize) -> Result<Self, Error> {
        let descriptors = Descriptors::load()?;
        let routes = RouteTable::build(&descriptors)?;
        let openapi = Bytes::from(serde_json::to_vec_pretty(&openapi::build(&routes)).unwrap_or_default());
        Ok(Self { shared: Arc::new(Shared { descriptors, routes, openapi, max_body_bytes }) })
    }

    /// Puts the gateway in front of `grpc`, the gRPC services.
    pub fn service<S>(&self, grpc: S) -> GatewayService<S> {
        GatewayService { gateway: self.clone(), grpc }
    }

    /// Answers one HTTP (non-gRPC) request.
    async fn handle<B, S>(&self, request: Request<B>, grpc: S) -> Response<tonic::body::Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
        S: GrpcService,
    {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        if path == OPENAPI_PATH && (parts.method == Method::GET || parts.method == Method::HEAD) {
            let mut response = Response::new(tonic::body::Body::new(Full::new(self.shared.openapi.clone())));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return response;
        }
        let reply = match self.shared.routes.find(&parts.method, path) {
            Lookup::Found(route, captures) => {
                match self.transcode(route, captures, parts.uri.query(), &parts.headers, body, grpc).await {
                    Ok(response) => return response,
                    Err(reply) => reply,
                }
            }
            Lookup::MethodNotAllowed(allowed) => ErrorReply::method_not_allowed(&parts.method, path, &allowed),
            Lookup::NotFound => ErrorReply::no_route(&parts.method, path),
            Lookup::BadEncoding => ErrorReply::invalid("path", "the path is not valid percent-encoded UTF-8"),
        };
        tracing::debug!(method = %parts.method, path, status = %reply.http_status(), "gateway error");
        reply.into_response(&self.shared.descriptors)
    }

    async fn transcode<B, S>(
        &self,
        route: &Route,
        captures: Vec<(template::Variable, String)>,
        query: Option<&str>,
        headers: &HeaderMap,
        body: B,
        grpc: S,
    ) -> Result<Response<tonic::body::Body>, ErrorReply>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
        S: GrpcService,
    {
        let body = read_body(body, headers, self.shared.max_body_bytes).await?;
        let message = transcode::request_message(route, captures, query, &body)?;
        let call = call(grpc, route, &message, headers);
        let result = match headers.get("grpc-timeout").and_then(|v| parse_grpc_timeout(v.to_str().ok()?)) {
            Some(timeout) => tokio::time::timeout(timeout, call).await.unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded("the deadline passed before the call returned"))
            }),
            None => call.await,
        };
        let output = result.map_err(ErrorReply::from_status)?;
        let json = transcode::response_json(route, &output, &self.shared.descriptors).map_err(|e| {
            ErrorReply::from_status(tonic::Status::internal(format!("cannot render the response: {e}")))
        })?;
        Ok(json_response(StatusCode::OK, &json))
    }
}

/// The proto3 JSON form of `kar.v1` messages, written and read exactly as
/// the gateway does (defaults written out, 64-bit integers as strings,
/// unknown fields refused). The legacy HTTP app channel speaks it.
#[derive(Clone, Debug)]
pub(crate) struct JsonCodec {
    descriptors: Descriptors,
}

impl JsonCodec {
    /// Loads the contract's descriptors.
    pub(crate) fn new() -> Result<Self, Error> {
        Ok(Self { descriptors: Descriptors::load()? })
    }

    fn descriptor(&self, full_name: &str) -> Result<prost_reflect::MessageDescriptor, String> {
        self.descriptors.pool().get_message_by_name(full_name).ok_or_else(|| format!("unknown message {full_name}"))
    }

    /// `message`, a `full_name` (e.g. `kar.v1.Invocation`), as JSON.
    pub(crate) fn encode(&self, full_name: &str, message: &impl prost::Message) -> Result<serde_json::Value, String> {
        let dynamic = DynamicMessage::decode(self.descriptor(full_name)?, message.encode_to_vec().as_slice())
            .map_err(|e| e.to_string())?;
        self.descriptors.to_json(&dynamic).map_err(|e| e.to_string())
    }

    /// Reads a `full_name` message from JSON; an error names the field.
    pub(crate) fn decode<M: prost::Message + Default>(
        &self,
        full_name: &str,
        json: &serde_json::Value,
    ) -> Result<M, String> {
        let dynamic = transcode::decode(&self.descriptor(full_name)?, json).map_err(|(_, message)| message)?;
        M::decode(prost::Message::encode_to_vec(&dynamic).as_slice()).map_err(|e| e.to_string())
    }
}

/// The gRPC services the gateway calls in-process.
pub trait GrpcService:
    Service<
        Request<tonic::body::Body>,
        Response = Response<tonic::body::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> GrpcService for S where
    S: Service<
            Request<tonic::body::Body>,
            Response = Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The gateway in front of the gRPC services `S`: gRPC requests go to `S`,
/// every other request is served as JSON.
#[derive(Clone, Debug)]
pub struct GatewayService<S> {
    gateway: Gateway,
    grpc: S,
}

impl<S, B> Service<Request<B>> for GatewayService<S>
where
    S: GrpcService,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness of the gRPC services is awaited per call (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let grpc = self.grpc.clone();
        if is_grpc(request.headers()) {
            return Box::pin(grpc.oneshot(request.map(tonic::body::Body::new)));
        }
        let gateway = self.gateway.clone();
        Box::pin(async move { Ok(gateway.handle(request, grpc).await) })
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
async fn read_body<B>(body: B, headers: &HeaderMap, limit: usize) -> Result<Bytes, ErrorReply>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ErrorReply::too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ErrorReply::too_large(limit)),
        Err(e) => Err(ErrorReply::invalid("body", format!("cannot read the body: {e}"))),
    }
}

/// Calls the RPC of `route` with `message` on the in-process gRPC services,
/// carrying the forwarded headers as metadata.
async fn call<S: GrpcService>(
    grpc: S,
    route: &Route,
    message: &DynamicMessage,
    headers: &HeaderMap,
) -> Result<DynamicMessage, tonic::Status> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(route.grpc_path.as_str())
        .version(http::Version::HTTP_2)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers");
    for name in FORWARDED_HEADERS {
        for value in headers.get_all(*name) {
            request = request.header(*name, value.clone());
        }
    }
    let request = request
        .body(tonic::body::Body::new(Full::new(transcode::frame(message))))
        .map_err(|e| tonic::Status::internal(format!("cannot build the gRPC request: {e}")))?;
    let Ok(response) = grpc.oneshot(request).await;
    let (parts, body) = response.into_parts();
    if let Some(status) = tonic::Status::from_header_map(&parts.headers)
        && status.code() != tonic::Code::Ok
    {
        return Err(status);
    }
    let collected = body.collect().await.map_err(|e| tonic::Status::internal(format!("the call failed: {e}")))?;
    if let Some(status) = collected.trailers().and_then(tonic::Status::from_header_map)
        && status.code() != tonic::Code::Ok
    {
        return Err(status);
    }
    transcode::unframe(route.rpc.output(), &collected.to_bytes()).map_err(tonic::Status::internal)
}

/// Parses a `grpc-timeout` value (`1-8 digits` + `H M S m u n`).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A JSON response.
fn json_response(status: StatusCode, json: &serde_json::Value) -> Response<tonic::body::Body> {
    let body = serde_json::to_vec(json).unwrap_or_default();
    let mut response = Response::new(tonic::body::Body::new(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
    }

    #[test]
    fn the_contract_builds_a_gateway() {
        Gateway::new(1024).expect("gateway");
    }
}
