//! cgroups with the cgroupfs driver: v1 (one directory per mounted
//! hierarchy), v2 (one directory), and the hybrid layout of this host (v1
//! controllers plus a cgroup2 tree that is only joined). What to write for a
//! spec's resources is worked out in `v1.rs` and `v2.rs`, the device filter
//! of v2 in `devices.rs` and `bpf.rs`; this file finds the hierarchies and
//! makes, joins, freezes and removes the directories.

pub mod bpf;
pub mod devices;
pub mod v1;
pub mod v2;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    /// v1 controllers (or `name=...`), empty for cgroup2.
    pub controllers: Vec<String>,
    pub v2: bool,
}

/// The cgroup hierarchies mounted in this mount namespace, read from mountinfo.
pub fn hierarchies() -> Vec<Hierarchy> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mountinfo(&info)
}

fn parse_mountinfo(info: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 || l[3] != "/" {
            continue;
        }
        let mount = PathBuf::from(unescape(l[4]));
        match r[0] {
            "cgroup2" => out.push(Hierarchy {
                mount,
                controllers: Vec::new(),
                v2: true,
            }),
            "cgroup" => {
                let controllers: Vec<String> = r[2]
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "xattr" | "noprefix" | "clone_children")
                            && !o.starts_with("release_agent=")
                    })
                    .map(str::to_string)
                    .collect();
                if !controllers.is_empty()
                    && !out.iter().any(|h: &Hierarchy| h.controllers == controllers)
                {
                    out.push(Hierarchy {
                        mount,
                        controllers,
                        v2: false,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

/// The container's cgroup path inside each hierarchy: runc's reading of
/// `linux.cgroupsPath` (absolute, or relative to the hierarchy root; empty
/// means `/<id>`).
pub fn inner_path(cgroups_path: Option<&Path>, id: &str) -> Result<String> {
    let p = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_string_lossy().into_owned(),
        _ => format!("/{id}"),
    };
    if p.contains(':') {
        return Err(Error::Cgroup {
            path: p,
            reason: "a systemd cgroup path (slice:prefix:name) needs --systemd-cgroup, which crius-runtime does not support".into(),
        });
    }
    let mut clean = String::new();
    for c in p.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return Err(Error::Cgroup {
                path: p.clone(),
                reason: "'..' is not allowed".into(),
            });
        }
        clean.push('/');
        clean.push_str(c);
    }
    if clean.is_empty() {
        return Err(Error::Cgroup {
            path: p,
            reason: "the root cgroup cannot hold a container".into(),
        });
    }
    Ok(clean)
}

/// The container's directories: one per hierarchy.
pub fn dirs_for(hierarchies: &[Hierarchy], inner: &str) -> Vec<PathBuf> {
    hierarchies
        .iter()
        .map(|h| h.mount.join(inner.trim_start_matches('/')))
        .collect()
}

fn is_v2_dir(dir: &Path) -> bool {
    dir.join("cgroup.controllers").exists()
}

/// Whether the container's cgroup is one cgroup2 directory: a v2-only host.
pub fn unified(dirs: &[PathBuf]) -> bool {
    !dirs.is_empty() && dirs.iter().all(|d| is_v2_dir(d))
}

/// Whether the host has v1 hierarchies (so a cgroup2 tree is only joined).
fn hybrid(dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| !is_v2_dir(d) || !d.exists()) && dirs.iter().any(|d| is_v2_dir(d))
}

/// Makes every directory (and its parents), preparing cpuset and v2 controllers.
pub fn create(dirs: &[PathBuf]) -> Result<()> {
    for d in dirs {
        let mut missing = Vec::new();
        let mut p = d.as_path();
        while !p.exists() {
            missing.push(p.to_path_buf());
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
        for m in missing.iter().rev() {
            match std::fs::create_dir(m) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(cg_err(m, format!("mkdir: {e}"))),
            }
        }
        if d.join("cpuset.cpus").exists() && !is_v2_dir(d) {
            v1::fill_cpusets(d)?;
        }
    }
    if !hybrid(dirs) {
        for d in dirs.iter().filter(|d| is_v2_dir(d)) {
            v2::enable_controllers(d);
        }
    }
    Ok(())
}

