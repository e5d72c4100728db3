//! The real kubelet (the `KUBELET` peer) driving a test's own crius, in standalone mode: no
//! API server, static pods from a manifest dir, the read-only port on loopback for `/pods`
//! and `/stats/summary`. Each [`Kubelet`] has its own root dir, config, ports, node name,
//! cgroup root and log dir, all inside its [`CriusDaemon`]'s test dir, so tests run side by
//! side; its crius has a bridge network of its own and pulls from the fixture registries.
//!
//! Two host-wide things the kubelet would otherwise change are kept inside the test: it runs
//! in a mount namespace of its own (`unshare --mount`) in which
//! - the kernel tunables it insists on (`vm.overcommit_memory`, `kernel.panic`, ...) are
//!   files of the test holding the values it wants, and `protectKernelDefaults` makes it only
//!   check them: it never rewrites the host's sysctls;
//! - `/var/log` is a dir of the test, so its `/var/log/containers` links stay there;
//! - `/var/lib/kubelet` is a dir of the test: the kubelet puts its device plugin socket
//!   there whatever its `--root-dir` (a fixed path: two kubelets starting side by side on the
//!   host's dir race to bind it, and one fails with "address already in use"), and its
//!   self-signed serving certificate by default.
//!
//! Every dir it mounts on stays in that namespace, which dies with it. It is told not to make
//! its iptables chains (`makeIPTablesUtilChains: false`: `KUBE-IPTABLES-HINT`,
//! `KUBE-FIREWALL` with jumps from INPUT and OUTPUT, `KUBE-KUBELET-CANARY`, the only iptables
//! work of kubelet v1.37); a test that turns them on gets the `KUBE-*` chains that appeared
//! while it ran removed at teardown, with the rules jumping to them.
//!
//! Drop stops the kubelet by its pid (SIGTERM, then SIGKILL), removes every pod through the
//! CRI, then lets the [`CriusDaemon`] stop crius and remove what is left: processes, mounts,
//! the cgroup root in every hierarchy (it is crius's `cgroup_root` too), the bridge and its
//! FORWARD rule, and the test dir.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use crius_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::peers::{peer, peer_or_skip};
use crate::{fixture, unique_name, CriusDaemon, CriusDaemonBuilder};

/// How long the kubelet may take to answer `/healthz` after it was started.
pub const KUBELET_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the kubelet may take to exit after SIGTERM before it is killed.
pub const KUBELET_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The kubelet's fixed dir (device plugin socket, default certificate dir), which each test
/// kubelet sees as a dir of its own.
const HOST_KUBELET_DIR: &str = "/var/lib/kubelet";

