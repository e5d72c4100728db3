//! OCI runtime spec generation: the pause container of a pod sandbox and
//! the containers of a pod, from CRI configs and the image config.
//!
//! Everything here is pure translation except for a few reads the CRI
//! semantics require: the container rootfs's /etc/passwd and /etc/group
//! (never outside the rootfs), host devices, seccomp profile files and
//! facts about this host (capability bounding set, cgroup version, open
//! files limit, mount propagation).

mod bundle;
mod caps;
mod cdi;
mod cgroup;
mod devices;
mod hooks;
mod mounts;
mod seccomp;
mod sysctl;
mod user;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crius_cri_api::v1::{
    ContainerConfig, IdMapping, LinuxContainerSecurityContext, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, SecurityProfile, UserNamespace,
};
use oci_spec::runtime::{
    LinuxBuilder, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType,
    LinuxResources, Mount, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec,
    User,
};
use tracing::debug;

use crate::Error;

pub use bundle::write_bundle;
pub use caps::DEFAULT_CAPABILITIES;
pub use cdi::{
    ANNOTATION_PREFIX as CDI_ANNOTATION_PREFIX, DEFAULT_SPEC_DIRS as DEFAULT_CDI_SPEC_DIRS,
};
pub use cgroup::{
    cgroup_v2_unified, cgroups_path, cpu_shares_to_weight, linux_resources, parent_cgroupfs_dir,
    systemd_scope_name, CgroupDriver, CgroupHost, CGROUP_PREFIX,
};
pub use hooks::DEFAULT_HOOKS_DIRS;
pub use seccomp::DEFAULT_PROFILE_JSON as DEFAULT_SECCOMP_PROFILE_JSON;
pub use sysctl::validate_sysctls;

/// The OCI runtime spec version the generated specs follow (runc 1.1's).
pub const OCI_VERSION: &str = "1.0.2-dev";
/// RLIMIT_NOFILE given to containers (as CRI-O), lowered to what this
/// process may grant when its own hard limit is lower.
pub const DEFAULT_NOFILE: u64 = 1_048_576;
/// oom_score_adj asked for the pause container (before clamping).
pub const POD_OOM_SCORE_ADJ: i32 = -998;
/// $PATH when the image gives none.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Paths masked in unprivileged containers when the CRI names none.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Paths made read-only in unprivileged containers when the CRI names none.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// OCI annotation keys crius sets on every spec.
pub mod annotations {
    /// "sandbox" for the pause container, "container" otherwise.
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    /// Value of CONTAINER_TYPE for the pause container.
    pub const CONTAINER_TYPE_SANDBOX: &str = "sandbox";
    /// Value of CONTAINER_TYPE for the pod's containers.
    pub const CONTAINER_TYPE_CONTAINER: &str = "container";
    /// The pod sandbox id.
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    /// Pod name, namespace, uid from its metadata.
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    /// Pod namespace.
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    /// Pod uid.
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    /// The kubelet's log directory of the pod.
    pub const SANDBOX_LOG_DIRECTORY: &str = "io.kubernetes.cri.sandbox-log-directory";
    /// The container's name from its metadata.
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    /// The image the container runs, as the CRI named it.
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    /// The container's (or pod's) CRI labels, as a JSON object.
    pub const LABELS: &str = "io.kubernetes.cri.labels";

    /// Annotations (or key prefixes) that OCI runtimes act on: runc's systemd unit
    /// properties and CRIU config, crun's `run.oci.*` options and wasm handlers, the RDT
    /// class. A pod may set them only where its handler's `allowed_annotations` lists
    /// them; every other annotation is only data to a runtime and passes as given. These
    /// are the runtimes' annotations of CRI-O's list (its own `*.crio.io` ones are its
    /// daemon's, which crius does not read).
    pub const RUNTIME_ACTED: &[&str] = &[
        "bundle",
        "io.kubernetes.cri.container-type",
        "io.kubernetes.cri.rdt-class",
        "module.wasm.image/variant",
        "org.criu.config",
        "org.opencontainers.runc.exec.isolated-cpu-affinity-transition",
        "org.systemd.property.",
        "run.oci.",
    ];

    /// Checks a handler's `allowed_annotations`: each must be one of [`RUNTIME_ACTED`]
    /// (any other annotation passes anyway, so listing it is a mistake).
    pub fn check_allowed(allowed: &[String]) -> Result<(), String> {
        match allowed
            .iter()
            .find(|a| !RUNTIME_ACTED.contains(&a.as_str()))
        {
            Some(bad) => Err(format!(
                "{bad:?} is not an annotation a runtime acts on; allowed are: {}",
                RUNTIME_ACTED.join(", ")
            )),
            None => Ok(()),
        }
    }

