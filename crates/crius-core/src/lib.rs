//! The heart of crius: pods and containers, their state machine and locking, the records
//! on disk, and restore after a restart. It drives the image store (crius-image), the network
//! (crius-net) and the OCI runtime through the monitor (crius-oci). No gRPC here: crius-cri
//! translates CRI messages to calls on [`Daemon`].

mod bandwidth;
mod cgroup;
pub mod checkpoint;
mod config;
mod container;
mod daemon;
mod error;
mod events;
mod filter;
mod handler;
mod host;
mod image;
mod image_volume;
mod model;
mod pod;
mod pod_ns;
mod podfiles;
mod record;
mod restore;
mod rootfs;
mod signal;
mod stats;
mod stream;
mod undo;
mod usage;
mod validate;
mod vm;
mod vm_stats;

pub use config::{
    CgroupDriver, CoreConfig, ImageSettings, MetricGroup, NetworkSettings, RegistryAuth,
    RuntimeHandlerConfig,
};
pub use crius_image::PinnedImages;
pub use crius_oci::spec::annotations::{
    check_allowed as check_allowed_annotations, RUNTIME_ACTED as RUNTIME_ACTED_ANNOTATIONS,
};
/// Default CDI spec dirs and OCI hooks dirs, for the binary's config defaults.
pub use crius_oci::spec::{DEFAULT_CDI_SPEC_DIRS, DEFAULT_HOOKS_DIRS};
pub use daemon::{Daemon, HandlerStatus, RuntimeStatus, VersionInfo};
pub use error::{Error, Result};
pub use events::{Event, EventKind};
pub use filter::{container_state_cri, pod_state_cri};
pub use model::{now_ns, ContainerRecord, ContainerState, PodRecord, PodState, ProcessUser};
pub use signal::number_to_cri as cri_signal;
pub use stats::{
    block_device_name, CgroupSpec, CgroupUsage, DeviceIo, FilesystemUsage, InterfaceUsage,
    Pressure, PressureLine, ProcessCounts,
};
pub use stream::StreamIo;
pub use undo::Undo;
pub use usage::{ContainerMetricsUsage, ContainerUsage, PodMetricsUsage, PodUsage};
