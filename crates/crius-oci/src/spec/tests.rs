//! Table-driven tests: CRI field groups -> the exact OCI fields produced.
//! The host facts (capabilities, devices, mountinfo, limits) are fixed here
//! so every row is deterministic.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crius_cri_api::v1::{
    security_profile::ProfileType, Capability as CriCapability, ContainerConfig, ContainerMetadata,
    Device, Int64Value, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    Mount as CriMount, MountPropagation, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, SecurityProfile,
};
use oci_spec::runtime::{
    Arch, Capability, LinuxDeviceType, LinuxNamespaceType, LinuxSeccompAction, Mount, Spec,
};

use super::*;

/// A pod's files, a rootfs with passwd/group and a data dir on disk.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for f in ["hostname", "resolv.conf", "hosts"] {
            fs::write(p.join(f), f).unwrap();
        }
        fs::create_dir_all(p.join("shm")).unwrap();
        fs::create_dir_all(p.join("rootfs/etc")).unwrap();
        fs::write(
            p.join("rootfs/etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33:www:/var/www:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            p.join("rootfs/etc/group"),
            "root:x:0:\nweb:x:33:\nlog:x:4:web\n",
        )
        .unwrap();
        fs::create_dir_all(p.join("data/sub")).unwrap();
        fs::write(p.join("profile.json"), LOCAL_PROFILE).unwrap();
        Fixture { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The canonical host path of the fixture's data dir.
    fn data(&self) -> String {
        fs::canonicalize(self.path("data"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

const LOCAL_PROFILE: &str = r#"{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["chmod"],"action":"SCMP_ACT_ERRNO"}]}"#;

fn host() -> Host {
    let mut bounding: Vec<String> = caps::ALL_CAPABILITIES
        .iter()
        .map(|s| s.to_string())
        .collect();
    bounding.retain(|c| c != "SYS_RESOURCE");
    Host {
        bounding,
        cgroups: CgroupHost {
            v2: false,
            hugetlb: true,
        },
        nofile_hard: Some(20_000),
        seccomp: seccomp::SeccompHost {
            goarch: "amd64",
            native: Some(Arch::ScmpArchX86_64),
            kernel: Some((6, 1)),
        },
        mountinfo: "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n".into(),
        devices: vec![
            devices::HostDevice {
                path: "/dev/null".into(),
                typ: LinuxDeviceType::C,
                major: 1,
                minor: 3,
                mode: 0o666,
                uid: 0,
                gid: 0,
            },
            devices::HostDevice {
                path: "/dev/sda".into(),
                typ: LinuxDeviceType::B,
                major: 8,
                minor: 0,
                mode: 0o660,
                uid: 0,
                gid: 6,
            },
        ],
    }
}

fn opts() -> SpecOptions {
    SpecOptions {
        oom_score_adj_min: -500,
        ..Default::default()
    }
}

fn pod_config() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "prod".into(),
            attempt: 1,
        }),
        hostname: "web-0".into(),
        log_directory: "/var/log/pods/x".into(),
        labels: HashMap::from([("app".to_string(), "web".to_string())]),
        annotations: HashMap::from([("pod.note".to_string(), "n".to_string())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/pod1".into(),
            sysctls: HashMap::from([("net.core.somaxconn".to_string(), "1024".to_string())]),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption::default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_ns(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> PodSandboxConfig {
    let mut c = pod_config();
    let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.namespace_options = Some(NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: ipc as i32,
        ..Default::default()
    });
    if network == NamespaceMode::Node {
        c.linux.as_mut().unwrap().sysctls.clear();
    }
    c
}

fn image(json: serde_json::Value) -> oci_spec::image::ImageConfiguration {
    serde_json::from_value(serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": json,
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap()
}

fn default_image() -> oci_spec::image::ImageConfiguration {
    image(serde_json::json!({
        "Env": ["PATH=/usr/bin:/bin", "LANG=C"],
        "Entrypoint": ["/entry"],
        "Cmd": ["--serve"],
    }))
}

fn ctr_config() -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        labels: HashMap::from([("tier".to_string(), "front".to_string())]),
        annotations: HashMap::from([("ctr.note".to_string(), "c".to_string())]),
        ..Default::default()
    }
}

fn sc_mut(c: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    c.linux
        .get_or_insert_with(LinuxContainerConfig::default)
        .security_context
        .get_or_insert_with(LinuxContainerSecurityContext::default)
}

fn res_mut(c: &mut ContainerConfig) -> &mut LinuxContainerResources {
    c.linux
        .get_or_insert_with(LinuxContainerConfig::default)
        .resources
        .get_or_insert_with(LinuxContainerResources::default)
}

/// Builds a container spec in the fixture, for pod `pod_cfg`.
fn build_in(
    fx: &Fixture,
    pod_cfg: &PodSandboxConfig,
    cfg: &ContainerConfig,
    img: &oci_spec::image::ImageConfiguration,
    opts: &SpecOptions,
    host: &Host,
) -> Result<Spec, Error> {
    let netns = fx.path("netns");
    let shm = fx.path("shm");
    let host_net = pod_namespaces(pod_cfg).host_network;
    let host_ipc = pod_namespaces(pod_cfg).host_ipc;
    let hostname = fx.path("hostname");
    let resolv = fx.path("resolv.conf");
    let hosts = fx.path("hosts");
    let pod = PodContext {
        config: pod_cfg,
        id: "pod1",
        netns_path: (!host_net).then_some(netns.as_path()),
        pause_pid: Some(4242),
        ipc_ns_path: None,
        uts_ns_path: None,
        hostname_path: &hostname,
        resolv_conf_path: &resolv,
        hosts_path: &hosts,
        shm_path: (!host_ipc).then_some(shm.as_path()),
        cgroup_parent: "/kubepods/pod1",
    };
    let rootfs = fx.path("rootfs");
    let ctx = ContainerContext {
        id: "ctr1",
        config: cfg,
        image_config: img,
        rootfs: &rootfs,
        image_name: "docker.io/library/web:1",
        pid_target: None,
    };
    container_spec_with(&pod, &ctx, opts, host)
}

fn build(cfg: &ContainerConfig) -> Result<Spec, Error> {
    let fx = Fixture::new();
    build_in(&fx, &pod_config(), cfg, &default_image(), &opts(), &host())
}

fn process(s: &Spec) -> &oci_spec::runtime::Process {
    s.process().as_ref().unwrap()
}

fn linux(s: &Spec) -> &oci_spec::runtime::Linux {
    s.linux().as_ref().unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn namespaces(s: &Spec) -> Vec<(LinuxNamespaceType, Option<String>)> {
    linux(s)
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n.typ(),
                n.path().as_ref().map(|p| p.to_string_lossy().into_owned()),
            )
        })
        .collect()
}

fn mount_at<'a>(s: &'a Spec, dest: &str) -> Option<&'a Mount> {
    s.mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new(dest))
}

