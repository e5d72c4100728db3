//! Shared fixture of the monitor and runtime tests: a busybox bundle, a
//! private runc root, the monitor binary, and cleanup in Drop. Included with
//! `#[path]` by the test files; on its own it holds no tests.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crius_oci::monitor::{spawn_monitor, MonitorHandle, MonitorSpec};
use crius_oci::runtime::RuntimeCli;

/// runc's state for these tests, away from the host's own containers.
pub const RUNC_ROOT: &str = "/run/crius-oci-test/runc";

const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "true", "false", "printf", "head", "tr", "tail", "stty", "ps",
    "yes", "ls", "wc", "[", "test",
];

/// The crius-conmon binary: $CRIUS_CONMON, else built by cargo next to this test.
pub fn conmon_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("CRIUS_CONMON") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary under target/<profile>/deps")
            .to_path_buf();
        let p = profile_dir.join("crius-conmon");
        if !is_fresh(&p) {
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-q", "-p", "crius-conmon"]);
            if release {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("run cargo build -p crius-conmon");
            assert!(st.success(), "cargo build -p crius-conmon failed");
        }
        assert!(p.exists(), "{} missing after build", p.display());
        p
    })
    .clone()
}

/// Whether the monitor binary is newer than every source file it is built
/// from (then no cargo run, which would wait for the build lock).
fn is_fresh(bin: &Path) -> bool {
    let Ok(built) = fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for dir in ["conmon/src", "proto/src"] {
        for e in fs::read_dir(top.join(dir)).into_iter().flatten().flatten() {
            if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(t);
            }
        }
    }
    for f in ["conmon/Cargo.toml", "proto/Cargo.toml"] {
        if let Ok(t) = fs::metadata(top.join(f)).and_then(|m| m.modified()) {
            newest = newest.max(t);
        }
    }
    built >= newest
}

/// runc, required: the tests run the real thing.
pub fn runc() -> RuntimeCli {
    let path = which("runc").expect("runc not found: apt-get install -y runc");
    RuntimeCli {
        path,
        root: Some(PathBuf::from(RUNC_ROOT)),
        systemd_cgroup: false,
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn busybox() -> PathBuf {
    if let Some(p) = std::env::var_os("CRIUS_TEST_BUSYBOX") {
        return PathBuf::from(p);
    }
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox not found: apt-get install -y busybox")
}

/// Copies busybox (and, when dynamic, its libraries) into `rootfs`.
fn make_rootfs(rootfs: &Path) {
    let bb = busybox();
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy(&bb, rootfs.join("bin/busybox")).unwrap();
    for a in APPLETS {
        symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let out = Command::new("ldd").arg(&bb).output().expect("ldd");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(lib) = line.split_whitespace().find(|w| w.starts_with('/')) {
            let dst = rootfs.join(lib.trim_start_matches('/'));
            fs::create_dir_all(dst.parent().unwrap()).unwrap();
            fs::copy(lib, &dst).unwrap();
        }
    }
}

/// A minimal OCI config for `args`.
pub fn config(
    args: &[&str],
    terminal: bool,
    cgroups_path: &str,
    memory_limit: Option<i64>,
) -> serde_json::Value {
    let mut resources = serde_json::json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if let Some(limit) = memory_limit {
        resources["memory"] = serde_json::json!({ "limit": limit });
    }
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"],
                "effective": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"],
                "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"]
            },
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "crius-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": resources,
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" },
                { "type": "network" }
            ],
            "maskedPaths": ["/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Options of one test container.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    pub terminal: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub memory_limit: Option<i64>,
    pub log_size_max: Option<u64>,
    /// Make the monitor dir path longer than a socket path may be.
    pub long_dir: bool,
}

/// One test container: bundle, monitor dir, cgroup; removed in Drop.
pub struct TestContainer {
    pub id: String,
    pub runtime: RuntimeCli,
    pub tmp: tempfile::TempDir,
    pub bundle: PathBuf,
    pub dir: PathBuf,
    pub log_path: PathBuf,
    pub cgroup: String,
    pub opts: Opts,
    pub handle: Option<MonitorHandle>,
}

impl TestContainer {
    /// Writes a bundle running `args`; the monitor is not started yet.
    pub fn new(name: &str, args: &[&str], opts: Opts) -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("crius-oci-{name}-{}-{n}", std::process::id());
        let tmp = tempfile::Builder::new()
            .prefix("crius-oci-test")
            .tempdir()
            .unwrap();
        let bundle = tmp.path().join("bundle");
        make_rootfs(&bundle.join("rootfs"));
        let cgroup = format!("/crius-oci-test-{}-{n}", std::process::id());
        let cfg = config(args, opts.terminal, &cgroup, opts.memory_limit);
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&cfg).unwrap(),
        )
        .unwrap();
        let mut dir = tmp.path().join("monitor");
        if opts.long_dir {
            dir = dir.join("a-directory-name-long-enough-to-push-the-socket-path-past-one-hundred-and-eight-bytes");
        }
        let log_path = tmp.path().join("logs").join("0.log");
        fs::create_dir_all(log_path.parent().unwrap()).unwrap();
        TestContainer {
            id,
            runtime: runc(),
            tmp,
            bundle,
            dir,
            log_path,
            cgroup,
            opts,
            handle: None,
        }
    }

    pub fn spec(&self) -> MonitorSpec {
        MonitorSpec {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            runtime: self.runtime.clone(),
            monitor_path: conmon_path(),
            dir: self.dir.clone(),
            log_path: Some(self.log_path.clone()),
            terminal: self.opts.terminal,
            stdin: self.opts.stdin,
            stdin_once: self.opts.stdin_once,
            log_size_max: self.opts.log_size_max,
        }
    }

    /// Starts the monitor (container Created).
    pub async fn create(&mut self) -> MonitorHandle {
        let h = spawn_monitor(&self.spec()).await.expect("spawn_monitor");
        self.handle = Some(h.clone());
        h
    }

    /// Creates and starts the container.
    pub async fn run(&mut self) -> MonitorHandle {
        let h = self.create().await;
        self.runtime.start(&self.id).await.expect("runtime start");
        h
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Polls the log until `pred` holds or `timeout` passes.
    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + timeout;
        loop {
            let text = self.log();
            if pred(&text) || Instant::now() > until {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pids in the container's cgroup (pids controller, cgroup v1).
    pub fn cgroup_pids(&self) -> Vec<u32> {
        let p = Path::new("/sys/fs/cgroup/pids")
            .join(self.cgroup.trim_start_matches('/'))
            .join("cgroup.procs");
        fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

/// Whether `pid` exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let _ = Command::new(&self.runtime.path)
            .args(self.runtime.global_args())
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(h) = &self.handle {
            // The monitor exits once its container is gone; stop it if not.
            let until = Instant::now() + Duration::from_secs(5);
            while pid_alive(h.monitor_pid) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if pid_alive(h.monitor_pid) {
                let comm =
                    fs::read_to_string(format!("/proc/{}/comm", h.monitor_pid)).unwrap_or_default();
                if comm.trim() == "crius-conmon" {
                    // SAFETY: kill takes plain integers; the pid is the monitor this test started.
                    unsafe { libc::kill(h.monitor_pid as i32, libc::SIGKILL) };
                }
            }
        }
        if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let d = e.path().join(self.cgroup.trim_start_matches('/'));
                if d.is_dir() {
                    let _ = fs::remove_dir(&d);
                }
            }
        }
    }
}