fn cg_err(path: &Path, reason: String) -> Error {
    Error::Cgroup {
        path: path.display().to_string(),
        reason,
    }
}

/// Writes `value` to `dir/file`.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| cg_err(&p, format!("write {value:?}: {e}")))
}

/// Applies `res` to the directories; `update` leaves device rules alone, as
/// runc's update does. On a v2-only host the device rules become an eBPF
/// filter on the container's cgroup; on a hybrid host the v1 devices
/// controller enforces them and the cgroup2 tree gets no filter, as with runc.
pub fn apply(dirs: &[PathBuf], res: &LinuxResources, update: bool) -> Result<()> {
    let hybrid = hybrid(dirs);
    let v1_dirs: Vec<&PathBuf> = dirs.iter().filter(|d| !is_v2_dir(d)).collect();
    if !v1_dirs.is_empty() {
        v1::apply(&v1_dirs, res, update)?;
    }
    for d in dirs.iter().filter(|d| is_v2_dir(d)) {
        if hybrid {
            // This host's cgroup2 tree holds no controller the spec sets.
            continue;
        }
        // Before any process joins: the filter is in place from the first one.
        if let Some(rules) = res.devices().as_ref().filter(|_| !update) {
            bpf::attach(d, &devices::DeviceFilter::from_rules(rules)?)?;
        }
        for (file, value) in v2::settings(res)? {
            write(d, &file, &value)?;
        }
    }
    Ok(())
}

/// The point in the container init's setup past which it must be in the
/// container's cgroups. The runtime says it has made them, and the init's
/// host pid, with `go:<pid>`; the init waits for that before it reads or
/// mounts its cgroups, makes its cgroup namespace (rooted at the cgroup it
/// is in), and before anything of the container runs.
///
/// Who moves the init there: the init itself where it can ([`join_self`]:
/// root of the host's user namespace), else the runtime by pid, while the
/// init makes its mounts.
#[derive(Debug)]
pub struct Gate<'a> {
    sync: &'a crate::sync::Sync,
    new_cgroup_ns: bool,
    /// The directories to join here, and whether the fork already put us
    /// in the cgroup2 one; `None` when the runtime moves us.
    join_self: Option<(&'a [PathBuf], bool)>,
    host_pid: std::cell::Cell<Option<i32>>,
}

impl<'a> Gate<'a> {
    pub fn new(
        sync: &'a crate::sync::Sync,
        new_cgroup_ns: bool,
        join_self: Option<(&'a [PathBuf], bool)>,
    ) -> Self {
        Gate {
            sync,
            new_cgroup_ns,
            join_self,
            host_pid: std::cell::Cell::new(None),
        }
    }

    /// Waits (the first time) until the cgroups are ready, and is in them
    /// on return; returns this process's pid in the runtime's namespace.
    pub fn pass(&self) -> Result<i32> {
        if let Some(pid) = self.host_pid.get() {
            return Ok(pid);
        }
        let pid = self
            .sync
            .expect("go:")?
            .parse()
            .map_err(|_| Error::Init("bad host pid from the runtime".into()))?;
        if let Some((dirs, in_v2)) = self.join_self {
            join_self(dirs, in_v2)?;
        }
        if self.new_cgroup_ns {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| Error::sys("unshare cgroup namespace", e))?;
        }
        self.host_pid.set(Some(pid));
        Ok(pid)
    }
}

/// The container's cgroup2 directory: the only one on a v2 host, the
/// unified hierarchy's on a hybrid one.
pub fn v2_dir(dirs: &[PathBuf]) -> Option<&PathBuf> {
    dirs.iter().find(|d| is_v2_dir(d))
}