/// The kernel tunables the kubelet checks at start (`setupKernelTunables`), with the values
/// it wants; they are files of the test inside its mount namespace.
pub const KERNEL_TUNABLES: [(&str, &str); 6] = [
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// Options for a test kubelet and its crius; [`Kubelet::builder`] makes one.
#[derive(Debug)]
pub struct KubeletBuilder {
    crius: CriusDaemonBuilder,
    config: serde_json::Map<String, Value>,
    feature_gates: BTreeMap<String, bool>,
    args: Vec<String>,
}

impl KubeletBuilder {
    /// Changes the crius daemon's options (drop-ins, flags, environment).
    pub fn crius(mut self, change: impl FnOnce(CriusDaemonBuilder) -> CriusDaemonBuilder) -> Self {
        self.crius = change(self.crius);
        self
    }

    /// Sets a top-level `KubeletConfiguration` field (camelCase, as in the YAML), over the
    /// harness's defaults.
    pub fn config(mut self, key: &str, value: Value) -> Self {
        self.config.insert(key.to_string(), value);
        self
    }

    /// Turns a feature gate on or off.
    pub fn feature_gate(mut self, name: &str, enabled: bool) -> Self {
        self.feature_gates.insert(name.to_string(), enabled);
        self
    }

    /// The image garbage collection thresholds, in percent of the image filesystem (the
    /// harness's default, 100, never collects).
    pub fn image_gc(self, high_percent: u32, low_percent: u32) -> Self {
        self.config("imageGCHighThresholdPercent", json!(high_percent))
            .config("imageGCLowThresholdPercent", json!(low_percent))
    }

    /// Log rotation: the size a container log may reach (`"10Mi"`) and how many files
    /// (rotated ones plus the current) the kubelet keeps.
    pub fn container_log_max(self, size: &str, files: u32) -> Self {
        self.config("containerLogMaxSize", json!(size))
            .config("containerLogMaxFiles", json!(files))
    }

    /// Adds a kubelet command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Starts crius and the kubelet and waits until the kubelet answers `/healthz`, or
    /// returns `None` after saying that `test` was skipped because the kubelet peer is not
    /// built (in CI that fails instead). Panics on any other failure.
    pub async fn start_or_skip(self, test: &str) -> Option<Kubelet> {
        let binary = peer_or_skip("KUBELET", test)?;
        Some(
            self.start_binary(binary)
                .await
                .unwrap_or_else(|e| panic!("{test}: cannot start the kubelet: {e:#}")),
        )
    }

    /// Starts crius and the kubelet and waits until the kubelet answers `/healthz`.
    pub async fn start(self) -> anyhow::Result<Kubelet> {
        let binary = peer("KUBELET").ok_or_else(|| {
            anyhow!("the kubelet peer is not built (CRIUS_PEER_KUBELET): run e2e/peers/build.sh")
        })?;
        self.start_binary(binary).await
    }

    async fn start_binary(self, binary: PathBuf) -> anyhow::Result<Kubelet> {
        let crius = self.crius.start().await?;
        let dir = crius.dir.clone();
        let node_name = unique_name("crius-e2e-node-");
        let [port, read_only_port, healthz_port] = free_ports()?;
        let mut kubelet = Kubelet {
            child: None,
            binary,
            args: Vec::new(),
            root_dir: dir.join("kubelet"),
            manifest_dir: dir.join("kubelet-manifests"),
            pod_logs_dir: dir.join("kubelet-pod-logs"),
            config_path: dir.join("kubelet-config.json"),
            log_path: dir.join("kubelet.log"),
            namespace_dir: dir.join("kubelet-ns"),
            node_name,
            cgroup_root: crius.cgroup_parent.clone(),
            port,
            read_only_port,
            healthz_port,
            kube_chains_before: None,
            dir,
            crius,
        };
        // From here on, Drop cleans up whatever happens.
        kubelet.prepare(self.config, self.feature_gates, self.args)?;
        kubelet.launch()?;
        kubelet.wait_ready(KUBELET_READY_TIMEOUT).await?;
        Ok(kubelet)
    }
}

/// A real kubelet in standalone mode, driving its own [`CriusDaemon`].
#[derive(Debug)]
pub struct Kubelet {
    child: Option<Child>,
    binary: PathBuf,
    args: Vec<String>,
    /// The `KUBE-*` chains before start, when the kubelet was allowed to make its own.
    kube_chains_before: Option<BTreeSet<String>>,
    namespace_dir: PathBuf,
    /// The test dir (crius's): everything of this kubelet lives in it.
    pub dir: PathBuf,
    /// `--root-dir`.
    pub root_dir: PathBuf,
    /// `staticPodPath`: the manifests [`Kubelet::write_manifest`] writes.
    pub manifest_dir: PathBuf,
    /// `podLogsDir`: `<ns>_<pod>_<uid>/<container>/<restart>.log` below it.
    pub pod_logs_dir: PathBuf,
    /// The `KubeletConfiguration` file (JSON).
    pub config_path: PathBuf,
    /// The kubelet's stdout and stderr (`--v=2`), over all its runs.
    pub log_path: PathBuf,
    /// `--hostname-override`: static pods are named `<name>-<node_name>`.
    pub node_name: String,
    /// `cgroupRoot`, which is also crius's `cgroup_root`.
    pub cgroup_root: String,
    /// The kubelet's authenticated HTTPS port (on 127.0.0.1).
    pub port: u16,
    /// The read-only HTTP port (on 127.0.0.1): `/pods`, `/stats/summary`.
    pub read_only_port: u16,
    /// The `/healthz` port (on 127.0.0.1).
    pub healthz_port: u16,
    /// The crius daemon the kubelet drives (stopped and cleaned after the kubelet).
    pub crius: CriusDaemon,
}

impl Kubelet {
    /// Options for a kubelet and its crius: a bridge network and the fixture registries.
    pub fn builder() -> KubeletBuilder {
        let mut crius = CriusDaemon::builder().bridge_network();
        if let Ok(path) = fixture("CRIUS_TEST_REGISTRIES_CONF") {
            if let Ok(text) = fs::read_to_string(&path) {
                crius = crius.registries_conf(&text);
            }
        }
        KubeletBuilder {
            crius,
            config: serde_json::Map::new(),
            feature_gates: BTreeMap::new(),
            args: Vec::new(),
        }
    }

    /// The config the harness starts from; the builder's fields go over it.
    fn base_config(&self) -> Value {
        let socket = format!("unix://{}", self.crius.socket.display());
        let own_oom_score = fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .unwrap_or(0);
        json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "containerRuntimeEndpoint": socket,
            "imageServiceEndpoint": socket,
            "staticPodPath": self.manifest_dir,
            "podLogsDir": self.pod_logs_dir,
            "volumePluginDir": self.dir.join("kubelet-volume-plugins"),
            "address": "127.0.0.1",
            "port": self.port,
            "readOnlyPort": self.read_only_port,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            // No API server: anonymous, no webhook.
            "authentication": {"anonymous": {"enabled": true}, "webhook": {"enabled": false}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            // This host is cgroup v1 (hybrid); the kubelet refuses v1 unless told.
            "failCgroupV1": false,
            "failSwapOn": false,
            "protectKernelDefaults": true,
            "makeIPTablesUtilChains": false,
            // No CAP_SYS_RESOURCE here: the kubelet may not lower its own score.
            "oomScoreAdj": own_oom_score,
            "syncFrequency": "3s",
            "fileCheckFrequency": "1s",
            "volumeStatsAggPeriod": "10s",
            "runtimeRequestTimeout": "2m",
            // "0%" disables a threshold: a busy CI disk must not evict test pods.
            "evictionHard": {
                "memory.available": "0%",
                "nodefs.available": "0%",
                "nodefs.inodesFree": "0%",
                "imagefs.available": "0%",
                "imagefs.inodesFree": "0%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "resolvConf": "/etc/resolv.conf",
        })
    }

    fn prepare(
        &mut self,
        config: serde_json::Map<String, Value>,
        feature_gates: BTreeMap<String, bool>,
        extra_args: Vec<String>,
    ) -> anyhow::Result<()> {
        for dir in [&self.root_dir, &self.manifest_dir, &self.pod_logs_dir] {
            fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
        }
        make_cgroup_everywhere(&self.cgroup_root)?;
        // The mount namespace's stand-ins: /var/log, /var/lib/kubelet and the kernel
        // tunables. The host's /var/lib/kubelet is only the mount point.
        fs::create_dir_all(self.namespace_dir.join("var-log"))?;
        fs::create_dir_all(self.namespace_dir.join("var-lib-kubelet"))?;
        fs::create_dir_all(HOST_KUBELET_DIR)
            .with_context(|| format!("cannot make {HOST_KUBELET_DIR}"))?;
        for (name, value) in KERNEL_TUNABLES {
            let file = self.namespace_dir.join(name.replace('/', "."));
            fs::write(&file, format!("{value}\n"))
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        let mut full = self.base_config();
        let object = full.as_object_mut().expect("the base config is an object");
        object.extend(config);
        if object.get("makeIPTablesUtilChains") == Some(&json!(true)) {
            self.kube_chains_before = Some(kube_chains());
        }
        if !feature_gates.is_empty() {
            object.insert("featureGates".into(), json!(feature_gates));
        }
        fs::write(&self.config_path, serde_json::to_string_pretty(&full)?)
            .with_context(|| format!("cannot write {}", self.config_path.display()))?;
        self.args = vec![
            format!("--config={}", self.config_path.display()),
            format!("--root-dir={}", self.root_dir.display()),
            format!("--hostname-override={}", self.node_name),
            "--v=2".to_string(),
        ];
        self.args.extend(extra_args);
        Ok(())
    }

    /// The command starting the kubelet in a mount namespace of its own, with the test's
    /// `/var/log`, `/var/lib/kubelet` and kernel tunables bound over the host's (see the module doc).
    fn command(&self) -> Command {
        let mut script = format!(
            "set -e\nmount --bind \"$1\"/var-log /var/log\n\
             mount --bind \"$1\"/var-lib-kubelet {HOST_KUBELET_DIR}\n"
        );
        for (name, _) in KERNEL_TUNABLES {
            let _ = writeln!(
                script,
                "mount --bind \"$1\"/{} /proc/sys/{name}",
                name.replace('/', ".")
            );
        }
        script.push_str("shift\nexec \"$@\"\n");
        // Should the test process die without its Drop, the kubelet dies with it.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--", "unshare", "--mount"])
            .args(["--propagation", "private", "--", "sh", "-c"])
            .arg(script)
            .arg("kubelet-ns")
            .arg(&self.namespace_dir)
            .arg(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null());
        cmd
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open {}", self.log_path.display()))?;
        let _ = std::io::Write::write_all(
            &mut log,
            format!("---- crius-e2e: kubelet started {:?} ----\n", self.args).as_bytes(),
        );
        let child = self
            .command()
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The dir the kubelet sees as `/var/log` (its `containers` links are made there).
    pub fn var_log_dir(&self) -> PathBuf {
        self.namespace_dir.join("var-log")
    }

    /// The kubelet's pid, while it runs (the namespace wrapper execs it, so this is its own).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until `/healthz` answers `ok`, or fails with the log's tail when the kubelet
    /// exits or the time is up.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "the kubelet exited during start-up ({status}); log:\n{}",
                        self.log_tail(40)
                    );
                }
            } else {
                bail!("the kubelet is not running");
            }
            let last_err = match http_get(self.healthz_port, "/healthz").await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => format!("/healthz answered {body:?}"),
                Err(err) => format!("{err:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "the kubelet did not answer /healthz within {timeout:?} ({last_err}); log:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `signal` to the kubelet.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("the kubelet is not running"))?;
        kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("kill -{signal} {pid}"))
    }

    /// Stops the kubelet: SIGTERM, then SIGKILL after [`KUBELET_STOP_TIMEOUT`]. Its pods
    /// keep running in crius.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + KUBELET_STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "crius-e2e: the kubelet ignored SIGTERM for {KUBELET_STOP_TIMEOUT:?}; killing it"
            );
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Starts the kubelet again with the same config and dirs (after [`Kubelet::stop`] or
    /// when it died) and waits for `/healthz`.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()?;
        self.wait_ready(KUBELET_READY_TIMEOUT).await
    }

    /// GET `path` on the read-only port; the body.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        http_get(self.read_only_port, path).await
    }

    /// `/pods`: the pods the kubelet runs, with their status.
    pub async fn pods(&self) -> anyhow::Result<PodList> {
        let body = self.get("/pods").await?;
        serde_json::from_str(&body).with_context(|| format!("/pods is not a PodList: {body}"))
    }

    /// The pod from the manifest named `name` (the kubelet calls it `<name>-<node>`).
    pub async fn pod(&self, name: &str) -> anyhow::Result<Option<Pod>> {
        let full = self.static_pod_name(name);
        Ok(self
            .pods()
            .await?
            .items
            .into_iter()
            .find(|p| p.metadata.name == full))
    }

    /// `/stats/summary`, as JSON.
    pub async fn stats_summary(&self) -> anyhow::Result<Value> {
        let body = self.get("/stats/summary").await?;
        serde_json::from_str(&body).with_context(|| format!("/stats/summary is not JSON: {body}"))
    }

    /// The name the kubelet gives the static pod of manifest pod `name`.
    pub fn static_pod_name(&self, name: &str) -> String {
        format!("{name}-{}", self.node_name)
    }

    /// Writes the static pod manifest `<name>.yaml` (whole: written aside, then renamed in).
    pub fn write_manifest(&self, name: &str, yaml: &str) -> anyhow::Result<PathBuf> {
        let path = self.manifest_dir.join(format!("{name}.yaml"));
        // The kubelet skips files whose name starts with a dot.
        let tmp = self.manifest_dir.join(format!(".{name}.yaml.tmp"));
        fs::write(&tmp, yaml).with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot rename to {}", path.display()))?;
        Ok(path)
    }

    /// Removes the manifest `<name>.yaml`: the kubelet then stops and removes the pod.
    pub fn remove_manifest(&self, name: &str) -> anyhow::Result<()> {
        let path = self.manifest_dir.join(format!("{name}.yaml"));
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
    }

    /// Polls `/pods` until `check` returns `Some`, at most `timeout`; the error names `what`
    /// and holds the last `/pods` and the kubelet's log tail.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&PodList) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.get("/pods").await {
                Ok(body) => match serde_json::from_str::<PodList>(&body) {
                    Ok(list) => {
                        if let Some(v) = check(&list) {
                            return Ok(v);
                        }
                        pretty(&body)
                    }
                    Err(err) => format!("not a PodList ({err}): {body}"),
                },
                Err(err) => format!("{err:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{what}: not within {timeout:?}\n---- /pods ----\n{last}\n---- kubelet log, last 60 lines ----\n{}\n---- end ----",
                    self.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls until the pod of manifest `name` satisfies `check`; returns it.
    pub async fn wait_for_pod(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Pod) -> bool,
    ) -> anyhow::Result<Pod> {
        let full = self.static_pod_name(name);
        let what = format!("pod {full}: {what}");
        self.wait_for(&what, timeout, |list| {
            list.items
                .iter()
                .find(|p| p.metadata.name == full)
                .filter(|p| check(p))
                .cloned()
        })
        .await
    }

    /// Waits until the pod of manifest `name` is Running with every container ready.
    pub async fn wait_running(&self, name: &str, timeout: Duration) -> anyhow::Result<Pod> {
        self.wait_for_pod(name, "Running with every container ready", timeout, |p| {
            p.status.phase == "Running"
                && !p.status.container_statuses.is_empty()
                && p.status.container_statuses.iter().all(|c| c.ready)
        })
        .await
    }

    /// Waits until the kubelet no longer lists the pod of manifest `name`.
    pub async fn wait_gone(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let full = self.static_pod_name(name);
        self.wait_for(&format!("pod {full} gone from /pods"), timeout, |list| {
            (!list.items.iter().any(|p| p.metadata.name == full)).then_some(())
        })
        .await
    }

    /// The dir holding a pod's container logs: `podLogsDir/<ns>_<name>_<uid>`.
    pub fn pod_log_dir(&self, pod: &Pod) -> PathBuf {
        self.pod_logs_dir.join(format!(
            "{}_{}_{}",
            pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
        ))
    }

    /// The log file of `container`'s run `restart` (0 for the first) in `pod`.
    pub fn container_log_path(&self, pod: &Pod, container: &str, restart: u32) -> PathBuf {
        self.pod_log_dir(pod)
            .join(container)
            .join(format!("{restart}.log"))
    }

    /// Runs the crictl peer against this crius (`None` when crictl is not built).
    pub fn crictl(&self, args: &[&str]) -> Option<Output> {
        let crictl = peer("CRICTL")?;
        let endpoint = format!("unix://{}", self.crius.socket.display());
        let out = Command::new(crictl)
            .args(["-r", &endpoint, "-i", &endpoint, "-t", "30s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run crictl");
        Some(out)
    }

    /// The whole kubelet log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the kubelet log (at most the last 128 KiB).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut file) = fs::File::open(&self.log_path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(128 * 1024)));
            let _ = file.read_to_end(&mut bytes);
        }
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// When a static pod's manifest goes, the kubelet cancels the work in flight for it, its
    /// own Version calls included: the cancel comes from the kubelet's side of the call.
    pub const VERSION_CANCELED: &'static str =
        r#""Version from runtime service failed" err="rpc error: code = Canceled"#;

    /// With CRI stats on, the kubelet probes PodSandboxStats with no pod id at start to
    /// learn whether the runtime has it; crius refuses the empty id.
    pub const STATS_PROBE: &'static str = "PodSandboxStats needs a pod_sandbox_id";

    /// The kubelet log lines that report a failed CRI call (a gRPC status).
    pub fn cri_errors(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("rpc error") || l.contains("code = "))
            .map(str::to_string)
            .collect()
    }

    /// The CRI errors in the kubelet log that contain none of `explained` (substrings the
    /// test expects and explains), less the ones of a dead container deleted twice.
    ///
    /// Two of the kubelet's loops remove dead containers (the pod worker, and the container
    /// deletor that runs at every ContainerDied event over the pod status it cached), so the
    /// later one may ask for the status of a container the earlier one removed: it logs
    /// crius's NotFound for the call and "DeleteContainer returned error" for the deletion
    /// (it logs the same with containerd). A NotFound for a container is explained only when
    /// the deletor names that same container.
    pub fn unexplained_cri_errors(&self, explained: &[&str]) -> Vec<String> {
        unexplained_cri_errors(&self.cri_errors(), explained)
    }

    /// Panics listing every CRI error in the kubelet log that contains none of `explained`.
    pub fn assert_no_unexplained_cri_errors(&self, explained: &[&str]) {
        let errors = self.unexplained_cri_errors(explained);
        assert!(
            errors.is_empty(),
            "the kubelet logged {} CRI error(s) no test explains:\n{}",
            errors.len(),
            errors.join("\n")
        );
    }

    /// Removes every pod crius still holds (stop, then remove), on a thread of its own so
    /// that Drop may call it inside a test's runtime.
    fn remove_pods_through_cri(&self) -> Vec<String> {
        if self.crius.pid().is_none() {
            return Vec::new();
        }
        let socket = self.crius.socket.clone();
        let work = std::thread::spawn(move || -> anyhow::Result<Vec<String>> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let channel = crate::connect(&socket).await?;
                let mut rt = RuntimeServiceClient::new(channel);
                let notes = crate::remove_every_pod(&mut rt)
                    .await?
                    .into_iter()
                    .filter_map(|pod| {
                        let err = pod.result.err()?;
                        Some(format!("cannot remove pod {}: {err}", pod.id))
                    })
                    .collect();
                Ok(notes)
            })
        });
        match work.join() {
            Ok(Ok(notes)) => notes,
            Ok(Err(err)) => vec![format!("cannot remove the pods through the CRI: {err:#}")],
            Err(_) => vec!["removing the pods through the CRI panicked".to_string()],
        }
    }

    /// `/pods`, fetched on a thread of its own (for Drop).
    fn pods_blocking(&self) -> String {
        let port = self.read_only_port;
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(http_get(port, "/pods")).ok()
        })
        .join()
        .ok()
        .flatten()
        .map(|b| pretty(&b))
        .unwrap_or_else(|| "(no answer)".to_string())
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed || std::env::var_os("CRIUS_E2E_SHOW_LOG").is_some() {
            let pods = if self.pid().is_some() {
                self.pods_blocking()
            } else {
                "(the kubelet is not running)".to_string()
            };
            eprintln!(
                "---- kubelet /pods ----\n{pods}\n---- kubelet log ({}), last 80 lines ----\n{}\n---- end of kubelet log ----",
                self.log_path.display(),
                self.log_tail(80)
            );
        }
        self.stop();
        // CRIUS_E2E_KEEP_LOGS=DIR keeps both logs of every test (to read all the kubelet
        // said, not only what a failure prints).
        if let Some(keep) = std::env::var_os("CRIUS_E2E_KEEP_LOGS").filter(|d| !d.is_empty()) {
            let keep = PathBuf::from(keep);
            let _ = fs::create_dir_all(&keep);
            for (from, suffix) in [
                (&self.log_path, "kubelet.log"),
                (&self.crius.log_path, "crius.log"),
            ] {
                let _ = fs::copy(from, keep.join(format!("{}-{suffix}", self.node_name)));
            }
        }
        let mut notes = self.remove_pods_through_cri();
        if let Some(before) = &self.kube_chains_before {
            notes.extend(remove_new_kube_chains(before));
        }
        if !notes.is_empty() {
            eprintln!("crius-e2e kubelet cleanup of {}:", self.dir.display());
            for note in notes {
                eprintln!("  {note}");
            }
        }
        // Then the CriusDaemon field drops: crius stops, and its cleanup removes the rest
        // (processes, mounts and cgroups under the shared root, the bridge, the test dir).
    }
}

