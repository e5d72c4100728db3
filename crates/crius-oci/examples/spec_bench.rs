//! How long spec generation takes: pod_spec, container_spec (with and
//! without the RuntimeDefault seccomp profile) and write_bundle, medians
//! and p90 over many runs. `cargo run --release -p crius-oci --example spec_bench`

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crius_cri_api::v1::{
    security_profile::ProfileType, ContainerConfig, ContainerMetadata, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, PodSandboxConfig,
    PodSandboxMetadata, SecurityProfile,
};
use crius_oci::spec::{
    container_spec, pod_spec, write_bundle, ContainerContext, PodContext, SpecOptions,
};

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let med = v[v.len() / 2];
    let p90 = v[v.len() * 9 / 10];
    println!(
        "{name:<40} median {med:>10.1?}  p90 {p90:>10.1?}  (n={})",
        v.len()
    );
}

fn time(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for f in ["hostname", "resolv.conf", "hosts"] {
        std::fs::write(d.join(f), f).expect("write");
    }
    std::fs::create_dir_all(d.join("rootfs/etc")).expect("mkdir");
    std::fs::write(d.join("rootfs/etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("write");
    let pod_cfg = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "bench".into(),
            ..Default::default()
        }),
        hostname: "bench".into(),
        ..Default::default()
    };
    let (h, r, hs, netns) = (
        d.join("hostname"),
        d.join("resolv.conf"),
        d.join("hosts"),
        d.join("netns"),
    );
    let pod = PodContext {
        config: &pod_cfg,
        id: "pod",
        netns_path: Some(&netns),
        pause_pid: Some(1),
        ipc_ns_path: None,
        uts_ns_path: None,
        hostname_path: &h,
        resolv_conf_path: &r,
        hosts_path: &hs,
        shm_path: Some(d),
        cgroup_parent: "/kubepods",
    };
    let opts = SpecOptions::default();
    let img: oci_spec::image::ImageConfiguration = serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .expect("image config");
    let mut cfg = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        envs: vec![KeyValue {
            key: "A".into(),
            value: "b".into(),
        }],
        labels: HashMap::from([("app".into(), "x".into())]),
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_shares: 512,
                memory_limit_in_bytes: 1 << 28,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext::default()),
        }),
        ..Default::default()
    };
    let rootfs = d.join("rootfs");
    let n = 2000;
    let pause = vec!["/pause".to_string()];
    stats(
        "pod_spec (RuntimeDefault seccomp)",
        time(n, || {
            pod_spec(&pod, Path::new("/r"), &pause, &opts).expect("pod spec");
        }),
    );
    fn ctx<'a>(
        cfg: &'a ContainerConfig,
        img: &'a oci_spec::image::ImageConfiguration,
        rootfs: &'a Path,
    ) -> ContainerContext<'a> {
        ContainerContext {
            id: "ctr",
            config: cfg,
            image_config: img,
            rootfs,
            image_name: "busybox",
            pid_target: None,
        }
    }
    stats(
        "container_spec (unconfined)",
        time(n, || {
            container_spec(&pod, &ctx(&cfg, &img, &rootfs), &opts).expect("spec");
        }),
    );
    if let Some(sc) = cfg.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
        sc.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        });
    }
    let spec = container_spec(&pod, &ctx(&cfg, &img, &rootfs), &opts).expect("spec");
    stats(
        "container_spec (RuntimeDefault seccomp)",
        time(n, || {
            container_spec(&pod, &ctx(&cfg, &img, &rootfs), &opts).expect("spec");
        }),
    );
    let bundle = d.join("bundle");
    stats(
        "write_bundle (fsync)",
        time(200, || write_bundle(&bundle, &spec).expect("write")),
    );
    println!(
        "config.json: {} bytes",
        std::fs::metadata(bundle.join("config.json"))
            .map(|m| m.len())
            .unwrap_or(0)
    );
}
