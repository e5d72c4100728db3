//! The daemon's settings as the core needs them. The binary owns the TOML layout and turns
//! it into a [`CoreConfig`]; the core never reads config files itself.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Which cgroup manager places pods and containers: plain cgroupfs directories or systemd
/// slices and scopes (the latter needs systemd as PID 1 and D-Bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// Directories under each controller's mount, made by the OCI runtime.
    Cgroupfs,
    /// Slices and scopes made by systemd over D-Bus.
    Systemd,
}

/// One runtime handler, picked by the CRI `runtime_handler` field.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeHandlerConfig {
    /// The runc-compatible binary, or for `vm` the containerd shim v2 binary.
    pub runtime_path: PathBuf,
    /// "oci" (through the monitor) or "vm" (containerd shim v2).
    pub runtime_type: String,
    /// The runtime's state dir (`--root`); `None` means `<run_dir>/runtimes/<name>`.
    pub runtime_root: Option<PathBuf>,
    /// vm only: the shim's own config file (Kata's configuration.toml), passed in the
    /// task's options; `None` leaves the shim's default.
    pub runtime_config_path: Option<PathBuf>,
    /// The monitor binary (crius-conmon).
    pub monitor_path: PathBuf,
    /// Annotations a pod may pass through to this runtime.
    pub allowed_annotations: Vec<String>,
}

/// Where CNI configuration and plugins live.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkSettings {
    /// The dir whose first conflist configures pod networks.
    pub conf_dir: PathBuf,
    /// Dirs searched for plugin binaries, in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// Per-pod cache of the conflist and result used at ADD, so DEL works after changes.
    pub cache_dir: PathBuf,
}

/// Credentials for one registry from the daemon config.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegistryAuth {
    /// User name for basic auth.
    pub username: String,
    /// Password for basic auth.
    pub password: String,
    /// base64 of `user:password`, as in Docker's config.json.
    pub auth: String,
}

/// How images are found and stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageSettings {
    /// containers-registries.conf v2 file; `None`: /etc/containers/registries.conf if present.
    pub registries_conf: Option<PathBuf>,
    /// Registries (host[:port]) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Credentials per registry host[:port].
    pub auths: HashMap<String, RegistryAuth>,
    /// containers-auth.json(5) file read at each pull, after `auths`.
    pub auth_file: Option<PathBuf>,
    /// Layers downloaded at once, per pull.
    pub max_concurrent_downloads: usize,
    /// Images reported pinned (the kubelet never collects them), besides the pause image.
    pub pinned_images: crius_image::PinnedImages,
    /// Bytes of one decompressed layer (`max_layer_size`).
    pub max_layer_size: u64,
    /// Entries of one layer (`max_layer_entries`).
    pub max_layer_entries: u64,
    /// Bytes of a manifest or index (`max_manifest_size`).
    pub max_manifest_size: u64,
    /// Bytes of an image config (`max_config_size`).
    pub max_config_size: u64,
}

/// A group of cAdvisor series that ListPodSandboxMetrics can serve, by CRI-O's names in
/// `included_pod_metrics`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum MetricGroup {
    /// `container_cpu_*`: usage, user, system, CFS throttling.
    #[serde(rename = "cpu")]
    Cpu,
    /// `container_fs_{usage,limit}_bytes`, `container_fs_inodes_*`: the writable layer.
    #[serde(rename = "disk")]
    Disk,
    /// `container_fs_{reads,writes}*`, `container_blkio_device_usage_total`.
    #[serde(rename = "diskIO")]
    DiskIo,
    /// `container_hugetlb_*`.
    #[serde(rename = "hugetlb")]
    Hugetlb,
    /// `container_memory_*`.
    #[serde(rename = "memory")]
    Memory,
    /// `container_network_*`: the pod network's interfaces.
    #[serde(rename = "network")]
    Network,
    /// `container_oom_events_total`.
    #[serde(rename = "oom")]
    Oom,
    /// `container_processes`, `container_threads*`, `container_file_descriptors`,
    /// `container_sockets`, `container_ulimits_soft`.
    #[serde(rename = "process")]
    Process,
    /// `container_spec_*`, `container_start_time_seconds`.
    #[serde(rename = "spec")]
    Spec,
    /// `container_pressure_*`.
    #[serde(rename = "pressure")]
    Pressure,
}

