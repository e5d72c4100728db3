//! Resource usage for ContainerStats and PodSandboxStats, read from cgroups (v1 and v2) and
//! the pod's network namespace. Parsing is pure and unit tested; reading goes through the
//! container's own /proc/<pid>/cgroup, so it works for any cgroup driver.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// Usage figures of one cgroup; `None` where the kernel gave nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupUsage {
    /// Total CPU time used, in ns.
    pub cpu_ns: Option<u64>,
    /// Memory in use, page cache included.
    pub memory_bytes: Option<u64>,
    /// Memory in use minus inactive file pages: what the kubelet evicts on.
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory.
    pub rss_bytes: Option<u64>,
    /// The memory limit, if any.
    pub memory_limit: Option<u64>,
    /// Swap in use; `None` where the kernel does not account swap for cgroups.
    pub swap_bytes: Option<u64>,
    /// How much swap the cgroup may use, if limited.
    pub swap_limit: Option<u64>,
    /// Page faults.
    pub page_faults: Option<u64>,
    /// Major page faults.
    pub major_page_faults: Option<u64>,
    /// Processes (tasks) in the cgroup.
    pub pids: Option<u64>,
    /// CPU pressure (the cgroup v2 part of the hierarchy; also on hybrid hosts).
    pub cpu_pressure: Option<Pressure>,
    /// Memory pressure.
    pub memory_pressure: Option<Pressure>,
    /// IO pressure.
    pub io_pressure: Option<Pressure>,
}

/// One `*.pressure` file: how long tasks stalled on the resource.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    /// At least one task stalled.
    pub some: PressureLine,
    /// All non-idle tasks stalled at once (older kernels give no `full` for CPU).
    pub full: Option<PressureLine>,
}

/// One line of a pressure file.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PressureLine {
    /// Percent of the last 10 s, 60 s and 300 s stalled.
    pub avg10: f64,
    /// Over 60 s.
    pub avg60: f64,
    /// Over 300 s.
    pub avg300: f64,
    /// Total stall time in microseconds, as the kernel counts it.
    pub total_us: u64,
}

/// A pressure file: `some avg10=0.00 avg60=0.00 avg300=0.00 total=123` and a `full`
/// line. `None` without a valid `some` line.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let line = |l: &str| -> Option<PressureLine> {
        let mut out = PressureLine::default();
        let mut seen = 0;
        for kv in l.split_whitespace().skip(1) {
            let (k, v) = kv.split_once('=')?;
            match k {
                "avg10" => out.avg10 = v.parse().ok()?,
                "avg60" => out.avg60 = v.parse().ok()?,
                "avg300" => out.avg300 = v.parse().ok()?,
                "total" => out.total_us = v.parse().ok()?,
                _ => continue,
            }
            seen += 1;
        }
        (seen == 4).then_some(out)
    };
    let find = |kind: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(kind))
            .and_then(line)
    };
    Some(Pressure {
        some: find("some")?,
        full: find("full"),
    })
}

/// Traffic through one network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceUsage {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Send errors.
    pub tx_errors: u64,
}

/// Where a process's cgroups are: controller -> path in /proc/<pid>/cgroup. The v2
/// hierarchy is under the key "" (its line is `0::/path`).
pub fn parse_proc_cgroup(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            out.insert(String::new(), path.to_string());
        }
        for c in controllers.split(',').filter(|c| !c.is_empty()) {
            out.insert(c.trim_start_matches("name=").to_string(), path.to_string());
        }
    }
    out
}

/// `key value` lines (memory.stat, cpu.stat) as a map.
pub fn parse_flat_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// /proc/<pid>/net/dev, every interface but loopback.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (f.len() >= 11).then(|| InterfaceUsage {
                name: name.to_string(),
                rx_bytes: f[0],
                rx_errors: f[2],
                tx_bytes: f[8],
                tx_errors: f[10],
            })
        })
        .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    if s == "max" {
        return None;
    }
    s.parse().ok()
}