/// Moves the calling process into every directory without the global lock
/// that moving a process by pid takes: on first use after a quiet spell that
/// lock waits out an RCU grace period, 10 ms and more here, on every create
/// and exec. On v1 this moves the calling thread alone ("0" to `tasks`),
/// which is the whole process: the runtime's processes have one thread.
/// cgroup2 has no such move across domains; `in_v2` says the process was
/// forked there (CLONE_INTO_CGROUP, no lock either), else it is moved by
/// `cgroup.procs` (locked). Needs root of the host's user namespace.
pub fn join_self(dirs: &[PathBuf], in_v2: bool) -> Result<()> {
    for d in dirs {
        if !is_v2_dir(d) {
            write(d, "tasks", "0")?;
        } else if !in_v2 {
            write(d, "cgroup.procs", "0")?;
        }
    }
    Ok(())
}

/// Moves `pid` into every directory.
pub fn join(dirs: &[PathBuf], pid: i32) -> Result<()> {
    for d in dirs {
        write(d, "cgroup.procs", &pid.to_string())?;
    }
    Ok(())
}

/// The pids in the container's cgroup (from its first directory that lists any).
pub fn pids(dirs: &[PathBuf]) -> Vec<i32> {
    let mut best = Vec::new();
    for d in dirs {
        let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) else {
            continue;
        };
        let v: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if v.len() > best.len() {
            best = v;
        }
    }
    best
}

fn freezer(dirs: &[PathBuf]) -> Option<(PathBuf, bool)> {
    dirs.iter().find_map(|d| {
        if d.join("freezer.state").exists() {
            Some((d.clone(), false))
        } else if d.join("cgroup.freeze").exists() {
            Some((d.clone(), true))
        } else {
            None
        }
    })
}

/// Whether the container's freezer says frozen.
pub fn is_frozen(dirs: &[PathBuf]) -> bool {
    match freezer(dirs) {
        Some((d, false)) => {
            std::fs::read_to_string(d.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
        }
        Some((d, true)) => {
            std::fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        }
        None => false,
    }
}

/// Freezes or thaws every process of the container and waits until the kernel says so.
pub fn set_frozen(dirs: &[PathBuf], frozen: bool) -> Result<()> {
    let (d, v2) = freezer(dirs).ok_or_else(|| Error::Cgroup {
        path: dirs
            .first()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        reason: "no freezer controller".into(),
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if v2 {
            write(&d, "cgroup.freeze", if frozen { "1" } else { "0" })?;
            let ev = std::fs::read_to_string(d.join("cgroup.events")).unwrap_or_default();
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            if ev.lines().any(|l| l == want) {
                return Ok(());
            }
        } else {
            let want = if frozen { "FROZEN" } else { "THAWED" };
            write(&d, "freezer.state", want)?;
            let now = std::fs::read_to_string(d.join("freezer.state")).unwrap_or_default();
            if now.trim() == want {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(cg_err(
                &d,
                format!(
                    "did not become {}",
                    if frozen { "frozen" } else { "thawed" }
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Removes the directories; processes still in them get a short while to go.
pub fn destroy(dirs: &[PathBuf]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    for d in dirs {
        loop {
            match std::fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(cg_err(d, format!("rmdir: {e}"))),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_mountinfo() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n\
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
35 99 0:30 /x /mnt/other rw - cgroup cgroup rw,memory\n";
        let h = parse_mountinfo(info);
        assert_eq!(h.len(), 4);
        assert!(h[0].v2);
        assert_eq!(h[1].controllers, ["name=systemd"]);
        assert_eq!(h[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(h[3].mount, PathBuf::from("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn inner_paths() {
        assert_eq!(inner_path(None, "abc").unwrap(), "/abc");
        assert_eq!(inner_path(Some(Path::new("/a/b/")), "x").unwrap(), "/a/b");
        assert_eq!(inner_path(Some(Path::new("a//b")), "x").unwrap(), "/a/b");
        assert!(inner_path(Some(Path::new("/a/../b")), "x").is_err());
        assert!(inner_path(Some(Path::new("/")), "x").is_err());
        assert!(inner_path(Some(Path::new("system.slice:crius:x")), "x").is_err());
    }
}