impl MetricGroup {
    /// Every group, in CRI-O's order.
    pub const ALL: [MetricGroup; 10] = [
        MetricGroup::Cpu,
        MetricGroup::Disk,
        MetricGroup::DiskIo,
        MetricGroup::Hugetlb,
        MetricGroup::Memory,
        MetricGroup::Network,
        MetricGroup::Oom,
        MetricGroup::Process,
        MetricGroup::Spec,
        MetricGroup::Pressure,
    ];

    /// The name in `included_pod_metrics`.
    pub fn name(self) -> &'static str {
        match self {
            MetricGroup::Cpu => "cpu",
            MetricGroup::Disk => "disk",
            MetricGroup::DiskIo => "diskIO",
            MetricGroup::Hugetlb => "hugetlb",
            MetricGroup::Memory => "memory",
            MetricGroup::Network => "network",
            MetricGroup::Oom => "oom",
            MetricGroup::Process => "process",
            MetricGroup::Spec => "spec",
            MetricGroup::Pressure => "pressure",
        }
    }

    /// The groups named in an `included_pod_metrics` list: CRI-O's names, or "all" alone.
    pub fn parse_list(names: &[String]) -> Result<Vec<MetricGroup>, String> {
        if names.len() == 1 && names[0] == "all" {
            return Ok(MetricGroup::ALL.to_vec());
        }
        let mut out = Vec::new();
        for name in names {
            if name == "all" {
                return Err("\"all\" must be the only element".to_string());
            }
            let group = MetricGroup::ALL
                .into_iter()
                .find(|g| g.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = MetricGroup::ALL.iter().map(|g| g.name()).collect();
                    format!(
                        "unknown metric group {name:?}; known: {}, or \"all\" alone",
                        known.join(", ")
                    )
                })?;
            if !out.contains(&group) {
                out.push(group);
            }
        }
        Ok(out)
    }
}

/// Everything the core needs to run pods and containers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CoreConfig {
    /// Persistent state: images, pod and container records, rootfs upper dirs.
    pub root_dir: PathBuf,
    /// Volatile state: monitor sockets, exit files, netns pins.
    pub run_dir: PathBuf,
    /// cgroupfs or systemd.
    pub cgroup_driver: CgroupDriver,
    /// Every pod's cgroup parent must lie under this path ("/" allows any).
    pub cgroup_root: String,
    /// Run pods that need no pause process (no shared PID namespace, no user namespace of
    /// their own, not a vm handler) without one, their namespaces pinned by crius.
    pub drop_infra_ctr: bool,
    /// The infra image pods with a pause container run.
    pub pause_image: String,
    /// The static pause binary installed as the pause image when it cannot be pulled.
    pub pause_binary: PathBuf,
    /// The handler used when a pod names none.
    pub default_runtime: String,
    /// All runtime handlers by name.
    pub runtimes: BTreeMap<String, RuntimeHandlerConfig>,
    /// CNI settings.
    pub network: NetworkSettings,
    /// Image settings.
    pub images: ImageSettings,
    /// Bytes after which a container log is cut; `None` for no limit.
    pub log_size_max: Option<u64>,
    /// Where `Localhost` seccomp profiles given by relative name are looked up.
    pub seccomp_profile_root: PathBuf,
    /// Where CDI spec files are read (later dirs take precedence).
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// Where OCI hook files (oci-hooks(5)) are read (later dirs take precedence).
    pub hooks_dirs: Vec<PathBuf>,
    /// The only dirs CheckpointContainer may write archives to and restores may read them
    /// from.
    pub checkpoint_dirs: Vec<PathBuf>,
    /// Address of the streaming server (exec, attach, port-forward).
    pub stream_address: String,
    /// Port of the streaming server (0 picks one).
    pub stream_port: u16,
    /// The metric groups ListPodSandboxMetrics serves (`included_pod_metrics`).
    pub pod_metrics: Vec<MetricGroup>,
    /// The whole effective config, shown by `Status` with `verbose`.
    pub effective_config: serde_json::Value,
}