/// Pretty-prints JSON, or returns the text as it is.
fn pretty(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_string())
}

/// GET `http://127.0.0.1:port/path`; the body when the status is 200 (5 s timeout).
pub async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let work = async {
        let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
            .body(Empty::<bytes::Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status != hyper::StatusCode::OK {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(body)
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| anyhow!("GET 127.0.0.1:{port}{path} timed out"))?
        .with_context(|| format!("GET 127.0.0.1:{port}{path}"))
}

/// Ports this process handed out, never handed out twice.
static PORTS_GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// N distinct free loopback ports the kernel picked (bound at once, then released).
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let mut given = PORTS_GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < N {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if given.insert(port) {
            ports.push(port);
        }
        held.push(listener);
    }
    Ok(ports.try_into().expect("N ports"))
}

/// Makes the cgroup `path` (absolute, from each hierarchy's root) in every cgroup v1
/// hierarchy, as the kubelet checks its `cgroupRoot` exists before it starts; a new cpuset
/// cgroup gets its parent's CPUs and memory nodes, without which nothing can join it.
fn make_cgroup_everywhere(path: &str) -> anyhow::Result<()> {
    let relative = path.trim_start_matches('/');
    let base = Path::new("/sys/fs/cgroup");
    for hierarchy in fs::read_dir(base)?.flatten() {
        let root = hierarchy.path();
        if !root.join("cgroup.procs").exists() || root.join("cgroup.controllers").exists() {
            continue; // not a cgroup mount, or the unified (v2) one: the kubelet uses v1
        }
        let dir = root.join(relative);
        fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
        if root.join("cpuset.cpus").exists() {
            let mut parent = root.clone();
            for part in Path::new(relative).components() {
                let child = parent.join(part);
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    if fs::read_to_string(child.join(file))?.trim().is_empty() {
                        let value = fs::read_to_string(parent.join(file))?;
                        fs::write(child.join(file), value.trim()).with_context(|| {
                            format!("cannot set {}", child.join(file).display())
                        })?;
                    }
                }
                parent = child;
            }
        }
    }
    Ok(())
}

