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
    /// The cgroup's path in its hierarchy (the memory controller's, else the v2 one):
    /// what cAdvisor calls a container's `id`.
    pub path: Option<String>,
    /// CPU time in user mode, in ns.
    pub cpu_user_ns: Option<u64>,
    /// CPU time in kernel mode, in ns.
    pub cpu_system_ns: Option<u64>,
    /// CFS bandwidth periods elapsed.
    pub cfs_periods: Option<u64>,
    /// CFS bandwidth periods in which the cgroup was throttled.
    pub cfs_throttled_periods: Option<u64>,
    /// Time the cgroup was throttled, in ns.
    pub cfs_throttled_ns: Option<u64>,
    /// Page cache.
    pub cache_bytes: Option<u64>,
    /// Memory-mapped files.
    pub mapped_file_bytes: Option<u64>,
    /// Kernel memory charged to the cgroup.
    pub kernel_bytes: Option<u64>,
    /// The most memory the cgroup ever used.
    pub max_usage_bytes: Option<u64>,
    /// Times the memory limit was hit.
    pub failcnt: Option<u64>,
    /// Page faults of the cgroup's own tasks, children not counted (v2 gives only the
    /// hierarchy's, so the same as `page_faults`).
    pub own_page_faults: Option<u64>,
    /// Major page faults of the cgroup's own tasks.
    pub own_major_page_faults: Option<u64>,
    /// Processes the OOM killer killed in the cgroup.
    pub oom_kills: Option<u64>,
    /// The task limit (`pids.max`); `None` without one.
    pub pids_max: Option<u64>,
    /// The processes in the cgroup (`cgroup.procs`).
    pub procs: Vec<u32>,
    /// The resource settings the cgroup runs with.
    pub spec: CgroupSpec,
    /// Block IO per device.
    pub io: Vec<DeviceIo>,
    /// Huge pages per page size ("2MB"): bytes in use and the most ever used (v1 only;
    /// v2 keeps no maximum).
    pub hugetlb: Vec<(String, u64, Option<u64>)>,
}

/// The limits and weights set on a cgroup, as cAdvisor reports a container's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupSpec {
    /// CFS period, in µs.
    pub cpu_period: Option<u64>,
    /// CFS quota per period, in µs; `None` without a quota.
    pub cpu_quota: Option<u64>,
    /// CPU shares (v2's weight converted back to shares, as cAdvisor does).
    pub cpu_shares: Option<u64>,
    /// Memory the kernel tries to leave the cgroup (v1 soft limit, v2 `memory.min`).
    pub memory_reservation: Option<u64>,
    /// The memory+swap limit (v1) or swap limit (v2).
    pub memory_swap_limit: Option<u64>,
}

