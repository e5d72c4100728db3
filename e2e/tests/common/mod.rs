//! What the pod, container, image, networking, recovery and bad-input tests share: a daemon
//! that may pull from the fixture registries, kubelet-like configs, and bounded polls.
//! Everything goes through the CRI gRPC clients; the host is only read (mounts, cgroups,
//! files under the daemon's own dirs) to check what crius left behind.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crius_cri_api::v1::image_service_client::ImageServiceClient;
use crius_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use crius_e2e::{cri, fixture, unique_name, CriusDaemon, CriusDaemonBuilder};
use tonic::transport::Channel;

/// The runtime client type the tests use.
pub type Runtime = RuntimeServiceClient<Channel>;
/// The image client type the tests use.
pub type Images = ImageServiceClient<Channel>;

/// The plain fixture registry (`127.0.0.1:5000`).
pub fn registry() -> String {
    fixture("CRIUS_TEST_REGISTRY").expect("fixture registry")
}

/// The fixture busybox image (dynamic busybox, every applet a link in /bin).
pub fn busybox() -> String {
    format!("{}/crius-test/busybox:latest", registry())
}

/// The fixture pause image.
pub fn pause_image() -> String {
    format!("{}/crius-test/pause:latest", registry())
}

/// A drop-in letting the daemon pull over plain HTTP from both fixture registries, with
/// the fixture pause image (so no pod waits for an unreachable registry.k8s.io).
pub fn registry_dropin() -> String {
    let plain = registry();
    let auth = fixture("CRIUS_TEST_AUTH_REGISTRY").expect("fixture auth registry");
    format!(
        "[crius.image]\ninsecure_registries = [\"{plain}\", \"{auth}\"]\npause_image = \"{}\"\n",
        pause_image()
    )
}

/// A drop-in for tests about the pause container itself: keeps it whatever
/// `CRIUS_E2E_DROP_INFRA_CTR` says.
pub const WITH_INFRA: &str = "[crius.runtime]\ndrop_infra_ctr = false\n";

/// A builder for a daemon that can pull from the fixture registries.
pub fn builder() -> CriusDaemonBuilder {
    CriusDaemon::builder().config(&registry_dropin())
}

/// A daemon with its own bridge network that can pull from the fixture registries.
pub async fn bridge_daemon() -> CriusDaemon {
    builder().bridge_network().start().await.expect("daemon")
}

/// Debian's containerd shim v2 (the `containerd` package), which `vm` handler tests run.
pub const DEBIAN_SHIM: &str = "/usr/bin/containerd-shim-runc-v2";

/// Debian's shim, or `None` after saying the test was skipped (failing in CI).
pub fn debian_shim(test: &str) -> Option<PathBuf> {
    let path = PathBuf::from(DEBIAN_SHIM);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {DEBIAN_SHIM} is missing (apt-get install containerd); CI needs it"
    );
    eprintln!("SKIPPED {test}: {DEBIAN_SHIM} is missing (apt-get install containerd)");
    None
}

/// A drop-in making `shim` (runtime_type vm, `binary`) the default handler.
pub fn shim_dropin(binary: &Path) -> String {
    format!(
        "[crius.runtime]\ndefault_runtime = \"shim\"\n[crius.runtime.runtimes.shim]\nruntime_path = \"{}\"\nruntime_type = \"vm\"\n",
        binary.display()
    )
}

/// A daemon with its own bridge network whose default handler is the `vm` handler on
/// Debian's shim; `None` (skipped) without it.
pub async fn shim_bridge_daemon(test: &str) -> Option<CriusDaemon> {
    let binary = debian_shim(test)?;
    Some(
        builder()
            .bridge_network()
            .config(&shim_dropin(&binary))
            .start()
            .await
            .expect("daemon"),
    )
}

/// Both clients of a daemon.
pub async fn clients(daemon: &CriusDaemon) -> (Runtime, Images) {
    (
        daemon.runtime_client().await.expect("runtime client"),
        daemon.image_client().await.expect("image client"),
    )
}

