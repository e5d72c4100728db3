//! End-to-end test harness: starts the real `crius` binary as root with a private root,
//! run dir, socket, CNI dir and cgroup parent under a temp dir (so tests run in parallel),
//! hands out CRI gRPC clients over its socket, and on drop stops it and removes everything
//! it made, also when the test fails: containers, monitors, mounts, cgroups, bridges,
//! firewall rules, what the shims of `vm` handlers left under /run/containerd ([`shims`])
//! and the temp dir. A failing test gets the tail of the daemon's log.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use crius::config::{Config, LogLevel};
use crius_cri_api::v1::image_service_client::ImageServiceClient;
use crius_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic::transport::Channel;

pub use crius_cri_api::v1 as cri;

pub mod kubelet;
pub mod otlp;
pub mod peers;
pub mod shims;

pub mod critest;

/// How long a daemon may take to answer `Version` after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Where per-test dirs live: on disk, not tmpfs, since image layers are unpacked there.
pub const TEST_BASE_DIR: &str = "/var/tmp";
/// Where the fixtures write the variables tests read.
pub const FIXTURES_ENV_FILE: &str = "/var/tmp/crius-fixtures/env";
/// Where crictl was looked for before the peers were built; tests now take the crictl peer
/// ([`peers::peer`]`("CRICTL")`).
pub const CRICTL: &str = "/opt/cri-tools/bin/crictl";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call, usable in interface names (prefix plus
/// 8 hex digits: the pid's low 16 bits and a per-process counter).
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}{:04x}{:04x}",
        std::process::id() & 0xffff,
        n & 0xffff
    )
}

/// The workspace's `target` dir: `CARGO_TARGET_DIR`, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// The `crius` binary under test: `$CRIUS_BIN`, else the debug build in the target dir.
/// It is built by `e2e/run-all.sh` (`cargo build --workspace --bins`); cargo does not build
/// another package's binaries for these tests.
pub fn crius_binary() -> anyhow::Result<PathBuf> {
    built_binary(
        "CRIUS_BIN",
        "crius",
        "build it first with `cargo build --workspace --bins` (or set CRIUS_BIN)",
    )
}

/// The test build of `crius` with crash points (the `fault-injection` feature):
/// `$CRIUS_FAULT_BIN`, else `crius-fault-injection` in the target dir's debug dir, where
/// `e2e/run-all.sh` links it after `cargo build -p crius --features fault-injection`.
pub fn fault_binary() -> anyhow::Result<PathBuf> {
    built_binary(
        "CRIUS_FAULT_BIN",
        "crius-fault-injection",
        "build it with `cargo build -p crius --features fault-injection` and link \
         target/debug/crius there (e2e/run-all.sh does), or set CRIUS_FAULT_BIN",
    )
}

/// `$var`, else `name` in the target dir's debug dir; an error with `how` to build it
/// when it is not there.
fn built_binary(var: &str, name: &str, how: &str) -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os(var) {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => target_dir().join("debug").join(name),
    };
    if !path.is_file() {
        bail!("{name} binary {} not found: {how}", path.display());
    }
    Ok(path)
}

/// A value the fixtures publish (`e2e/fixtures/setup.sh`), from the environment or
/// from their env file.
pub fn fixture(key: &str) -> anyhow::Result<String> {
    if let Ok(value) = std::env::var(key) {
        if !value.is_empty() {
            return Ok(value);
        }
    }
    let text = fs::read_to_string(FIXTURES_ENV_FILE).map_err(|err| {
        anyhow!("{key} is not set and {FIXTURES_ENV_FILE} cannot be read ({err}): run e2e/fixtures/setup.sh first")
    })?;
    text.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .ok_or_else(|| {
            anyhow!("{key} is missing from {FIXTURES_ENV_FILE}: rerun e2e/fixtures/setup.sh")
        })
}

/// The pids of every live process, from /proc.
pub fn pids() -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Opens a gRPC channel over the Unix socket at `socket` (calls time out after 5 minutes,
/// long enough for any pull a test makes).
pub async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    let timeout = Duration::from_secs(300);
    crius::status::connect(socket, timeout, Some(timeout)).await
}