    /// The CRI annotations that reach a spec: all but those a runtime would act on and
    /// the handler does not allow. crius's own keys are added after, over anything given.
    pub fn filter(
        given: &std::collections::HashMap<String, String>,
        allowed: &[String],
    ) -> std::collections::HashMap<String, String> {
        let refused = |key: &str| {
            RUNTIME_ACTED
                .iter()
                .any(|p| key.starts_with(p) && !allowed.iter().any(|a| a == p))
        };
        given
            .iter()
            .filter(|(k, _)| !refused(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Everything about the pod that a container spec needs.
#[derive(Clone, Copy, Debug)]
pub struct PodContext<'a> {
    /// The pod's CRI config as RunPodSandbox got it.
    pub config: &'a PodSandboxConfig,
    /// The pod sandbox id.
    pub id: &'a str,
    /// The pinned network namespace; None for host-network pods.
    pub netns_path: Option<&'a Path>,
    /// The pause process: containers join /proc/<pid>/ns/{ipc,uts,pid}.
    pub pause_pid: Option<u32>,
    /// A pod without a pause process: its pinned IPC namespace, joined instead.
    pub ipc_ns_path: Option<&'a Path>,
    /// A pod without a pause process: its pinned UTS namespace, joined instead.
    pub uts_ns_path: Option<&'a Path>,
    /// The pod's /etc/hostname file.
    pub hostname_path: &'a Path,
    /// The pod's /etc/resolv.conf file.
    pub resolv_conf_path: &'a Path,
    /// The pod's /etc/hosts file.
    pub hosts_path: &'a Path,
    /// The pod's /dev/shm tmpfs; None when the pod uses the host IPC.
    pub shm_path: Option<&'a Path>,
    /// The pod's cgroup parent, already validated and computed by the core.
    pub cgroup_parent: &'a str,
}

/// Daemon-wide settings that shape every spec.
#[derive(Clone, Debug)]
pub struct SpecOptions {
    /// cgroupfs or systemd: the form of `linux.cgroupsPath`.
    pub cgroup_driver: CgroupDriver,
    /// The lowest oom_score_adj this daemon may hand out (without
    /// CAP_SYS_RESOURCE, its own score); requests below are raised to it.
    pub oom_score_adj_min: i32,
    /// Where relative Localhost seccomp profile paths are looked up.
    pub seccomp_profile_root: PathBuf,
    /// Capability names (with or without CAP_) containers get by default.
    pub default_capabilities: Vec<String>,
    /// Whether AppArmor is enabled on this host; profiles are emitted only then.
    pub apparmor_available: bool,
    /// The handler's `allowed_annotations` (see [`annotations::filter`]).
    pub allowed_annotations: Vec<String>,
    /// Where CDI spec files are read, in increasing precedence.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// Where OCI hook files (oci-hooks(5)) are read, in increasing precedence.
    pub hooks_dirs: Vec<PathBuf>,
}

impl Default for SpecOptions {
    fn default() -> Self {
        SpecOptions {
            cgroup_driver: CgroupDriver::Cgroupfs,
            oom_score_adj_min: -1000,
            seccomp_profile_root: PathBuf::from("/var/lib/kubelet/seccomp"),
            default_capabilities: DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            apparmor_available: false,
            allowed_annotations: Vec::new(),
            cdi_spec_dirs: cdi::DEFAULT_SPEC_DIRS.iter().map(PathBuf::from).collect(),
            hooks_dirs: hooks::DEFAULT_HOOKS_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
        }
    }
}

/// Everything about one container that its spec needs.
#[derive(Clone, Copy, Debug)]
pub struct ContainerContext<'a> {
    /// The container id.
    pub id: &'a str,
    /// The container's CRI config as CreateContainer got it.
    pub config: &'a ContainerConfig,
    /// The config of the image the container runs.
    pub image_config: &'a oci_spec::image::ImageConfiguration,
    /// The container's mounted rootfs (users and groups are read from it).
    pub rootfs: &'a Path,
    /// The image name for messages and annotations.
    pub image_name: &'a str,
    /// For PID namespace mode TARGET: the init pid of the (running) container whose PID
    /// namespace this one joins.
    pub pid_target: Option<u32>,
}

/// Facts about this host that specs depend on; read once per spec.
#[derive(Clone, Debug)]
struct Host {
    /// Capability names this process may hand on (its bounding set).
    bounding: Vec<String>,
    /// The cgroup layout.
    cgroups: CgroupHost,
    /// This process's hard RLIMIT_NOFILE.
    nofile_hard: Option<u64>,
    seccomp: seccomp::SeccompHost,
    /// /proc/self/mountinfo, read only when a mount needs propagation.
    mountinfo: String,
    /// Host device nodes, read only for privileged containers.
    devices: Vec<devices::HostDevice>,
}

impl Host {
    /// Reads the host facts. Capabilities, cgroup version, kernel and limits
    /// do not change while the daemon runs and are read once; mountinfo and
    /// devices are read fresh, and only when the spec needs them.
    fn probe(need_mountinfo: bool, need_devices: bool) -> Host {
        static STATIC: std::sync::OnceLock<Host> = std::sync::OnceLock::new();
        let base = STATIC.get_or_init(|| Host {
            bounding: caps::current_bounding_set(),
            cgroups: CgroupHost::probe(),
            nofile_hard: nofile_hard_limit(),
            seccomp: seccomp::SeccompHost::current(),
            mountinfo: String::new(),
            devices: Vec::new(),
        });
        let mut host = base.clone();
        if need_mountinfo {
            host.mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        }
        if need_devices {
            host.devices = devices::all_host_devices();
        }
        host
    }
}

/// The hard "Max open files" of this process from /proc/self/limits.
fn nofile_hard_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    match fields.get(1) {
        Some(&"unlimited") => None,
        Some(v) => v.parse().ok(),
        None => None,
    }
}

/// Pod-level namespace choices.
#[derive(Clone, Copy, Debug)]
struct PodNamespaces {
    host_network: bool,
    host_ipc: bool,
    pid: NamespaceMode,
}

fn mode(v: i32) -> NamespaceMode {
    NamespaceMode::try_from(v).unwrap_or(NamespaceMode::Pod)
}

fn pod_security(config: &PodSandboxConfig) -> Option<&LinuxSandboxSecurityContext> {
    config.linux.as_ref()?.security_context.as_ref()
}

/// The pod's user namespace request when it asks for one of its own (mode POD).
pub fn pod_user_namespace(config: &PodSandboxConfig) -> Option<&UserNamespace> {
    pod_security(config)?
        .namespace_options
        .as_ref()?
        .userns_options
        .as_ref()
        .filter(|u| u.mode == NamespaceMode::Pod as i32)
}

fn oci_id_mappings(maps: &[IdMapping]) -> Result<Vec<LinuxIdMapping>, Error> {
    maps.iter()
        .map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .map_err(|e| spec_error("id mapping", e))
        })
        .collect()
}

