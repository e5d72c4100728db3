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
        Error::Image(e) => image_code(e),
        Error::Net(e) => net_code(e),
        Error::Oci(e) => oci_code(e),
        Error::Io { .. } | Error::Internal(_) | Error::Step { .. } => Code::Internal,
    };
    Status::new(code, err.to_string())
}

fn image_code(e: &crius_image::Error) -> Code {
    // An image with no manifest for this platform is, for this node, an image that does
    // not exist (containerd answers the same).
    if e.is_not_found() || matches!(e, crius_image::Error::NoMatchingPlatform { .. }) {
        Code::NotFound
    } else if e.is_invalid_argument() {
        Code::InvalidArgument
    } else if e.is_unauthorized() {
        Code::Unauthenticated
    } else if matches!(e, crius_image::Error::AuthFile { .. }) {
        // The node's own configuration is broken, not the request.
        Code::FailedPrecondition
    } else if e.is_blocked() {
        Code::PermissionDenied
    } else if e.is_limit_exceeded() {
        Code::ResourceExhausted
    } else if e.is_unavailable() {
        Code::Unavailable
    } else {
        Code::Internal
    }
}

fn net_code(e: &crius_net::Error) -> Code {
    use crius_net::Error as E;
    match e {
        E::InvalidPodNetwork { .. } => Code::InvalidArgument,
        E::NoNetworkConfig { .. } | E::PluginNotFound { .. } => Code::FailedPrecondition,
        E::PluginTimeout { .. } => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

fn oci_code(e: &crius_oci::Error) -> Code {
    use crius_oci::Error as E;
    match e {
        E::MissingField { .. }
        | E::NoCommand { .. }
        | E::InvalidContainerPath { .. }
        | E::MountSourceMissing { .. }
        | E::MountPropagation { .. }
        | E::UnsupportedMount { .. }
        | E::InvalidDevice { .. }
        | E::InvalidUser { .. }
        | E::UserNotFound { .. }
        | E::GroupNotFound { .. }
        | E::UnknownCapability { .. }
        | E::UnsafeSysctl { .. }
        | E::InvalidSeccompProfile { .. }
        | E::SeccompProfileRead { .. }
        | E::SeccompProfileParse { .. }
        | E::PrivilegedNotAllowed { .. }
        | E::InvalidResource { .. }
        | E::CdiDeviceName { .. } => Code::InvalidArgument,
        E::ContainerNotFound { .. } | E::CdiDeviceUnknown { .. } => Code::NotFound,
        // The node's own configuration (spec files, hooks) is what is broken.
        E::CdiSpecInvalid { .. } | E::CdiEdit { .. } | E::HookFile { .. } => {
            Code::FailedPrecondition
        }
        E::RuntimeTimeout { .. } | E::ShimTimeout { .. } => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// Maps a streaming server error (starting it, or registering a URL).
pub fn stream_status(err: crius_stream::Error) -> Status {
    let code = match &err {
        crius_stream::Error::TooManyRequests { .. } => Code::ResourceExhausted,
        crius_stream::Error::BadAddress { .. } | crius_stream::Error::Listen { .. } => {
            Code::Unavailable
        }
        _ => Code::Internal,
    };
    Status::new(code, err.to_string())
}

/// The answer for an RPC crius does not serve yet.
pub fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by crius"))
}

/// The answer when work handed to a blocking thread did not come back (it panicked or
/// the runtime is shutting down).
pub fn lost_task(what: &str, err: tokio::task::JoinError) -> Status {
    Status::internal(format!("{what}: {err}"))
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
