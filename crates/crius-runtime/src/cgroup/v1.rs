//! cgroup v1: the files a spec's resources become, each written in the
//! hierarchy that has it.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::write;
use crate::error::{Error, Result};

/// One file to write and its value; `optional` ones are skipped when no
/// hierarchy has the file (swap accounting off, no blkio weight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub file: String,
    pub value: String,
    pub optional: bool,
}

fn set(file: &str, value: impl ToString) -> Setting {
    Setting {
        file: file.to_string(),
        value: value.to_string(),
        optional: false,
    }
}

/// The v1 files for `res`, in the order they must be written.
pub fn settings(res: &LinuxResources, update: bool) -> Vec<Setting> {
    let mut v = Vec::new();
    if !update {
        if let Some(devs) = res.devices() {
            v.extend(device_settings(devs));
        }
    }
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            v.push(set("memory.limit_in_bytes", l));
        }
        if let Some(s) = m.swap() {
            v.push(Setting {
                optional: true,
                ..set("memory.memsw.limit_in_bytes", s)
            });
        }
        if let Some(r) = m.reservation() {
            v.push(set("memory.soft_limit_in_bytes", r));
        }
        if let Some(s) = m.swappiness() {
            if s <= 100 {
                v.push(set("memory.swappiness", s));
            }
        }
        if m.disable_oom_killer() == Some(true) {
            v.push(set("memory.oom_control", 1));
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares().filter(|s| *s > 0) {
            v.push(set("cpu.shares", s));
        }
        if let Some(p) = c.period().filter(|p| *p > 0) {
            v.push(set("cpu.cfs_period_us", p));
        }
        if let Some(q) = c.quota().filter(|q| *q != 0) {
            v.push(set("cpu.cfs_quota_us", q));
        }
        if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            v.push(set("cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            v.push(set("cpuset.mems", mems));
        }
    }
    if let Some(p) = res.pids() {
        let l = p.limit();
        v.push(set(
            "pids.max",
            if l > 0 { l.to_string() } else { "max".into() },
        ));
    }
    if let Some(h) = res.hugepage_limits() {
        for l in h {
            v.push(set(
                &format!("hugetlb.{}.limit_in_bytes", l.page_size()),
                l.limit(),
            ));
        }
    }
    if let Some(b) = res.block_io() {
        if let Some(w) = b.weight() {
            v.push(Setting {
                optional: true,
                ..set("blkio.weight", w)
            });
        }
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            v.push(set("net_cls.classid", id));
        }
        for p in n.priorities().iter().flatten() {
            v.push(set(
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            ));
        }
    }
    v
}

/// Device rules: deny everything first when the first rule is "deny all",
/// as runc's default list starts; then each rule in order.
fn device_settings(devs: &[LinuxDeviceCgroup]) -> Vec<Setting> {
    devs.iter()
        .map(|d| {
            let typ = match d.typ().unwrap_or_default() {
                LinuxDeviceType::A => 'a',
                LinuxDeviceType::B => 'b',
                LinuxDeviceType::P => 'p',
                LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            };
            let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_else(|| "*".into());
            let access = d.access().clone().unwrap_or_else(|| "rwm".into());
            let rule = if typ == 'a' && d.major().is_none() && d.minor().is_none() {
                "a".to_string()
            } else {
                format!("{typ} {}:{} {access}", num(d.major()), num(d.minor()))
            };
            set(
                if d.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                },
                rule,
            )
        })
        .collect()
}

/// Writes the settings, each in the first directory that has its file.
pub fn apply(dirs: &[&PathBuf], res: &LinuxResources, update: bool) -> Result<()> {
    let settings = settings(res, update);
    let mut i = 0;
    while i < settings.len() {
        let s = &settings[i];
        let Some(dir) = dirs.iter().find(|d| d.join(&s.file).exists()) else {
            if s.optional {
                i += 1;
                continue;
            }
            return Err(Error::Cgroup {
                path: dirs
                    .first()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
                reason: format!("no cgroup v1 hierarchy has {} for {:?}", s.file, s.value),
            });
        };
        // memory.limit may not go above memsw, nor memsw below memory.limit:
        // when raising both, memsw goes first.
        if s.file == "memory.limit_in_bytes" {
            if let Some(sw) = settings
                .get(i + 1)
                .filter(|n| n.file == "memory.memsw.limit_in_bytes")
            {
                if write(dir, &s.file, &s.value).is_err() && dir.join(&sw.file).exists() {
                    write(dir, &sw.file, &sw.value)?;
                    write(dir, &s.file, &s.value)?;
                }
                if dir.join(&sw.file).exists() {
                    write(dir, &sw.file, &sw.value)?;
                }
                i += 2;
                continue;
            }
        }
        write(dir, &s.file, &s.value)?;
        i += 1;
    }
    Ok(())
}

/// A new cpuset directory starts empty, which refuses any task: every
/// directory from the hierarchy's root down to `dir` that is still empty
/// takes its parent's cpus and mems. Not only the ones made here: a parent
/// another runtime has just made may not have been filled yet (runc walks
/// the ancestors the same way).
pub fn fill_cpusets(dir: &Path) -> Result<()> {
    let mut chain: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| d.join("cpuset.cpus").exists())
        .collect();
    // The hierarchy's root always has both set; fill from the top down.
    chain.pop();
    for d in chain.into_iter().rev() {
        let Some(parent) = d.parent() else {
            continue;
        };
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let cur = std::fs::read_to_string(d.join(f)).unwrap_or_default();
            if cur.trim().is_empty() {
                let p = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                write(d, f, p.trim())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn pairs(v: Vec<Setting>) -> Vec<(String, String)> {
        v.into_iter().map(|s| (s.file, s.value)).collect()
    }

    #[test]
    fn memory_cpu_pids() {
        let r = res(r#"{"memory":{"limit":67108864,"swap":67108864},
            "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0"},
            "pids":{"limit":100}}"#);
        let p = pairs(settings(&r, false));
        let want = [
            ("memory.limit_in_bytes", "67108864"),
            ("memory.memsw.limit_in_bytes", "67108864"),
            ("cpu.shares", "512"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "50000"),
            ("cpuset.cpus", "0"),
            ("pids.max", "100"),
        ];
        assert_eq!(
            p,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
    }

    #[test]
    fn devices_only_at_create() {
        let r = res(r#"{"devices":[{"allow":false,"access":"rwm"},
            {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
            {"allow":true,"type":"c","major":136,"access":"rwm"}]}"#);
        let p = pairs(settings(&r, false));
        assert_eq!(p[0], ("devices.deny".into(), "a".into()));
        assert_eq!(p[1], ("devices.allow".into(), "c 1:3 rwm".into()));
        assert_eq!(p[2], ("devices.allow".into(), "c 136:* rwm".into()));
        assert!(settings(&r, true).is_empty());
    }

    #[test]
    fn unlimited_pids() {
        let r = res(r#"{"pids":{"limit":-1}}"#);
        assert_eq!(
            pairs(settings(&r, true)),
            [("pids.max".into(), "max".into())]
        );
    }
}