/// Gives bind mounts the pod's mappings, so the runtime makes them id-mapped: a file of
/// host root is the pod's root inside. Only binds of files and dirs crius or the kubelet
/// made (pod files, shm, volumes); the kernel file systems are the pod's own anyway.
fn idmap_binds(mounts: &mut [Mount], userns: &UserNamespace) -> Result<(), Error> {
    let (uids, gids) = (
        oci_id_mappings(&userns.uids)?,
        oci_id_mappings(&userns.gids)?,
    );
    for m in mounts
        .iter_mut()
        .filter(|m| m.typ().as_deref() == Some("bind"))
    {
        m.set_uid_mappings(Some(uids.clone()));
        m.set_gid_mappings(Some(gids.clone()));
    }
    Ok(())
}

/// sysfs may only be mounted by the owner of the network namespace, and the pod's is
/// pinned by crius in the host's user namespace: a pod in a user namespace of its own
/// gets the host's /sys bound read-only instead (as runc does for rootless containers).
fn sysfs_as_bind(mounts: &mut [Mount]) {
    for m in mounts
        .iter_mut()
        .filter(|m| m.typ().as_deref() == Some("sysfs"))
    {
        *m = mounts::mount(
            "/sys",
            "bind",
            Path::new("/sys"),
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        );
    }
}

fn pod_namespaces(config: &PodSandboxConfig) -> PodNamespaces {
    let ns = pod_security(config).and_then(|s| s.namespace_options.as_ref());
    PodNamespaces {
        host_network: ns.is_some_and(|n| mode(n.network) == NamespaceMode::Node),
        host_ipc: ns.is_some_and(|n| mode(n.ipc) == NamespaceMode::Node),
        pid: ns.map(|n| mode(n.pid)).unwrap_or(NamespaceMode::Pod),
    }
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

fn empty_sysctls() -> &'static HashMap<String, String> {
    static EMPTY: std::sync::OnceLock<HashMap<String, String>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(HashMap::new)
}

fn pod_sysctls(config: &PodSandboxConfig) -> &HashMap<String, String> {
    config
        .linux
        .as_ref()
        .map(|l| &l.sysctls)
        .unwrap_or_else(|| empty_sysctls())
}