/// Block IO of one device, summed over the cgroup's hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIo {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
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
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Packets dropped on send.
    pub tx_dropped: u64,
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
            (f.len() >= 12).then(|| InterfaceUsage {
                name: name.to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
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
    v1: bool,
    usage: &'static str,
    limit: &'static str,
    inactive_file: &'static str,
    rss: &'static str,
    cache: &'static str,
    mapped_file: &'static str,
    page_faults: &'static str,
    major_page_faults: &'static str,
    own_page_faults: &'static str,
    own_major_page_faults: &'static str,
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
    v1: true,
    usage: "memory.usage_in_bytes",
    limit: "memory.limit_in_bytes",
    inactive_file: "total_inactive_file",
    rss: "total_rss",
    cache: "total_cache",
    mapped_file: "total_mapped_file",
    page_faults: "total_pgfault",
    major_page_faults: "total_pgmajfault",
    own_page_faults: "pgfault",
    own_major_page_faults: "pgmajfault",
};

const MEMORY_V2: MemoryFiles = MemoryFiles {
    v1: false,
    usage: "memory.current",
    limit: "memory.max",
    inactive_file: "inactive_file",
    rss: "anon",
    cache: "file",
    mapped_file: "file_mapped",
    page_faults: "pgfault",
    major_page_faults: "pgmajfault",
    own_page_faults: "pgfault",
    own_major_page_faults: "pgmajfault",
};

/// A v1 limit of "no limit" is a huge number; report it as none.
fn real_limit(v: Option<u64>) -> Option<u64> {
    v.filter(|l| *l < (1u64 << 62))
}

/// The directories of one cgroup: per v1 controller where that controller is mounted,
/// and in the v2 hierarchy.
struct CgroupDirs {
    v1: HashMap<&'static str, PathBuf>,
    v2: Option<PathBuf>,
}

impl CgroupDirs {
    /// The dirs of `paths` under the cgroup mount `root` (/sys/fs/cgroup).
    fn new(root: &Path, paths: &HashMap<String, String>) -> CgroupDirs {
        let v1 = ["cpu", "cpuacct", "memory", "pids", "blkio", "hugetlb"]
            .into_iter()
            .filter_map(|ctrl| {
                let dir = root
                    .join(ctrl)
                    .join(paths.get(ctrl)?.trim_start_matches('/'));
                dir.is_dir().then_some((ctrl, dir))
            })
            .collect();
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
        CgroupDirs { v1, v2 }
    }

    /// The dir holding a controller's files: its v1 hierarchy, else the v2 one.
    fn controller(&self, ctrl: &str) -> Option<(&Path, bool)> {
        match self.v1.get(ctrl) {
            Some(dir) => Some((dir, true)),
            None => self.v2.as_deref().map(|d| (d, false)),
        }
    }
}

/// Usage of the cgroups at `paths` (as from [`parse_proc_cgroup`]): v1 controllers when
/// mounted, else the v2 hierarchy.
pub fn read_usage(paths: &HashMap<String, String>) -> CgroupUsage {
    read_usage_under(Path::new(CGROUP_MOUNT), paths)
}

/// [`read_usage`] with the hierarchies mounted under `root`.
fn read_usage_under(root: &Path, paths: &HashMap<String, String>) -> CgroupUsage {
    let dirs = CgroupDirs::new(root, paths);
    let mut u = CgroupUsage {
        path: cgroup_id(paths),
        ..Default::default()
    };
    read_cpu(&dirs, &mut u);
    read_memory(&dirs, &mut u);
    if let Some((dir, _)) = dirs.controller("pids") {
        u.pids = read_u64(&dir.join("pids.current"));
        u.pids_max = read_u64(&dir.join("pids.max"));
        u.procs = fs::read_to_string(dir.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default();
    }
    u.io = match dirs.controller("blkio") {
        Some((dir, true)) => read_blkio_v1(dir),
        Some((dir, false)) => fs::read_to_string(dir.join("io.stat"))
            .map(|t| parse_io_stat(&t))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    if let Some((dir, v1)) = dirs.controller("hugetlb") {
        u.hugetlb = read_hugetlb(dir, v1);
    }
    // Pressure files exist only in the v2 hierarchy, for every cgroup there whatever its
    // controllers: on a hybrid host too, where runc makes the container's v2 cgroup.
    if let Some(dir) = &dirs.v2 {
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

/// The huge page sizes of the machine, in the kernel's cgroup file names ("2MB", "1GB").
fn huge_page_sizes() -> Vec<String> {
    let mut sizes: Vec<(u64, String)> = fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let kb: u64 = name
                        .strip_prefix("hugepages-")?
                        .strip_suffix("kB")?
                        .parse()
                        .ok()?;
                    Some((kb, page_size_name(kb)))
                })
                .collect()
        })
        .unwrap_or_default();
    sizes.sort();
    sizes.into_iter().map(|(_, n)| n).collect()
}

/// A huge page size in KiB as the hugetlb controller names it (2048 -> "2MB").
pub fn page_size_name(kb: u64) -> String {
    match kb {
        kb if kb >= 1 << 20 && kb % (1 << 20) == 0 => format!("{}GB", kb >> 20),
        kb if kb >= 1 << 10 && kb % (1 << 10) == 0 => format!("{}MB", kb >> 10),
        kb => format!("{kb}KB"),
    }
}

fn read_hugetlb(dir: &Path, v1: bool) -> Vec<(String, u64, Option<u64>)> {
    huge_page_sizes()
        .into_iter()
        .filter_map(|size| {
            if v1 {
                let used = read_u64(&dir.join(format!("hugetlb.{size}.usage_in_bytes")))?;
                let max = read_u64(&dir.join(format!("hugetlb.{size}.max_usage_in_bytes")));
                Some((size, used, max))
            } else {
                let used = read_u64(&dir.join(format!("hugetlb.{size}.current")))?;
                Some((size, used, None))
            }
        })
        .collect()
}

/// USER_HZ, the unit of v1's cpuacct.stat.
const CLOCK_TICK_NS: u64 = 10_000_000;

fn read_cpu(dirs: &CgroupDirs, u: &mut CgroupUsage) {
    if let Some(dir) = dirs.v1.get("cpuacct") {
        u.cpu_ns = read_u64(&dir.join("cpuacct.usage"));
        u.cpu_user_ns = read_u64(&dir.join("cpuacct.usage_user"));
        u.cpu_system_ns = read_u64(&dir.join("cpuacct.usage_sys"));
        if u.cpu_user_ns.is_none() {
            let ticks = read_keyed(&dir.join("cpuacct.stat"));
            u.cpu_user_ns = ticks.get("user").map(|t| t * CLOCK_TICK_NS);
            u.cpu_system_ns = ticks.get("system").map(|t| t * CLOCK_TICK_NS);
        }
    }
    if let Some(dir) = dirs.v1.get("cpu") {
        let stat = read_keyed(&dir.join("cpu.stat"));
        u.cfs_periods = stat.get("nr_periods").copied();
        u.cfs_throttled_periods = stat.get("nr_throttled").copied();
        u.cfs_throttled_ns = stat.get("throttled_time").copied();
        u.spec.cpu_period = read_u64(&dir.join("cpu.cfs_period_us"));
        // -1 (no quota) does not parse as u64.
        u.spec.cpu_quota = read_u64(&dir.join("cpu.cfs_quota_us"));
        u.spec.cpu_shares = read_u64(&dir.join("cpu.shares"));
    }
    let Some(dir) = &dirs.v2 else { return };
    let stat = read_keyed(&dir.join("cpu.stat"));
    let ns = |k: &str| stat.get(k).map(|us| us * 1000);
    if !dirs.v1.contains_key("cpuacct") {
        u.cpu_ns = ns("usage_usec");
        u.cpu_user_ns = ns("user_usec");
        u.cpu_system_ns = ns("system_usec");
    }
    if !dirs.v1.contains_key("cpu") {
        u.cfs_periods = stat.get("nr_periods").copied();
        u.cfs_throttled_periods = stat.get("nr_throttled").copied();
        u.cfs_throttled_ns = ns("throttled_usec");
        if let Ok(max) = fs::read_to_string(dir.join("cpu.max")) {
            let mut it = max.split_whitespace();
            u.spec.cpu_quota = it.next().and_then(|q| q.parse().ok());
            u.spec.cpu_period = it.next().and_then(|p| p.parse().ok());
        }
        u.spec.cpu_shares = read_u64(&dir.join("cpu.weight")).map(weight_to_shares);
    }
}

/// cgroup v2's cpu.weight (1..10000) as v1 shares (2..262144), the inverse of the
/// conversion runc applies.
fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10_000) - 1) * 262_142 / 9_999
}

