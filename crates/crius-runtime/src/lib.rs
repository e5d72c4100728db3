//! crius-runtime: an OCI runtime for Linux with runc's command line.
//!
//! The library is what the `crius-runtime` binary runs; see `container` for
//! the commands and the README for using it on its own.

pub mod caps;
pub mod cgroup;
pub mod container;
pub mod error;
pub mod features;
pub mod hooks;
pub mod log;
pub mod process;
pub mod rootfs;
pub mod sealed;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sync;
pub mod tty;

pub use error::{Error, Result};

/// The runtime-spec version written in state and features.
pub const OCI_VERSION: &str = "1.2.0";
