//! The one error type of the runtime: each variant names what failed and on what.

use std::path::PathBuf;

/// Everything the runtime can fail at. Messages are lowercase, without a
/// trailing period, and name the container, path or field involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container id {0:?} is invalid: use letters, digits, '.', '_', '-' and '+', not starting with '.' or '-'")]
    InvalidId(String),
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error("bundle {path}: {source}")]
    Bundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config.json in {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("unsupported OCI version {version:?}: crius-runtime supports 1.0.0 to 1.2.x")]
    OciVersion { version: String },
    #[error("invalid spec: {0}")]
    Spec(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: nix::errno::Errno,
    },
    #[error("mount {dest}: target climbs out of the rootfs through a symlink at {at}")]
    MountEscape { dest: String, at: String },
    #[error("mount {dest}: {reason}")]
    Mount { dest: String, reason: String },
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("cgroup {path}: {reason}")]
    Cgroup { path: String, reason: String },
    #[error("container {id} is {status}: {reason}")]
    BadState {
        id: String,
        status: String,
        reason: String,
    },
    #[error("hook {path}: {reason}")]
    Hook { path: String, reason: String },
    #[error("exec: {0:?}: executable file not found in $PATH")]
    ExecutableNotFound(String),
    #[error("container init: {0}")]
    Init(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A failed syscall, with what it was doing.
    pub fn sys(what: impl Into<String>, source: nix::errno::Errno) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    /// A failed file operation on `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