fn read_memory(dirs: &CgroupDirs, u: &mut CgroupUsage) {
    let Some((dir, v1)) = dirs.controller("memory") else {
        return;
    };
    let files = if v1 { &MEMORY_V1 } else { &MEMORY_V2 };
    let stat = read_keyed(&dir.join("memory.stat"));
    let get = |k: &str| stat.get(k).copied();
    u.memory_bytes = read_u64(&dir.join(files.usage));
    let inactive = get(files.inactive_file).unwrap_or(0);
    u.working_set_bytes = u.memory_bytes.map(|m| m.saturating_sub(inactive));
    u.rss_bytes = get(files.rss);
    u.cache_bytes = get(files.cache);
    u.mapped_file_bytes = get(files.mapped_file);
    u.page_faults = get(files.page_faults);
    u.major_page_faults = get(files.major_page_faults);
    u.own_page_faults = get(files.own_page_faults);
    u.own_major_page_faults = get(files.own_major_page_faults);
    u.memory_limit = real_limit(read_u64(&dir.join(files.limit)));
    (u.swap_bytes, u.swap_limit) = read_swap(dir, files.v1, &stat, u.memory_limit);
    if files.v1 {
        u.kernel_bytes = read_u64(&dir.join("memory.kmem.usage_in_bytes"));
        u.max_usage_bytes = read_u64(&dir.join("memory.max_usage_in_bytes"));
        u.failcnt = read_u64(&dir.join("memory.failcnt"));
        u.oom_kills = read_keyed(&dir.join("memory.oom_control"))
            .get("oom_kill")
            .copied();
        u.spec.memory_reservation = real_limit(read_u64(&dir.join("memory.soft_limit_in_bytes")));
        u.spec.memory_swap_limit = real_limit(read_u64(&dir.join("memory.memsw.limit_in_bytes")));
    } else {
        u.kernel_bytes = get("kernel");
        u.max_usage_bytes = read_u64(&dir.join("memory.peak"));
        let events = read_keyed(&dir.join("memory.events"));
        u.failcnt = events.get("max").copied();
        u.oom_kills = events.get("oom_kill").copied();
        u.spec.memory_reservation = read_u64(&dir.join("memory.min"));
        u.spec.memory_swap_limit = read_u64(&dir.join("memory.swap.max"));
    }
}