/// `table/chain` for every `KUBE-*` chain in iptables and ip6tables (`4:filter/KUBE-X`).
fn kube_chains() -> BTreeSet<String> {
    let mut chains = BTreeSet::new();
    for (family, save) in [("4", "iptables-save"), ("6", "ip6tables-save")] {
        let Ok(out) = Command::new(save).stdin(Stdio::null()).output() else {
            continue;
        };
        let mut table = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if let Some(chain) = line.strip_prefix(":KUBE-") {
                let name = chain.split_whitespace().next().unwrap_or_default();
                chains.insert(format!("{family}:{table}/KUBE-{name}"));
            }
        }
    }
    chains
}

/// Removes the `KUBE-*` chains that are not in `before`, with the rules jumping to them.
fn remove_new_kube_chains(before: &BTreeSet<String>) -> Vec<String> {
    let mut notes = Vec::new();
    for entry in kube_chains().difference(before) {
        let Some((family, rest)) = entry.split_once(':') else {
            continue;
        };
        let Some((table, chain)) = rest.split_once('/') else {
            continue;
        };
        let (tool, save) = if family == "6" {
            ("ip6tables", "ip6tables-save")
        } else {
            ("iptables", "iptables-save")
        };
        let rules = Command::new(save)
            .args(["-t", table])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let jump = format!("-j {chain}");
        for rule in rules
            .lines()
            .filter(|l| l.starts_with("-A ") && l.ends_with(&jump))
        {
            // The saved rule is quoted as a shell would read it.
            let delete = format!("{tool} -w -t {table} -D {}", &rule["-A ".len()..]);
            let _ = Command::new("sh").args(["-c", &delete]).output();
        }
        for op in ["-F", "-X"] {
            let _ = Command::new(tool)
                .args(["-w", "-t", table, op, chain])
                .output();
        }
        notes.push(format!(
            "removed the {tool} chain {table}/{chain} the kubelet made"
        ));
    }
    notes
}

