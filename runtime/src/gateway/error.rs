//! The one mapping from gRPC statuses to HTTP answers of the JSON gateway:
//! an HTTP status chosen from the gRPC code, and a JSON `google.rpc.Status`
//! body (`{code, message, details}`) whose details are the status's
//! `grpc-status-details-bin` in their proto3 JSON form.
//!
//! Errors the gateway finds itself (bad JSON, unknown route, oversized body)
//! are built as gRPC statuses too, so every error body has one shape.

use super::descriptors::Descriptors;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use prost::Message;
use prost_reflect::DynamicMessage;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// The HTTP status for a gRPC code, per the table of `google.rpc.Code`.
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer: the gRPC status it reports and the HTTP status it is
/// sent with (the mapped one unless the gateway knows better, e.g. 413).
#[derive(Debug)]
pub(crate) struct ErrorReply {
    status: tonic::Status,
    http: StatusCode,
    allow: Option<String>,
}

impl ErrorReply {
    /// The reply for a status returned by a service.
    pub(crate) fn from_status(status: tonic::Status) -> Self {
        let http = http_status(status.code());
        Self { status, http, allow: None }
    }

    /// 400 `INVALID_ARGUMENT`, naming the offending field or parameter in a
    /// `BadRequest` detail.
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::from_status(tonic::Status::with_error_details(
            Code::InvalidArgument,
            message.clone(),
            ErrorDetails::with_bad_request_violation(field, message),
        ))
    }

    /// 404 for a path no rule matches.
    pub(crate) fn no_route(method: &http::Method, path: &str) -> Self {
        Self::from_status(tonic::Status::not_found(format!("no route for {method} {path}")))
    }

    /// 405 for a path whose rules take other methods.
    pub(crate) fn method_not_allowed(method: &http::Method, path: &str, allowed: &[http::Method]) -> Self {
        let allow = allowed.iter().map(http::Method::as_str).collect::<Vec<_>>().join(", ");
        let status = tonic::Status::unimplemented(format!("{method} is not allowed on {path}; allowed: {allow}"));
        Self { status, http: StatusCode::METHOD_NOT_ALLOWED, allow: Some(allow) }
    }

    /// 413 for a body over `limit` bytes.
    pub(crate) fn too_large(limit: usize) -> Self {
        let status = tonic::Status::with_error_details(
            Code::InvalidArgument,
            format!("the request body is larger than {limit} bytes"),
            ErrorDetails::with_bad_request_violation("body", format!("larger than {limit} bytes")),
        );
        Self { status, http: StatusCode::PAYLOAD_TOO_LARGE, allow: None }
    }

    /// The gRPC status reported.
    #[cfg(test)]
    pub(crate) fn status(&self) -> &tonic::Status {
        &self.status
    }

    /// The HTTP status sent.
    pub(crate) fn http_status(&self) -> StatusCode {
        self.http
    }

    /// The HTTP response: the JSON `google.rpc.Status`.
    pub(crate) fn into_response(self, descriptors: &Descriptors) -> http::Response<tonic::body::Body> {
        let body = serde_json::json!({
            "code": self.status.code() as i32,
            "message": self.status.message(),
            "details": details_json(&self.status, descriptors),
        });
        let mut response = super::json_response(self.http, &body);
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

/// The details of `status` as proto3 JSON `Any`s; a detail whose type the
/// descriptors do not know keeps its bytes in base64 (`{"@type", "value"}`).
fn details_json(status: &tonic::Status, descriptors: &Descriptors) -> serde_json::Value {
    let details = status.details();
    if details.is_empty() {
        return serde_json::Value::Array(Vec::new());
    }
    let Ok(decoded) = tonic_types::pb::Status::decode(Bytes::copy_from_slice(details)) else {
        return serde_json::Value::Array(Vec::new());
    };
    let items = decoded
        .details
        .into_iter()
        .map(|any| {
            let known = descriptors.any().and_then(|desc| {
                let message = DynamicMessage::decode(desc, any.encode_to_vec().as_slice()).ok()?;
                descriptors.to_json(&message).ok()
            });
            known.unwrap_or_else(|| {
                use base64::Engine;
                serde_json::json!({
                    "@type": any.type_url,
                    "value": base64::engine::general_purpose::STANDARD.encode(&any.value),
                })
            })
        })
        .collect();
    serde_json::Value::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_the_usual_http_statuses() {
        let table = [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 429),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Cancelled, 499),
            (Code::Internal, 500),
            (Code::Unknown, 500),
        ];
        for (code, http) in table {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn details_are_rendered_as_json_anys() {
        let descriptors = Descriptors::load().expect("descriptors");
        let reply = ErrorReply::invalid("actor.id", "actor.id is required");
        let details = details_json(reply.status(), &descriptors);
        assert_eq!(details[0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
        assert_eq!(details[0]["fieldViolations"][0]["field"], "actor.id");
    }
}
