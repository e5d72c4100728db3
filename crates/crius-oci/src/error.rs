//! The one error type of crius-oci.

use std::path::PathBuf;

/// Everything that can go wrong while building OCI specs, writing bundles,
/// driving the OCI runtime or talking to a container monitor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- spec generation -------------------------------------------------
    /// The CRI request lacks a field the spec cannot be built without.
    #[error("{field} is missing for {what}")]
    MissingField { field: String, what: String },

    /// Neither the container config nor the image gives a command to run.
    #[error("no command for container {container}: config has no command/args and image {image} has no entrypoint/cmd")]
    NoCommand { container: String, image: String },

    /// A path inside the container is relative or escapes with `..`.
    #[error("invalid {field} {path:?}: {reason}")]
    InvalidContainerPath {
        field: String,
        path: String,
        reason: String,
    },

    /// A host path to bind mount into the container does not exist.
    #[error("mount source {host_path:?} for {container_path:?} does not exist")]
    MountSourceMissing {
        host_path: PathBuf,
        container_path: String,
    },

    /// A mount asks for a propagation its host source cannot give.
    #[error("mount {container_path:?}: host path {host_path:?} is on mount point {mount_point:?}, which is not a {needed} mount")]
    MountPropagation {
        host_path: PathBuf,
        container_path: String,
        mount_point: String,
        needed: String,
    },

    /// A mount feature this runtime does not implement.
    #[error("mount {container_path:?}: {reason}")]
    UnsupportedMount {
        container_path: String,
        reason: String,
    },

    /// A CDI device name that is not `vendor.com/class=name`.
    #[error("CDI device name {name:?} is invalid: {reason}")]
    CdiDeviceName { name: String, reason: String },

    /// No CDI spec file defines the device.
    #[error("unknown CDI device {devices}: no spec file in the CDI spec dirs ({dirs}) defines it")]
    CdiDeviceUnknown { devices: String, dirs: String },

    /// A device is not defined, and some spec files could not be used (maybe the one
    /// that would define it).
    #[error("unresolvable CDI device {devices} (CDI spec dirs {dirs}): {problems}")]
    CdiSpecInvalid {
        devices: String,
        dirs: String,
        problems: String,
    },

    /// A CDI device's edits name something the host does not have.
    #[error("CDI device {device} (spec {spec}): {reason}")]
    CdiEdit {
        device: String,
        spec: PathBuf,
        reason: String,
    },

    /// An OCI hook file (oci-hooks(5)) or hooks dir that cannot be used.
    #[error("OCI hook {path}: {reason}")]
    HookFile { path: PathBuf, reason: String },

    /// A host device to pass into the container is missing or not a device.
    #[error("device {host_path:?}: {reason}")]
    InvalidDevice { host_path: PathBuf, reason: String },

    /// The user or group of the container is malformed.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidUser {
        field: String,
        value: String,
        reason: String,
    },

    /// A user name does not resolve through the image's /etc/passwd.
    #[error("user {user:?} not found in /etc/passwd of image {image}")]
    UserNotFound { user: String, image: String },

    /// A group name does not resolve through the image's /etc/group.
    #[error("group {group:?} not found in /etc/group of image {image}")]
    GroupNotFound { group: String, image: String },

    /// A file of the container rootfs (passwd, group) could not be read safely.
    #[error("reading {file} in rootfs {rootfs:?}: {reason}")]
    RootfsFile {
        rootfs: PathBuf,
        file: String,
        reason: String,
    },

    /// A capability name that the kernel does not know.
    #[error("unknown capability {name:?} in {field} of container {container}")]
    UnknownCapability {
        name: String,
        field: String,
        container: String,
    },

    /// A sysctl that is not namespaced or not allowed with the pod's namespaces.
    #[error("sysctl {name:?} is not allowed: {reason}")]
    UnsafeSysctl { name: String, reason: String },

    /// A seccomp profile reference that cannot be used.
    #[error("seccomp profile {profile:?}: {reason}")]
    InvalidSeccompProfile { profile: String, reason: String },

    /// A seccomp profile file that cannot be read.
    #[error("reading seccomp profile {path:?}: {source}")]
    SeccompProfileRead {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A seccomp profile file that is not valid JSON of the expected shape.
    #[error("parsing seccomp profile {path:?}: {source}")]
    SeccompProfileParse {
        path: PathBuf,
        source: serde_json::Error,
    },

    /// A namespace the container must join is not known.
    #[error("pod {pod}: {reason}")]
    PodNamespace { pod: String, reason: String },

    /// A privileged container asked for in a pod that is not privileged.
    #[error("container {container} is privileged but pod {pod} is not")]
    PrivilegedNotAllowed { container: String, pod: String },

    /// A resource value out of range or malformed.
    #[error("invalid resource {field} {value:?}: {reason}")]
    InvalidResource {
        field: String,
        value: String,
        reason: String,
    },

    /// The bundle's config.json could not be written.
    #[error("writing bundle config {path:?}: {source}")]
    BundleWrite {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The spec could not be serialized.
    #[error("serializing spec for bundle {bundle:?}: {source}")]
    SpecSerialize {
        bundle: PathBuf,
        source: serde_json::Error,
    },

    // ---- runtime CLI and monitor ------------------------------------------
    /// The runtime binary could not be started.
    #[error("starting runtime {runtime:?} {command} for container {container}: {source}")]
    RuntimeSpawn {
        runtime: PathBuf,
        command: String,
        container: String,
        source: std::io::Error,
    },

    /// A runtime command exited non-zero; `msg` is what it said on stderr.
    #[error("runtime {runtime:?} {command} of container {container} failed: {msg}")]
    RuntimeFailed {
        runtime: PathBuf,
        command: String,
        container: String,
        msg: String,
    },

    /// A runtime command did not finish in time and was killed.
    #[error("runtime {runtime:?} {command} of container {container} timed out after {timeout:?}")]
    RuntimeTimeout {
        runtime: PathBuf,
        command: String,
        container: String,
        timeout: std::time::Duration,
    },

    /// The runtime printed something that could not be understood.
    #[error("runtime {runtime:?} {command} of container {container}: unexpected output: {reason}")]
    RuntimeOutput {
        runtime: PathBuf,
        command: String,
        container: String,
        reason: String,
    },

    /// The runtime does not know the container.
    #[error("container {container} does not exist in runtime {runtime:?}")]
    ContainerNotFound { container: String, runtime: PathBuf },

    /// The monitor binary could not be started.
    #[error("starting monitor {monitor:?} for container {container}: {source}")]
    MonitorSpawn {
        monitor: PathBuf,
        container: String,
        source: std::io::Error,
    },

    /// Creating the container failed; `msg` is the runtime's own message.
    #[error("creating container {container}: {msg}")]
    CreateFailed { container: String, msg: String },

    /// The monitor could not be reached or spoke out of turn.
    #[error("monitor in {dir:?}: {reason}")]
    MonitorProtocol { dir: PathBuf, reason: String },

    /// The monitor refused a request and said why.
    #[error("monitor in {dir:?} refused {request}: {msg}")]
    MonitorRefused {
        dir: PathBuf,
        request: String,
        msg: String,
    },

    /// The monitor is not running and left no exit file.
    #[error("monitor in {dir:?} is gone and left no exit file")]
    MonitorGone { dir: PathBuf },

    /// A file of the monitor's directory could not be read or written.
    #[error("monitor file {path:?}: {source}")]
    MonitorFile {
        path: PathBuf,
        source: std::io::Error,
    },

    // ---- containerd shim v2 (vm handlers) --------------------------------
    /// The shim binary's `start` failed or printed no address.
    #[error("runtime handler {handler:?}: shim {binary} did not start for {id}: {msg}")]
    ShimStart {
        handler: String,
        binary: PathBuf,
        id: String,
        msg: String,
    },

    /// A task API call failed (the shim answered with an error, or its connection broke).
    #[error("runtime handler {handler:?}: shim call {call} for {id} failed: {msg}")]
    ShimCall {
        handler: String,
        call: &'static str,
        id: String,
        msg: String,
    },

    /// A task API call got no answer in time.
    #[error("runtime handler {handler:?}: shim call {call} for {id} got no answer within {secs}s")]
    ShimTimeout {
        handler: String,
        call: &'static str,
        id: String,
        secs: u64,
    },
}
