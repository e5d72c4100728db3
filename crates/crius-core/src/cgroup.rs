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
        CgroupDriver::Cgroupfs => (
            format!("{}/crius/pod-{pod_id}", root.trim_end_matches('/')),
            true,
        ),
        // systemd: containers become scopes in this slice; the slice is systemd's to remove.
        CgroupDriver::Systemd => ("system.slice".to_string(), false),
    }
}

/// Removes a cgroupfs pod cgroup from every hierarchy (v1 controllers and the v2 mount).
/// Best effort: a dir that is gone is fine; one that is busy is logged by the caller.
pub fn remove_cgroupfs(path: &str) -> Result<(), String> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(());
    }
    let mut errors = Vec::new();
    let mut hierarchies = vec![Path::new(CGROUP_MOUNT).to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(CGROUP_MOUNT) {
        hierarchies.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for h in hierarchies {
        let dir = h.join(rel);
        if !dir.is_dir() {
            continue;
        }
        debug!(dir = %dir.display(), "remove pod cgroup");
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
}