fn options(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

fn bounding(s: &Spec) -> Vec<String> {
    let caps = process(s).capabilities().as_ref().unwrap();
    let set = caps.bounding().as_ref().unwrap();
    // As serialized into config.json ("CAP_CHOWN").
    let mut v: Vec<String> = set
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v = strings(v);
    v.sort();
    v
}

// ---- command, args, entrypoint, cmd --------------------------------------

#[test]
fn command_and_args_rows() {
    // (command, args, image entrypoint, image cmd, expected process.args)
    type Row = (
        &'static [&'static str],
        &'static [&'static str],
        Option<&'static [&'static str]>,
        Option<&'static [&'static str]>,
        &'static [&'static str],
    );
    let rows: &[Row] = &[
        // nothing given: entrypoint + cmd
        (
            &[],
            &[],
            Some(&["/entry"]),
            Some(&["--serve"]),
            &["/entry", "--serve"],
        ),
        // args replace cmd, keep the entrypoint
        (
            &[],
            &["--x"],
            Some(&["/entry"]),
            Some(&["--serve"]),
            &["/entry", "--x"],
        ),
        // command replaces entrypoint and drops cmd
        (
            &["/bin/sh"],
            &[],
            Some(&["/entry"]),
            Some(&["--serve"]),
            &["/bin/sh"],
        ),
        // command + args
        (
            &["/bin/sh"],
            &["-c", "true"],
            Some(&["/entry"]),
            Some(&["--serve"]),
            &["/bin/sh", "-c", "true"],
        ),
        // image with only cmd
        (
            &[],
            &[],
            None,
            Some(&["/bin/app", "-v"]),
            &["/bin/app", "-v"],
        ),
        // args alone when the image has no entrypoint
        (
            &[],
            &["/bin/echo", "hi"],
            None,
            Some(&["/bin/app"]),
            &["/bin/echo", "hi"],
        ),
    ];
    for (command, args, entrypoint, cmd, want) in rows {
        let mut c = ctr_config();
        c.command = strings(command);
        c.args = strings(args);
        let mut img = serde_json::json!({});
        if let Some(e) = entrypoint {
            img["Entrypoint"] = serde_json::json!(e);
        }
        if let Some(cm) = cmd {
            img["Cmd"] = serde_json::json!(cm);
        }
        let fx = Fixture::new();
        let s = build_in(&fx, &pod_config(), &c, &image(img), &opts(), &host()).unwrap();
        assert_eq!(
            process(&s).args().as_deref(),
            Some(&strings(want)[..]),
            "command {command:?} args {args:?} entrypoint {entrypoint:?} cmd {cmd:?}"
        );
    }
}

#[test]
fn no_command_anywhere_is_an_error() {
    let fx = Fixture::new();
    let err = build_in(
        &fx,
        &pod_config(),
        &ctr_config(),
        &image(serde_json::json!({})),
        &opts(),
        &host(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoCommand { .. }), "{err:?}");
    assert!(err.to_string().contains("docker.io/library/web:1"), "{err}");
}

// ---- env -------------------------------------------------------------------

#[test]
fn env_rows() {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: v.into(),
    };
    // (image env, container env, tty, expected env)
    type Row = (
        &'static [&'static str],
        Vec<KeyValue>,
        bool,
        &'static [&'static str],
    );
    let rows: Vec<Row> = vec![
        (
            &["PATH=/usr/bin:/bin", "LANG=C"],
            vec![],
            false,
            &["PATH=/usr/bin:/bin", "LANG=C", "HOME=/root"],
        ),
        // container wins, keeps the image's order, new keys follow
        (
            &["PATH=/usr/bin", "A=1", "B=2"],
            vec![kv("B", "3"), kv("C", "4"), kv("A", "0")],
            false,
            &["PATH=/usr/bin", "A=0", "B=3", "C=4", "HOME=/root"],
        ),
        // no PATH anywhere: the default goes first; values may hold '='
        (
            &["X=a=b"],
            vec![kv("HOME", "/h")],
            false,
            &[DEFAULT_PATH_ENV, "X=a=b", "HOME=/h"],
        ),
        // tty adds TERM unless set
        (
            &["PATH=/p"],
            vec![],
            true,
            &["PATH=/p", "TERM=xterm", "HOME=/root"],
        ),
        (
            &["PATH=/p", "TERM=vt100"],
            vec![],
            true,
            &["PATH=/p", "TERM=vt100", "HOME=/root"],
        ),
    ];
    for (image_env, envs, tty, want) in rows {
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        c.envs = envs.clone();
        c.tty = tty;
        let fx = Fixture::new();
        let img = image(serde_json::json!({ "Env": image_env }));
        let s = build_in(&fx, &pod_config(), &c, &img, &opts(), &host()).unwrap();
        assert_eq!(
            process(&s).env().as_deref(),
            Some(&strings(want)[..]),
            "image env {image_env:?} envs {envs:?} tty {tty}"
        );
        assert_eq!(process(&s).terminal(), Some(tty));
    }
}

// ---- working dir -----------------------------------------------------------

#[test]
fn working_dir_rows() {
    // (config working_dir, image WorkingDir, expected cwd or None for error)
    let rows: &[(&str, Option<&str>, Option<&str>)] = &[
        ("/srv", Some("/img"), Some("/srv")),
        ("", Some("/img/"), Some("/img")),
        ("", Some("rel"), Some("/rel")),
        ("", None, Some("/")),
        ("relative", None, None),
        ("/a/../..", None, None),
    ];
    for (wd, image_wd, want) in rows {
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        c.working_dir = wd.to_string();
        let mut img = serde_json::json!({});
        if let Some(w) = image_wd {
            img["WorkingDir"] = serde_json::json!(w);
        }
        let fx = Fixture::new();
        let got = build_in(&fx, &pod_config(), &c, &image(img), &opts(), &host());
        match want {
            Some(w) => assert_eq!(
                process(&got.unwrap()).cwd(),
                Path::new(w),
                "{wd:?} {image_wd:?}"
            ),
            None => assert!(
                matches!(got, Err(Error::InvalidContainerPath { .. })),
                "{wd:?}: {got:?}"
            ),
        }
    }
}

// ---- user ------------------------------------------------------------------

#[test]
fn user_rows() {
    // (image User, run_as_user, run_as_username, run_as_group, supplemental, (uid, gid, additional), HOME)
    type Row = (
        &'static str,
        Option<i64>,
        &'static str,
        Option<i64>,
        Vec<i64>,
        Option<(u32, u32, Vec<u32>)>,
        &'static str,
    );
    let rows: Vec<Row> = vec![
        (
            "",
            None,
            "",
            None,
            vec![],
            Some((0, 0, vec![])),
            "HOME=/root",
        ),
        (
            "web",
            None,
            "",
            None,
            vec![],
            Some((33, 33, vec![4])),
            "HOME=/var/www",
        ),
        (
            "33:0",
            None,
            "",
            None,
            vec![],
            Some((33, 0, vec![4])),
            "HOME=/var/www",
        ),
        (
            "web:log",
            None,
            "",
            None,
            vec![],
            Some((33, 4, vec![])),
            "HOME=/var/www",
        ),
        (
            "1234",
            None,
            "",
            None,
            vec![],
            Some((1234, 0, vec![])),
            "HOME=/",
        ),
        (
            "",
            Some(33),
            "",
            Some(7),
            vec![9],
            Some((33, 7, vec![4, 9])),
            "HOME=/var/www",
        ),
        (
            "",
            None,
            "web",
            None,
            vec![],
            Some((33, 33, vec![4])),
            "HOME=/var/www",
        ),
        ("nobody2", None, "", None, vec![], None, ""),
        ("", None, "ghost", None, vec![], None, ""),
        ("web:nogroup", None, "", None, vec![], None, ""),
    ];
    for (image_user, uid, uname, gid, supp, want, home) in rows {
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        let sc = sc_mut(&mut c);
        sc.run_as_user = uid.map(|value| Int64Value { value });
        sc.run_as_username = uname.to_string();
        sc.run_as_group = gid.map(|value| Int64Value { value });
        sc.supplemental_groups = supp.clone();
        let fx = Fixture::new();
        let img = image(serde_json::json!({ "User": image_user }));
        let got = build_in(&fx, &pod_config(), &c, &img, &opts(), &host());
        match want {
            Some((u, g, extra)) => {
                let s = got.unwrap();
                let user = process(&s).user();
                assert_eq!(user.uid(), u, "{image_user:?}");
                assert_eq!(user.gid(), g, "{image_user:?}");
                assert_eq!(
                    user.additional_gids().clone().unwrap_or_default(),
                    extra,
                    "{image_user:?}"
                );
                assert!(
                    process(&s)
                        .env()
                        .as_ref()
                        .unwrap()
                        .contains(&home.to_string()),
                    "{image_user:?}"
                );
            }
            None => {
                let err = got.unwrap_err();
                assert!(
                    matches!(
                        err,
                        Error::UserNotFound { .. } | Error::GroupNotFound { .. }
                    ),
                    "{image_user:?}: {err:?}"
                );
                assert!(err.to_string().contains("docker.io/library/web:1"), "{err}");
            }
        }
    }
}

