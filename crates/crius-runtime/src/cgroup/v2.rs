//! cgroup v2: the files a spec's resources become in the unified tree.
//! Device rules have no file there: they become an eBPF program on the
//! container's cgroup (`devices.rs`, `bpf.rs`).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

/// runc's conversion of v1 cpu shares (2..262144) to a v2 weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262144) - 2) * 9999 / 262142
}

/// The v2 files for `res`, in order.
pub fn settings(res: &LinuxResources) -> Result<Vec<(String, String)>> {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut set = |f: &str, val: String| v.push((f.to_string(), val));
    if let Some(m) = res.memory() {
        let limit = m.limit();
        if let Some(l) = limit {
            set(
                "memory.max",
                if l < 0 { "max".into() } else { l.to_string() },
            );
        }
        if let Some(s) = m.swap() {
            // v1's memsw is memory+swap; v2's swap.max is swap alone.
            let val = match (s, limit) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l >= 0 => (s - l).max(0).to_string(),
                (s, _) => s.to_string(),
            };
            set("memory.swap.max", val);
        }
        if let Some(r) = m.reservation() {
            set(
                "memory.low",
                if r < 0 { "max".into() } else { r.to_string() },
            );
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares().filter(|s| *s > 0) {
            set("cpu.weight", shares_to_weight(s).to_string());
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = match c.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".into(),
            };
            let p = c.period().filter(|p| *p > 0).unwrap_or(100_000);
            set("cpu.max", format!("{q} {p}"));
        }
        if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            set("cpuset.cpus", cpus.clone());
        }
        if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            set("cpuset.mems", mems.clone());
        }
    }
    if let Some(p) = res.pids() {
        let l = p.limit();
        set("pids.max", if l > 0 { l.to_string() } else { "max".into() });
    }
    if let Some(h) = res.hugepage_limits() {
        for l in h {
            set(
                &format!("hugetlb.{}.max", l.page_size()),
                l.limit().to_string(),
            );
        }
    }
    if let Some(b) = res.block_io() {
        if let Some(w) = b.weight() {
            // blkio 10..1000 to io 1..10000.
            let w = 1 + (u64::from(w).clamp(10, 1000) - 10) * 9999 / 990;
            set("io.weight", w.to_string());
        }
    }
    if let Some(u) = res.unified() {
        let mut keys: Vec<_> = u.iter().collect();
        keys.sort();
        for (k, val) in keys {
            if k.contains('/') || k.starts_with('.') {
                return Err(Error::Spec(format!(
                    "unified key {k:?} is not a cgroup file"
                )));
            }
            set(k, val.clone());
        }
    }
    Ok(v)
}

/// Turns on, in `dir`'s parents, every controller they offer, so the leaf can use them.
pub fn enable_controllers(dir: &Path) {
    let mut ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
    ancestors.reverse();
    for a in ancestors {
        let Ok(avail) = std::fs::read_to_string(a.join("cgroup.controllers")) else {
            continue;
        };
        for c in avail.split_whitespace() {
            let _ = super::write(a, "cgroup.subtree_control", &format!("+{c}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
    }

    #[test]
    fn memory_cpu_pids() {
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":1000,"swap":3000},"cpu":{"shares":1024,"quota":50000,"period":100000},"pids":{"limit":0}}"#,
        )
        .unwrap();
        let v = settings(&r).unwrap();
        let want = [
            ("memory.max", "1000"),
            ("memory.swap.max", "2000"),
            ("cpu.weight", "39"),
            ("cpu.max", "50000 100000"),
            ("pids.max", "max"),
        ];
        assert_eq!(
            v,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
    }
}
