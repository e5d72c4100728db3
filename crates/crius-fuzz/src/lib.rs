//! The fuzz targets of crius: one function per parser of untrusted input, shared by the
//! cargo-fuzz binaries in `fuzz/` (nightly, libFuzzer) and by `tests/replay.rs`, which
//! runs every input kept under `fuzz/corpus/TARGET` and `fuzz/regressions/TARGET`
//! through the same function on stable, so a crash found once stays fixed.
//!
//! A target panics only when crius would have: on a panic in the code under test, or
//! when the layer unpacker touched anything outside its layer directory.

pub mod layer;

use std::path::Path;

/// The body of a target: takes any bytes, panics only on a bug.
pub type Body = fn(&[u8]);

/// Every target: its name (the file in `fuzz/fuzz_targets`, the corpus directory) and
/// its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("layer_unpack", layer::unpack),
    ("spdy_frames", crius_stream::fuzzing::spdy_frames),
    ("ws_frames", crius_stream::fuzzing::ws_frames),
    ("config", config),
    ("image_reference", image_reference),
    ("registries_conf", registries_conf),
    ("auth_file", auth_file),
    ("cni_result", crius_net::fuzzing::cni_result),
    ("cni_config", crius_net::fuzzing::cni_config),
    ("monitor_frames", monitor_frames),
    ("cri_to_oci", cri_to_oci),
];

/// The body of target `name`.
pub fn target(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// A crius.conf (or drop-in): loaded, checked, and when valid printed and read back to
/// the same config.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/crius/crius.conf.d/10-fuzz.conf");
    let Ok(config) = crius::config::Config::from_texts([(path, text)]) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    let printed = config.to_commented_toml();
    let again = crius::config::Config::from_texts([(path, printed.as_str())])
        .unwrap_or_else(|e| panic!("a valid config printed does not load again: {e}\n{printed}"));
    assert_eq!(
        again, config,
        "a config printed and read back differs:\n{printed}"
    );
}

/// An image name as a pull or a registries.conf names it.
pub fn image_reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crius_image::reference::parse(text);
    if let Ok(normal) = crius_image::normalize_reference(text) {
        let again = crius_image::normalize_reference(&normal)
            .unwrap_or_else(|e| panic!("normal form {normal:?} of {text:?} does not parse: {e}"));
        assert_eq!(again, normal, "normalizing {text:?} twice differs");
    }
}

/// registries.conf(5).
pub fn registries_conf(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        crius_image::fuzzing::registries_conf(text);
    }
}

/// containers-auth.json(5).
pub fn auth_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        crius_image::fuzzing::auth_file(text);
    }
}

/// What a monitor or the daemon reads from the other's socket: length-prefixed requests
/// and responses, one after another; and the exit file a monitor writes.
pub fn monitor_frames(data: &[u8]) {
    use crius_monitor_proto::{parse_exit_file, Request, Response};
    monitor_frames_of::<Request>(data);
    monitor_frames_of::<Response>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_exit_file(text);
    }
}

/// Reads frames of `M` off `data` until one is short or bad; each must lie within it.
fn monitor_frames_of<M: prost::Message + Default>(data: &[u8]) {
    let mut at = 0;
    while let Ok(Some((_, used))) = crius_monitor_proto::decode_frame::<M>(&data[at..]) {
        assert!(
            used > 0 && at + used <= data.len(),
            "frame length {used} at {at}"
        );
        at += used;
    }
}

/// A CreateContainerRequest as the kubelet would send it (protobuf): the pod's pause spec
/// from its sandbox config, then the container's spec, each serialized as a bundle's
/// config.json is. Paths point into an empty scratch dir; CDI and hook dirs are empty.
pub fn cri_to_oci(data: &[u8]) {
    use crius_cri_api::v1::CreateContainerRequest;
    use crius_oci::spec::{container_spec, pod_spec, ContainerContext, PodContext, SpecOptions};
    use prost::Message as _;

    let Ok(req) = CreateContainerRequest::decode(data) else {
        return;
    };
    let Some(pod_config) = req.sandbox_config.as_ref() else {
        return;
    };
    let dir = std::env::temp_dir().join("crius-fuzz-oci");
    let opts = SpecOptions {
        seccomp_profile_root: dir.join("seccomp"),
        cdi_spec_dirs: Vec::new(),
        hooks_dirs: Vec::new(),
        ..SpecOptions::default()
    };
    let (hostname, resolv, hosts, netns, shm) = (
        dir.join("hostname"),
        dir.join("resolv.conf"),
        dir.join("hosts"),
        dir.join("netns"),
        dir.join("shm"),
    );
    let pod = PodContext {
        config: pod_config,
        id: "pod1",
        netns_path: Some(&netns),
        pause_pid: Some(1),
        ipc_ns_path: None,
        uts_ns_path: None,
        hostname_path: &hostname,
        resolv_conf_path: &resolv,
        hosts_path: &hosts,
        shm_path: Some(&shm),
        cgroup_parent: &pod_config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default(),
    };
    let rootfs = dir.join("rootfs");
    if let Ok(spec) = pod_spec(&pod, &rootfs, &["/pause".to_string()], &opts) {
        let _ = serde_json::to_vec(&spec);
    }
    let Some(config) = req.config.as_ref() else {
        return;
    };
    let image_config = oci_spec::image::ImageConfiguration::default();
    let ctr = ContainerContext {
        id: "ctr1",
        config,
        image_config: &image_config,
        rootfs: &rootfs,
        image_name: "docker.io/library/busybox:latest",
        pid_target: None,
    };
    if let Ok(spec) = container_spec(&pod, &ctr, &opts) {
        let _ = serde_json::to_vec(&spec);
    }
}