/// A pod config as the kubelet sends it: metadata, hostname, a log dir of its own, a
/// cgroup parent under the daemon's test cgroup, pod network and IPC, private PIDs.
pub fn pod_config(daemon: &CriusDaemon, name: &str) -> cri::PodSandboxConfig {
    let uid = unique_name("uid-");
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            namespace: "crius-e2e".to_string(),
            uid: uid.clone(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: daemon
            .dir
            .join("logs")
            .join(format!("{name}-{uid}"))
            .display()
            .to_string(),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/pod{uid}", daemon.cgroup_parent),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The same pod on the host network.
pub fn host_network(mut config: cri::PodSandboxConfig) -> cri::PodSandboxConfig {
    if let Some(ns) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.network = cri::NamespaceMode::Node as i32;
    }
    config
}

/// RunPodSandbox; panics with the status on failure.
pub async fn run_pod(rt: &mut Runtime, config: &cri::PodSandboxConfig) -> String {
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}"))
    .into_inner()
    .pod_sandbox_id
}

/// PodSandboxStatus, non-verbose.
pub async fn pod_status(rt: &mut Runtime, id: &str) -> cri::PodSandboxStatus {
    rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: id.to_string(),
        verbose: false,
    })
    .await
    .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e:?}"))
    .into_inner()
    .status
    .expect("PodSandboxStatus has no status")
}

/// StopPodSandbox then RemovePodSandbox.
pub async fn remove_pod(rt: &mut Runtime, id: &str) {
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await
    .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e:?}"));
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await
    .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {e:?}"));
}