fn clamp_oom(requested: i32, opts: &SpecOptions) -> i32 {
    requested.clamp(opts.oom_score_adj_min.max(-1000), 1000)
}

fn rlimits(host: &Host) -> Vec<PosixRlimit> {
    let n = host
        .nofile_hard
        .map_or(DEFAULT_NOFILE, |h| h.min(DEFAULT_NOFILE));
    let r = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(n)
        .soft(n)
        .build()
        .unwrap_or_default();
    vec![r]
}

fn spec_error(what: &str, e: oci_spec::OciSpecError) -> Error {
    Error::MissingField {
        field: e.to_string(),
        what: what.to_string(),
    }
}

/// The pod's metadata as OCI annotations, plus its CRI annotations.
fn pod_annotations(pod: &PodContext, out: &mut HashMap<String, String>) {
    let md = pod.config.metadata.clone().unwrap_or_default();
    out.insert(annotations::SANDBOX_ID.into(), pod.id.to_string());
    out.insert(annotations::SANDBOX_NAME.into(), md.name);
    out.insert(annotations::SANDBOX_NAMESPACE.into(), md.namespace);
    out.insert(annotations::SANDBOX_UID.into(), md.uid);
    if !pod.config.log_directory.is_empty() {
        out.insert(
            annotations::SANDBOX_LOG_DIRECTORY.into(),
            pod.config.log_directory.clone(),
        );
    }
}

fn labels_json(labels: &HashMap<String, String>) -> String {
    let sorted: BTreeMap<&String, &String> = labels.iter().collect();
    serde_json::to_string(&sorted).unwrap_or_else(|_| "{}".to_string())
}

fn masked_and_readonly(
    masked: &[String],
    readonly: &[String],
) -> Result<(Vec<String>, Vec<String>), Error> {
    let pick = |given: &[String], defaults: &[&str], field: &str| -> Result<Vec<String>, Error> {
        if given.is_empty() {
            Ok(defaults.iter().map(|s| s.to_string()).collect())
        } else {
            given
                .iter()
                .map(|p| mounts::clean_container_path(field, p))
                .collect()
        }
    };
    Ok((
        pick(masked, DEFAULT_MASKED_PATHS, "masked_paths")?,
        pick(readonly, DEFAULT_READONLY_PATHS, "readonly_paths")?,
    ))
}

/// The pod's /etc files and /dev/shm.
fn pod_file_mounts(pod: &PodContext, readonly: bool) -> Result<Vec<Mount>, Error> {
    Ok(vec![
        mounts::shm_mount(pod.shm_path),
        mounts::pod_file_mount("/etc/hosts", pod.hosts_path, readonly)?,
        mounts::pod_file_mount("/etc/resolv.conf", pod.resolv_conf_path, readonly)?,
        mounts::pod_file_mount("/etc/hostname", pod.hostname_path, readonly)?,
    ])
}

/// The spec of a pod's pause container: its own IPC/UTS/PID namespaces
/// (or the host's as the pod asks), the pinned network namespace, the pod's
/// sysctls, hostname and files, no capabilities, RuntimeDefault seccomp
/// unless the pod says otherwise, read-only rootfs.
pub fn pod_spec(
    pod: &PodContext,
    rootfs: &Path,
    pause_args: &[String],
    opts: &SpecOptions,
) -> Result<Spec, Error> {
    pod_spec_with(pod, rootfs, pause_args, opts, &Host::probe(false, false))
}