/// v1 blkio: the throttling layer's recursive figures, which every IO scheduler fills.
fn read_blkio_v1(dir: &Path) -> Vec<DeviceIo> {
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
    parse_blkio_v1(
        &read("blkio.throttle.io_service_bytes_recursive"),
        &read("blkio.throttle.io_serviced_recursive"),
    )
}

/// v1 blkio files: `MAJ:MIN Read N` lines of bytes and of operations.
pub fn parse_blkio_v1(bytes: &str, ops: &str) -> Vec<DeviceIo> {
    let mut out: Vec<DeviceIo> = Vec::new();
    for (text, is_bytes) in [(bytes, true), (ops, false)] {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(dev), Some(op), Some(v)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Some((major, minor)) = parse_dev(dev) else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            let entry = device_entry(&mut out, major, minor);
            match (op, is_bytes) {
                ("Read", true) => entry.read_bytes = v,
                ("Write", true) => entry.write_bytes = v,
                ("Read", false) => entry.reads = v,
                ("Write", false) => entry.writes = v,
                _ => {}
            }
        }
    }
    out
}

/// v2 io.stat: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...` per device.
pub fn parse_io_stat(text: &str) -> Vec<DeviceIo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((major, minor)) = it.next().and_then(parse_dev) else {
            continue;
        };
        let mut d = DeviceIo {
            major,
            minor,
            ..Default::default()
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = v.parse().unwrap_or(0);
            match k {
                "rbytes" => d.read_bytes = v,
                "wbytes" => d.write_bytes = v,
                "rios" => d.reads = v,
                "wios" => d.writes = v,
                _ => {}
            }
        }
        out.push(d);
    }
    out
}