/// What [`remove_every_pod`] did with one pod.
#[derive(Debug)]
pub struct PodRemoval {
    pub id: String,
    pub name: String,
    /// The first error of StopPodSandbox, then RemovePodSandbox.
    pub result: Result<(), tonic::Status>,
}

/// Stops and removes every pod the daemon lists, as the kubelet would, and says what came
/// of each: the teardown of what a peer (the kubelet, critest) left in a test's daemon.
pub async fn remove_every_pod(
    rt: &mut RuntimeServiceClient<Channel>,
) -> Result<Vec<PodRemoval>, tonic::Status> {
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    let mut removals = Vec::with_capacity(pods.len());
    for pod in pods {
        let id = pod.id;
        let stop = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        let remove = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        removals.push(PodRemoval {
            id,
            name: pod.metadata.map(|m| m.name).unwrap_or_default(),
            result: stop.map(drop).and(remove.map(drop)),
        });
    }
    Ok(removals)
}

/// Options for a test daemon; [`CriusDaemon::builder`] makes one.
#[derive(Debug, Default)]
pub struct CriusDaemonBuilder {
    dropins: Vec<String>,
    conflists: Vec<(String, String)>,
    bridge_network: bool,
    registries_conf: Option<String>,
    runtimes: Vec<(String, PathBuf, bool)>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    binary: Option<PathBuf>,
}

impl CriusDaemonBuilder {
    /// Adds a TOML drop-in (applied after the harness's own config, in call order).
    pub fn config(mut self, toml: &str) -> Self {
        self.dropins.push(toml.to_string());
        self
    }

    /// Puts a CNI config file `name` with `content` into the daemon's CNI dir.
    pub fn cni_config(mut self, name: &str, content: &str) -> Self {
        self.conflists.push((name.to_string(), content.to_string()));
        self
    }

    /// Gives the daemon a bridge network of its own (bridge, subnet and IPAM state unique to
    /// this daemon), with a FORWARD drop rule so pod traffic stays on the host. The bridge
    /// and the rule are removed on drop.
    pub fn bridge_network(mut self) -> Self {
        self.bridge_network = true;
        self
    }

    /// Writes a containers-registries.conf and points `crius.image.registries_conf` at it.
    pub fn registries_conf(mut self, text: &str) -> Self {
        self.registries_conf = Some(text.to_string());
        self
    }

    /// Adds the OCI runtime handler `name` running the runc-compatible binary `path`, made
    /// the default handler with `default`. The cleanup after the test also deletes what
    /// this runtime left behind.
    pub fn runtime_handler(mut self, name: &str, path: &Path, default: bool) -> Self {
        self.runtimes
            .push((name.to_string(), path.to_path_buf(), default));
        self
    }

    /// Adds a command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Sets an environment variable for the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs `path` instead of [`crius_binary`] (e.g. [`fault_binary`]).
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    /// Starts the daemon and waits until it answers `Version`.
    pub async fn start(self) -> anyhow::Result<CriusDaemon> {
        let mut daemon = self.spawn()?;
        daemon.wait_ready(READY_TIMEOUT).await?;
        Ok(daemon)
    }

    /// Starts the daemon without waiting for it (for start-up failure tests).
    pub fn spawn(self) -> anyhow::Result<CriusDaemon> {
        let mut daemon = self.build()?;
        daemon.launch()?;
        Ok(daemon)
    }