// ---- mounts ----------------------------------------------------------------

#[test]
fn standard_and_pod_mounts() {
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    let fx = Fixture::new();
    let s = build_in(&fx, &pod_config(), &c, &default_image(), &opts(), &host()).unwrap();
    let dests: Vec<String> = s
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        dests,
        strings(&[
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/shm",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/etc/hostname",
        ])
    );
    let sys = mount_at(&s, "/sys").unwrap();
    assert_eq!(sys.typ().as_deref(), Some("sysfs"));
    assert!(options(sys).contains(&"ro".to_string()));
    let shm = mount_at(&s, "/dev/shm").unwrap();
    assert_eq!(shm.source().as_deref(), Some(fx.path("shm").as_path()));
    let hosts = mount_at(&s, "/etc/hosts").unwrap();
    assert_eq!(hosts.source().as_deref(), Some(fx.path("hosts").as_path()));
    assert_eq!(hosts.typ().as_deref(), Some("bind"));
    assert!(options(hosts).contains(&"rw".to_string()));
    let resolv = mount_at(&s, "/etc/resolv.conf").unwrap();
    assert_eq!(
        resolv.source().as_deref(),
        Some(fx.path("resolv.conf").as_path())
    );
}

#[test]
fn missing_pod_file_is_an_error() {
    let fx = Fixture::new();
    fs::remove_file(fx.path("resolv.conf")).unwrap();
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    let err = build_in(&fx, &pod_config(), &c, &default_image(), &opts(), &host()).unwrap_err();
    assert!(matches!(err, Error::MountSourceMissing { .. }), "{err:?}");
}

#[test]
fn cri_mount_rows() {
    let fx = Fixture::new();
    let data = fx.data();
    let shared = "27 1 254:0 / / rw shared:1 - ext4 /dev/vda rw\n".to_string();
    let slave = "27 1 254:0 / / rw master:1 - ext4 /dev/vda rw\n".to_string();
    let private = host().mountinfo;
    struct Row {
        what: &'static str,
        mount: CriMount,
        mountinfo: String,
        /// (destination, options, rootfs propagation) or None for an error
        want: Option<(&'static str, &'static [&'static str], Option<&'static str>)>,
    }
    let m = |ctr: &str, host: &str, ro: bool, prop: MountPropagation| CriMount {
        container_path: ctr.into(),
        host_path: host.into(),
        readonly: ro,
        propagation: prop as i32,
        ..Default::default()
    };
    let rows = vec![
        Row {
            what: "private rw",
            mount: m("/data", &data, false, MountPropagation::PropagationPrivate),
            mountinfo: private.clone(),
            want: Some(("/data", &["rbind", "rprivate", "rw"], None)),
        },
        Row {
            what: "read-only, path cleaned",
            mount: m(
                "/data//x/",
                &data,
                true,
                MountPropagation::PropagationPrivate,
            ),
            mountinfo: private.clone(),
            want: Some(("/data/x", &["rbind", "rprivate", "ro"], None)),
        },
        Row {
            what: "recursive read-only",
            mount: CriMount {
                recursive_read_only: true,
                ..m("/data", &data, true, MountPropagation::PropagationPrivate)
            },
            mountinfo: private.clone(),
            want: Some(("/data", &["rbind", "rprivate", "rro"], None)),
        },
        Row {
            what: "selinux relabel is ignored",
            mount: CriMount {
                selinux_relabel: true,
                ..m("/data", &data, false, MountPropagation::PropagationPrivate)
            },
            mountinfo: private.clone(),
            want: Some(("/data", &["rbind", "rprivate", "rw"], None)),
        },
        Row {
            what: "host to container on a slave mount",
            mount: m(
                "/data",
                &data,
                false,
                MountPropagation::PropagationHostToContainer,
            ),
            mountinfo: slave.clone(),
            want: Some(("/data", &["rbind", "rslave", "rw"], Some("rslave"))),
        },
        Row {
            what: "host to container on a shared mount",
            mount: m(
                "/data",
                &data,
                false,
                MountPropagation::PropagationHostToContainer,
            ),
            mountinfo: shared.clone(),
            want: Some(("/data", &["rbind", "rslave", "rw"], Some("rslave"))),
        },
        Row {
            what: "bidirectional on a shared mount",
            mount: m(
                "/data",
                &data,
                false,
                MountPropagation::PropagationBidirectional,
            ),
            mountinfo: shared.clone(),
            want: Some(("/data", &["rbind", "rshared", "rw"], Some("rshared"))),
        },
        Row {
            what: "bidirectional on a slave mount",
            mount: m(
                "/data",
                &data,
                false,
                MountPropagation::PropagationBidirectional,
            ),
            mountinfo: slave.clone(),
            want: None,
        },
        Row {
            what: "host to container on a private mount",
            mount: m(
                "/data",
                &data,
                false,
                MountPropagation::PropagationHostToContainer,
            ),
            mountinfo: private.clone(),
            want: None,
        },
        Row {
            what: "missing host path",
            mount: m(
                "/data",
                "/nonexistent/crius",
                false,
                MountPropagation::PropagationPrivate,
            ),
            mountinfo: private.clone(),
            want: None,
        },
        Row {
            what: "relative container path",
            mount: m("data", &data, false, MountPropagation::PropagationPrivate),
            mountinfo: private.clone(),
            want: None,
        },
        Row {
            what: "escaping container path",
            mount: m(
                "/data/../../etc",
                &data,
                false,
                MountPropagation::PropagationPrivate,
            ),
            mountinfo: private.clone(),
            want: None,
        },
        Row {
            what: "recursive read-only without read-only",
            mount: CriMount {
                recursive_read_only: true,
                ..m("/data", &data, false, MountPropagation::PropagationPrivate)
            },
            mountinfo: private.clone(),
            want: None,
        },
    ];
    for row in rows {
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        c.mounts = vec![row.mount.clone()];
        let h = Host {
            mountinfo: row.mountinfo.clone(),
            ..host()
        };
        let got = build_in(&fx, &pod_config(), &c, &default_image(), &opts(), &h);
        match row.want {
            Some((dest, opts_want, root_prop)) => {
                let s = got.unwrap_or_else(|e| panic!("{}: {e}", row.what));
                let mnt = mount_at(&s, dest).unwrap_or_else(|| panic!("{}: no mount", row.what));
                assert_eq!(options(mnt), strings(opts_want), "{}", row.what);
                assert_eq!(mnt.typ().as_deref(), Some("bind"), "{}", row.what);
                assert_eq!(
                    mnt.source().as_deref(),
                    Some(Path::new(&data)),
                    "{}",
                    row.what
                );
                assert_eq!(
                    linux(&s).rootfs_propagation().as_deref(),
                    root_prop,
                    "{}",
                    row.what
                );
            }
            None => assert!(got.is_err(), "{}: {got:?}", row.what),
        }
    }
}

#[test]
fn cri_mounts_replace_pod_files_and_sort_parents_first() {
    let fx = Fixture::new();
    let data = fx.data();
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    let m = |ctr: &str| CriMount {
        container_path: ctr.into(),
        host_path: data.clone(),
        ..Default::default()
    };
    c.mounts = vec![m("/a/b/c"), m("/etc/hosts"), m("/a")];
    let s = build_in(&fx, &pod_config(), &c, &default_image(), &opts(), &host()).unwrap();
    let hosts: Vec<&Mount> = s
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| m.destination() == Path::new("/etc/hosts"))
        .collect();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].source().as_deref(), Some(Path::new(&data)));
    let order: Vec<String> = s
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .filter(|d| d.starts_with("/a") || d == "/etc/hosts")
        .collect();
    assert_eq!(order, strings(&["/a", "/etc/hosts", "/a/b/c"]));
}

