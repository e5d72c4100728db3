//! Noticing OOM kills: the kernel counts them per memory cgroup, in
//! `memory.oom_control` (`oom_kill N`, cgroup v1) or `memory.events`
//! (`oom_kill N`, cgroup v2). The monitor reads the counter when the
//! container starts and again when it exits.

use std::path::{Path, PathBuf};

/// The file holding a container's OOM kill counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomCounter {
    path: PathBuf,
    baseline: u64,
}

/// Finds the memory cgroup of `pid` from its `/proc/<pid>/cgroup` text:
/// the v1 `memory` controller when mounted, else the v2 unified path.
pub fn counter_path(proc_cgroup: &str, root: &Path) -> Option<PathBuf> {
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            let dir = root.join("memory").join(rel);
            return Some(dir.join("memory.oom_control"));
        }
        if controllers.is_empty() {
            v2 = Some(root.join(rel).join("memory.events"));
        }
    }
    // A pure v2 host mounts the unified hierarchy at the root itself.
    if root.join("cgroup.controllers").exists() {
        return v2;
    }
    None
}

/// Reads the `oom_kill` count from a memory.oom_control or memory.events text.
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        match (it.next(), it.next()) {
            (Some("oom_kill"), Some(n)) => n.parse().ok(),
            _ => None,
        }
    })
}

fn read_count(path: &Path) -> Option<u64> {
    parse_oom_kill(&std::fs::read_to_string(path).ok()?)
}

impl OomCounter {
    /// Finds the counter of the process `pid` and records its current value.
    pub fn for_pid(pid: i32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let path = counter_path(&text, Path::new("/sys/fs/cgroup"))?;
        let baseline = read_count(&path)?;
        Some(OomCounter { path, baseline })
    }

    /// Whether the counter rose since the start.
    pub fn killed(&self) -> bool {
        read_count(&self.path).is_some_and(|n| n > self.baseline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_memory_controller_wins() {
        let text = "9:name=systemd:/\n4:memory:/crius/abc\n0::/\n";
        assert_eq!(
            counter_path(text, Path::new("/sys/fs/cgroup")),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/crius/abc/memory.oom_control"
            ))
        );
    }

    #[test]
    fn v2_path_on_a_unified_root() {
        let root = std::env::temp_dir().join(format!("crius-oom-v2-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "memory pids\n").unwrap();
        let got = counter_path("0::/kubepods/pod1/ctr\n", &root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(got, Some(root.join("kubepods/pod1/ctr/memory.events")));
    }

    #[test]
    fn hybrid_without_v1_memory_has_no_counter() {
        let root = std::env::temp_dir().join("crius-oom-none-such-root");
        assert_eq!(counter_path("0::/x\n", &root), None);
    }

    #[test]
    fn oom_kill_line_is_parsed() {
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            Some(2)
        );
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n"),
            Some(1)
        );
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
    }
}