fn pod_spec_with(
    pod: &PodContext,
    rootfs: &Path,
    pause_args: &[String],
    opts: &SpecOptions,
    host: &Host,
) -> Result<Spec, Error> {
    let cfg = pod.config;
    let sc = pod_security(cfg);
    let ns = pod_namespaces(cfg);
    let sysctls = pod_sysctls(cfg);
    validate_sysctls(sysctls, ns.host_network, ns.host_ipc)?;
    if pause_args.is_empty() {
        return Err(Error::MissingField {
            field: "pause_args".into(),
            what: format!("pod {}", pod.id),
        });
    }

    // Process.
    let mut user = User::default();
    if let Some(u) = sc.and_then(|s| s.run_as_user.as_ref()) {
        user.set_uid(id("run_as_user", u.value)?);
    }
    if let Some(g) = sc.and_then(|s| s.run_as_group.as_ref()) {
        user.set_gid(id("run_as_group", g.value)?);
    }
    let groups = sc
        .map(|s| s.supplemental_groups.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|g| id("supplemental_groups", *g))
        .collect::<Result<Vec<_>, _>>()?;
    if !groups.is_empty() {
        user.set_additional_gids(Some(groups));
    }
    let mut process = Process::default();
    process.set_terminal(Some(false));
    process.set_user(user);
    process.set_args(Some(pause_args.to_vec()));
    process.set_env(Some(vec![DEFAULT_PATH_ENV.to_string()]));
    process.set_cwd(PathBuf::from("/"));
    process.set_capabilities(Some(caps::linux_capabilities(&[], &[])));
    process.set_rlimits(Some(rlimits(host)));
    process.set_no_new_privileges(Some(true));
    process.set_oom_score_adj(Some(clamp_oom(POD_OOM_SCORE_ADJ, opts)));

    // Mounts.
    let privileged = sc.is_some_and(|s| s.privileged);
    let mut mounts = mounts::standard_mounts(privileged, true);
    let mut files = pod_file_mounts(pod, false)?;
    let userns = pod_user_namespace(cfg);
    if let Some(userns) = userns {
        idmap_binds(&mut files, userns)?;
        sysfs_as_bind(&mut mounts);
    }
    mounts.extend(files);

    // Namespaces: a user namespace of its own is made first, and owns the others.
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    if userns.is_some() {
        namespaces.push(namespace(LinuxNamespaceType::User, None));
    }
    if ns.pid != NamespaceMode::Node {
        namespaces.push(namespace(LinuxNamespaceType::Pid, None));
    }
    if !ns.host_ipc {
        namespaces.push(namespace(LinuxNamespaceType::Ipc, None));
    }
    if !ns.host_network {
        namespaces.push(namespace(LinuxNamespaceType::Uts, None));
        let netns = pod.netns_path.ok_or_else(|| Error::PodNamespace {
            pod: pod.id.to_string(),
            reason: "no network namespace path for a pod without host network".into(),
        })?;
        namespaces.push(namespace(
            LinuxNamespaceType::Network,
            Some(netns.to_path_buf()),
        ));
    }
    if host.cgroups.v2 {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None));
    }

    // Seccomp: RuntimeDefault unless the pod says otherwise.
    #[allow(deprecated)] // older kubelets still send the path string
    let deprecated_path = sc.map(|s| s.seccomp_profile_path.as_str()).unwrap_or("");
    let choice = seccomp::choose(
        sc.and_then(|s| s.seccomp.as_ref()),
        deprecated_path,
        seccomp::SeccompChoice::RuntimeDefault,
        &opts.seccomp_profile_root,
    )?;
    let seccomp = seccomp::seccomp_for(&choice, &[], &host.seccomp)?;

    let mut resources = LinuxResources::default();
    resources.set_devices(Some(vec![devices::deny_all_rule()]));

    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        masked_and_readonly(&[], &[])?
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(PathBuf::from(cgroups_path(
            opts.cgroup_driver,
            pod.cgroup_parent,
            pod.id,
        )))
        .masked_paths(masked)
        .readonly_paths(readonly)
        .build()
        .map_err(|e| spec_error("linux", e))?;
    linux.set_seccomp(seccomp);
    if !sysctls.is_empty() {
        linux.set_sysctl(Some(sysctls.clone()));
    }
    if let Some(userns) = userns {
        linux.set_uid_mappings(Some(oci_id_mappings(&userns.uids)?));
        linux.set_gid_mappings(Some(oci_id_mappings(&userns.gids)?));
    }

    let mut ann = annotations::filter(&cfg.annotations, &opts.allowed_annotations);
    pod_annotations(pod, &mut ann);
    ann.insert(
        annotations::CONTAINER_TYPE.into(),
        annotations::CONTAINER_TYPE_SANDBOX.into(),
    );
    if !cfg.labels.is_empty() {
        ann.insert(annotations::LABELS.into(), labels_json(&cfg.labels));
    }

    let mut root = Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(true));

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    spec.set_mounts(Some(mounts));
    spec.set_hostname(if ns.host_network || cfg.hostname.is_empty() {
        None
    } else {
        Some(cfg.hostname.clone())
    });
    spec.set_annotations(Some(ann));
    spec.set_linux(Some(linux));
    debug!(pod_id = pod.id, "built pause container spec");
    Ok(spec)
}

fn id(field: &str, v: i64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::InvalidUser {
        field: field.to_string(),
        value: v.to_string(),
        reason: "not in 0..=4294967295".to_string(),
    })
}

/// args per the Kubernetes rules: `command` replaces the image entrypoint
/// and drops the image cmd; `args` replace the image cmd.
fn process_args(config: &ContainerConfig, image: Option<&oci_spec::image::Config>) -> Vec<String> {
    let entrypoint = image
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    let cmd = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let mut out = if config.command.is_empty() {
        entrypoint
    } else {
        config.command.clone()
    };
    if !config.args.is_empty() {
        out.extend(config.args.iter().cloned());
    } else if config.command.is_empty() {
        out.extend(cmd);
    }
    out
}

