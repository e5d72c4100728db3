//! The heart of crius: pods and containers, their state machine and locking, the records
//! on disk, and restore after a restart. It drives the image store (crius-image), the network
//! (crius-net) and the OCI runtime through the monitor (crius-oci). No gRPC here: crius-cri
//! translates CRI messages to calls on [`Daemon`].

mod config;
mod daemon;
mod error;
mod host;
mod record;
mod undo;

pub use config::{
    CgroupDriver, CoreConfig, ImageSettings, NetworkSettings, RegistryAuth, RuntimeHandlerConfig,
};
pub use daemon::{Daemon, RuntimeStatus, VersionInfo};
pub use error::{Error, Result};
pub use undo::Undo;