    /// Writes the config and makes the dirs, but starts nothing: for tests that run the
    /// binary themselves through [`CriusDaemon::command`].
    pub fn build(self) -> anyhow::Result<CriusDaemon> {
        let binary = match &self.binary {
            Some(path) => path.clone(),
            None => crius_binary()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("crius-e2e-")
            .tempdir_in(TEST_BASE_DIR)
            .context("cannot make the test dir")?
            .keep();
        let mut daemon = CriusDaemon {
            child: None,
            binary,
            args: Vec::new(),
            env: self.env.clone(),
            socket: dir.join("run/crius.sock"),
            root: dir.join("root"),
            runroot: dir.join("run"),
            cni_dir: dir.join("cni"),
            config_file: dir.join("crius.conf"),
            config_dir: dir.join("crius.conf.d"),
            log_path: dir.join("crius.log"),
            cgroup_parent: format!("/{}", unique_name("crius-e2e-")),
            bridge: None,
            runtimes: default_runtimes(),
            dir,
            exit: None,
            seen_ids: BTreeSet::new(),
            cleaned: false,
        };
        // From here on, Drop cleans up whatever happens.
        self.prepare(&mut daemon)?;
        Ok(daemon)
    }

    fn prepare(self, daemon: &mut CriusDaemon) -> anyhow::Result<()> {
        let mut config = Config::default();
        let c = &mut config.crius;
        c.root = daemon.root.clone();
        c.runroot = daemon.runroot.clone();
        c.log_level = LogLevel::Debug;
        c.api.listen = daemon.socket.clone();
        c.network.network_dir = daemon.cni_dir.clone();
        c.network.cache_dir = daemon.dir.join("cni-cache");
        c.network.plugin_dirs = vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")];
        c.runtime.cgroup_root = daemon.cgroup_parent.clone();
        // Runs any test with pods without an infra container (a drop-in can still say
        // otherwise): CRIUS_E2E_DROP_INFRA_CTR=true.
        if let Ok(v) = std::env::var("CRIUS_E2E_DROP_INFRA_CTR") {
            c.runtime.drop_infra_ctr = matches!(v.as_str(), "1" | "true");
        }
        for (name, path, default) in &self.runtimes {
            let handler = crius::config::RuntimeHandler {
                runtime_path: path.clone(),
                ..Default::default()
            };
            c.runtime.runtimes.insert(name.clone(), handler);
            if *default {
                c.runtime.default_runtime = name.clone();
            }
            daemon.runtimes.insert(name.clone(), path.clone());
        }
        if let Some(text) = &self.registries_conf {
            let path = daemon.dir.join("registries.conf");
            fs::write(&path, text)?;
            c.image.registries_conf = path;
        }
        fs::write(&daemon.config_file, config.to_commented_toml())?;
        fs::create_dir_all(&daemon.config_dir)?;
        for (i, dropin) in self.dropins.iter().enumerate() {
            fs::write(
                daemon.config_dir.join(format!("{:02}-test.conf", i + 10)),
                dropin,
            )?;
        }
        fs::create_dir_all(&daemon.cni_dir)?;
        for (name, content) in &self.conflists {
            fs::write(daemon.cni_dir.join(name), content)?;
        }
        if self.bridge_network {
            let bridge = Bridge::create(&daemon.dir)?;
            fs::write(
                daemon.cni_dir.join("10-test-bridge.conflist"),
                &bridge.conflist,
            )?;
            daemon.bridge = Some(bridge);
        }
        daemon.args = vec![
            "--config".into(),
            daemon.config_file.display().to_string(),
            "--config-dir".into(),
            daemon.config_dir.display().to_string(),
        ];
        daemon.args.extend(self.args);
        Ok(())
    }
}

/// Where test bridges claim their subnets: one lock file per third octet of 10.203.0.0/16,
/// held (flock) for the bridge's life, so concurrent tests, also in other processes, never
/// share a subnet, and a crashed test's claim frees itself.
pub const SUBNET_CLAIMS_DIR: &str = "/run/crius-e2e/subnets";

/// A bridge CNI network private to one test daemon.
#[derive(Debug)]
pub struct Bridge {
    /// The bridge interface name.
    pub name: String,
    /// The pod subnet.
    pub subnet: String,
    /// The conflist written to the daemon's CNI dir.
    pub conflist: String,
    rule_added: bool,
    _claim: Flock<fs::File>,
}

/// Locks the first free subnet claim; returns the octet and the held lock. A subnet whose
/// gateway address is still on some interface (a bridge left by a test that was killed
/// before its cleanup) is passed over: two routes to one subnet make pods unreachable.
fn claim_subnet() -> anyhow::Result<(u8, Flock<fs::File>)> {
    fs::create_dir_all(SUBNET_CLAIMS_DIR)
        .with_context(|| format!("cannot make {SUBNET_CLAIMS_DIR}"))?;
    let addresses = run_quiet("ip", &["-o", "-4", "addr", "show"])?;
    for octet in 1..=250u8 {
        if addresses.contains(&format!(" 10.203.{octet}.1/")) {
            continue;
        }
        let path = Path::new(SUBNET_CLAIMS_DIR).join(octet.to_string());
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            return Ok((octet, lock));
        }
    }
    bail!("all 250 test subnets of 10.203.0.0/16 are in use (locks in {SUBNET_CLAIMS_DIR})")
}

