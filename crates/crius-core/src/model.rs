//! The records of pods and containers: what the daemon knows about each, persisted as JSON.

use std::path::PathBuf;

use crius_cri_api::v1 as cri;
use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, the CRI's unit for times.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A fresh random id: 64 hex digits, like every CRI runtime's.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Whether a pod's infra container runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    /// The pause container runs and the network is set up.
    Ready,
    /// Stopped, or found dead after a restart.
    #[default]
    NotReady,
}

/// A pod sandbox as the daemon keeps it. `Default` is an empty NotReady record, for
/// building one field by field (tests name only the fields they look at).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PodRecord {
    /// 64 hex digits.
    pub id: String,
    /// The kubelet's config, verbatim.
    pub config: cri::PodSandboxConfig,
    /// The runtime handler the pod (and all its containers) run with.
    pub runtime_handler: String,
    /// Creation time (ns).
    pub created_at: i64,
    /// Ready or NotReady.
    pub state: PodState,
    /// The pinned netns; `None` for host-network pods or once removed.
    pub netns: Option<PathBuf>,
    /// Pod IPs, first the primary.
    pub ips: Vec<String>,
    /// The pod's cgroup (cgroupfs path or systemd slice).
    pub cgroup_parent: String,
    /// Whether crius made the pod cgroup (and so removes it).
    pub owns_cgroup: bool,
    /// The pause container's pid while it runs.
    pub pause_pid: Option<u32>,
    /// The shm tmpfs; `None` with host IPC.
    pub shm: Option<PathBuf>,
    /// The pause image id.
    pub pause_image: String,
    /// The runtime holds no state for the pause container any more (deleted after it
    /// exited), so removal need not ask the runtime. In memory only: after a restart
    /// removal asks again.
    #[serde(skip)]
    pub pause_deleted: bool,
    /// vm handlers: the ttrpc address of the pod's shim, kept so a restart reconnects.
    #[serde(default)]
    pub shim_address: Option<String>,
    /// vm handlers: the shim's pid, to make sure it is gone when the pod is removed.
    #[serde(default)]
    pub shim_pid: Option<u32>,
    /// The pod runs without a pause container (`drop_infra_ctr`): its namespaces are the
    /// pins below and `netns`. Records of older versions, without the field, had one.
    #[serde(default)]
    pub infra_dropped: bool,
    /// A pod without a pause container: its pinned IPC namespace; `None` with host IPC
    /// or once stopped.
    #[serde(default)]
    pub ipc_ns: Option<PathBuf>,
    /// A pod without a pause container: its pinned UTS namespace; `None` with host
    /// network (whose pods keep the host's UTS namespace) or once stopped.
    #[serde(default)]
    pub uts_ns: Option<PathBuf>,
}

/// A container's lifecycle state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created by the runtime, not started.
    #[default]
    Created,
    /// Started and not yet exited.
    Running,
    /// Exited (or never to run again).
    Exited,
}

/// A container as the daemon keeps it. `Default` is an empty Created record, for
/// building one field by field (tests name only the fields they look at).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// The pod it belongs to.
    pub pod_id: String,
    /// The kubelet's config, verbatim.
    pub config: cri::ContainerConfig,
    /// The image id ("sha256:...").
    pub image_id: String,
    /// The image as the kubelet named it.
    pub image_name: String,
    /// A repo digest of the image, if known, for `image_ref`.
    pub image_ref: String,
    /// The kernel number of the signal StopContainer sends first: the config's
    /// stop_signal, else the image's StopSignal, else SIGTERM.
    pub stop_signal: i32,
    /// Where the monitor writes the log; `None` when the pod has no log dir.
    pub log_path: Option<PathBuf>,
    /// Lifecycle state.
    pub state: ContainerState,
    /// Times (ns); 0 when not reached.
    pub created_at: i64,
    /// Start time (ns).
    pub started_at: i64,
    /// Exit time (ns).
    pub finished_at: i64,
    /// The exit code once exited.
    pub exit_code: i32,
    /// "Completed", "Error", "OOMKilled", or empty.
    pub reason: String,
    /// A human-readable note about the exit.
    pub message: String,
    /// The container's init pid while it runs.
    pub pid: Option<u32>,
    /// The identity its first process got (from the spec), for ContainerStatus.
    #[serde(default)]
    pub user: Option<ProcessUser>,
    /// The ids of the images mounted as image volumes (kept while the container is).
    #[serde(default)]
    pub image_volumes: Vec<String>,
}

/// A process identity: what `id` shows inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Every group the process is in, the primary one included, sorted.
    pub groups: Vec<u32>,
}

impl ProcessUser {
    /// The identity an OCI spec gives its process.
    pub fn of_spec(spec: &oci_spec::runtime::Spec) -> Option<ProcessUser> {
        let user = spec.process().as_ref()?.user();
        let mut groups = vec![user.gid()];
        groups.extend(user.additional_gids().iter().flatten());
        groups.sort_unstable();
        groups.dedup();
        Some(ProcessUser {
            uid: user.uid(),
            gid: user.gid(),
            groups,
        })
    }
}

impl ContainerRecord {
    /// Records an exit, choosing the reason the kubelet expects.
    pub fn mark_exited(&mut self, exit_code: i32, finished_at: i64, oom_killed: bool) {
        self.state = ContainerState::Exited;
        self.exit_code = exit_code;
        self.finished_at = finished_at;
        self.pid = None;
        self.reason = if oom_killed {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_user_lists_every_group_once_sorted() {
        let user = oci_spec::runtime::UserBuilder::default()
            .uid(1000u32)
            .gid(1000u32)
            .additional_gids(vec![50000u32, 1234, 1000])
            .build()
            .unwrap();
        let process = oci_spec::runtime::ProcessBuilder::default()
            .user(user)
            .build()
            .unwrap();
        let spec = oci_spec::runtime::SpecBuilder::default()
            .process(process)
            .build()
            .unwrap();
        let u = ProcessUser::of_spec(&spec).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.groups, vec![1000, 1234, 50000]);
    }
}