/// Image env, with the container's env merged over it: a key already set
/// keeps its place and takes the container's value; new keys follow.
fn merge_env(image_env: &[String], config: &ContainerConfig) -> Vec<String> {
    let mut env: Vec<(String, Option<String>)> = image_env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (e.clone(), None),
        })
        .collect();
    for kv in &config.envs {
        if kv.key.is_empty() {
            continue;
        }
        // The core refuses values that are not UTF-8 before a spec is made.
        let value = String::from_utf8_lossy(&kv.value).into_owned();
        match env.iter_mut().find(|(k, _)| *k == kv.key) {
            Some(slot) => slot.1 = Some(value),
            None => env.push((kv.key.clone(), Some(value))),
        }
    }
    env.into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
        .collect()
}

fn has_env(env: &[String], key: &str) -> bool {
    env.iter()
        .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
}

/// The spec of one container of a pod: see the module docs and the CRI
/// field mapping in `tests.rs`.
pub fn container_spec(
    pod: &PodContext,
    ctr: &ContainerContext,
    opts: &SpecOptions,
) -> Result<Spec, Error> {
    let lc = ctr.config.linux.as_ref();
    let sc = lc.and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    let need_mountinfo = ctr.config.mounts.iter().any(|m| m.propagation != 0);
    let host = Host::probe(need_mountinfo, privileged);
    let mut spec = container_spec_with(pod, ctr, opts, &host)?;
    let cdi_names: Vec<String> = ctr
        .config
        .cdi_devices
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let requested = cdi::requested_devices(&cdi_names, &ctr.config.annotations);
    cdi::inject(&mut spec, &requested, &opts.cdi_spec_dirs)?;
    hooks::inject(&mut spec, &opts.hooks_dirs, !ctr.config.mounts.is_empty())?;
    Ok(spec)
}