// ---- devices ---------------------------------------------------------------

#[test]
fn device_rows() {
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    c.devices = vec![Device {
        container_path: "/dev/mynull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let s = build(&c).unwrap();
    let devs = linux(&s).devices().as_ref().unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].path(), Path::new("/dev/mynull"));
    assert_eq!(devs[0].typ(), LinuxDeviceType::C);
    assert_eq!((devs[0].major(), devs[0].minor()), (1, 3));
    let rules = linux(&s)
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert_eq!(rules.len(), 2);
    assert!(!rules[0].allow());
    assert_eq!(rules[0].access().as_deref(), Some("rwm"));
    assert_eq!(rules[0].typ(), None);
    assert!(rules[1].allow());
    assert_eq!(rules[1].typ(), Some(LinuxDeviceType::C));
    assert_eq!((rules[1].major(), rules[1].minor()), (Some(1), Some(3)));
    assert_eq!(rules[1].access().as_deref(), Some("rw"));

    c.devices[0].host_path = "/dev/does-not-exist".into();
    assert!(matches!(build(&c), Err(Error::InvalidDevice { .. })));
}

// ---- capabilities ----------------------------------------------------------

#[test]
fn capability_rows() {
    let default = sorted(&[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_KILL",
    ]);
    let all_held: Vec<String> = {
        let mut v: Vec<String> = host().bounding.iter().map(|c| format!("CAP_{c}")).collect();
        v.sort();
        v
    };
    // (add, drop, expected bounding set)
    let rows: Vec<(&[&str], &[&str], Vec<String>)> = vec![
        (&[], &[], default.clone()),
        (
            &["NET_ADMIN"],
            &["KILL", "CHOWN"],
            sorted(&[
                "CAP_DAC_OVERRIDE",
                "CAP_FSETID",
                "CAP_FOWNER",
                "CAP_SETGID",
                "CAP_SETUID",
                "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_ADMIN",
            ]),
        ),
        (&[], &["ALL"], vec![]),
        (&["NET_RAW"], &["ALL"], sorted(&["CAP_NET_RAW"])),
        (&["ALL"], &[], all_held.clone()),
        (
            &["ALL"],
            &["SYS_ADMIN"],
            all_held
                .iter()
                .filter(|c| *c != "CAP_SYS_ADMIN")
                .cloned()
                .collect(),
        ),
    ];
    for (add, drop, want) in rows {
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        sc_mut(&mut c).capabilities = Some(CriCapability {
            add_capabilities: strings(add),
            drop_capabilities: strings(drop),
            add_ambient_capabilities: vec![],
        });
        let s = build(&c).unwrap();
        assert_eq!(bounding(&s), want, "add {add:?} drop {drop:?}");
        let caps = process(&s).capabilities().as_ref().unwrap();
        assert_eq!(caps.effective(), caps.bounding());
        assert_eq!(caps.permitted(), caps.bounding());
        assert_eq!(caps.inheritable().as_ref().map(|i| i.len()), Some(0));
    }

    // the configured default set replaces CRI-O's
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    let o = SpecOptions {
        default_capabilities: strings(&["CAP_NET_RAW"]),
        ..opts()
    };
    let fx = Fixture::new();
    let s = build_in(&fx, &pod_config(), &c, &default_image(), &o, &host()).unwrap();
    assert_eq!(bounding(&s), sorted(&["CAP_NET_RAW"]));

    // unknown names are errors
    sc_mut(&mut c).capabilities = Some(CriCapability {
        add_capabilities: strings(&["CAP_FLY"]),
        ..Default::default()
    });
    assert!(matches!(build(&c), Err(Error::UnknownCapability { .. })));

    // ambient caps also land in inheritable
    sc_mut(&mut c).capabilities = Some(CriCapability {
        add_ambient_capabilities: strings(&["NET_BIND_SERVICE"]),
        ..Default::default()
    });
    let s = build(&c).unwrap();
    let caps = process(&s).capabilities().as_ref().unwrap();
    let nbs: oci_spec::runtime::Capabilities = [Capability::NetBindService].into();
    assert_eq!(caps.ambient().as_ref(), Some(&nbs));
    assert_eq!(caps.inheritable().as_ref(), Some(&nbs));
}

// ---- privileged ------------------------------------------------------------

fn privileged_pod() -> PodSandboxConfig {
    let mut p = pod_config();
    p.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .privileged = true;
    p
}

#[test]
fn privileged_container() {
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    let sc = sc_mut(&mut c);
    sc.privileged = true;
    sc.seccomp = Some(SecurityProfile {
        profile_type: ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    sc.capabilities = Some(CriCapability {
        drop_capabilities: strings(&["ALL"]),
        ..Default::default()
    });
    let fx = Fixture::new();
    let s = build_in(
        &fx,
        &privileged_pod(),
        &c,
        &default_image(),
        &opts(),
        &host(),
    )
    .unwrap();
    // every capability this process holds, add/drop ignored
    let mut held: Vec<String> = host().bounding.iter().map(|c| format!("CAP_{c}")).collect();
    held.sort();
    assert_eq!(bounding(&s), held);
    assert!(!bounding(&s).contains(&"CAP_SYS_RESOURCE".to_string()));
    // every host device, all allowed
    let devs: Vec<String> = linux(&s)
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .map(|d| d.path().to_string_lossy().into_owned())
        .collect();
    assert_eq!(devs, strings(&["/dev/null", "/dev/sda"]));
    let rules = linux(&s)
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow());
    assert_eq!(rules[0].typ(), None);
    // nothing masked, sysfs and cgroupfs writable, no seccomp
    assert_eq!(linux(&s).masked_paths().as_deref(), Some(&[][..]));
    assert_eq!(linux(&s).readonly_paths().as_deref(), Some(&[][..]));
    assert!(options(mount_at(&s, "/sys").unwrap()).contains(&"rw".to_string()));
    assert!(options(mount_at(&s, "/sys/fs/cgroup").unwrap()).contains(&"rw".to_string()));
    assert!(linux(&s).seccomp().is_none());

    // a privileged container needs a privileged pod
    let err = build_in(&fx, &pod_config(), &c, &default_image(), &opts(), &host()).unwrap_err();
    assert!(matches!(err, Error::PrivilegedNotAllowed { .. }), "{err:?}");
}

// ---- read-only rootfs, no_new_privs, masked paths -----------------------------

#[test]
fn readonly_rootfs_and_no_new_privs() {
    for ro in [false, true] {
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        sc_mut(&mut c).readonly_rootfs = ro;
        sc_mut(&mut c).no_new_privs = ro;
        let s = build(&c).unwrap();
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(ro));
        assert_eq!(process(&s).no_new_privileges(), Some(ro));
        let mode = if ro { "ro" } else { "rw" };
        for f in ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"] {
            assert!(
                options(mount_at(&s, f).unwrap()).contains(&mode.to_string()),
                "{f} {ro}"
            );
        }
    }
}

