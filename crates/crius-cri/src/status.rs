//! The one place where core errors become gRPC status codes.

use crius_core::Error;
use tonic::{Code, Status};

/// Maps a core error to the gRPC status the CRI client should see. The message is the full
/// error chain, which names the step, the object and the cause.
pub fn to_status(err: Error) -> Status {
    let code = match err.root() {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::Unimplemented(_) => Code::Unimplemented,
        Error::Io { .. } | Error::Internal(_) | Error::Step { .. } => Code::Internal,
    };
    Status::new(code, err.to_string())
}

/// The answer for an RPC crius does not serve yet.
pub fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by crius"))
}

/// The answer for a request that lacks a field or has a bad one.
pub fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_wrapped_errors_keep_the_inner_code_and_the_whole_message() {
        let err = Error::NotFound {
            kind: "image",
            id: "busybox".into(),
        }
        .at_step("resolve pause image");
        let status = to_status(err);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.message(),
            "resolve pause image: image \"busybox\" not found"
        );
    }

    #[test]
    fn unimplemented_names_the_rpc() {
        let s = unimplemented("Attach");
        assert_eq!(s.code(), Code::Unimplemented);
        assert!(s.message().contains("Attach"));
    }
}