fn read_keyed(path: &Path) -> HashMap<String, u64> {
    fs::read_to_string(path)
        .map(|t| parse_flat_keyed(&t))
        .unwrap_or_default()
}

/// Where each memory figure lives in one cgroup version.
struct MemoryFiles {
    usage: &'static str,
    limit: &'static str,
    stat: &'static str,
    inactive_file: &'static str,
    rss: &'static str,
    page_faults: &'static str,
    major_page_faults: &'static str,
}

/// Swap as one cgroup version accounts it.
fn read_swap(
    dir: &Path,
    v1: bool,
    stat: &HashMap<String, u64>,
    memory_limit: Option<u64>,
) -> (Option<u64>, Option<u64>) {
    if v1 {
        // `total_swap` is in memory.stat only with swap accounting (swapaccount=1); the
        // swap allowance is the memory+swap limit less the memory limit.
        let limit = real_limit(read_u64(&dir.join("memory.memsw.limit_in_bytes")))
            .zip(memory_limit)
            .map(|(memsw, mem)| memsw.saturating_sub(mem));
        (stat.get("total_swap").copied(), limit)
    } else {
        (
            read_u64(&dir.join("memory.swap.current")),
            read_u64(&dir.join("memory.swap.max")),
        )
    }
}

const MEMORY_V1: MemoryFiles = MemoryFiles {
    usage: "memory.usage_in_bytes",
    limit: "memory.limit_in_bytes",
    stat: "memory.stat",
    inactive_file: "total_inactive_file",
    rss: "total_rss",
    page_faults: "total_pgfault",
    major_page_faults: "total_pgmajfault",
};

const MEMORY_V2: MemoryFiles = MemoryFiles {
    usage: "memory.current",
    limit: "memory.max",
    stat: "memory.stat",
    inactive_file: "inactive_file",
    rss: "anon",
    page_faults: "pgfault",
    major_page_faults: "pgmajfault",
};

/// A v1 limit of "no limit" is a huge number; report it as none.
fn real_limit(v: Option<u64>) -> Option<u64> {
    v.filter(|l| *l < (1u64 << 62))
}

/// Usage of the cgroups at `paths` (as from [`parse_proc_cgroup`]): v1 controllers when
/// mounted, else the v2 hierarchy.
pub fn read_usage(paths: &HashMap<String, String>) -> CgroupUsage {
    let root = Path::new(CGROUP_MOUNT);
    let v1 = |ctrl: &str| -> Option<PathBuf> {
        let p = paths.get(ctrl)?;
        let dir = root.join(ctrl).join(p.trim_start_matches('/'));
        dir.is_dir().then_some(dir)
    };
    let v2 = paths.get("").map(|p| {
        let unified = root.join("unified");
        let base = if unified.join("cgroup.controllers").exists()
            && !root.join("cgroup.controllers").exists()
        {
            unified
        } else {
            root.to_path_buf()
        };
        base.join(p.trim_start_matches('/'))
    });
    let mut u = CgroupUsage::default();
    if let Some(dir) = v1("cpuacct") {
        u.cpu_ns = read_u64(&dir.join("cpuacct.usage"));
    } else if let Some(dir) = &v2 {
        u.cpu_ns = read_keyed(&dir.join("cpu.stat"))
            .get("usage_usec")
            .map(|us| us * 1000);
    }
    let memory = match (v1("memory"), &v2) {
        (Some(dir), _) => Some((dir, &MEMORY_V1)),
        (None, Some(dir)) => Some((dir.clone(), &MEMORY_V2)),
        (None, None) => None,
    };
    if let Some((dir, files)) = memory {
        let stat = read_keyed(&dir.join(files.stat));
        u.memory_bytes = read_u64(&dir.join(files.usage));
        let inactive = stat.get(files.inactive_file).copied().unwrap_or(0);
        u.working_set_bytes = u.memory_bytes.map(|m| m.saturating_sub(inactive));
        u.rss_bytes = stat.get(files.rss).copied();
        u.page_faults = stat.get(files.page_faults).copied();
        u.major_page_faults = stat.get(files.major_page_faults).copied();
        u.memory_limit = real_limit(read_u64(&dir.join(files.limit)));
        let v1 = std::ptr::eq(files, &MEMORY_V1);
        (u.swap_bytes, u.swap_limit) = read_swap(&dir, v1, &stat, u.memory_limit);
    }
    if let Some(dir) = v1("pids") {
        u.pids = read_u64(&dir.join("pids.current"));
    } else if let Some(dir) = &v2 {
        u.pids = read_u64(&dir.join("pids.current"));
    }
    // Pressure files exist only in the v2 hierarchy, for every cgroup there whatever its
    // controllers: on a hybrid host too, where runc makes the container's v2 cgroup.
    if let Some(dir) = &v2 {
        let pressure = |file: &str| {
            fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|t| parse_pressure(&t))
        };
        u.cpu_pressure = pressure("cpu.pressure");
        u.memory_pressure = pressure("memory.pressure");
        u.io_pressure = pressure("io.pressure");
    }
    u
}