/// `/pods`: the pods the kubelet runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodList {
    /// The pods (the kubelet writes `null` when it runs none).
    #[serde(deserialize_with = "null_as_default")]
    pub items: Vec<Pod>,
}

/// A JSON `null` as the type's default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A pod as the kubelet reports it (the fields tests read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Pod {
    /// Name, namespace, uid.
    pub metadata: ObjectMeta,
    /// The status the kubelet computed from the CRI.
    pub status: PodStatus,
}

/// The identity of a pod.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `<manifest name>-<node>` for a static pod.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// The uid (a hash of the manifest for a static pod).
    pub uid: String,
    /// Annotations.
    #[serde(deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
}

/// A pod's status.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    pub phase: String,
    /// `Ready`, `ContainersReady`, `Initialized`, `PodScheduled`, ...
    #[serde(deserialize_with = "null_as_default")]
    pub conditions: Vec<PodCondition>,
    /// The app containers.
    #[serde(deserialize_with = "null_as_default")]
    pub container_statuses: Vec<ContainerStatus>,
    /// The init containers.
    #[serde(deserialize_with = "null_as_default")]
    pub init_container_statuses: Vec<ContainerStatus>,
    /// The pod's IP.
    #[serde(rename = "podIP")]
    pub pod_ip: String,
    /// Why the pod is in its phase, if it says.
    pub reason: String,
    /// A human-readable message.
    pub message: String,
}