#[test]
fn masked_and_readonly_path_rows() {
    // (masked, readonly, expected masked, expected readonly) ; None = error
    type Row = (Vec<String>, Vec<String>, Option<(Vec<String>, Vec<String>)>);
    let defaults = (
        strings(DEFAULT_MASKED_PATHS),
        strings(DEFAULT_READONLY_PATHS),
    );
    let rows: Vec<Row> = vec![
        (vec![], vec![], Some(defaults.clone())),
        (
            strings(&["/proc/kcore", "/secret"]),
            vec![],
            Some((strings(&["/proc/kcore", "/secret"]), defaults.1.clone())),
        ),
        (
            vec![],
            strings(&["/proc/sys"]),
            Some((defaults.0.clone(), strings(&["/proc/sys"]))),
        ),
        (strings(&["relative"]), vec![], None),
    ];
    for (masked, readonly, want) in rows {
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        sc_mut(&mut c).masked_paths = masked.clone();
        sc_mut(&mut c).readonly_paths = readonly.clone();
        let got = build(&c);
        match want {
            Some((m, r)) => {
                let s = got.unwrap();
                assert_eq!(linux(&s).masked_paths().as_ref(), Some(&m), "{masked:?}");
                assert_eq!(
                    linux(&s).readonly_paths().as_ref(),
                    Some(&r),
                    "{readonly:?}"
                );
            }
            None => assert!(got.is_err(), "{masked:?}"),
        }
    }
}

// ---- seccomp ---------------------------------------------------------------

#[test]
fn seccomp_rows() {
    let fx = Fixture::new();
    let local = fx.path("profile.json").to_string_lossy().into_owned();
    let sp = |t: ProfileType, r: &str| {
        Some(SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        })
    };
    // (profile, deprecated path, expected default action or None for unconfined; Err = "err")
    type Row = (
        Option<SecurityProfile>,
        String,
        Result<Option<LinuxSeccompAction>, ()>,
    );
    let rows: Vec<Row> = vec![
        (None, String::new(), Ok(None)),
        (
            sp(ProfileType::RuntimeDefault, ""),
            String::new(),
            Ok(Some(LinuxSeccompAction::ScmpActErrno)),
        ),
        (sp(ProfileType::Unconfined, ""), String::new(), Ok(None)),
        (
            sp(ProfileType::Localhost, &local),
            String::new(),
            Ok(Some(LinuxSeccompAction::ScmpActLog)),
        ),
        (
            sp(ProfileType::Localhost, "/nonexistent/p.json"),
            String::new(),
            Err(()),
        ),
        (
            None,
            "runtime/default".into(),
            Ok(Some(LinuxSeccompAction::ScmpActErrno)),
        ),
        (
            None,
            "docker/default".into(),
            Ok(Some(LinuxSeccompAction::ScmpActErrno)),
        ),
        (None, "unconfined".into(), Ok(None)),
        (
            None,
            format!("localhost/{local}"),
            Ok(Some(LinuxSeccompAction::ScmpActLog)),
        ),
        (None, "whatever".into(), Err(())),
    ];
    for (profile, path, want) in rows {
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        let sc = sc_mut(&mut c);
        sc.seccomp = profile.clone();
        #[allow(deprecated)]
        {
            sc.seccomp_profile_path = path.clone();
        }
        let got = build_in(&fx, &pod_config(), &c, &default_image(), &opts(), &host());
        match want {
            Ok(action) => {
                let s = got.unwrap_or_else(|e| panic!("{profile:?} {path:?}: {e}"));
                assert_eq!(
                    linux(&s).seccomp().as_ref().map(|p| p.default_action()),
                    action,
                    "{profile:?} {path:?}"
                );
            }
            Err(()) => assert!(got.is_err(), "{profile:?} {path:?}"),
        }
    }
}