/// Usage of the cgroups a live process is in.
pub fn process_usage(pid: u32) -> Option<CgroupUsage> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    Some(read_usage(&parse_proc_cgroup(&text)))
}

/// Usage of a cgroupfs path in every hierarchy (a pod cgroup, which has no process of
/// its own).
pub fn path_usage(path: &str) -> CgroupUsage {
    let mut paths: HashMap<String, String> = ["cpuacct", "memory", "pids"]
        .iter()
        .map(|c| (c.to_string(), path.to_string()))
        .collect();
    paths.insert(String::new(), path.to_string());
    read_usage(&paths)
}

/// The network interfaces of a process's network namespace.
pub fn network_usage(pid: u32) -> Vec<InterfaceUsage> {
    fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .map(|t| parse_net_dev(&t))
        .unwrap_or_default()
}

/// Bytes and inodes used under a dir (a container's writable layer), not following links.
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    let mut inodes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            inodes += 1;
            bytes += md.blocks() * 512;
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_maps_v1_controllers_and_v2() {
        let text = "12:pids:/crius/pod-a/crius-c\n4:cpu,cpuacct:/crius/pod-a/crius-c\n1:name=systemd:/init.scope\n0::/crius/pod-a/crius-c\n";
        let m = parse_proc_cgroup(text);
        assert_eq!(m["pids"], "/crius/pod-a/crius-c");
        assert_eq!(m["cpuacct"], "/crius/pod-a/crius-c");
        assert_eq!(m["cpu"], "/crius/pod-a/crius-c");
        assert_eq!(m["systemd"], "/init.scope");
        assert_eq!(m[""], "/crius/pod-a/crius-c");
    }

    #[test]
    fn pressure_files_parse_with_and_without_full() {
        let text = "some avg10=1.50 avg60=0.25 avg300=0.00 total=4439386\n\
                    full avg10=0.10 avg60=0.00 avg300=0.00 total=12\n";
        let p = parse_pressure(text).unwrap();
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.avg60, 0.25);
        assert_eq!(p.some.total_us, 4439386);
        assert_eq!(p.full.unwrap().total_us, 12);
        let cpu_only_some = parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n");
        assert_eq!(cpu_only_some.unwrap().full, None);
        assert_eq!(parse_pressure(""), None);
        assert_eq!(
            parse_pressure("some avg10=x avg60=0 avg300=0 total=1"),
            None
        );
        assert_eq!(parse_pressure("some avg10=0.00 total=1"), None);
    }

    #[test]
    fn flat_keyed_files_parse() {
        let m = parse_flat_keyed("usage_usec 1500\nuser_usec 1000\nbroken\n");
        assert_eq!(m["usage_usec"], 1500);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn net_dev_skips_loopback_and_headers() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2048      10    1    0    0     0          0         0     4096      20    2    0    0     0       0          0\n";
        let v = parse_net_dev(text);
        assert_eq!(
            v,
            vec![InterfaceUsage {
                name: "eth0".into(),
                rx_bytes: 2048,
                rx_errors: 1,
                tx_bytes: 4096,
                tx_errors: 2
            }]
        );
    }

    #[test]
    fn own_process_usage_is_readable() {
        let u = process_usage(std::process::id()).expect("own cgroup");
        assert!(u.cpu_ns.is_some() || u.memory_bytes.is_some());
    }

    /// A systemd-style slice tree made by hand in the v1 hierarchies (no systemd runs
    /// here), holding one process; removed on drop.
    struct SliceTree {
        dirs: Vec<PathBuf>,
        child: std::process::Child,
    }

    impl Drop for SliceTree {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            for dir in self.dirs.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
        }
    }

    #[test]
    fn a_pod_slice_of_the_systemd_driver_is_read_where_systemd_puts_it() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to make cgroups");
            return;
        }
        let top = format!("criust{}", std::process::id());
        let slice = format!("{top}-pod1.slice");
        let dir =
            crius_oci::spec::parent_cgroupfs_dir(crius_oci::spec::CgroupDriver::Systemd, &slice)
                .unwrap();
        assert_eq!(dir, format!("/{top}.slice/{slice}"));
        // The shell works (CPU, fresh pages: v1 charges memory where it is first used)
        // only once it is in the slice, when a line arrives.
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                "read go; i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; exec sleep 30",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut tree = SliceTree {
            dirs: Vec::new(),
            child,
        };
        for ctrl in ["cpuacct", "memory", "pids"] {
            let hierarchy = Path::new(CGROUP_MOUNT).join(ctrl);
            if !hierarchy.join("cgroup.procs").exists() {
                eprintln!("skipped: no v1 {ctrl} hierarchy");
                return;
            }
            let parent = hierarchy.join(format!("{top}.slice"));
            let leaf = parent.join(&slice);
            for d in [&parent, &leaf] {
                fs::create_dir(d).unwrap();
                tree.dirs.push(d.clone());
            }
            fs::write(leaf.join("cgroup.procs"), tree.child.id().to_string()).unwrap();
        }
        use std::io::Write;
        tree.child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let u = loop {
            let u = path_usage(&dir);
            let read = u.cpu_ns.is_some_and(|c| c > 0) && u.memory_bytes.is_some_and(|m| m > 0);
            if read || std::time::Instant::now() > deadline {
                break u;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert_eq!(u.pids, Some(1), "{u:?}");
        assert!(u.memory_bytes.is_some_and(|m| m > 0), "{u:?}");
        assert!(u.cpu_ns.is_some_and(|c| c > 0), "{u:?}");
        // Swap is reported where the kernel accounts it (memory.memsw.* exists then).
        let accounted = Path::new(CGROUP_MOUNT)
            .join("memory")
            .join(dir.trim_start_matches('/'))
            .join("memory.memsw.usage_in_bytes")
            .exists();
        assert_eq!(u.swap_bytes.is_some(), accounted, "{u:?}");
    }

    #[test]
    fn swap_is_read_from_either_version() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memory.memsw.limit_in_bytes"), "3000\n").unwrap();
        let stat = HashMap::from([("total_swap".to_string(), 100)]);
        assert_eq!(
            read_swap(dir.path(), true, &stat, Some(1000)),
            (Some(100), Some(2000))
        );
        // Without swap accounting memory.stat has no total_swap.
        assert_eq!(
            read_swap(dir.path(), true, &HashMap::new(), None),
            (None, None)
        );
        fs::write(dir.path().join("memory.swap.current"), "42\n").unwrap();
        fs::write(dir.path().join("memory.swap.max"), "max\n").unwrap();
        assert_eq!(
            read_swap(dir.path(), false, &HashMap::new(), None),
            (Some(42), None)
        );
    }
}
