//! The one error type of the core. Each variant names the failure and the object involved;
//! crius-cri maps variants to gRPC status codes in one place.

use std::path::PathBuf;

/// What went wrong in a pod or container operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (a bad field, an unsafe path, an unknown handler).
    #[error("{0}")]
    InvalidArgument(String),
    /// No pod, container or image by that id or name.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// "pod sandbox", "container" or "image".
        kind: &'static str,
        /// The id or name asked for.
        id: String,
    },
    /// Something with that name or id exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is not in a state that allows the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The operation did not finish in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The feature is not built.
    #[error("{0} is not implemented")]
    Unimplemented(String),
    /// A file or dir could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A step of a multi-step operation failed; `step` says which.
    #[error("{step}: {source}")]
    Step {
        /// The step, e.g. "set up pod network".
        step: String,
        /// Why it failed.
        source: Box<Error>,
    },
    /// An error from the image store.
    #[error(transparent)]
    Image(#[from] crius_image::Error),
    /// An error from the network layer.
    #[error(transparent)]
    Net(#[from] crius_net::Error),
    /// An error from spec generation, the runtime or the monitor.
    #[error(transparent)]
    Oci(#[from] crius_oci::Error),
    /// Anything else that should not happen.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// An I/O error with the operation and path it happened on.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wraps an error with the step of a multi-step flow it happened in.
    pub fn at_step(self, step: impl Into<String>) -> Self {
        Error::Step {
            step: step.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error, past any `Step` wrappers (for choosing a status code).
    pub fn root(&self) -> &Error {
        match self {
            Error::Step { source, .. } => source.root(),
            other => other,
        }
    }
}

/// Results of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