fn parse_dev(dev: &str) -> Option<(u64, u64)> {
    let (major, minor) = dev.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn device_entry(out: &mut Vec<DeviceIo>, major: u64, minor: u64) -> &mut DeviceIo {
    let at = match out
        .iter()
        .position(|d| d.major == major && d.minor == minor)
    {
        Some(at) => at,
        None => {
            out.push(DeviceIo {
                major,
                minor,
                ..Default::default()
            });
            out.len() - 1
        }
    };
    &mut out[at]
}

/// The name of a block device (`/dev/vda`) from its numbers, as cAdvisor labels IO; the
/// numbers when sysfs does not know it.
pub fn block_device_name(major: u64, minor: u64) -> String {
    fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("DEVNAME=").map(|n| format!("/dev/{n}")))
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// A process's cgroup as cAdvisor names it (its `id` label): the memory controller's
/// path, else the v2 one.
fn cgroup_id(paths: &HashMap<String, String>) -> Option<String> {
    paths
        .get("memory")
        .or(paths.get(""))
        .or(paths.get("cpuacct"))
        .cloned()
}

/// The cgroup of a live process, as cAdvisor names it.
pub fn process_cgroup_id(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cgroup_id(&parse_proc_cgroup(&text))
}

/// Usage of the cgroups a live process is in.
pub fn process_usage(pid: u32) -> Option<CgroupUsage> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    Some(read_usage(&parse_proc_cgroup(&text)))
}

/// Usage of a cgroupfs path in every hierarchy (a pod cgroup, which has no process of
/// its own).
pub fn path_usage(path: &str) -> CgroupUsage {
    let mut paths: HashMap<String, String> =
        ["cpu", "cpuacct", "memory", "pids", "blkio", "hugetlb"]
            .iter()
            .map(|c| (c.to_string(), path.to_string()))
            .collect();
    paths.insert(String::new(), path.to_string());
    read_usage(&paths)
}

/// What the processes of a cgroup hold, as cAdvisor counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    /// Threads of all the processes.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Of those, sockets.
    pub sockets: u64,
    /// The soft limit of open files of the first process (the container's own).
    pub max_open_files: Option<u64>,
}

/// Threads, descriptors and sockets of `procs` (processes that exit meanwhile are
/// skipped).
pub fn process_counts(procs: &[u32]) -> ProcessCounts {
    let mut out = ProcessCounts::default();
    for pid in procs {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        if let Ok(tasks) = fs::read_dir(proc_dir.join("task")) {
            out.threads += tasks.count() as u64;
        }
        if let Ok(fds) = fs::read_dir(proc_dir.join("fd")) {
            for fd in fds.flatten() {
                out.fds += 1;
                let is_socket = fs::read_link(fd.path())
                    .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
                out.sockets += u64::from(is_socket);
            }
        }
    }
    out.max_open_files = procs.iter().min().and_then(|pid| {
        let text = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
        parse_soft_limit(&text, "Max open files")
    });
    out
}

/// The soft value of one line of /proc/<pid>/limits; `None` when unlimited.
pub fn parse_soft_limit(text: &str, name: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(name))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The filesystem holding a dir: its device and size, as cAdvisor reports a container's
/// filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesystemUsage {
    /// The mount's source (`/dev/vda1`, `overlay`).
    pub device: String,
    /// Size in bytes.
    pub capacity_bytes: u64,
    /// Inodes in all.
    pub inodes: u64,
    /// Inodes free.
    pub inodes_free: u64,
}

/// The filesystem `dir` is on; `None` when statvfs fails.
pub fn filesystem_usage(dir: &Path) -> Option<FilesystemUsage> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let device = fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|t| mount_source(&t, dir))
        .unwrap_or_default();
    Some(FilesystemUsage {
        device,
        capacity_bytes: st.blocks() as u64 * st.fragment_size() as u64,
        inodes: st.files() as u64,
        inodes_free: st.files_free() as u64,
    })
}

