//! runc accepts the specs crius generates: a pause container from
//! `pod_spec` and a container from `container_spec` (RuntimeDefault seccomp,
//! a user from the image's /etc/passwd, a read-only rootfs, a read-only bind
//! mount, a device, sysctls, resources) joining the pause container's
//! namespaces, run by the real runc on a busybox rootfs.
//!
//! Needs root, runc and busybox (Debian's busybox or busybox-static; a
//! dynamic one is copied with its libraries). Set CRIUS_TEST_BUSYBOX to use
//! another busybox binary.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crius_cri_api::v1::{
    security_profile::ProfileType, ContainerConfig, ContainerMetadata, Device, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, SecurityProfile,
};
use crius_oci::spec::{
    container_spec, pod_spec, write_bundle, CgroupDriver, ContainerContext, PodContext, SpecOptions,
};

const RUNC: &str = "runc";

/// Everything the test created on the host, removed in Drop even when an
/// assertion failed: runc containers (by id, in a private runc root), the
/// network namespace, the cgroup parent dirs.
struct Cleanup {
    runc_root: PathBuf,
    containers: Vec<String>,
    netns: Option<String>,
    cgroup_parent: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in self.containers.iter().rev() {
            let _ = Command::new(RUNC)
                .arg("--root")
                .arg(&self.runc_root)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // runc removes the containers' own cgroups; the parent is ours.
        if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let dir = e.path().join(self.cgroup_parent.trim_start_matches('/'));
                if dir.is_dir() {
                    let _ = fs::remove_dir(&dir);
                }
            }
        }
    }
}

fn busybox_source() -> PathBuf {
    std::env::var_os("CRIUS_TEST_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"))
}

/// Copies busybox (and, when it is dynamic, its libraries at the same
/// paths) into `root/bin`, with a link per applet.
fn make_busybox_rootfs(root: &Path) {
    let bb = busybox_source();
    assert!(
        bb.exists(),
        "{} missing: apt-get install -y busybox (or busybox-static), or set CRIUS_TEST_BUSYBOX",
        bb.display()
    );
    for d in ["bin", "etc", "dev", "proc", "sys", "tmp", "work", "data"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(&bb, root.join("bin/busybox")).unwrap();
    if let Ok(out) = Command::new("ldd").arg(&bb).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let lib = match line.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
                let dest = root.join(lib.trim_start_matches('/'));
                fs::create_dir_all(dest.parent().unwrap()).unwrap();
                fs::copy(lib, &dest).unwrap();
            }
        }
    }
    let list = Command::new(&bb).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = symlink("busybox", root.join("bin").join(applet));
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/work:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
    )
    .unwrap();
}