/// ListPodSandbox with a filter.
pub async fn list_pods(
    rt: &mut Runtime,
    filter: Option<cri::PodSandboxFilter>,
) -> Vec<cri::PodSandbox> {
    rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

/// PullImage without credentials; returns the image ref.
pub async fn pull(images: &mut Images, name: &str) -> String {
    images
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: name.to_string(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap_or_else(|e| panic!("PullImage {name}: {e:?}"))
        .into_inner()
        .image_ref
}

/// A container config running `command` in busybox, logging to `<name>.log` in the pod's
/// log dir.
pub fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: busybox(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: HashMap::from([("name".to_string(), name.to_string())]),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// A shell script run by busybox `sh -c`.
pub fn shell(name: &str, script: &str) -> cri::ContainerConfig {
    container_config(name, &["sh", "-c", script])
}

/// CreateContainer; panics with the status on failure.
pub async fn create(
    rt: &mut Runtime,
    pod_id: &str,
    pod: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    rt.create_container(cri::CreateContainerRequest {
        pod_sandbox_id: pod_id.to_string(),
        config: Some(config),
        sandbox_config: Some(pod.clone()),
    })
    .await
    .unwrap_or_else(|e| panic!("CreateContainer: {e:?}"))
    .into_inner()
    .container_id
}

/// StartContainer; panics with the status on failure.
pub async fn start(rt: &mut Runtime, id: &str) {
    rt.start_container(cri::StartContainerRequest {
        container_id: id.to_string(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer {id}: {e:?}"));
}

/// CreateContainer and StartContainer.
pub async fn run_container(
    rt: &mut Runtime,
    pod_id: &str,
    pod: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    let id = create(rt, pod_id, pod, config).await;
    start(rt, &id).await;
    id
}

/// A container that only sleeps (an hour), for tests that need one running.
pub fn sleeper() -> cri::ContainerConfig {
    container_config("sleeper", &["sleep", "3600"])
}

/// PodSandboxStats' Linux part for pod `id`.
pub async fn pod_linux_stats(rt: &mut Runtime, id: &str) -> cri::LinuxPodSandboxStats {
    rt.pod_sandbox_stats(cri::PodSandboxStatsRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await
    .unwrap_or_else(|e| panic!("PodSandboxStats {id}: {e:?}"))
    .into_inner()
    .stats
    .and_then(|s| s.linux)
    .expect("PodSandboxStats has no linux stats")
}

/// ContainerStatus, non-verbose.
pub async fn container_status(rt: &mut Runtime, id: &str) -> cri::ContainerStatus {
    rt.container_status(cri::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    })
    .await
    .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e:?}"))
    .into_inner()
    .status
    .expect("ContainerStatus has no status")
}

/// Polls ContainerStatus until the container is in `state`, at most `timeout`.
pub async fn wait_state(
    rt: &mut Runtime,
    id: &str,
    state: cri::ContainerState,
    timeout: Duration,
) -> cri::ContainerStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let status = container_status(rt, id).await;
        if status.state == state as i32 {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} not {state:?} within {timeout:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// ExecSync; the status on failure is returned to the caller.
pub async fn try_exec(
    rt: &mut Runtime,
    id: &str,
    cmd: &[&str],
    timeout_secs: i64,
) -> Result<cri::ExecSyncResponse, tonic::Status> {
    rt.exec_sync(cri::ExecSyncRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout: timeout_secs,
    })
    .await
    .map(|r| r.into_inner())
}

/// ExecSync that must succeed with exit code 0; returns stdout.
pub async fn exec_ok(rt: &mut Runtime, id: &str, cmd: &[&str]) -> String {
    let out = try_exec(rt, id, cmd, 20)
        .await
        .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e:?}"));
    assert_eq!(
        out.exit_code,
        0,
        "ExecSync {cmd:?} exited {}: stdout {:?} stderr {:?}",
        out.exit_code,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` until it returns `Some`, at most `timeout`; panics naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    crius::mounts::mounts_under(dir)
        .expect("mountinfo")
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

/// The entries of a dir (empty when it does not exist).
pub fn dir_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The IPs the harness bridge's host-local IPAM holds for this daemon.
pub fn ipam_reserved(daemon: &CriusDaemon) -> Vec<String> {
    let bridge = daemon.bridge.as_ref().expect("a bridge network");
    dir_entries(&daemon.dir.join("ipam").join(&bridge.name))
        .into_iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

/// The netns pins under the daemon's run dir.
pub fn netns_pins(daemon: &CriusDaemon) -> Vec<String> {
    dir_entries(&daemon.runroot.join("netns"))
}

/// Asserts that the daemon holds no pod: none listed, no netns pin, no mount under its
/// dirs, no pod or container dir, and (with a bridge) no reserved IP.
pub async fn assert_nothing_left(daemon: &CriusDaemon, rt: &mut Runtime) {
    let pods = list_pods(rt, None).await;
    assert!(pods.is_empty(), "pods still listed: {pods:?}");
    let ctrs = rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert!(ctrs.is_empty(), "containers still listed: {ctrs:?}");
    assert_eq!(netns_pins(daemon), Vec::<String>::new(), "netns pins left");
    let mounts = mounts_under(&daemon.dir);
    assert_eq!(
        mounts,
        Vec::<String>::new(),
        "mounts left under {}",
        daemon.dir.display()
    );
    for dir in [
        daemon.root.join("pods"),
        daemon.runroot.join("pods"),
        daemon.root.join("containers"),
        daemon.runroot.join("containers"),
    ] {
        assert_eq!(
            dir_entries(&dir),
            Vec::<String>::new(),
            "left in {}",
            dir.display()
        );
    }
    if let Some(bridge) = &daemon.bridge {
        let ports = dir_entries(&Path::new("/sys/class/net").join(&bridge.name).join("brif"));
        assert_eq!(ports, Vec::<String>::new(), "veths left on {}", bridge.name);
        assert_eq!(
            ipam_reserved(daemon),
            Vec::<String>::new(),
            "IPs still reserved"
        );
    }
}

/// The cgroup dirs of `path` (relative to each hierarchy) that exist, in every hierarchy.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    dir_entries(Path::new("/sys/fs/cgroup"))
        .into_iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h).join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// A container config with a memory limit of `bytes`.
pub fn memory_limited(name: &str, command: &[&str], bytes: i64) -> cri::ContainerConfig {
    let mut config = container_config(name, command);
    config.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: bytes,
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The lines of a CRI log file, split into (time, stream, tag, text).
pub fn parse_cri_log(text: &str) -> Vec<(String, String, String, String)> {
    text.lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let time = parts.next().unwrap_or("").to_string();
            let stream = parts.next().unwrap_or("").to_string();
            let tag = parts.next().unwrap_or("").to_string();
            let msg = parts.next().unwrap_or("").to_string();
            (time, stream, tag, msg)
        })
        .collect()
}

/// Whether a time stamp is RFC 3339 with nanoseconds (`2006-01-02T15:04:05.999999999Z07:00`).
pub fn is_rfc3339_nano(ts: &str) -> bool {
    let b = ts.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let date_ok = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !date_ok {
        return false;
    }
    let rest = &ts[19..];
    let rest = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 || n > 9 {
                return false;
            }
            &r[n..]
        }
        None => rest,
    };
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':')
}

/// A daemon whose only network is the harness bridge followed by `extra` plugins (JSON),
/// with `plugin_dir` searched first for plugins.
pub async fn daemon_with_chain(plugin_dir: &Path, extra: serde_json::Value) -> CriusDaemon {
    let dropin = format!(
        "[crius.network]\nplugin_dirs = [\"{}\", \"/usr/lib/cni\", \"/opt/cni/bin\"]\n",
        plugin_dir.display()
    );
    let mut daemon = builder()
        .bridge_network()
        .config(&dropin)
        .build()
        .expect("daemon dirs");
    let bridge = daemon.bridge.as_ref().unwrap();
    let mut conflist: serde_json::Value = serde_json::from_str(&bridge.conflist).unwrap();
    let plugins = conflist["plugins"].as_array_mut().unwrap();
    // bridge first (it reserves an IP and makes a veth), then the extra plugins.
    let tail = plugins.split_off(1);
    plugins.extend(extra.as_array().unwrap().iter().cloned());
    plugins.extend(tail);
    std::fs::remove_file(daemon.cni_dir.join("10-test-bridge.conflist")).unwrap();
    std::fs::write(
        daemon.cni_dir.join("10-chain.conflist"),
        conflist.to_string(),
    )
    .unwrap();
    daemon.restart().await.expect("daemon start");
    daemon
}

/// Waits (up to 5 s) until runc holds no state for the container or pause `id` of `daemon`.
pub async fn wait_runtime_state_gone(daemon: &CriusDaemon, id: &str) {
    let dir = daemon.runroot.join("runtimes/runc").join(id);
    eventually(
        &format!("runc's state of {id} is deleted"),
        Duration::from_secs(5),
        || {
            let dir = dir.clone();
            async move { (!dir.exists()).then_some(()) }
        },
    )
    .await;
}

/// A daemon with busybox pulled and one pod running.
pub struct PodFixture {
    pub daemon: CriusDaemon,
    pub rt: Runtime,
    pub images: Images,
    pub pod: String,
    pub config: cri::PodSandboxConfig,
}

/// The pid of a running container's init process, from verbose ContainerStatus.
pub async fn container_pid(rt: &mut Runtime, id: &str) -> u32 {
    let reply = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        })
        .await
        .expect("ContainerStatus")
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(reply.info.get("info").expect("verbose info")).unwrap();
    info["pid"].as_u64().expect("pid") as u32
}

/// The verbose PodSandboxStatus info of a pod (its record as crius keeps it).
pub async fn pod_info(rt: &mut Runtime, pod: &str) -> serde_json::Value {
    let reply = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.to_string(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    crius_e2e::parse_info(&reply.info, "info").expect("verbose info")
}

/// A busybox httpd serving `body` as /index.html on `port`.
pub fn web_server(name: &str, port: u16, body: &str) -> cri::ContainerConfig {
    shell(
        name,
        &format!(
            "mkdir -p /www && echo '{body}' > /www/index.html && exec httpd -f -p {port} -h /www"
        ),
    )
}

/// A bridge-network daemon, busybox pulled, and a pod named `name` running in it.
pub async fn pod_fixture(name: &str) -> PodFixture {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, name);
    let pod = run_pod(&mut rt, &config).await;
    PodFixture {
        daemon,
        rt,
        images,
        pod,
        config,
    }
}

impl PodFixture {
    /// CreateContainer and StartContainer in the pod.
    pub async fn run(&mut self, config: cri::ContainerConfig) -> String {
        run_container(&mut self.rt, &self.pod, &self.config, config).await
    }

    /// CreateContainer in the pod; panics on failure.
    pub async fn create(&mut self, config: cri::ContainerConfig) -> String {
        create(&mut self.rt, &self.pod, &self.config, config).await
    }

    /// CreateContainer in the pod; the status on failure goes to the caller.
    pub async fn try_create(
        &mut self,
        config: cri::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: self.pod.clone(),
                config: Some(config),
                sandbox_config: Some(self.config.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    /// The pod's log directory.
    pub fn log_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.log_directory)
    }

    /// The pid of a running container's init process, from verbose ContainerStatus.
    pub async fn pid(&mut self, id: &str) -> u32 {
        container_pid(&mut self.rt, id).await
    }

    /// Restarts the daemon (SIGTERM, then the same dirs and config) and reconnects.
    pub async fn restart_daemon(&mut self) {
        self.daemon.stop().await.expect("stop daemon");
        self.daemon.restart().await.expect("restart daemon");
        (self.rt, self.images) = clients(&self.daemon).await;
    }

    /// Removes the pod and checks that nothing of it is left.
    pub async fn finish(mut self) {
        remove_pod(&mut self.rt, &self.pod).await;
        assert_nothing_left(&self.daemon, &mut self.rt).await;
    }
}