fn container_spec_with(
    pod: &PodContext,
    ctr: &ContainerContext,
    opts: &SpecOptions,
    host: &Host,
) -> Result<Spec, Error> {
    let cfg = ctr.config;
    let default_sc = LinuxContainerSecurityContext::default();
    let lc = cfg.linux.as_ref();
    let sc = lc.and_then(|l| l.security_context.as_ref());
    let scr = sc.unwrap_or(&default_sc);
    let name = cfg
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let image_cfg = ctr.image_config.config().as_ref();
    let pns = pod_namespaces(pod.config);
    let pod_sc = pod_security(pod.config);
    let privileged = scr.privileged;
    if privileged && !pod_sc.is_some_and(|s| s.privileged) {
        return Err(Error::PrivilegedNotAllowed {
            container: ctr.id.to_string(),
            pod: pod.id.to_string(),
        });
    }
    let sysctls = pod_sysctls(pod.config);
    validate_sysctls(sysctls, pns.host_network, pns.host_ipc)?;

    // Command.
    let args = process_args(cfg, image_cfg);
    if args.is_empty() {
        return Err(Error::NoCommand {
            container: ctr.id.to_string(),
            image: ctr.image_name.to_string(),
        });
    }

    // User.
    let image_user = image_cfg.and_then(|c| c.user().as_deref()).unwrap_or("");
    let resolved = user::resolve_user(ctr.rootfs, image_user, sc, ctr.image_name)?;
    let mut user = User::default();
    user.set_uid(resolved.uid);
    user.set_gid(resolved.gid);
    if !resolved.additional_gids.is_empty() {
        user.set_additional_gids(Some(resolved.additional_gids.clone()));
    }

    // Env.
    let image_env = image_cfg.and_then(|c| c.env().clone()).unwrap_or_default();
    let mut env = merge_env(&image_env, cfg);
    if !has_env(&env, "PATH") {
        env.insert(0, DEFAULT_PATH_ENV.to_string());
    }
    if cfg.tty && !has_env(&env, "TERM") {
        env.push("TERM=xterm".to_string());
    }
    if !has_env(&env, "HOME") {
        env.push(format!("HOME={}", resolved.home.as_deref().unwrap_or("/")));
    }

    // Working dir.
    let cwd = if !cfg.working_dir.is_empty() {
        mounts::clean_container_path("working_dir", &cfg.working_dir)?
    } else {
        match image_cfg.and_then(|c| c.working_dir().as_deref()) {
            Some(w) if !w.is_empty() => {
                let w = if w.starts_with('/') {
                    w.to_string()
                } else {
                    format!("/{w}")
                };
                mounts::clean_container_path("image WorkingDir", &w)?
            }
            _ => "/".to_string(),
        }
    };

    // Capabilities.
    let cap_names = if privileged {
        host.bounding.clone()
    } else {
        let c = scr.capabilities.clone().unwrap_or_default();
        caps::compute(
            &opts.default_capabilities,
            &c.add_capabilities,
            &c.drop_capabilities,
            &host.bounding,
            ctr.id,
        )?
    };
    let ambient = if privileged {
        Vec::new()
    } else {
        let c = scr.capabilities.clone().unwrap_or_default();
        c.add_ambient_capabilities
            .iter()
            .map(|a| {
                let n = caps::normalize(a);
                if caps::ALL_CAPABILITIES.contains(&n.as_str()) {
                    Ok(n)
                } else {
                    Err(Error::UnknownCapability {
                        name: a.clone(),
                        field: "add_ambient_capabilities".into(),
                        container: ctr.id.to_string(),
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()?
    };

    // Process.
    let mut process = Process::default();
    process.set_terminal(Some(cfg.tty));
    process.set_user(user);
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_capabilities(Some(caps::linux_capabilities(&cap_names, &ambient)));
    process.set_rlimits(Some(rlimits(host)));
    process.set_no_new_privileges(Some(scr.no_new_privs));
    let res = lc.and_then(|l| l.resources.as_ref());
    process.set_oom_score_adj(res.map(|r| {
        clamp_oom(
            i32::try_from(r.oom_score_adj).unwrap_or(if r.oom_score_adj < 0 {
                -1000
            } else {
                1000
            }),
            opts,
        )
    }));
    if opts.apparmor_available && !privileged {
        process.set_apparmor_profile(apparmor_profile(scr));
    }

    // Mounts: standard ones, pod files, then the CRI's (which replace ours
    // at the same destination), parents before children.
    let mut cri_mounts = Vec::with_capacity(cfg.mounts.len());
    let mut root_prop = mounts::RootPropagation::None;
    for m in &cfg.mounts {
        let (om, p) = mounts::cri_mount(m, &host.mountinfo)?;
        root_prop = root_prop.max(p);
        cri_mounts.push(om);
    }
    mounts::sort_by_depth(&mut cri_mounts);
    let mut all_mounts = mounts::standard_mounts(privileged, true);
    all_mounts.extend(pod_file_mounts(pod, scr.readonly_rootfs)?);
    all_mounts.retain(|m| {
        !cri_mounts
            .iter()
            .any(|c| c.destination() == m.destination())
    });
    all_mounts.extend(cri_mounts);
    let userns = pod_user_namespace(pod.config);
    if let Some(userns) = userns {
        idmap_binds(&mut all_mounts, userns)?;
        sysfs_as_bind(&mut all_mounts);
    }

    // Devices.
    let mut linux_devices = Vec::new();
    let mut rules = Vec::new();
    if privileged {
        rules.push(devices::allow_all_rule());
        for d in &host.devices {
            let (dev, _) = devices::oci_device(d, &d.path.to_string_lossy(), "rwm");
            linux_devices.push(dev);
        }
    } else {
        rules.push(devices::deny_all_rule());
    }
    for d in &cfg.devices {
        for (dev, rule) in devices::cri_device(d)? {
            linux_devices.retain(|x: &oci_spec::runtime::LinuxDevice| x.path() != dev.path());
            linux_devices.push(dev);
            if !privileged {
                rules.push(rule);
            }
        }
    }

    // Resources.
    let mut resources = match res {
        Some(r) => cgroup::linux_resources(r, host.cgroups)?,
        None => LinuxResources::default(),
    };
    resources.set_devices(Some(rules));

    // Namespaces: the pod's, joined through the pause process or, for a pod without one,
    // by their pins.
    let pause_ns = |what: &str| -> Result<PathBuf, Error> {
        pod.pause_pid
            .map(|pid| PathBuf::from(format!("/proc/{pid}/ns/{what}")))
            .ok_or_else(|| Error::PodNamespace {
                pod: pod.id.to_string(),
                reason: format!("no pause process to join its {what} namespace"),
            })
    };
    let pod_ns = |pinned: Option<&Path>, what: &str| match pinned {
        Some(path) => Ok(path.to_path_buf()),
        None => pause_ns(what),
    };
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    if userns.is_some() {
        namespaces.push(namespace(LinuxNamespaceType::User, Some(pause_ns("user")?)));
    }
    if !pns.host_network {
        let netns = match pod.netns_path {
            Some(p) => p.to_path_buf(),
            None => pause_ns("net")?,
        };
        namespaces.push(namespace(LinuxNamespaceType::Network, Some(netns)));
        let uts = pod_ns(pod.uts_ns_path, "uts")?;
        namespaces.push(namespace(LinuxNamespaceType::Uts, Some(uts)));
    }
    if !pns.host_ipc {
        let ipc = pod_ns(pod.ipc_ns_path, "ipc")?;
        namespaces.push(namespace(LinuxNamespaceType::Ipc, Some(ipc)));
    }
    let pid_mode = scr
        .namespace_options
        .as_ref()
        .map(|n: &NamespaceOption| mode(n.pid))
        .unwrap_or(pns.pid);
    match pid_mode {
        NamespaceMode::Pod => {
            namespaces.push(namespace(LinuxNamespaceType::Pid, Some(pause_ns("pid")?)))
        }
        NamespaceMode::Container => namespaces.push(namespace(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Node => {}
        NamespaceMode::Target => {
            let pid = ctr.pid_target.ok_or_else(|| Error::PodNamespace {
                pod: pod.id.to_string(),
                reason: format!(
                    "pid namespace mode TARGET (target {:?}) without a running target",
                    scr.namespace_options
                        .as_ref()
                        .map(|n| n.target_id.as_str())
                        .unwrap_or("")
                ),
            })?;
            namespaces.push(namespace(
                LinuxNamespaceType::Pid,
                Some(PathBuf::from(format!("/proc/{pid}/ns/pid"))),
            ))
        }
    }
    if host.cgroups.v2 {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None));
    }

    // Seccomp: unset means unconfined (the Kubernetes default); privileged
    // containers are never filtered.
    let seccomp = if privileged {
        None
    } else {
        #[allow(deprecated)] // older kubelets still send the path string
        let deprecated_path = scr.seccomp_profile_path.as_str();
        let choice = seccomp::choose(
            scr.seccomp.as_ref(),
            deprecated_path,
            seccomp::SeccompChoice::Unconfined,
            &opts.seccomp_profile_root,
        )?;
        seccomp::seccomp_for(&choice, &cap_names, &host.seccomp)?
    };

    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        masked_and_readonly(&scr.masked_paths, &scr.readonly_paths)?
    };

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(PathBuf::from(cgroups_path(
            opts.cgroup_driver,
            pod.cgroup_parent,
            ctr.id,
        )))
        .masked_paths(masked)
        .readonly_paths(readonly)
        .devices(linux_devices)
        .build()
        .map_err(|e| spec_error("linux", e))?;
    linux.set_seccomp(seccomp);
    linux.set_rootfs_propagation(match root_prop {
        mounts::RootPropagation::None => None,
        mounts::RootPropagation::Slave => Some("rslave".into()),
        mounts::RootPropagation::Shared => Some("rshared".into()),
    });
    if !sysctls.is_empty() {
        linux.set_sysctl(Some(sysctls.clone()));
    }

    // Annotations.
    let mut ann = annotations::filter(&cfg.annotations, &opts.allowed_annotations);
    pod_annotations(pod, &mut ann);
    ann.insert(
        annotations::CONTAINER_TYPE.into(),
        annotations::CONTAINER_TYPE_CONTAINER.into(),
    );
    ann.insert(annotations::CONTAINER_NAME.into(), name);
    ann.insert(annotations::IMAGE_NAME.into(), ctr.image_name.to_string());
    if !cfg.labels.is_empty() {
        ann.insert(annotations::LABELS.into(), labels_json(&cfg.labels));
    }

    let mut root = Root::default();
    root.set_path(ctr.rootfs.to_path_buf());
    root.set_readonly(Some(scr.readonly_rootfs));

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    spec.set_mounts(Some(all_mounts));
    spec.set_hostname(if pns.host_network || pod.config.hostname.is_empty() {
        None
    } else {
        Some(pod.config.hostname.clone())
    });
    spec.set_annotations(Some(ann));
    spec.set_linux(Some(linux));
    debug!(
        pod_id = pod.id,
        container_id = ctr.id,
        "built container spec"
    );
    Ok(spec)
}

/// The AppArmor profile name for an unprivileged container, if any
/// (only called when AppArmor is enabled on the host).
fn apparmor_profile(sc: &LinuxContainerSecurityContext) -> Option<String> {
    use crius_cri_api::v1::security_profile::ProfileType;
    let from_profile = |p: &SecurityProfile| match ProfileType::try_from(p.profile_type) {
        Ok(ProfileType::Localhost) if !p.localhost_ref.is_empty() => Some(p.localhost_ref.clone()),
        _ => None,
    };
    if let Some(p) = sc.apparmor.as_ref() {
        return from_profile(p);
    }
    #[allow(deprecated)] // older kubelets still send the profile string
    let deprecated = sc.apparmor_profile.as_str();
    deprecated
        .strip_prefix("localhost/")
        .filter(|s| !s.is_empty())
        .map(String::from)
}