impl Bridge {
    fn create(dir: &Path) -> anyhow::Result<Bridge> {
        let name = unique_name("cre2e");
        let (octet, claim) = claim_subnet()?;
        let subnet = format!("10.203.{octet}.0/24");
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": name,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": subnet}]],
                        "dataDir": dir.join("ipam").display().to_string(),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "loopback"}
            ]
        })
        .to_string();
        let mut bridge = Bridge {
            name,
            subnet,
            conflist,
            rule_added: false,
            _claim: claim,
        };
        // Keep pod traffic on the host: the bridge plugin turns on ip_forward.
        bridge.forward_rule("-I")?;
        bridge.rule_added = true;
        Ok(bridge)
    }

    /// Inserts (`-I`) or deletes (`-D`) the rule dropping traffic from the bridge to
    /// anywhere else; `-w` waits for the xtables lock that parallel tests contend for.
    fn forward_rule(&self, op: &str) -> anyhow::Result<()> {
        let name = self.name.as_str();
        let args = [
            "-w", op, "FORWARD", "-i", name, "!", "-o", name, "-j", "DROP",
        ];
        run_quiet("iptables", &args).map(drop)
    }

    fn remove(&mut self) {
        if self.rule_added && self.forward_rule("-D").is_ok() {
            self.rule_added = false;
        }
        if Path::new("/sys/class/net").join(&self.name).exists() {
            let _ = run_quiet("ip", &["link", "del", &self.name]);
        }
    }
}

