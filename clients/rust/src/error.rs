//! The error type of every client operation, and how to classify it.
//!
//! A call can fail in the runtime (a gRPC status: unavailable, deadline
//! exceeded, not found, ...), because the handler it reached raised an
//! application error (also a gRPC status, marked with a `google.rpc.ErrorInfo`
//! detail whose reason is `APPLICATION_ERROR`), on the way to the runtime
//! (transport), or before anything was sent (invalid input).

use tonic::Code;
use tonic_types::StatusExt;

/// The `google.rpc.ErrorInfo` reason that marks an error raised by an
/// application handler, as opposed to a failure of the runtime.
pub const APPLICATION_ERROR_REASON: &str = "APPLICATION_ERROR";

/// An error from a KAR client operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime answered with a gRPC status: a runtime failure, or an
    /// application error raised by the handler (see
    /// [`Error::is_application_error`]).
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(#[from] tonic::Status),
    /// The runtime could not be reached.
    #[error("cannot reach the KAR runtime: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The request was rejected before it was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A JSON value could not be serialized or deserialized.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A JSON result was expected but the result is a typed protobuf message;
    /// use the `*_payload` variant of the call to receive it.
    #[error("the result is a typed protobuf message ({type_url}), not JSON")]
    TypedPayload {
        /// The type URL of the message received.
        type_url: String,
    },
}

/// The result of a KAR client operation.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The gRPC code that best describes the error.
    pub fn code(&self) -> Code {
        match self {
            Error::Status(status) => status.code(),
            Error::Transport(_) => Code::Unavailable,
            Error::InvalidArgument(_) | Error::Json(_) => Code::InvalidArgument,
            Error::TypedPayload { .. } => Code::FailedPrecondition,
        }
    }

    /// The error message, without its code.
    pub fn message(&self) -> String {
        match self {
            Error::Status(status) => status.message().to_owned(),
            Error::Transport(err) => err.to_string(),
            Error::InvalidArgument(message) => message.clone(),
            Error::Json(err) => err.to_string(),
            Error::TypedPayload { .. } => self.to_string(),
        }
    }

    /// True when the error was raised by the application handler that was
    /// invoked (it completed the invocation and will not be retried), false
    /// for a failure of the runtime or the transport.
    pub fn is_application_error(&self) -> bool {
        match self {
            Error::Status(status) => {
                status.get_details_error_info().is_some_and(|info| info.reason == APPLICATION_ERROR_REASON)
            }
            _ => false,
        }
    }

    /// The gRPC status, when the runtime answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Status(status) => Some(status),
            _ => None,
        }
    }
}

/// The canonical upper-case name of a gRPC code (`NOT_FOUND`, ...).
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    fn app_status(reason: &str) -> tonic::Status {
        tonic::Status::with_error_details(
            Code::FailedPrecondition,
            "insufficient funds",
            ErrorDetails::with_error_info(reason, "kar", std::collections::HashMap::new()),
        )
    }

    #[test]
    fn a_status_with_application_error_info_is_an_application_error() {
        let err = Error::from(app_status(APPLICATION_ERROR_REASON));
        assert!(err.is_application_error());
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(err.message(), "insufficient funds");
        assert_eq!(err.to_string(), "FAILED_PRECONDITION: insufficient funds");
    }

    #[test]
    fn a_plain_status_is_a_runtime_failure() {
        let err = Error::from(tonic::Status::unavailable("no component hosts Account"));
        assert!(!err.is_application_error());
        assert_eq!(err.code(), Code::Unavailable);
    }

    #[test]
    fn error_info_with_another_reason_is_not_an_application_error() {
        assert!(!Error::from(app_status("ACTOR_NOT_FOUND")).is_application_error());
    }

    #[test]
    fn local_errors_have_codes() {
        assert_eq!(Error::InvalidArgument("x".into()).code(), Code::InvalidArgument);
        assert!(!Error::InvalidArgument("x".into()).is_application_error());
    }
}
