//! Pod cgroups. The OCI runtime makes each container's cgroup (and any missing parents);
//! crius only decides where a pod's cgroup is and removes the ones it made up itself.

use std::path::Path;

use tracing::debug;

use crate::config::CgroupDriver;

/// Where the cgroup hierarchies are mounted.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// The pod's cgroup: the parent the kubelet gives, or one crius makes for the pod under
/// `root` (`crius.runtime.cgroup_root`, which bounds every pod's cgroup). Returns the path
/// (or slice) and whether crius owns it.
pub fn pod_cgroup(
    driver: CgroupDriver,
    root: &str,
    requested: &str,
    pod_id: &str,
) -> (String, bool) {
    if !requested.is_empty() {
        return (requested.to_string(), false);
    }
    match driver {
        CgroupDriver::Cgroupfs => (format!("{}/{OWNED_PREFIX}{pod_id}", owned_dir(root)), true),
        // systemd: containers become scopes in this slice; the slice is systemd's to remove.
        CgroupDriver::Systemd => ("system.slice".to_string(), false),
    }
}

/// Where crius makes the cgroups of pods the kubelet gave no parent: each is
/// `<this>/pod-<id>`.
fn owned_dir(root: &str) -> String {
    format!("{}/crius", root.trim_end_matches('/'))
}

/// The name of a pod's own cgroup is this and the pod id.
const OWNED_PREFIX: &str = "pod-";

/// Every hierarchy a cgroupfs path may exist in: the mount itself (cgroup v2) and each
/// dir under it (v1 controllers).
fn hierarchies() -> Vec<std::path::PathBuf> {
    let mut out = vec![Path::new(CGROUP_MOUNT).to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(CGROUP_MOUNT) {
        out.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    out
}

/// The pod cgroups crius made under `root` (cgroupfs) that exist in any hierarchy, as
/// (pod id, path): restore removes those whose pod has no record.
pub fn owned_pod_cgroups(root: &str) -> Vec<(String, String)> {
    let dir = owned_dir(root);
    let mut found = std::collections::BTreeMap::new();
    for h in hierarchies() {
        let Ok(entries) = std::fs::read_dir(h.join(dir.trim_start_matches('/'))) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix(OWNED_PREFIX).filter(|id| !id.is_empty()) {
                if entry.path().is_dir() {
                    found.insert(id.to_string(), format!("{dir}/{name}"));
                }
            }
        }
    }
    found.into_iter().collect()
}

/// Removes a cgroupfs pod cgroup from every hierarchy (v1 controllers and the v2 mount),
/// with the empty cgroups below it: those of its containers that a runtime cut short
/// before it could delete them (the kernel refuses to remove one that holds a process).
/// Best effort: a dir that is gone is fine; one that is busy is logged by the caller.
pub fn remove_cgroupfs(path: &str) -> Result<(), String> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(());
    }
    let mut errors = Vec::new();
    for h in hierarchies() {
        let dir = h.join(rel);
        if !dir.is_dir() {
            continue;
        }
        debug!(dir = %dir.display(), "remove pod cgroup");
        remove_below(&dir);
        if let Err(e) = std::fs::remove_dir(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("{}: {e}", dir.display()));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Removes the empty cgroups below `dir`, deepest first.
fn remove_below(dir: &std::path::Path) {
    let children = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for child in children.filter(|c| c.file_type().is_ok_and(|t| t.is_dir())) {
        remove_below(&child.path());
        let _ = std::fs::remove_dir(child.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cgroup_uses_the_kubelet_parent_or_makes_one() {
        assert_eq!(
            pod_cgroup(CgroupDriver::Cgroupfs, "/", "/kubepods/pod1", "abc"),
            ("/kubepods/pod1".to_string(), false)
        );
        assert_eq!(
            pod_cgroup(CgroupDriver::Cgroupfs, "/", "", "abc"),
            ("/crius/pod-abc".to_string(), true)
        );
        assert_eq!(
            pod_cgroup(CgroupDriver::Cgroupfs, "/e2e-1/", "", "abc"),
            ("/e2e-1/crius/pod-abc".to_string(), true)
        );
        assert_eq!(
            pod_cgroup(CgroupDriver::Systemd, "/", "", "abc"),
            ("system.slice".to_string(), false)
        );
        assert_eq!(
            pod_cgroup(
                CgroupDriver::Systemd,
                "/",
                "kubepods-besteffort.slice",
                "abc"
            ),
            ("kubepods-besteffort.slice".to_string(), false)
        );
    }

    /// Restore finds the cgroups crius made for pods, in whichever hierarchies they
    /// exist, and removes them.
    #[test]
    fn owned_pod_cgroups_are_found_and_removed() {
        let hierarchy = Path::new(CGROUP_MOUNT).join("pids");
        if !hierarchy.join("cgroup.procs").exists() {
            eprintln!(
                "skipped: no cgroup v1 pids hierarchy at {}",
                hierarchy.display()
            );
            return;
        }
        let root = format!("/crius-unit-{}", std::process::id());
        let (path, owned) = pod_cgroup(CgroupDriver::Cgroupfs, &root, "", "abc");
        assert!(owned);
        std::fs::create_dir_all(hierarchy.join(path.trim_start_matches('/'))).unwrap();
        // Not a pod cgroup of crius's: left alone.
        std::fs::create_dir_all(hierarchy.join(format!("{}/crius/other", &root[1..]))).unwrap();
        let found = owned_pod_cgroups(&root);
        assert_eq!(found, vec![("abc".to_string(), path.clone())]);
        remove_cgroupfs(&path).unwrap();
        assert!(owned_pod_cgroups(&root).is_empty());
        remove_cgroupfs(&format!("{root}/crius/other")).unwrap();
        remove_cgroupfs(&format!("{root}/crius")).unwrap();
        remove_cgroupfs(&root).unwrap();
        assert!(!hierarchy.join(&root[1..]).exists());
    }
}