pub(crate) fn run_quiet(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running `crius` daemon private to one test.
#[derive(Debug)]
pub struct CriusDaemon {
    child: Option<Child>,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    exit: Option<ExitStatus>,
    /// The temp dir holding everything below.
    pub dir: PathBuf,
    /// The CRI socket.
    pub socket: PathBuf,
    /// `crius.root`.
    pub root: PathBuf,
    /// `crius.runroot`.
    pub runroot: PathBuf,
    /// `crius.network.network_dir`.
    pub cni_dir: PathBuf,
    /// The main config file.
    pub config_file: PathBuf,
    /// The drop-in dir.
    pub config_dir: PathBuf,
    /// The daemon's stdout and stderr.
    pub log_path: PathBuf,
    /// The cgroup every pod of this test should live under (also `crius.runtime.cgroup_root`);
    /// removed on drop in every hierarchy.
    pub cgroup_parent: String,
    /// The bridge network, when [`CriusDaemonBuilder::bridge_network`] asked for one.
    pub bridge: Option<Bridge>,
    /// The runtime binary of each handler (by its name), for the cleanup.
    runtimes: HashMap<String, PathBuf>,
    /// Ids of pods and containers that earlier runs of the daemon named (their logs are
    /// replaced at each start), for the cleanup of what their shims left.
    seen_ids: BTreeSet<String>,
    /// Whether [`Self::teardown`] already cleaned up.
    cleaned: bool,
}

/// What [`CriusDaemon::teardown`] did and found.
#[derive(Debug)]
pub struct Teardown {
    /// The ids of every pod and container the daemon was found to have made.
    pub ids: BTreeSet<String>,
    /// What the cleanup removed, and what it could not.
    pub notes: Vec<String>,
    /// What shims still hold of those pods and containers after the cleanup (runc state
    /// dirs, sockets, processes): empty when the cleanup works.
    pub shim_leftovers: Vec<String>,
}

/// The handlers every daemon has (crius's defaults) and their binaries, found as the
/// daemon finds them (`crius-runtime` next to the crius binary under test).
fn default_runtimes() -> HashMap<String, PathBuf> {
    let exe_dir = crius_binary()
        .ok()
        .and_then(|b| b.parent().map(Path::to_path_buf));
    crius::config::Config::default()
        .resolved(exe_dir.as_deref())
        .crius
        .runtime
        .runtimes
        .into_iter()
        .map(|(name, h)| (name, h.runtime_path))
        .collect()
}

impl CriusDaemon {
    /// A daemon with the harness's defaults, ready to serve.
    pub async fn start() -> anyhow::Result<CriusDaemon> {
        CriusDaemon::builder().start().await
    }

    /// Options for a daemon.
    pub fn builder() -> CriusDaemonBuilder {
        CriusDaemonBuilder::default()
    }

    /// A command running the same binary with the same arguments and environment, e.g. for
    /// a second daemon on the same socket or for `crius config`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(&self.args).stdin(Stdio::null());
        for (key, _) in std::env::vars() {
            if key.starts_with("CRIUS_") || key == "RUST_LOG" || key == "NOTIFY_SOCKET" {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        // The log of the run before is replaced: keep the ids it names.
        self.seen_ids = self.object_ids();
        let log = fs::File::create(&self.log_path)?;
        let child = self
            .command()
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        self.exit = None;
        Ok(())
    }

    /// Sets (`Some`) or unsets (`None`) an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_string(), value.to_string()));
        }
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until the socket answers `Version`, or fails with the log's tail when the
    /// daemon exits or the time is up.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_err = String::from("socket not there yet");
        loop {
            if let Some(status) = self.try_exit()? {
                bail!(
                    "crius exited during start-up ({status}); log:\n{}",
                    self.log_tail(40)
                );
            }
            if self.socket.exists() {
                match self.version_once().await {
                    Ok(_) => return Ok(()),
                    Err(err) => last_err = format!("{err:#}"),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "crius did not answer Version within {timeout:?} ({last_err}); log:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn version_once(&self) -> anyhow::Result<cri::VersionResponse> {
        let channel = tokio::time::timeout(Duration::from_secs(2), connect(&self.socket))
            .await
            .map_err(|_| anyhow!("connect timed out"))??;
        let mut client = RuntimeServiceClient::new(channel);
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            client.version(cri::VersionRequest::default()),
        )
        .await
        .map_err(|_| anyhow!("Version timed out"))??;
        Ok(reply.into_inner())
    }

    /// A RuntimeService client over the daemon's socket.
    pub async fn runtime_client(&self) -> anyhow::Result<RuntimeServiceClient<Channel>> {
        Ok(RuntimeServiceClient::new(connect(&self.socket).await?))
    }

    /// An ImageService client over the daemon's socket.
    pub async fn image_client(&self) -> anyhow::Result<ImageServiceClient<Channel>> {
        Ok(ImageServiceClient::new(connect(&self.socket).await?))
    }

    /// The exit status, if the daemon has exited (reaped once, then remembered).
    pub fn try_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.exit = Some(status);
                    self.child = None;
                }
            }
        }
        Ok(self.exit)
    }

    /// Waits for the daemon to exit on its own, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "crius still runs after {timeout:?}; log:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow!("crius is not running"))?;
        kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("kill -{signal} {pid}"))
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`STOP_TIMEOUT`]).
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_exit()? {
            return Ok(status);
        }
        self.signal(Signal::SIGTERM)?;
        match self.wait_exit(STOP_TIMEOUT).await {
            Ok(status) => Ok(status),
            Err(err) => {
                self.kill_now();
                Err(err)
            }
        }
    }

    /// Starts the daemon (again) with the same dirs and config: after [`Self::stop`], a
    /// crash, or [`CriusDaemonBuilder::build`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() && self.try_exit()?.is_none() {
            bail!("crius is still running");
        }
        self.launch()?;
        self.wait_ready(READY_TIMEOUT).await
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.exit = Some(status);
            }
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log (at most the last 64 KiB).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log_path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn stop_blocking(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            self.exit = Some(status);
            self.child = None;
            return;
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.exit = Some(status);
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("crius-e2e: crius ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
        self.kill_now();
    }

    /// Removes containers left in the runtimes' state dirs under the run dir.
    fn delete_runtime_containers(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let runtimes_dir = self.runroot.join("runtimes");
        let Ok(entries) = fs::read_dir(&runtimes_dir) else {
            return notes;
        };
        for entry in entries.flatten() {
            let Some(binary) = entry
                .file_name()
                .to_str()
                .and_then(|name| self.runtimes.get(name))
            else {
                continue;
            };
            let root = entry.path();
            let root_arg = root.to_string_lossy();
            let list = run_quiet(
                &binary.to_string_lossy(),
                &["--root", &root_arg, "list", "-q"],
            );
            let Ok(list) = list else {
                continue;
            };
            for id in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
                notes.push(shims::delete_runc_container(binary, &root, id));
            }
        }
        notes
    }

    /// SIGKILLs processes (monitors, containers) whose command line or working dir lies in
    /// this test's dir: they were started for this daemon and outlive it by design.
    fn kill_leftover_processes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for _ in 0..3 {
            let found = processes_in(&self.dir, &[std::process::id()]);
            if found.is_empty() {
                break;
            }
            for (pid, cmdline) in found {
                if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
                    notes.push(format!("killed leftover process {pid}: {}", cmdline.trim()));
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        notes
    }

    /// This test's cgroup parent in every hierarchy where it exists (each v1 controller,
    /// or the cgroup v2 root).
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let relative = self.cgroup_parent.trim_start_matches('/');
        let base = Path::new("/sys/fs/cgroup");
        let mut dirs: Vec<PathBuf> = fs::read_dir(base)
            .map(|hs| hs.flatten().map(|h| h.path().join(relative)).collect())
            .unwrap_or_default();
        dirs.push(base.join(relative));
        dirs.retain(|d| d.join("cgroup.procs").exists());
        dirs
    }

    /// SIGKILLs every process left in this test's cgroups (containers whose runtime state
    /// is gone) and waits, briefly, for them to go.
    fn kill_cgroup_processes(&self, dirs: &[PathBuf]) -> Vec<String> {
        let mut notes = Vec::new();
        let me = std::process::id();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut pids: Vec<u32> = dirs.iter().flat_map(|d| cgroup_pids(d)).collect();
            pids.sort_unstable();
            pids.dedup();
            pids.retain(|&p| p != me);
            if pids.is_empty() || Instant::now() >= deadline {
                if !pids.is_empty() {
                    notes.push(format!("processes still in the test cgroups: {pids:?}"));
                }
                return notes;
            }
            for pid in pids {
                if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
                    notes.push(format!("killed process {pid} left in the test cgroups"));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes the machine look rebooted to this daemon, which must be stopped: every process
    /// it started (monitors, containers, pause) is killed, every mount under its dirs
    /// (netns pins, shm, rootfs) detached and its cgroups removed. With `tmpfs_run` its run
    /// dir is emptied as a tmpfs /run would be; without, it stays as on these machines.
    pub fn simulate_reboot(&mut self, tmpfs_run: bool) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("stop the daemon before simulating a reboot");
        }
        self.kill_leftover_processes();
        let cgroups = self.cgroup_dirs();
        self.kill_cgroup_processes(&cgroups);
        crius::mounts::detach_all_under(&self.dir)
            .map_err(|e| anyhow!("cannot detach mounts under {}: {e}", self.dir.display()))?;
        for dir in &cgroups {
            remove_cgroup_tree(dir)
                .map_err(|e| anyhow!("cannot remove cgroup {}: {e}", dir.display()))?;
        }
        if tmpfs_run {
            fs::remove_dir_all(&self.runroot)
                .map_err(|e| anyhow!("cannot empty {}: {e}", self.runroot.display()))?;
            fs::create_dir_all(&self.runroot)?;
        }
        Ok(())
    }

    /// The socket the daemon's shims publish their events to (their `-address`).
    pub fn shim_events_socket(&self) -> PathBuf {
        self.runroot.join("shim-events.sock")
    }

    /// The ids of the pods and containers this daemon made, as far as they can be known:
    /// its records and dirs, and the ids its logs (this run's and those before) name.
    pub fn object_ids(&self) -> BTreeSet<String> {
        let mut ids = shims::daemon_ids(&self.root, &self.runroot, &self.log());
        ids.extend(self.seen_ids.iter().cloned());
        ids
    }

    /// Stops the daemon and cleans up as dropping it does, then says what shims still
    /// hold of its pods and containers: for tests that the cleanup leaves nothing.
    pub fn teardown(mut self) -> Teardown {
        self.stop_blocking();
        let (ids, notes) = self.cleanup();
        let shim_leftovers = shims::leftovers(&self.shim_events_socket(), &self.dir, &ids);
        Teardown {
            ids,
            notes,
            shim_leftovers,
        }
    }

    /// Removes what the daemon's shims left outside its dirs (see [`shims::clean`]), for
    /// the pods and containers `ids`.
    fn clean_shims(&self, ids: &BTreeSet<String>) -> Vec<String> {
        let path = self
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        shims::clean(&self.shim_events_socket(), &path, ids)
    }

    /// Everything the daemon made goes; returns the ids of its pods and containers (taken
    /// before their records and bundles go) and notes of what was done.
    fn cleanup(&mut self) -> (BTreeSet<String>, Vec<String>) {
        let mut ids = self.object_ids();
        ids.extend(shims::tasks_with_bundle_under(&self.dir));
        self.cleaned = true;
        let mut notes = self.clean_shims(&ids);
        notes.extend(self.delete_runtime_containers());
        notes.extend(self.kill_leftover_processes());
        match crius::mounts::detach_all_under(&self.dir) {
            Ok(0) => {}
            Ok(n) => notes.push(format!("detached {n} leftover mounts")),
            Err(err) => notes.push(format!("cannot list mounts: {err}")),
        }
        let cgroups = self.cgroup_dirs();
        notes.extend(self.kill_cgroup_processes(&cgroups));
        for dir in &cgroups {
            if let Err(err) = remove_cgroup_tree(dir) {
                notes.push(format!("cannot remove cgroup {}: {err}", dir.display()));
            }
        }
        if let Some(bridge) = self.bridge.as_mut() {
            bridge.remove();
        }
        if let Err(err) = fs::remove_dir_all(&self.dir) {
            if err.kind() != std::io::ErrorKind::NotFound {
                notes.push(format!("cannot remove {}: {err}", self.dir.display()));
            }
        }
        (ids, notes)
    }
}

