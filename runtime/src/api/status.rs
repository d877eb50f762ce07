//! The one mapping from engine errors and outcomes to gRPC statuses.
//!
//! Application errors carry an `ErrorInfo` detail with reason
//! `APPLICATION_ERROR`; runtime failures carry reasons of their own, so a
//! client can tell "the handler failed" from "the runtime could not run it".
//! Bad input carries a `BadRequest` detail naming the field.

use crate::engine::Error;
use crate::engine::types::{Failure, Outcome};
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo` domain of every error the runtime reports.
pub(crate) const DOMAIN: &str = "kar.dev";

/// `INVALID_ARGUMENT` naming the offending field.
pub(crate) fn invalid(field: &str, message: &str) -> Status {
    Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request_violation(field, message))
}

fn with_reason(code: Code, message: String, reason: &str) -> Status {
    Status::with_error_details(code, message, ErrorDetails::with_error_info(reason, DOMAIN, HashMap::new()))
}

/// The status for an engine error.
pub(crate) fn from_engine(error: Error) -> Status {
    match error {
        Error::NotFound(m) => with_reason(Code::NotFound, m, "TARGET_NOT_FOUND"),
        Error::InvalidArgument(m) => {
            let field = m.split(':').next().unwrap_or_default().split(' ').next().unwrap_or_default().to_owned();
            invalid(&field, &m)
        }
        Error::FailedPrecondition(m) => with_reason(Code::FailedPrecondition, m, "CALLER_NOT_RUNNING"),
        Error::Unavailable(m) => with_reason(Code::Unavailable, m, "STORAGE_UNAVAILABLE"),
    }
}

/// The status for an outcome that is not a value.
pub(crate) fn from_outcome(outcome: Outcome) -> Status {
    match outcome {
        Outcome::Value(_) => Status::ok(""),
        Outcome::AppError { code, message } => {
            let code = match Code::from_i32(code) {
                Code::Ok => Code::Unknown,
                c => c,
            };
            with_reason(code, message, "APPLICATION_ERROR")
        }
        Outcome::Failed(Failure::DeadlineExceeded) => with_reason(
            Code::DeadlineExceeded,
            "the deadline passed before the invocation could start".into(),
            "DEADLINE_EXCEEDED",
        ),
        Outcome::Failed(Failure::Cancelled) => with_reason(
            Code::Cancelled,
            "the invocation was not started because its caller failed".into(),
            "CALLER_FAILED",
        ),
        Outcome::Failed(Failure::NotFound(m)) => with_reason(Code::NotFound, m, "TARGET_NOT_FOUND"),
        Outcome::Failed(Failure::Deadlock(m)) => with_reason(Code::Aborted, m, "DEADLOCK"),
    }
}

/// The status for a store error.
pub(crate) fn from_store(error: crate::store::Error) -> Status {
    match error {
        crate::store::Error::Fenced(_) => with_reason(Code::FailedPrecondition, error.to_string(), "OWNERSHIP_FENCED"),
        crate::store::Error::Storage(_) => with_reason(Code::Unavailable, error.to_string(), "STORAGE_UNAVAILABLE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_errors_are_marked_as_such() {
        let status = from_outcome(Outcome::AppError { code: 0, message: "boom".into() });
        assert_eq!(status.code(), Code::Unknown);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "APPLICATION_ERROR");
        let status = from_outcome(Outcome::AppError { code: Code::NotFound as i32, message: "no".into() });
        assert_eq!(status.code(), Code::NotFound);
    }

    #[test]
    fn invalid_input_names_the_field() {
        let status = invalid("actor.id", "actor.id is required");
        let bad = status.get_details_bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "actor.id");
    }
}