/// A pod condition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodCondition {
    /// The condition's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, if it says.
    pub reason: String,
}

/// A container's status.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStatus {
    /// The container's name in the pod.
    pub name: String,
    /// Whether its readiness probe (if any) passes.
    pub ready: bool,
    /// How often the kubelet restarted it.
    pub restart_count: u32,
    /// Whether it has started (startup probe passed).
    pub started: Option<bool>,
    /// `<runtime>://<id>`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The image.
    pub image: String,
    /// What it is doing now.
    pub state: ContainerState,
    /// What its previous run ended with.
    pub last_state: ContainerState,
}

impl ContainerStatus {
    /// The CRI container id (without the `<runtime>://` prefix).
    pub fn cri_id(&self) -> &str {
        self.container_id
            .split_once("://")
            .map_or(self.container_id.as_str(), |(_, id)| id)
    }
}

/// One of waiting, running, terminated (or none yet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerState {
    /// Waiting to start (`ContainerCreating`, `CrashLoopBackOff`, ...).
    pub waiting: Option<StateWaiting>,
    /// Running since.
    pub running: Option<StateRunning>,
    /// Ended.
    pub terminated: Option<StateTerminated>,
}

/// A waiting container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StateWaiting {
    /// `ContainerCreating`, `CrashLoopBackOff`, `ErrImagePull`, ...
    pub reason: String,
    /// Details.
    pub message: String,
}