/// Live processes (pid and command line) whose command line names `dir` or whose working
/// dir is below it, but those in `except`: what a test daemon started (monitors, runtimes,
/// containers).
pub fn processes_in(dir: &Path, except: &[u32]) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for pid in pids() {
        if except.contains(&pid) {
            continue;
        }
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let cmdline = fs::read(proc_dir.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = fs::read_link(proc_dir.join("cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if cmdline.contains(&needle) || cwd.starts_with(&needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Pids in the cgroup `dir` and every cgroup below it.
pub fn cgroup_pids(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pids.extend(cgroup_pids(&entry.path()));
        }
    }
    pids
}

fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path())?;
            }
        }
    }
    // A cgroup whose last process just died may linger a moment.
    let mut last = Ok(());
    for _ in 0..50 {
        last = fs::remove_dir(dir);
        match &last {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    last
}

impl Drop for CriusDaemon {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let started = Instant::now();
        self.stop_blocking();
        let stopped_in = started.elapsed();
        // A failing test shows the daemon's log; CRIUS_E2E_SHOW_LOG=1 shows it always.
        if std::thread::panicking() || std::env::var_os("CRIUS_E2E_SHOW_LOG").is_some() {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "---- crius log ({}), last 80 lines; stopped in {stopped_in:?} ----\n{}\n---- end of crius log ----",
                self.log_path.display(),
                self.log_tail(80)
            );
            eprintln!("{out}");
        }
        let (_, notes) = self.cleanup();
        if !notes.is_empty() {
            eprintln!("crius-e2e cleanup of {}:", self.dir.display());
            for note in notes {
                eprintln!("  {note}");
            }
        }
    }
}

/// Describes an exit status for assertions (`exit code 1`, `signal 9`).
/// Runs `cmd` (e.g. a `crius` subcommand from [`CriusDaemon::command`]) to its end with
/// stdout and stderr captured; panics when it does not end within `timeout`.
pub async fn run_to_exit(mut cmd: Command, timeout: Duration) -> std::process::Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(timeout, child)
        .await
        .unwrap_or_else(|_| panic!("the command did not exit within {timeout:?}"))
        .expect("cannot run the command")
}

pub fn describe_exit(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "unknown exit".to_string(),
    }
}

/// Parses `Status` verbose info values (JSON strings) into JSON.
pub fn parse_info(info: &HashMap<String, String>, key: &str) -> anyhow::Result<serde_json::Value> {
    let raw = info.get(key).ok_or_else(|| {
        anyhow!(
            "Status info has no {key:?} (keys: {:?})",
            info.keys().collect::<Vec<_>>()
        )
    })?;
    serde_json::from_str(raw).with_context(|| format!("Status info {key:?} is not JSON: {raw}"))
}
