//! cgroup paths for both drivers and CRI resources -> OCI `linux.resources`,
//! with the cgroup v2 (unified) forms of the same limits.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crius_cri_api::v1::LinuxContainerResources;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use crate::Error;

/// Which cgroup manager the OCI runtime is told to use; it decides the shape
/// of `linux.cgroupsPath`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupDriver {
    /// Plain cgroupfs directories: `cgroupsPath` is a path.
    #[default]
    Cgroupfs,
    /// systemd units: `cgroupsPath` is `slice:prefix:name`.
    Systemd,
}

/// The parent used when the pod gives none (cgroupfs driver).
const DEFAULT_CGROUPFS_PARENT: &str = "/crius";
/// The parent slice used when the pod gives none (systemd driver).
const DEFAULT_SYSTEMD_SLICE: &str = "system.slice";
/// Prefix of every cgroup or scope crius creates.
pub const CGROUP_PREFIX: &str = "crius";

/// Where a pod's cgroup `parent` is in the cgroup filesystem (a path under each hierarchy),
/// for reading its usage; `None` for a systemd parent that names no slice.
///
/// cgroupfs: the parent itself. systemd: the slice (the parent's last component) expanded
/// as systemd places it, each `-` opening a level: `kubepods-besteffort-pod1.slice` is
/// `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice`, and
/// `-.slice` the root.
pub fn parent_cgroupfs_dir(driver: CgroupDriver, parent: &str) -> Option<String> {
    match driver {
        CgroupDriver::Cgroupfs => Some(format!("/{}", parent.trim_matches('/'))),
        CgroupDriver::Systemd => {
            let slice = parent.trim_end_matches('/').rsplit('/').next()?;
            let name = slice.strip_suffix(".slice")?;
            if name == "-" {
                return Some("/".to_string());
            }
            if name.is_empty()
                || name.starts_with('-')
                || name.ends_with('-')
                || name.contains("--")
            {
                return None;
            }
            let mut path = String::new();
            let mut prefix = String::new();
            for part in name.split('-') {
                if !prefix.is_empty() {
                    prefix.push('-');
                }
                prefix.push_str(part);
                path.push_str(&format!("/{prefix}.slice"));
            }
            Some(path)
        }
    }
}

/// The `linux.cgroupsPath` of a container or pod sandbox `id` under `parent`.
///
/// cgroupfs: `<parent>/crius-<id>` (an empty parent means `/crius`).
/// systemd: `<slice>:crius:<id>` (runc's form; the unit becomes
/// `crius-<id>.scope` in `<slice>`), where `<slice>` is the last component of
/// the parent, or `system.slice` when the parent is empty.
pub fn cgroups_path(driver: CgroupDriver, parent: &str, id: &str) -> String {
    match driver {
        CgroupDriver::Cgroupfs => {
            let trimmed = parent.trim_end_matches('/');
            let parent = if trimmed.is_empty() {
                DEFAULT_CGROUPFS_PARENT.to_string()
            } else if trimmed.starts_with('/') {
                trimmed.to_string()
            } else {
                format!("/{trimmed}")
            };
            format!("{parent}/{CGROUP_PREFIX}-{id}")
        }
        CgroupDriver::Systemd => {
            let slice = parent
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or(DEFAULT_SYSTEMD_SLICE);
            format!("{slice}:{CGROUP_PREFIX}:{id}")
        }
    }
}

/// The systemd scope unit runc creates for `cgroups_path(Systemd, _, id)`.
pub fn systemd_scope_name(id: &str) -> String {
    format!("{CGROUP_PREFIX}-{id}.scope")
}

/// What the host's cgroups offer the runtime; read from /sys/fs/cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupHost {
    /// /sys/fs/cgroup is a cgroup v2 (unified) hierarchy.
    pub v2: bool,
    /// The hugetlb controller is where runc looks for it: a v1 hierarchy on a v1 or
    /// hybrid host (a hybrid host may hold hugetlb in its v2 part only, where runc's v1
    /// driver cannot reach it), `cgroup.controllers` on a v2 host.
    pub hugetlb: bool,
}