#[test]
fn runtime_default_seccomp_follows_added_caps() {
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    sc_mut(&mut c).seccomp = Some(SecurityProfile {
        profile_type: ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let has = |s: &Spec, name: &str| {
        linux(s)
            .seccomp()
            .as_ref()
            .unwrap()
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .any(|r| r.names().iter().any(|n| n == name))
    };
    let s = build(&c).unwrap();
    assert!(!has(&s, "mount"));
    sc_mut(&mut c).capabilities = Some(CriCapability {
        add_capabilities: strings(&["SYS_ADMIN"]),
        ..Default::default()
    });
    let s = build(&c).unwrap();
    assert!(has(&s, "mount"));
}

// ---- apparmor --------------------------------------------------------------

#[test]
fn apparmor_only_when_available() {
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    sc_mut(&mut c).apparmor = Some(SecurityProfile {
        profile_type: ProfileType::Localhost as i32,
        localhost_ref: "my-profile".into(),
    });
    let s = build(&c).unwrap();
    assert_eq!(process(&s).apparmor_profile(), &None);
    let fx = Fixture::new();
    let o = SpecOptions {
        apparmor_available: true,
        ..opts()
    };
    let s = build_in(&fx, &pod_config(), &c, &default_image(), &o, &host()).unwrap();
    assert_eq!(
        process(&s).apparmor_profile().as_deref(),
        Some("my-profile")
    );
}

// ---- oom score, resources, rlimits ---------------------------------------------

#[test]
fn oom_score_adj_rows() {
    // (requested, expected) with oom_score_adj_min = -500
    let rows: &[(Option<i64>, Option<i32>)] = &[
        (Some(-999), Some(-500)),
        (Some(-500), Some(-500)),
        (Some(0), Some(0)),
        (Some(1000), Some(1000)),
        (Some(5000), Some(1000)),
        (None, None),
    ];
    for (req, want) in rows {
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        if let Some(r) = req {
            res_mut(&mut c).oom_score_adj = *r;
        }
        let s = build(&c).unwrap();
        assert_eq!(process(&s).oom_score_adj(), *want, "{req:?}");
    }
}

#[test]
fn resources_and_rlimits() {
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    *res_mut(&mut c) = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 20_000,
        cpu_shares: 102,
        memory_limit_in_bytes: 1 << 30,
        memory_swap_limit_in_bytes: 2 << 30,
        cpuset_cpus: "0".into(),
        cpuset_mems: "0".into(),
        ..Default::default()
    };
    let s = build(&c).unwrap();
    let r = linux(&s).resources().as_ref().unwrap();
    let cpu = r.cpu().as_ref().unwrap();
    assert_eq!(
        (cpu.shares(), cpu.quota(), cpu.period()),
        (Some(102), Some(20_000), Some(100_000))
    );
    assert_eq!(
        (cpu.cpus().as_deref(), cpu.mems().as_deref()),
        (Some("0"), Some("0"))
    );
    let mem = r.memory().as_ref().unwrap();
    assert_eq!((mem.limit(), mem.swap()), (Some(1 << 30), Some(2 << 30)));
    // unified needs cgroup v2
    res_mut(&mut c)
        .unified
        .insert("memory.high".into(), "100".into());
    assert!(matches!(build(&c), Err(Error::InvalidResource { .. })));
    let fx = Fixture::new();
    let v2 = Host {
        cgroups: CgroupHost {
            v2: true,
            hugetlb: true,
        },
        ..host()
    };
    let s = build_in(&fx, &pod_config(), &c, &default_image(), &opts(), &v2).unwrap();
    let r = linux(&s).resources().as_ref().unwrap();
    assert_eq!(
        r.unified()
            .as_ref()
            .unwrap()
            .get("memory.high")
            .map(String::as_str),
        Some("100")
    );
    // cgroup v2 hosts also get a cgroup namespace
    assert!(namespaces(&s)
        .iter()
        .any(|(t, p)| *t == LinuxNamespaceType::Cgroup && p.is_none()));

    // RLIMIT_NOFILE: 1048576, lowered to this process's hard limit
    let rl = process(&s).rlimits().as_ref().unwrap();
    assert_eq!(rl.len(), 1);
    assert_eq!(
        rl[0].typ(),
        oci_spec::runtime::PosixRlimitType::RlimitNofile
    );
    assert_eq!((rl[0].soft(), rl[0].hard()), (20_000, 20_000));
    let unlimited = Host {
        nofile_hard: None,
        ..host()
    };
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    let s = build_in(
        &fx,
        &pod_config(),
        &c,
        &default_image(),
        &opts(),
        &unlimited,
    )
    .unwrap();
    assert_eq!(
        process(&s).rlimits().as_ref().unwrap()[0].hard(),
        DEFAULT_NOFILE
    );
}

// ---- namespaces, hostname, sysctls, cgroups path, annotations --------------------

#[test]
fn container_namespace_rows() {
    use LinuxNamespaceType as T;
    use NamespaceMode::{Container, Node, Pod, Target};
    let netns = |fx: &Fixture| Some(fx.path("netns").to_string_lossy().into_owned());
    let p = |what: &str| Some(format!("/proc/4242/ns/{what}"));
    // (pod network, pod pid, pod ipc, container pid override, expected namespaces or None for error, hostname)
    type Row = (
        NamespaceMode,
        NamespaceMode,
        NamespaceMode,
        Option<NamespaceMode>,
        Option<Vec<(T, bool)>>,
        Option<&'static str>,
    );
    let rows: Vec<Row> = vec![
        (
            Pod,
            Pod,
            Pod,
            None,
            Some(vec![
                (T::Mount, false),
                (T::Network, true),
                (T::Uts, true),
                (T::Ipc, true),
                (T::Pid, true),
            ]),
            Some("web-0"),
        ),
        (
            Pod,
            Container,
            Pod,
            None,
            Some(vec![
                (T::Mount, false),
                (T::Network, true),
                (T::Uts, true),
                (T::Ipc, true),
                (T::Pid, false),
            ]),
            Some("web-0"),
        ),
        (
            Pod,
            Pod,
            Pod,
            Some(Container),
            Some(vec![
                (T::Mount, false),
                (T::Network, true),
                (T::Uts, true),
                (T::Ipc, true),
                (T::Pid, false),
            ]),
            Some("web-0"),
        ),
        (
            Pod,
            Node,
            Pod,
            None,
            Some(vec![
                (T::Mount, false),
                (T::Network, true),
                (T::Uts, true),
                (T::Ipc, true),
            ]),
            Some("web-0"),
        ),
        (
            Node,
            Pod,
            Pod,
            None,
            Some(vec![(T::Mount, false), (T::Ipc, true), (T::Pid, true)]),
            None,
        ),
        (
            Pod,
            Pod,
            Node,
            None,
            Some(vec![
                (T::Mount, false),
                (T::Network, true),
                (T::Uts, true),
                (T::Pid, true),
            ]),
            Some("web-0"),
        ),
        (Pod, Pod, Pod, Some(Target), None, None),
    ];
    for (net, pid, ipc, ctr_pid, want, hostname) in rows {
        let fx = Fixture::new();
        let pod_cfg = pod_ns(net, pid, ipc);
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        if let Some(cp) = ctr_pid {
            sc_mut(&mut c).namespace_options = Some(NamespaceOption {
                network: net as i32,
                pid: cp as i32,
                ipc: ipc as i32,
                ..Default::default()
            });
        }
        let got = build_in(&fx, &pod_cfg, &c, &default_image(), &opts(), &host());
        let Some(want) = want else {
            assert!(matches!(got, Err(Error::PodNamespace { .. })), "{got:?}");
            continue;
        };
        let s = got.unwrap();
        let want: Vec<(T, Option<String>)> = want
            .into_iter()
            .map(|(t, joined)| {
                let path = match (t, joined) {
                    (_, false) => None,
                    (T::Network, true) => netns(&fx),
                    (T::Uts, true) => p("uts"),
                    (T::Ipc, true) => p("ipc"),
                    (T::Pid, true) => p("pid"),
                    _ => None,
                };
                (t, path)
            })
            .collect();
        assert_eq!(
            namespaces(&s),
            want,
            "net {net:?} pid {pid:?} ipc {ipc:?} ctr pid {ctr_pid:?}"
        );
        assert_eq!(s.hostname().as_deref(), hostname, "net {net:?}");
        // host IPC: the host's /dev/shm
        let shm = mount_at(&s, "/dev/shm").unwrap();
        let want_shm = if ipc == Node {
            PathBuf::from("/dev/shm")
        } else {
            fx.path("shm")
        };
        assert_eq!(shm.source().as_deref(), Some(want_shm.as_path()));
    }
}

/// A container spec for a pod with no pause process, joining the pins given (net, ipc,
/// uts) if any.
fn spec_without_pause(
    fx: &Fixture,
    pod_cfg: &PodSandboxConfig,
    pins: [Option<&std::path::Path>; 3],
) -> Result<Spec, Error> {
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    let (h, r, hs) = (
        fx.path("hostname"),
        fx.path("resolv.conf"),
        fx.path("hosts"),
    );
    let pod = PodContext {
        config: pod_cfg,
        id: "pod1",
        netns_path: pins[0],
        pause_pid: None,
        ipc_ns_path: pins[1],
        uts_ns_path: pins[2],
        hostname_path: &h,
        resolv_conf_path: &r,
        hosts_path: &hs,
        shm_path: None,
        cgroup_parent: "",
    };
    let rootfs = fx.path("rootfs");
    let img = default_image();
    let ctx = ContainerContext {
        id: "c",
        config: &c,
        image_config: &img,
        rootfs: &rootfs,
        image_name: "i",
        pid_target: None,
    };
    container_spec_with(&pod, &ctx, &opts(), &host())
}

#[test]
fn joining_needs_the_pause_process() {
    let fx = Fixture::new();
    let err = spec_without_pause(&fx, &pod_config(), [None, None, None]).unwrap_err();
    assert!(matches!(err, Error::PodNamespace { .. }), "{err:?}");
    assert!(err.to_string().contains("pod1"), "{err}");
}

#[test]
fn a_pod_without_pause_is_joined_by_its_pinned_namespaces() {
    let fx = Fixture::new();
    // pid CONTAINER: nothing to join there.
    let pod_cfg = pod_ns(
        NamespaceMode::Pod,
        NamespaceMode::Container,
        NamespaceMode::Pod,
    );
    let (netns, ipc, uts) = (fx.path("netns"), fx.path("ipc"), fx.path("uts"));
    let spec = spec_without_pause(&fx, &pod_cfg, [Some(&netns), Some(&ipc), Some(&uts)]).unwrap();
    let got = namespaces(&spec);
    let path = |p: &std::path::Path| Some(p.display().to_string());
    for want in [
        (LinuxNamespaceType::Network, path(&netns)),
        (LinuxNamespaceType::Ipc, path(&ipc)),
        (LinuxNamespaceType::Uts, path(&uts)),
        (LinuxNamespaceType::Pid, None),
    ] {
        assert!(got.contains(&want), "{want:?} not in {got:?}");
    }
}

#[test]
fn sysctl_rows_in_container_specs() {
    // (sysctl, host network, accepted)
    let rows: &[(&str, NamespaceMode, bool)] = &[
        ("net.core.somaxconn", NamespaceMode::Pod, true),
        ("kernel.shmmax", NamespaceMode::Pod, true),
        ("net.core.somaxconn", NamespaceMode::Node, false),
        ("kernel.panic", NamespaceMode::Pod, false),
    ];
    for (name, net, ok) in rows {
        let fx = Fixture::new();
        let mut pod_cfg = pod_ns(*net, NamespaceMode::Pod, NamespaceMode::Pod);
        pod_cfg.linux.as_mut().unwrap().sysctls =
            HashMap::from([(name.to_string(), "1".to_string())]);
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        let got = build_in(&fx, &pod_cfg, &c, &default_image(), &opts(), &host());
        if *ok {
            let s = got.unwrap();
            assert_eq!(
                linux(&s)
                    .sysctl()
                    .as_ref()
                    .unwrap()
                    .get(*name)
                    .map(String::as_str),
                Some("1")
            );
        } else {
            assert!(
                matches!(got, Err(Error::UnsafeSysctl { .. })),
                "{name}: {got:?}"
            );
        }
    }
}

#[test]
fn cgroups_path_per_driver_in_specs() {
    for (driver, want) in [
        (CgroupDriver::Cgroupfs, "/kubepods/pod1/crius-ctr1"),
        (CgroupDriver::Systemd, "pod1:crius:ctr1"),
    ] {
        let fx = Fixture::new();
        let mut c = ctr_config();
        c.command = strings(&["/x"]);
        let o = SpecOptions {
            cgroup_driver: driver,
            ..opts()
        };
        let s = build_in(&fx, &pod_config(), &c, &default_image(), &o, &host()).unwrap();
        assert_eq!(
            linux(&s).cgroups_path().as_deref(),
            Some(Path::new(want)),
            "{driver:?}"
        );
    }
}

#[test]
fn container_annotations() {
    let mut c = ctr_config();
    c.command = strings(&["/x"]);
    let s = build(&c).unwrap();
    let a = s.annotations().as_ref().unwrap();
    let want = [
        ("ctr.note", "c"),
        (annotations::CONTAINER_TYPE, "container"),
        (annotations::SANDBOX_ID, "pod1"),
        (annotations::SANDBOX_NAME, "web"),
        (annotations::SANDBOX_NAMESPACE, "prod"),
        (annotations::SANDBOX_UID, "uid-1"),
        (annotations::CONTAINER_NAME, "app"),
        (annotations::IMAGE_NAME, "docker.io/library/web:1"),
        (annotations::LABELS, r#"{"tier":"front"}"#),
    ];
    for (k, v) in want {
        assert_eq!(a.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert!(
        !a.contains_key("pod.note"),
        "pod annotations stay on the pod"
    );
    assert_eq!(s.version(), OCI_VERSION);
    assert!(s.root().as_ref().unwrap().path().ends_with("rootfs"));
}

// ---- the pause container ---------------------------------------------------

fn pod_spec_in(fx: &Fixture, cfg: &PodSandboxConfig, args: &[&str]) -> Result<Spec, Error> {
    pod_spec_opts(fx, cfg, args, &opts())
}

fn pod_spec_opts(
    fx: &Fixture,
    cfg: &PodSandboxConfig,
    args: &[&str],
    opts: &SpecOptions,
) -> Result<Spec, Error> {
    let ns = pod_namespaces(cfg);
    let netns = fx.path("netns");
    let shm = fx.path("shm");
    let (h, r, hs) = (
        fx.path("hostname"),
        fx.path("resolv.conf"),
        fx.path("hosts"),
    );
    let pod = PodContext {
        config: cfg,
        id: "pod1",
        netns_path: (!ns.host_network).then_some(netns.as_path()),
        pause_pid: None,
        ipc_ns_path: None,
        uts_ns_path: None,
        hostname_path: &h,
        resolv_conf_path: &r,
        hosts_path: &hs,
        shm_path: (!ns.host_ipc).then_some(shm.as_path()),
        cgroup_parent: "/kubepods/pod1",
    };
    pod_spec_with(&pod, &fx.path("pause"), &strings(args), opts, &host())
}

/// Annotations a runtime acts on, one per row of `annotations::RUNTIME_ACTED`'s kinds,
/// and a plain one.
fn acted_annotations() -> HashMap<String, String> {
    HashMap::from([
        ("run.oci.keep_original_groups".to_string(), "1".to_string()),
        (
            "org.systemd.property.CPUWeight".to_string(),
            "5".to_string(),
        ),
        ("org.criu.config".to_string(), "/x".to_string()),
        (
            annotations::CONTAINER_TYPE.to_string(),
            "forged".to_string(),
        ),
        ("example.com/note".to_string(), "kept".to_string()),
    ])
}

#[test]
fn runtime_acted_annotations_reach_pause_and_container_specs_only_where_allowed() {
    let fx = Fixture::new();
    let allow_run_oci = SpecOptions {
        allowed_annotations: strings(&["run.oci."]),
        ..opts()
    };
    let mut pod = pod_config();
    pod.annotations = acted_annotations();
    let mut ctr = ctr_config();
    ctr.command = strings(&["/x"]);
    ctr.annotations = acted_annotations();
    let specs = |o: &SpecOptions| {
        let pause = pod_spec_opts(&fx, &pod, &["/pause"], o).unwrap();
        let c = build_in(&fx, &pod_config(), &ctr, &default_image(), o, &host()).unwrap();
        [("pause", pause, "sandbox"), ("container", c, "container")]
    };
    for (what, s, kind) in specs(&opts()) {
        let a = s.annotations().as_ref().unwrap();
        for key in [
            "run.oci.keep_original_groups",
            "org.systemd.property.CPUWeight",
            "org.criu.config",
        ] {
            assert!(!a.contains_key(key), "{what}: {key} passed: {a:?}");
        }
        assert_eq!(a.get("example.com/note").map(String::as_str), Some("kept"));
        assert_eq!(
            a.get(annotations::CONTAINER_TYPE).map(String::as_str),
            Some(kind),
            "{what}"
        );
    }
    for (what, s, _) in specs(&allow_run_oci) {
        let a = s.annotations().as_ref().unwrap();
        assert_eq!(
            a.get("run.oci.keep_original_groups").map(String::as_str),
            Some("1"),
            "{what}"
        );
        assert!(!a.contains_key("org.systemd.property.CPUWeight"), "{what}");
    }
}

#[test]
fn allowed_annotations_must_be_ones_a_runtime_acts_on() {
    assert!(annotations::check_allowed(&strings(&["run.oci.", "org.criu.config"])).is_ok());
    let err = annotations::check_allowed(&strings(&["run.oci.", "run.oci.x"])).unwrap_err();
    assert!(err.starts_with("\"run.oci.x\" is not"), "{err}");
}

#[test]
fn pause_spec_defaults() {
    let fx = Fixture::new();
    let s = pod_spec_in(&fx, &pod_config(), &["/pause"]).unwrap();
    let p = process(&s);
    assert_eq!(p.args().as_deref(), Some(&strings(&["/pause"])[..]));
    assert_eq!(p.env().as_deref(), Some(&strings(&[DEFAULT_PATH_ENV])[..]));
    assert_eq!(p.cwd(), Path::new("/"));
    assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(p.terminal(), Some(false));
    // -998 raised to oom_score_adj_min
    assert_eq!(p.oom_score_adj(), Some(-500));
    assert!(bounding(&s).is_empty(), "no capabilities");
    let root = s.root().as_ref().unwrap();
    assert_eq!(root.path(), fx.path("pause").as_path());
    assert_eq!(root.readonly(), Some(true));
    assert_eq!(s.hostname().as_deref(), Some("web-0"));
    assert_eq!(
        namespaces(&s),
        vec![
            (LinuxNamespaceType::Mount, None),
            (LinuxNamespaceType::Pid, None),
            (LinuxNamespaceType::Ipc, None),
            (LinuxNamespaceType::Uts, None),
            (
                LinuxNamespaceType::Network,
                Some(fx.path("netns").to_string_lossy().into_owned())
            ),
        ]
    );
    let l = linux(&s);
    assert_eq!(
        l.cgroups_path().as_deref(),
        Some(Path::new("/kubepods/pod1/crius-pod1"))
    );
    assert_eq!(
        l.sysctl()
            .as_ref()
            .unwrap()
            .get("net.core.somaxconn")
            .map(String::as_str),
        Some("1024")
    );
    assert_eq!(
        l.seccomp().as_ref().map(|p| p.default_action()),
        Some(LinuxSeccompAction::ScmpActErrno),
        "RuntimeDefault when the pod names no profile"
    );
    assert_eq!(
        l.masked_paths().as_ref(),
        Some(&strings(DEFAULT_MASKED_PATHS))
    );
    let shm = mount_at(&s, "/dev/shm").unwrap();
    assert_eq!(shm.source().as_deref(), Some(fx.path("shm").as_path()));
    assert!(mount_at(&s, "/etc/resolv.conf").is_some());
    let a = s.annotations().as_ref().unwrap();
    assert_eq!(
        a.get(annotations::CONTAINER_TYPE).map(String::as_str),
        Some("sandbox")
    );
    assert_eq!(
        a.get(annotations::SANDBOX_ID).map(String::as_str),
        Some("pod1")
    );
    assert_eq!(a.get("pod.note").map(String::as_str), Some("n"));
    assert_eq!(
        a.get(annotations::SANDBOX_LOG_DIRECTORY)
            .map(String::as_str),
        Some("/var/log/pods/x")
    );
}

#[test]
fn pause_namespace_rows() {
    use LinuxNamespaceType as T;
    use NamespaceMode::{Container, Node, Pod};
    // (network, pid, ipc, expected namespace types, hostname set)
    let rows: &[(NamespaceMode, NamespaceMode, NamespaceMode, &[T], bool)] = &[
        (
            Pod,
            Pod,
            Pod,
            &[T::Mount, T::Pid, T::Ipc, T::Uts, T::Network],
            true,
        ),
        (
            Pod,
            Container,
            Pod,
            &[T::Mount, T::Pid, T::Ipc, T::Uts, T::Network],
            true,
        ),
        (
            Pod,
            Node,
            Pod,
            &[T::Mount, T::Ipc, T::Uts, T::Network],
            true,
        ),
        (Node, Pod, Pod, &[T::Mount, T::Pid, T::Ipc], false),
        (
            Pod,
            Pod,
            Node,
            &[T::Mount, T::Pid, T::Uts, T::Network],
            true,
        ),
        (Node, Node, Node, &[T::Mount], false),
    ];
    for (net, pid, ipc, want, hostname) in rows {
        let fx = Fixture::new();
        let s = pod_spec_in(&fx, &pod_ns(*net, *pid, *ipc), &["/pause"]).unwrap();
        let got: Vec<T> = namespaces(&s).into_iter().map(|(t, _)| t).collect();
        assert_eq!(got, want.to_vec(), "net {net:?} pid {pid:?} ipc {ipc:?}");
        assert_eq!(s.hostname().is_some(), *hostname, "net {net:?}");
        let shm = mount_at(&s, "/dev/shm").unwrap();
        assert_eq!(
            shm.source().as_deref() == Some(Path::new("/dev/shm")),
            *ipc == Node
        );
    }
}

#[test]
fn pause_spec_security_context() {
    let fx = Fixture::new();
    let mut cfg = pod_config();
    {
        let sc = cfg
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap();
        sc.run_as_user = Some(Int64Value { value: 65534 });
        sc.run_as_group = Some(Int64Value { value: 65535 });
        sc.supplemental_groups = vec![5];
        sc.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        });
    }
    let s = pod_spec_in(&fx, &cfg, &["/pause", "-v"]).unwrap();
    let u = process(&s).user();
    assert_eq!((u.uid(), u.gid()), (65534, 65535));
    assert_eq!(u.additional_gids().as_deref(), Some(&[5u32][..]));
    assert!(linux(&s).seccomp().is_none());
}

#[test]
fn pause_spec_errors() {
    let fx = Fixture::new();
    // no pause command
    assert!(matches!(
        pod_spec_in(&fx, &pod_config(), &[]),
        Err(Error::MissingField { .. })
    ));
    // unsafe sysctl
    let mut cfg = pod_config();
    cfg.linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("vm.swappiness".into(), "1".into());
    assert!(matches!(
        pod_spec_in(&fx, &cfg, &["/pause"]),
        Err(Error::UnsafeSysctl { .. })
    ));
    // own network namespace, but no pinned netns
    let cfg = pod_config();
    let (h, r, hs) = (
        fx.path("hostname"),
        fx.path("resolv.conf"),
        fx.path("hosts"),
    );
    let pod = PodContext {
        config: &cfg,
        id: "pod1",
        netns_path: None,
        pause_pid: None,
        ipc_ns_path: None,
        uts_ns_path: None,
        hostname_path: &h,
        resolv_conf_path: &r,
        hosts_path: &hs,
        shm_path: None,
        cgroup_parent: "",
    };
    let err =
        pod_spec_with(&pod, &fx.path("p"), &strings(&["/pause"]), &opts(), &host()).unwrap_err();
    assert!(matches!(err, Error::PodNamespace { .. }), "{err:?}");
}

#[test]
fn specs_round_trip_through_json() {
    let fx = Fixture::new();
    let s = pod_spec_in(&fx, &pod_config(), &["/pause"]).unwrap();
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["ociVersion"], OCI_VERSION);
    assert_eq!(json["process"]["oomScoreAdj"], -500);
    assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(json["linux"]["seccomp"]["defaultErrnoRet"], 1);
    let back: Spec = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
}