/// A running container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StateRunning {
    /// RFC 3339.
    pub started_at: String,
}

/// An ended container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StateTerminated {
    /// The exit code.
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, ...
    pub reason: String,
    /// Details.
    pub message: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// `<runtime>://<id>`.
    #[serde(rename = "containerID")]
    pub container_id: String,
}

impl Pod {
    /// The status of app container `name`.
    pub fn container(&self, name: &str) -> Option<&ContainerStatus> {
        self.status
            .container_statuses
            .iter()
            .find(|c| c.name == name)
    }

    /// The status of init container `name`.
    pub fn init_container(&self, name: &str) -> Option<&ContainerStatus> {
        self.status
            .init_container_statuses
            .iter()
            .find(|c| c.name == name)
    }

    /// Whether condition `kind` is `True` (`None` when the pod does not report it).
    pub fn condition(&self, kind: &str) -> Option<bool> {
        self.status
            .conditions
            .iter()
            .find(|c| c.kind == kind)
            .map(|c| c.status == "True")
    }
}

/// `errors` less those that contain one of `explained` and those of a dead container the
/// kubelet deleted twice (see [`Kubelet::unexplained_cri_errors`]).
fn unexplained_cri_errors(errors: &[String], explained: &[&str]) -> Vec<String> {
    const DELETOR: &str = "DeleteContainer returned error";
    const STATUS_NOT_FOUND: &str =
        r#""ContainerStatus from runtime service failed" err="rpc error: code = NotFound"#;
    let deleted_twice: Vec<&str> = errors
        .iter()
        .filter(|l| l.contains(DELETOR))
        .filter_map(|l| quoted_container_id(l))
        .collect();
    errors
        .iter()
        .filter(|l| !l.contains(DELETOR))
        .filter(|l| {
            !(l.contains(STATUS_NOT_FOUND)
                && quoted_container_id(l).is_some_and(|id| deleted_twice.contains(&id)))
        })
        .filter(|l| !explained.iter().any(|e| l.contains(e)))
        .cloned()
        .collect()
}