impl CgroupHost {
    /// Reads the host's layout (cheap: two small files).
    pub fn probe() -> CgroupHost {
        let root = Path::new("/sys/fs/cgroup");
        match std::fs::read_to_string(root.join("cgroup.controllers")) {
            Ok(controllers) => CgroupHost {
                v2: true,
                hugetlb: controllers.split_whitespace().any(|c| c == "hugetlb"),
            },
            Err(_) => CgroupHost {
                v2: false,
                hugetlb: root.join("hugetlb").join("cgroup.procs").exists(),
            },
        }
    }
}

/// CRI `LinuxContainerResources` -> OCI `LinuxResources` (cpu, memory,
/// hugepages, unified). `oom_score_adj` is a process field, handled elsewhere.
/// `unified` is only accepted on a cgroup v2 host: runc refuses it on v1.
/// Hugepage limits are validated, then dropped when the host has no hugetlb controller
/// runc can use, as CRI-O does: the kubelet sends them for every page size the kernel
/// knows, and runc would refuse the container.
pub fn linux_resources(
    res: &LinuxContainerResources,
    host: CgroupHost,
) -> Result<LinuxResources, Error> {
    let mut out = LinuxResources::default();

    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if res.cpu_shares > 0 {
        cpu.set_shares(Some(res.cpu_shares as u64));
        cpu_set = true;
    } else if res.cpu_shares < 0 {
        return Err(invalid("cpu_shares", res.cpu_shares, "negative"));
    }
    if res.cpu_quota != 0 {
        // -1 means unlimited and is passed through as such.
        if res.cpu_quota < -1 {
            return Err(invalid("cpu_quota", res.cpu_quota, "below -1"));
        }
        cpu.set_quota(Some(res.cpu_quota));
        cpu_set = true;
    }
    if res.cpu_period > 0 {
        cpu.set_period(Some(res.cpu_period as u64));
        cpu_set = true;
    } else if res.cpu_period < 0 {
        return Err(invalid("cpu_period", res.cpu_period, "negative"));
    }
    if !res.cpuset_cpus.is_empty() {
        check_cpuset("cpuset_cpus", &res.cpuset_cpus)?;
        cpu.set_cpus(Some(res.cpuset_cpus.clone()));
        cpu_set = true;
    }
    if !res.cpuset_mems.is_empty() {
        check_cpuset("cpuset_mems", &res.cpuset_mems)?;
        cpu.set_mems(Some(res.cpuset_mems.clone()));
        cpu_set = true;
    }
    if cpu_set {
        out.set_cpu(Some(cpu));
    }

    let mut mem = LinuxMemory::default();
    let mut mem_set = false;
    if res.memory_limit_in_bytes > 0 {
        mem.set_limit(Some(res.memory_limit_in_bytes));
        mem_set = true;
    } else if res.memory_limit_in_bytes < 0 {
        return Err(invalid(
            "memory_limit_in_bytes",
            res.memory_limit_in_bytes,
            "negative",
        ));
    }
    if res.memory_swap_limit_in_bytes > 0 || res.memory_swap_limit_in_bytes == -1 {
        if res.memory_limit_in_bytes > 0
            && res.memory_swap_limit_in_bytes > 0
            && res.memory_swap_limit_in_bytes < res.memory_limit_in_bytes
        {
            return Err(invalid(
                "memory_swap_limit_in_bytes",
                res.memory_swap_limit_in_bytes,
                "smaller than memory_limit_in_bytes (it is memory+swap)",
            ));
        }
        mem.set_swap(Some(res.memory_swap_limit_in_bytes));
        mem_set = true;
    } else if res.memory_swap_limit_in_bytes < -1 {
        return Err(invalid(
            "memory_swap_limit_in_bytes",
            res.memory_swap_limit_in_bytes,
            "below -1",
        ));
    }
    if mem_set {
        out.set_memory(Some(mem));
    }

    if !res.hugepage_limits.is_empty() {
        let mut limits = Vec::with_capacity(res.hugepage_limits.len());
        for h in &res.hugepage_limits {
            check_page_size(&h.page_size)?;
            let limit = i64::try_from(h.limit).map_err(|_| {
                invalid(
                    &format!("hugepage_limits[{}]", h.page_size),
                    h.limit,
                    "too large",
                )
            })?;
            let mut l = LinuxHugepageLimit::default();
            l.set_page_size(h.page_size.clone());
            l.set_limit(limit);
            limits.push(l);
        }
        if host.hugetlb {
            out.set_hugepage_limits(Some(limits));
        } else {
            tracing::debug!(
                limits = limits.len(),
                "no hugetlb controller for the runtime: hugepage limits left out"
            );
        }
    }

    if !res.unified.is_empty() {
        if !host.v2 {
            let key = res.unified.keys().min().cloned().unwrap_or_default();
            return Err(invalid(
                "unified",
                key,
                "unified (cgroup v2) resources on a cgroup v1 host",
            ));
        }
        for (k, v) in &res.unified {
            check_unified_entry(k, v)?;
        }
        out.set_unified(Some(
            res.unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ));
    }
    Ok(out)
}