/// Runs a runc command to completion. stdout and stderr go through files,
/// not pipes: `runc create` hands its stdio to the container, which would
/// keep a pipe open for as long as it lives.
fn runc(root: &Path, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let err_path = dir.path().join("err");
    let status = Command::new(RUNC)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .status()
        .expect("runc runs");
    (
        status.success(),
        fs::read_to_string(&out_path).unwrap_or_default(),
        fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

/// Runs `runc run` in the foreground, killing it after `limit`.
fn runc_run(root: &Path, bundle: &Path, id: &str, limit: Duration) -> (i32, String, String) {
    let mut child = Command::new(RUNC)
        .arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runc runs");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runc run {id} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn own_oom_score_adj() -> i32 {
    fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn image_config(user: &str) -> oci_spec::image::ImageConfiguration {
    let json = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": user,
            "Env": ["PATH=/bin", "FOO=image", "KEEP=1"],
            "Entrypoint": ["/bin/sh"],
            "Cmd": ["-c", "echo from-image-cmd"],
            "WorkingDir": "/work"
        },
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    serde_json::from_value(json).unwrap()
}

const SCRIPT: &str = r#"
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
grep -E '^(Seccomp|CapBnd|NoNewPrivs):' /proc/self/status | tr -d '\t ' 
echo "host=$(hostname)"
echo "cwd=$(pwd)"
echo "foo=$FOO keep=$KEEP home=$HOME"
echo "nofile=$(ulimit -n)"
echo "oom=$(cat /proc/self/oom_score_adj)"
echo "shmmax=$(cat /proc/sys/kernel/shmmax)"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "netns=$(readlink /proc/self/ns/net)"
if touch /data/x 2>/dev/null; then echo data=rw; else echo data=ro; fi
echo "hello=$(cat /data/hello)"
if touch /rootfile 2>/dev/null; then echo root=rw; else echo root=ro; fi
echo "resolv=$(cat /etc/resolv.conf)"
echo "masked=$(wc -c < /proc/timer_list)"
if echo hi > /dev/xnull; then echo dev=ok; else echo dev=fail; fi
echo "memlimit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
if unshare -n true 2>/dev/null; then echo unshare=ok; else echo unshare=denied; fi
"#;

fn parse(out: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in out.lines() {
        // "uid=.. gid=.. groups=.." and "Seccomp:2" forms.
        if line.starts_with("uid=") {
            for part in line.splitn(3, ' ') {
                if let Some((k, v)) = part.split_once('=') {
                    m.insert(k.to_string(), v.to_string());
                }
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':').filter(|(k, _)| !k.contains('=')) {
            m.insert(k.to_string(), v.to_string());
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}

#[test]
fn runc_runs_pause_and_container_specs() {
    assert!(
        nix_is_root(),
        "this test needs root (it runs runc and creates a network namespace)"
    );
    assert!(
        Command::new(RUNC).arg("--version").output().is_ok(),
        "runc missing: apt-get install -y runc"
    );
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        t.file_name().unwrap().to_string_lossy().replace('.', "")
    );
    let mut cleanup = Cleanup {
        runc_root: t.join("runc-root"),
        containers: Vec::new(),
        netns: None,
        cgroup_parent: format!("/crius-oci-test-{tag}"),
    };

    // The pod: a network namespace, its files, a pause container.
    let netns_name = format!("crius-oci-test-{tag}");
    let st = Command::new("ip")
        .args(["netns", "add", &netns_name])
        .status()
        .unwrap();
    assert!(st.success(), "ip netns add {netns_name}");
    cleanup.netns = Some(netns_name.clone());
    let netns_path = PathBuf::from("/run/netns").join(&netns_name);

    for f in ["hostname", "resolv.conf", "hosts"] {
        fs::write(t.join(f), format!("{f}-content\n")).unwrap();
    }
    fs::create_dir_all(t.join("shm")).unwrap();
    let pause_root = t.join("pause-rootfs");
    make_busybox_rootfs(&pause_root);
    let ctr_root = t.join("ctr-rootfs");
    make_busybox_rootfs(&ctr_root);
    let data = t.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("hello"), "from-host").unwrap();

    let pod_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "spec-pod".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "spec-pod-host".into(),
        linux: Some(LinuxPodSandboxConfig {
            sysctls: HashMap::from([
                ("kernel.shmmax".to_string(), "12345678".to_string()),
                (
                    "net.ipv4.ip_unprivileged_port_start".to_string(),
                    "80".to_string(),
                ),
            ]),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption::default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = SpecOptions {
        cgroup_driver: CgroupDriver::Cgroupfs,
        oom_score_adj_min: own_oom_score_adj(),
        ..Default::default()
    };
    let hostname_path = t.join("hostname");
    let resolv_path = t.join("resolv.conf");
    let hosts_path = t.join("hosts");
    let shm_path = t.join("shm");
    let pod_id = format!("pod-{tag}");
    let cgroup_parent = cleanup.cgroup_parent.clone();
    let mut pod = PodContext {
        config: &pod_config,
        id: &pod_id,
        netns_path: Some(&netns_path),
        pause_pid: None,
        ipc_ns_path: None,
        uts_ns_path: None,
        hostname_path: &hostname_path,
        resolv_conf_path: &resolv_path,
        hosts_path: &hosts_path,
        shm_path: Some(&shm_path),
        cgroup_parent: &cgroup_parent,
    };
    let pause_args: Vec<String> = ["/bin/busybox", "sleep", "600"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let spec = pod_spec(&pod, &pause_root, &pause_args, &opts).unwrap();
    let pause_bundle = t.join("pause-bundle");
    write_bundle(&pause_bundle, &spec).unwrap();

    cleanup.containers.push(pod_id.clone());
    let pid_file = t.join("pause.pid");
    let out = runc(
        &cleanup.runc_root,
        &[
            "create",
            "--bundle",
            pause_bundle.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &pod_id,
        ],
    );
    assert!(out.0, "runc create pause: {}", out.2);
    let state = runc(&cleanup.runc_root, &["state", &pod_id]);
    let state: serde_json::Value = serde_json::from_str(&state.1).unwrap();
    assert_eq!(
        state["status"], "created",
        "the pause stays created until started"
    );
    let out = runc(&cleanup.runc_root, &["start", &pod_id]);
    assert!(out.0, "runc start pause: {}", out.2);
    let pause_pid: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    pod.pause_pid = Some(pause_pid);

    // The container.
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        command: vec!["/bin/sh".into(), "-c".into(), SCRIPT.into()],
        envs: vec![KeyValue {
            key: "FOO".into(),
            value: "ctr".into(),
        }],
        mounts: vec![Mount {
            container_path: "/data".into(),
            host_path: data.to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        }],
        devices: vec![Device {
            container_path: "/dev/xnull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }],
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_shares: 256,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: 500,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                readonly_rootfs: true,
                no_new_privs: true,
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let img = image_config("app");
    let ctr_id = format!("ctr-{tag}");
    let ctx = ContainerContext {
        id: &ctr_id,
        config: &config,
        image_config: &img,
        rootfs: &ctr_root,
        image_name: "busybox",
        pid_target: None,
    };
    let spec = container_spec(&pod, &ctx, &opts).unwrap();
    assert!(spec.linux().as_ref().unwrap().seccomp().is_some());
    let bundle = t.join("ctr-bundle");
    write_bundle(&bundle, &spec).unwrap();
    cleanup.containers.insert(0, ctr_id.clone());
    let (code, stdout, stderr) = runc_run(
        &cleanup.runc_root,
        &bundle,
        &ctr_id,
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "runc run: stdout:\n{stdout}\nstderr:\n{stderr}");
    let got = parse(&stdout);
    let want_netns = format!("net:[{}]", fs::metadata(&netns_path).unwrap().ino());
    let nofile = fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(String::from))
        .unwrap();
    let want_nofile = nofile
        .parse::<u64>()
        .map(|n| n.min(1_048_576).to_string())
        .unwrap_or_else(|_| "1048576".into());
    let expect: &[(&str, &str)] = &[
        ("uid", "1000"),
        ("gid", "1000"),
        ("groups", "1000 2000"),
        ("Seccomp", "2"),
        // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
        ("CapBnd", "00000000000005fb"),
        ("NoNewPrivs", "1"),
        ("host", "spec-pod-host"),
        ("cwd", "/work"),
        ("foo", "ctr keep=1 home=/work"),
        ("nofile", &want_nofile),
        ("oom", "500"),
        ("shmmax", "12345678"),
        ("pid1", "/bin/busybox sleep 600 "),
        ("netns", &want_netns),
        ("data", "ro"),
        ("hello", "from-host"),
        ("root", "ro"),
        ("resolv", "resolv.conf-content"),
        // /proc/timer_list is masked with /dev/null
        ("masked", "0"),
        ("dev", "ok"),
        ("memlimit", "67108864"),
        ("unshare", "denied"),
    ];
    for (k, v) in expect {
        assert_eq!(
            got.get(*k).map(String::as_str),
            Some(*v),
            "{k} in container output:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    drop(cleanup);
    assert!(!netns_path.exists(), "netns pin removed");
}

fn nix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

const PRIVILEGED_SCRIPT: &str = r#"
grep -E '^(Seccomp|CapBnd):' /proc/self/status | tr -d '\t '
echo "host=$(hostname)"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline | cut -c1-200)"
echo "netns=$(readlink /proc/self/ns/net)"
echo "ipcns=$(readlink /proc/self/ns/ipc)"
echo "pidns=$(readlink /proc/self/ns/pid)"
if [ -c /dev/null ] && [ -e /dev/zero ]; then echo devnodes=ok; else echo devnodes=missing; fi
echo "sysmode=$(grep ' /sys sysfs ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1)"
echo "masked=$(wc -c < /proc/timer_list | tr -d ' ' | sed 's/^0$/zero/')"
"#;

/// A privileged container in a pod that uses the host's network, IPC and
/// PID namespaces: all capabilities this process holds, no seccomp, host
/// devices, writable sysfs, nothing masked.
#[test]
fn runc_runs_privileged_host_namespace_specs() {
    assert!(nix_is_root(), "this test needs root (it runs runc)");
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        t.file_name().unwrap().to_string_lossy().replace('.', "")
    );
    let mut cleanup = Cleanup {
        runc_root: t.join("runc-root"),
        containers: Vec::new(),
        netns: None,
        cgroup_parent: format!("/crius-oci-test-{tag}"),
    };
    for f in ["hostname", "resolv.conf", "hosts"] {
        fs::write(t.join(f), format!("{f}-content\n")).unwrap();
    }
    let pause_root = t.join("pause-rootfs");
    make_busybox_rootfs(&pause_root);
    let ctr_root = t.join("ctr-rootfs");
    make_busybox_rootfs(&ctr_root);

    let node = crius_cri_api::v1::NamespaceMode::Node as i32;
    let pod_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "host-pod".into(),
            uid: "uid-2".into(),
            namespace: "kube-system".into(),
            attempt: 0,
        }),
        hostname: "ignored-with-host-network".into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                privileged: true,
                namespace_options: Some(NamespaceOption {
                    network: node,
                    pid: node,
                    ipc: node,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = SpecOptions {
        oom_score_adj_min: own_oom_score_adj(),
        ..Default::default()
    };
    let (hostname_path, resolv_path, hosts_path) =
        (t.join("hostname"), t.join("resolv.conf"), t.join("hosts"));
    let pod_id = format!("hpod-{tag}");
    let cgroup_parent = cleanup.cgroup_parent.clone();
    let mut pod = PodContext {
        config: &pod_config,
        id: &pod_id,
        netns_path: None,
        pause_pid: None,
        ipc_ns_path: None,
        uts_ns_path: None,
        hostname_path: &hostname_path,
        resolv_conf_path: &resolv_path,
        hosts_path: &hosts_path,
        shm_path: None,
        cgroup_parent: &cgroup_parent,
    };
    let pause_args: Vec<String> = ["/bin/busybox", "sleep", "600"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let spec = pod_spec(&pod, &pause_root, &pause_args, &opts).unwrap();
    let pause_bundle = t.join("pause-bundle");
    write_bundle(&pause_bundle, &spec).unwrap();
    cleanup.containers.push(pod_id.clone());
    let pid_file = t.join("pause.pid");
    let out = runc(
        &cleanup.runc_root,
        &[
            "run",
            "--detach",
            "--bundle",
            pause_bundle.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &pod_id,
        ],
    );
    assert!(out.0, "runc run --detach pause: {}", out.2);
    pod.pause_pid = Some(
        fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );

    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "admin".into(),
            attempt: 0,
        }),
        command: vec!["/bin/sh".into(), "-c".into(), PRIVILEGED_SCRIPT.into()],
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                privileged: true,
                namespace_options: Some(NamespaceOption {
                    network: node,
                    pid: node,
                    ipc: node,
                    ..Default::default()
                }),
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let img = image_config("");
    let ctr_id = format!("hctr-{tag}");
    let ctx = ContainerContext {
        id: &ctr_id,
        config: &config,
        image_config: &img,
        rootfs: &ctr_root,
        image_name: "busybox",
        pid_target: None,
    };
    let spec = container_spec(&pod, &ctx, &opts).unwrap();
    let bundle = t.join("ctr-bundle");
    write_bundle(&bundle, &spec).unwrap();
    cleanup.containers.insert(0, ctr_id.clone());
    let (code, stdout, stderr) = runc_run(
        &cleanup.runc_root,
        &bundle,
        &ctr_id,
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "runc run: stdout:\n{stdout}\nstderr:\n{stderr}");
    let got = parse(&stdout);

    let status = fs::read_to_string("/proc/self/status").unwrap();
    let own_bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    let ns = |what: &str| {
        fs::read_link(format!("/proc/self/ns/{what}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let init = fs::read("/proc/1/cmdline").unwrap();
    let init: String = String::from_utf8_lossy(&init)
        .replace('\0', " ")
        .chars()
        .take(200)
        .collect();
    let expect: Vec<(&str, String)> = vec![
        ("Seccomp", "0".into()),
        ("CapBnd", own_bnd),
        ("host", host_name),
        ("pid1", init),
        ("netns", ns("net")),
        ("ipcns", ns("ipc")),
        ("pidns", ns("pid")),
        ("devnodes", "ok".into()),
        ("sysmode", "rw".into()),
    ];
    // Not masked: the host's /proc/timer_list has content.
    let masked = got.get("masked").map(String::as_str).unwrap_or("");
    assert!(
        masked != "zero" && !masked.is_empty(),
        "timer_list masked in a privileged container: {stdout}"
    );
    for (k, v) in &expect {
        assert_eq!(
            got.get(*k),
            Some(v),
            "{k} in container output:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}