/// The source of the mount holding `path` in a mountinfo text: the last (innermost) of
/// the mounts whose point is `path` or one of its parents.
pub fn mount_source(mountinfo: &str, path: &Path) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let source = right.split_whitespace().nth(1)?;
            path.starts_with(point).then_some((point.len(), source))
        })
        .fold(None, |best: Option<(usize, &str)>, (len, src)| match best {
            Some((b, _)) if b > len => best,
            _ => Some((len, src)),
        })
        .map(|(_, src)| src.to_string())
}

/// The network interfaces of a process's network namespace.
pub fn network_usage(pid: u32) -> Vec<InterfaceUsage> {
    fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .map(|t| parse_net_dev(&t))
        .unwrap_or_default()
}

/// The network interfaces of a pinned network namespace (a pod without a pause process, a vm
/// pod), read on a thread inside it.
pub fn netns_usage(netns: &Path) -> Vec<InterfaceUsage> {
    crius_net::in_netns(netns, || fs::read_to_string("/proc/thread-self/net/dev"))
        .ok()
        .and_then(|r| r.ok())
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
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2048      10    1    0    0     0          0         0     4096      20    2    3    0     0       0          0\n";
        let v = parse_net_dev(text);
        assert_eq!(
            v,
            vec![InterfaceUsage {
                name: "eth0".into(),
                rx_bytes: 2048,
                rx_packets: 10,
                rx_errors: 1,
                rx_dropped: 0,
                tx_bytes: 4096,
                tx_packets: 20,
                tx_errors: 2,
                tx_dropped: 3,
            }]
        );
    }

    /// Writes `files` (name, content) into `dir`, made first.
    fn write_files(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, content) in files {
            fs::write(dir.join(name), content).unwrap();
        }
    }

    #[test]
    fn a_v2_only_cgroup_reads_every_figure_from_the_unified_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        fs::write(
            root.path().join("cgroup.controllers"),
            "cpu memory pids io\n",
        )
        .unwrap();
        let dir = root.path().join("kubepods/pod1/c1");
        write_files(
            &dir,
            &[
                ("cpu.stat", "usage_usec 3500000\nuser_usec 2000000\nsystem_usec 1500000\nnr_periods 40\nnr_throttled 4\nthrottled_usec 250000\n"),
                ("cpu.max", "50000 100000\n"),
                ("cpu.weight", "39\n"),
                ("memory.current", "1000000\n"),
                ("memory.max", "max\n"),
                ("memory.stat", "anon 600000\nfile 300000\nfile_mapped 1000\nkernel 50000\ninactive_file 200000\npgfault 70\npgmajfault 2\n"),
                ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
                ("memory.peak", "1200000\n"),
                ("memory.min", "4096\n"),
                ("memory.swap.current", "0\n"),
                ("memory.swap.max", "max\n"),
                ("pids.current", "2\n"),
                ("pids.max", "max\n"),
                ("cgroup.procs", "10\n11\n"),
                ("io.stat", "253:0 rbytes=4096 wbytes=8192 rios=2 wios=3\n"),
                ("cpu.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=5000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=2000000\n"),
            ],
        );
        let paths = HashMap::from([(String::new(), "/kubepods/pod1/c1".to_string())]);
        let u = read_usage_under(root.path(), &paths);
        assert_eq!(u.path.as_deref(), Some("/kubepods/pod1/c1"));
        assert_eq!(
            (u.cpu_ns, u.cpu_user_ns, u.cpu_system_ns),
            (
                Some(3_500_000_000),
                Some(2_000_000_000),
                Some(1_500_000_000)
            )
        );
        assert_eq!(
            (u.cfs_periods, u.cfs_throttled_periods, u.cfs_throttled_ns),
            (Some(40), Some(4), Some(250_000_000))
        );
        assert_eq!(
            (u.spec.cpu_quota, u.spec.cpu_period, u.spec.cpu_shares),
            (Some(50_000), Some(100_000), Some(998))
        );
        assert_eq!(
            (u.memory_bytes, u.working_set_bytes),
            (Some(1_000_000), Some(800_000))
        );
        assert_eq!((u.rss_bytes, u.cache_bytes), (Some(600_000), Some(300_000)));
        assert_eq!(
            (u.mapped_file_bytes, u.kernel_bytes),
            (Some(1000), Some(50_000))
        );
        assert_eq!(
            (u.failcnt, u.oom_kills, u.max_usage_bytes),
            (Some(3), Some(1), Some(1_200_000))
        );
        assert_eq!((u.page_faults, u.own_page_faults), (Some(70), Some(70)));
        assert_eq!(
            (u.memory_limit, u.spec.memory_reservation),
            (None, Some(4096))
        );
        assert_eq!((u.swap_bytes, u.spec.memory_swap_limit), (Some(0), None));
        assert_eq!(
            (u.pids, u.pids_max, u.procs.clone()),
            (Some(2), None, vec![10, 11])
        );
        assert_eq!(u.io.len(), 1);
        assert_eq!((u.io[0].read_bytes, u.io[0].writes), (4096, 3));
        assert_eq!(u.cpu_pressure.unwrap().full.unwrap().total_us, 2_000_000);
    }

    #[test]
    fn a_v1_cgroup_reads_each_controller_from_its_own_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let at = |ctrl: &str| root.path().join(ctrl).join("kubepods/c1");
        write_files(
            &at("cpuacct"),
            &[
                ("cpuacct.usage", "3500000000\n"),
                ("cpuacct.stat", "user 200\nsystem 150\n"),
            ],
        );
        write_files(
            &at("cpu"),
            &[
                (
                    "cpu.stat",
                    "nr_periods 40\nnr_throttled 4\nthrottled_time 250000000\n",
                ),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.cfs_quota_us", "-1\n"),
                ("cpu.shares", "512\n"),
            ],
        );
        write_files(
            &at("memory"),
            &[
                ("memory.usage_in_bytes", "1000000\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.stat", "cache 1\npgfault 5\ntotal_cache 300000\ntotal_rss 600000\ntotal_mapped_file 1000\ntotal_inactive_file 200000\ntotal_pgfault 70\ntotal_pgmajfault 2\n"),
                ("memory.kmem.usage_in_bytes", "50000\n"),
                ("memory.max_usage_in_bytes", "1200000\n"),
                ("memory.failcnt", "3\n"),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"),
                ("memory.soft_limit_in_bytes", "9223372036854771712\n"),
            ],
        );
        write_files(
            &at("pids"),
            &[
                ("pids.current", "2\n"),
                ("pids.max", "1024\n"),
                ("cgroup.procs", "10\n11\n"),
            ],
        );
        write_files(
            &at("blkio"),
            &[
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "253:0 Read 4096\n253:0 Write 8192\nTotal 12288\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "253:0 Read 2\n253:0 Write 3\n",
                ),
            ],
        );
        let paths: HashMap<String, String> = ["cpu", "cpuacct", "memory", "pids", "blkio"]
            .into_iter()
            .map(|c| (c.to_string(), "/kubepods/c1".to_string()))
            .collect();
        let u = read_usage_under(root.path(), &paths);
        // No cpuacct.usage_user here (older kernels): cpuacct.stat's ticks.
        assert_eq!(
            (u.cpu_ns, u.cpu_user_ns, u.cpu_system_ns),
            (
                Some(3_500_000_000),
                Some(2_000_000_000),
                Some(1_500_000_000)
            )
        );
        assert_eq!(u.cfs_throttled_ns, Some(250_000_000));
        assert_eq!(
            (u.spec.cpu_quota, u.spec.cpu_period, u.spec.cpu_shares),
            (None, Some(100_000), Some(512))
        );
        assert_eq!(
            (u.working_set_bytes, u.cache_bytes),
            (Some(800_000), Some(300_000))
        );
        assert_eq!((u.page_faults, u.own_page_faults), (Some(70), Some(5)));
        assert_eq!(
            (u.kernel_bytes, u.max_usage_bytes, u.failcnt),
            (Some(50_000), Some(1_200_000), Some(3))
        );
        assert_eq!(u.oom_kills, Some(1));
        assert_eq!((u.memory_limit, u.spec.memory_reservation), (None, None));
        assert_eq!(
            (u.pids, u.pids_max, u.procs.clone()),
            (Some(2), Some(1024), vec![10, 11])
        );
        assert_eq!(
            (u.io[0].read_bytes, u.io[0].write_bytes, u.io[0].reads),
            (4096, 8192, 2)
        );
    }

    #[test]
    fn block_io_parses_from_either_version() {
        let bytes = "253:0 Read 4096\n253:0 Write 8192\n253:0 Sync 0\n253:0 Total 12288\n8:0 Read 1\nTotal 12289\n";
        let ops = "253:0 Read 2\n253:0 Write 3\n";
        let v1 = parse_blkio_v1(bytes, ops);
        assert_eq!(
            v1[0],
            DeviceIo {
                major: 253,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 8192,
                reads: 2,
                writes: 3
            }
        );
        assert_eq!((v1[1].major, v1[1].read_bytes, v1.len()), (8, 1, 2));
        let v2 =
            parse_io_stat("253:0 rbytes=4096 wbytes=8192 rios=2 wios=3 dbytes=0 dios=0\nbroken\n");
        assert_eq!(v2, vec![v1[0].clone()]);
    }

    #[test]
    fn limits_mounts_page_sizes_and_weights_convert() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             unlimited            unlimited            processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_soft_limit(limits, "Max open files"), Some(1024));
        assert_eq!(parse_soft_limit(limits, "Max processes"), None);
        let mountinfo = "21 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                         30 21 0:25 / /var/lib/crius rw shared:2 - xfs /dev/vdb rw\n\
                         31 21 0:26 / /var/lib/criusx rw shared:3 - tmpfs tmpfs rw\n";
        let source = |p: &str| mount_source(mountinfo, Path::new(p));
        assert_eq!(
            source("/var/lib/crius/containers").as_deref(),
            Some("/dev/vdb")
        );
        assert_eq!(source("/var/lib/crius").as_deref(), Some("/dev/vdb"));
        assert_eq!(source("/var/lib").as_deref(), Some("/dev/vda1"));
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1 << 20), "1GB");
        assert_eq!(page_size_name(64), "64KB");
        // runc's shares -> weight conversion, undone.
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        // 1024 shares are weight 39, which reads back as 998: the kernel keeps no more.
        assert_eq!(weight_to_shares(39), 998);
    }

    #[test]
    fn own_process_counts_and_filesystem_match_the_kernel() {
        let me = std::process::id();
        let counts = process_counts(&[me]);
        let tasks = fs::read_dir("/proc/self/task").unwrap().count() as u64;
        assert!(
            counts.threads >= 1 && counts.threads.abs_diff(tasks) <= 2,
            "{counts:?}"
        );
        assert!(counts.fds >= 3, "{counts:?}");
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(counts.max_open_files, Some(soft));
        let fs = filesystem_usage(Path::new("/")).unwrap();
        assert!(
            fs.capacity_bytes > 0 && fs.inodes_free <= fs.inodes,
            "{fs:?}"
        );
        assert!(!fs.device.is_empty(), "{fs:?}");
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
        assert_eq!(u.procs, [tree.child.id()], "{u:?}");
        assert_eq!(process_counts(&u.procs).threads, 1);
        assert!(
            u.cpu_user_ns.is_some() && u.max_usage_bytes >= u.memory_bytes,
            "{u:?}"
        );
        assert!(u.cache_bytes.is_some() && u.failcnt.is_some(), "{u:?}");
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
