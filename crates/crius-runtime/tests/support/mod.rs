//! A busybox bundle and the crius-runtime binary, for the CLI tests (root).

#![allow(dead_code)]

pub mod v2;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use serde_json::{json, Value};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_crius-runtime"))
}

fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox not found: apt-get install -y busybox")
}

/// Copies busybox, its libraries and applet links into `rootfs`.
pub fn make_rootfs(rootfs: &Path) {
    let bb = busybox();
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(&bb, rootfs.join("bin/busybox")).unwrap();
    for a in [
        "sh", "true", "false", "sleep", "cat", "ls", "echo", "grep", "id", "hostname", "pwd",
        "stat", "readlink", "mount", "mkdir", "rmdir", "touch",
    ] {
        symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let out = Command::new("ldd").arg(&bb).output().unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(p) = line.split_whitespace().find(|w| w.starts_with('/')) {
            let dst = rootfs.join(p.trim_start_matches('/'));
            fs::create_dir_all(dst.parent().unwrap()).unwrap();
            fs::copy(p, &dst).unwrap();
        }
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
}

/// runc's default spec (as `runc spec` writes it), running `args`, in cgroup `cgroup`.
pub fn config(args: &[&str], cgroup: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "crius-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroup,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/bus"]
        }
    })
}

/// A user namespace's ids 0-65535 as host ids 100000-165535.
pub fn id_map() -> Value {
    json!([{"containerID": 0, "hostID": 100000, "size": 65536}])
}

/// Bundles of this test process not yet dropped; their cgroups share a parent.
static LIVE_BUNDLES: Mutex<usize> = Mutex::new(0);

/// One test's bundle, state root and cgroup; removed (container included) on drop.
pub struct Bundle {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub id: String,
    pub cgroup: String,
    pub log: PathBuf,
}

impl Bundle {
    pub fn new(name: &str, args: &[&str]) -> Bundle {
        let tmp = tempfile::Builder::new()
            .prefix("crius-runtime-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let dir = tmp.path().join("bundle");
        make_rootfs(&dir.join("rootfs"));
        *LIVE_BUNDLES.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let id = format!("{name}-{}", std::process::id());
        let cgroup = format!("/crius-runtime-test/{id}");
        let b = Bundle {
            root: tmp.path().join("state"),
            log: tmp.path().join("runtime.log"),
            dir,
            tmp,
            id,
            cgroup,
        };
        b.write_config(&config(args, &b.cgroup));
        b
    }

    pub fn write_config(&self, v: &Value) {
        fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }

    /// Puts the container in a new user namespace, its ids mapped by `id_map`.
    pub fn in_new_user_namespace(&self) {
        self.edit(|v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            v["linux"]["uidMappings"] = id_map();
            v["linux"]["gidMappings"] = id_map();
        });
    }

    pub fn edit(&self, f: impl FnOnce(&mut Value)) {
        let mut v: Value =
            serde_json::from_slice(&fs::read(self.dir.join("config.json")).unwrap()).unwrap();
        f(&mut v);
        self.write_config(&v);
    }

    /// `crius-runtime --root R --log L --log-format json ARGS`.
    pub fn cmd(&self, args: &[&str]) -> Output {
        // Files, not pipes: a created init keeps the runtime's stdio open
        // (it is the container's), so a pipe would not reach EOF.
        let out_path = self.tmp.path().join("cmd.out");
        let err_path = self.tmp.path().join("cmd.err");
        let status = Command::new(bin())
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: fs::read(&out_path).unwrap_or_default(),
            stderr: fs::read(&err_path).unwrap_or_default(),
        }
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "crius-runtime {args:?}: {:?}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn create(&self) -> i32 {
        let pid_file = self.tmp.path().join("pid");
        let d = self.dir.to_string_lossy().into_owned();
        let p = pid_file.to_string_lossy().into_owned();
        self.ok(&["create", "--bundle", &d, "--pid-file", &p, &self.id]);
        fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn status(&self) -> String {
        let v: Value = serde_json::from_str(&self.ok(&["state", &self.id])).unwrap();
        v["status"].as_str().unwrap().to_string()
    }

    /// `run` of the bundle: (exit code, stdout, stderr).
    pub fn run(&self) -> (i32, String, String) {
        let d = self.dir.to_string_lossy().into_owned();
        let o = self.cmd(&["run", "--bundle", &d, &self.id]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// The cgroup directories of this container that exist.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|e| e.path().join(self.cgroup.trim_start_matches('/')))
            .filter(|p| p.exists())
            .collect()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.cmd(&["delete", "--force", &self.id]);
        for d in self.cgroup_dirs() {
            let _ = fs::remove_dir(&d);
        }
        // The shared parent goes with the last bundle: removed while another
        // test's runtime is making its directory below it, that mkdir fails.
        let mut live = LIVE_BUNDLES.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        if *live == 0 {
            for h in fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = fs::remove_dir(h.path().join("crius-runtime-test"));
            }
        }
    }
}