/// The cgroup v2 files and values that express `res`, as runc and systemd
/// convert them: cpu.weight from shares, cpu.max, memory.max,
/// memory.swap.max (swap only, v2 has no memory+swap), cpuset.*,
/// hugetlb.<size>.max, then the CRI `unified` entries (which win).
/// Used for cgroup v2 nodes, where limits are written to these files.
pub fn cgroup_v2_unified(res: &LinuxContainerResources) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if res.cpu_shares > 0 {
        out.insert(
            "cpu.weight".to_string(),
            cpu_shares_to_weight(res.cpu_shares as u64).to_string(),
        );
    }
    if res.cpu_quota != 0 || res.cpu_period > 0 {
        let quota = if res.cpu_quota > 0 {
            res.cpu_quota.to_string()
        } else {
            "max".to_string()
        };
        let period = if res.cpu_period > 0 {
            res.cpu_period as u64
        } else {
            100_000
        };
        out.insert("cpu.max".to_string(), format!("{quota} {period}"));
    }
    if res.memory_limit_in_bytes > 0 {
        out.insert(
            "memory.max".to_string(),
            res.memory_limit_in_bytes.to_string(),
        );
    }
    if res.memory_swap_limit_in_bytes == -1 {
        out.insert("memory.swap.max".to_string(), "max".to_string());
    } else if res.memory_swap_limit_in_bytes > 0 && res.memory_limit_in_bytes > 0 {
        let swap = res
            .memory_swap_limit_in_bytes
            .saturating_sub(res.memory_limit_in_bytes)
            .max(0);
        out.insert("memory.swap.max".to_string(), swap.to_string());
    }
    if !res.cpuset_cpus.is_empty() {
        out.insert("cpuset.cpus".to_string(), res.cpuset_cpus.clone());
    }
    if !res.cpuset_mems.is_empty() {
        out.insert("cpuset.mems".to_string(), res.cpuset_mems.clone());
    }
    for h in &res.hugepage_limits {
        out.insert(format!("hugetlb.{}.max", h.page_size), h.limit.to_string());
    }
    for (k, v) in &res.unified {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// cgroup v1 cpu.shares [2, 262144] -> cgroup v2 cpu.weight [1, 10000]
/// (the linear map runc and systemd use).
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn invalid(field: &str, value: impl ToString, reason: &str) -> Error {
    Error::InvalidResource {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// A cpuset list such as "0-3,7".
fn check_cpuset(field: &str, v: &str) -> Result<(), Error> {
    let ok = v.split(',').all(|part| {
        let mut it = part.splitn(2, '-');
        let a = it.next().unwrap_or("");
        let b = it.next();
        let num = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        num(a) && b.is_none_or(num)
    });
    if ok {
        Ok(())
    } else {
        Err(invalid(field, v, "not a cpu/node list like \"0-3,7\""))
    }
}

/// A hugepage size as the kubelet writes it: "2MB", "1GB", "64KB".
fn check_page_size(v: &str) -> Result<(), Error> {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &v[digits.len()..];
    if !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit())
        && matches!(unit, "KB" | "MB" | "GB" | "TB" | "PB")
    {
        Ok(())
    } else {
        Err(invalid("hugepage_limits.page_size", v, "not like \"2MB\""))
    }
}

/// A cgroup v2 file name ("memory.high") and a value of one line.
fn check_unified_entry(k: &str, v: &str) -> Result<(), Error> {
    let key_ok = !k.is_empty()
        && k.contains('.')
        && !k.starts_with('.')
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-');
    if !key_ok {
        return Err(invalid("unified", k, "not a cgroup v2 file name"));
    }
    if v.bytes().any(|c| c == 0 || c == b'\n') {
        return Err(invalid(
            &format!("unified[{k}]"),
            v,
            "contains NUL or newline",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crius_cri_api::v1::HugepageLimit;

    #[test]
    fn cgroups_path_per_driver() {
        let rows: &[(CgroupDriver, &str, &str)] = &[
            (CgroupDriver::Cgroupfs, "", "/crius/crius-abc"),
            (CgroupDriver::Cgroupfs, "/", "/crius/crius-abc"),
            (
                CgroupDriver::Cgroupfs,
                "/kubepods/pod1",
                "/kubepods/pod1/crius-abc",
            ),
            (
                CgroupDriver::Cgroupfs,
                "/kubepods/pod1/",
                "/kubepods/pod1/crius-abc",
            ),
            (CgroupDriver::Cgroupfs, "kubepods", "/kubepods/crius-abc"),
            (CgroupDriver::Systemd, "", "system.slice:crius:abc"),
            (
                CgroupDriver::Systemd,
                "kubepods-besteffort-pod1.slice",
                "kubepods-besteffort-pod1.slice:crius:abc",
            ),
            (
                CgroupDriver::Systemd,
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2.slice",
                "kubepods-burstable-pod2.slice:crius:abc",
            ),
            (CgroupDriver::Systemd, "/", "system.slice:crius:abc"),
        ];
        for (driver, parent, want) in rows {
            assert_eq!(
                cgroups_path(*driver, parent, "abc"),
                *want,
                "{driver:?} {parent:?}"
            );
        }
        assert_eq!(systemd_scope_name("abc"), "crius-abc.scope");
    }

    const V1: CgroupHost = CgroupHost {
        v2: false,
        hugetlb: true,
    };
    const V2: CgroupHost = CgroupHost {
        v2: true,
        hugetlb: true,
    };

    fn res() -> LinuxContainerResources {
        LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 128 << 20,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn v1_resources_map_field_by_field() {
        let r = linux_resources(&res(), V1).unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = r.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(128 << 20));
        let h = r.hugepage_limits().as_ref().unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].page_size(), "2MB");
        assert_eq!(h[0].limit(), 4 << 20);
        assert!(r.unified().is_none());
    }

    #[test]
    fn hugepage_limits_are_left_out_without_a_usable_hugetlb_controller() {
        // A hybrid host whose hugetlb lives only in the v2 part, as on the test machines.
        let hybrid = CgroupHost {
            v2: false,
            hugetlb: false,
        };
        let r = linux_resources(&res(), hybrid).unwrap();
        assert!(r.hugepage_limits().is_none());
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
        // Still validated.
        let mut bad = res();
        bad.hugepage_limits[0].page_size = "2XB".into();
        assert!(linux_resources(&bad, hybrid).is_err());
    }

    #[test]
    fn empty_resources_set_nothing() {
        let r = linux_resources(&LinuxContainerResources::default(), V1).unwrap();
        assert!(r.cpu().is_none());
        assert!(r.memory().is_none());
        assert!(r.hugepage_limits().is_none());
        assert!(r.unified().is_none());
    }

    #[test]
    fn unified_needs_cgroup_v2() {
        let mut r = LinuxContainerResources::default();
        r.unified.insert("memory.high".into(), "1000000".into());
        let err = linux_resources(&r, V1).unwrap_err().to_string();
        assert!(err.contains("memory.high"), "{err}");
        let ok = linux_resources(&r, V2).unwrap();
        assert_eq!(
            ok.unified().as_ref().unwrap().get("memory.high").unwrap(),
            "1000000"
        );
        r.unified.insert("../etc".into(), "x".into());
        assert!(linux_resources(&r, V2).is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        let rows: Vec<(LinuxContainerResources, &str)> = vec![
            (
                LinuxContainerResources {
                    cpu_shares: -1,
                    ..Default::default()
                },
                "cpu_shares",
            ),
            (
                LinuxContainerResources {
                    cpuset_cpus: "0-a".into(),
                    ..Default::default()
                },
                "cpuset_cpus",
            ),
            (
                LinuxContainerResources {
                    memory_limit_in_bytes: 100,
                    memory_swap_limit_in_bytes: 50,
                    ..Default::default()
                },
                "memory_swap_limit_in_bytes",
            ),
            (
                LinuxContainerResources {
                    hugepage_limits: vec![HugepageLimit {
                        page_size: "2XB".into(),
                        limit: 1,
                    }],
                    ..Default::default()
                },
                "page_size",
            ),
        ];
        for (r, field) in rows {
            let err = linux_resources(&r, V1).unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn v2_unified_from_cri_resources() {
        let mut r = res();
        r.unified.insert("memory.high".into(), "1000".into());
        let u = cgroup_v2_unified(&r);
        let want: BTreeMap<String, String> = [
            ("cpu.weight", "20"),
            ("cpu.max", "50000 100000"),
            ("memory.max", "67108864"),
            ("memory.swap.max", "67108864"),
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("hugetlb.2MB.max", "4194304"),
            ("memory.high", "1000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(u, want);

        let unlimited = LinuxContainerResources {
            cpu_quota: -1,
            memory_swap_limit_in_bytes: -1,
            ..Default::default()
        };
        let u = cgroup_v2_unified(&unlimited);
        assert_eq!(u.get("cpu.max").unwrap(), "max 100000");
        assert_eq!(u.get("memory.swap.max").unwrap(), "max");
    }

    #[test]
    fn shares_to_weight_bounds() {
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(1_000_000), 10_000);
        assert_eq!(cpu_shares_to_weight(0), 0);
    }

    #[test]
    fn parents_map_to_their_cgroupfs_dirs() {
        for (driver, parent, want) in [
            (
                CgroupDriver::Cgroupfs,
                "/kubepods/pod1",
                Some("/kubepods/pod1"),
            ),
            (
                CgroupDriver::Cgroupfs,
                "kubepods/pod1/",
                Some("/kubepods/pod1"),
            ),
            (
                CgroupDriver::Systemd,
                "kubepods-besteffort-pod1.slice",
                Some("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"),
            ),
            (
                CgroupDriver::Systemd,
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2.slice",
                Some("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2.slice"),
            ),
            (CgroupDriver::Systemd, "system.slice", Some("/system.slice")),
            (CgroupDriver::Systemd, "-.slice", Some("/")),
            (CgroupDriver::Systemd, "kubepods", None),
            (CgroupDriver::Systemd, "a--b.slice", None),
            (CgroupDriver::Systemd, "", None),
        ] {
            assert_eq!(
                parent_cgroupfs_dir(driver, parent).as_deref(),
                want,
                "{driver:?} {parent:?}"
            );
        }
    }
}