/// The first 64-hex container id in a kubelet log line (`containerID="<id>"` or the
/// escaped `container \"<id>\"` of a gRPC message).
fn quoted_container_id(line: &str) -> Option<&str> {
    line.as_bytes()
        .windows(64)
        .position(|w| w.iter().all(u8::is_ascii_hexdigit))
        .map(|at| &line[at..at + 64])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_found_is_explained_only_for_the_container_the_deletor_names() {
        let deleted = "a".repeat(64);
        let other = "b".repeat(64);
        let not_found = |id: &str| {
            format!(
                r#"E1 "ContainerStatus from runtime service failed" err="rpc error: code = NotFound desc = container \"{id}\" not found" containerID="{id}""#
            )
        };
        let errors = vec![
            not_found(&deleted),
            format!(r#"I1 "DeleteContainer returned error" containerID={{"Type":"crius","ID":"{deleted}"}}"#),
            not_found(&other),
            r#"E3 "ListPodSandbox from runtime service failed" err="rpc error: code = Unavailable""#
                .to_string(),
        ];
        let left = unexplained_cri_errors(&errors, &[]);
        assert_eq!(left, [not_found(&other), errors[3].clone()]);
        assert_eq!(unexplained_cri_errors(&errors, &["Unavailable"]).len(), 1);
    }

    #[test]
    fn pod_lists_parse_with_go_nulls_and_missing_fields() {
        let empty: PodList = serde_json::from_str(
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":null}"#,
        )
        .unwrap();
        assert!(empty.items.is_empty());
        let list: PodList = serde_json::from_str(
            r#"{"items":[{"metadata":{"name":"p-node","namespace":"e2e","uid":"u1","annotations":null},
                "status":{"phase":"Running","podIP":"10.0.0.2","conditions":[{"type":"Ready","status":"True"}],
                "initContainerStatuses":null,
                "containerStatuses":[{"name":"c","ready":true,"restartCount":2,"containerID":"crius://abc",
                  "state":{"running":{"startedAt":"2026-12-06T03:00:00Z"}},
                  "lastState":{"terminated":{"exitCode":137,"reason":"Error","containerID":"crius://old"}}}]}}]}"#,
        )
        .unwrap();
        let pod = &list.items[0];
        assert_eq!(pod.condition("Ready"), Some(true));
        assert_eq!(pod.condition("Initialized"), None);
        assert_eq!(pod.status.pod_ip, "10.0.0.2");
        let c = pod.container("c").unwrap();
        assert_eq!((c.restart_count, c.cri_id()), (2, "abc"));
        assert_eq!(c.last_state.terminated.as_ref().unwrap().exit_code, 137);
        assert!(pod.init_container("c").is_none());
    }
}
