//! The IPC and UTS namespaces of a pod without a pause container (`drop_infra_ctr`), made
//! and pinned by crius as CRI-O's pinns does: each is a bind mount of the namespace file
//! onto a file under the pod's run dir, so it lives with no process in it until unpinned.
//! The network namespace is pinned the same way, by the same call of crius-net
//! (`pin_thread_namespace`).
//!
//! `unshare` of these namespaces changes only the calling thread, so it happens on a
//! short-lived thread of its own that exits once the pins are made: no other code ever
//! runs in the new namespaces by accident.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sched::{unshare, CloneFlags};
use tracing::{debug, warn};

use crate::error::{Error, Result};

/// What a pod without a pause container gets pinned (besides its netns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodNamespaces {
    /// The pinned IPC namespace; `None` with host IPC.
    pub ipc: Option<PathBuf>,
    /// The pinned UTS namespace; `None` with host network.
    pub uts: Option<PathBuf>,
}

/// Where a pod's pins live: `<pod run dir>/ns`.
fn pin_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("ns")
}

/// Makes new IPC (with `ipc`) and UTS (with `hostname`; an empty name leaves the kernel's
/// default) namespaces and pins them under `run_dir`, with the pod's IPC sysctls set in
/// the new IPC namespace (what the pause container's runtime would have done). Nothing is
/// left behind on failure.
pub(crate) fn pin(
    run_dir: &Path,
    ipc: bool,
    hostname: Option<&str>,
    sysctls: &HashMap<String, String>,
) -> Result<PodNamespaces> {
    let dir = pin_dir(run_dir);
    let wanted = PodNamespaces {
        ipc: ipc.then(|| dir.join("ipc")),
        uts: hostname.map(|_| dir.join("uts")),
    };
    let pins: Vec<(PathBuf, &str, CloneFlags)> = [
        (wanted.ipc.clone(), "ipc", CloneFlags::CLONE_NEWIPC),
        (wanted.uts.clone(), "uts", CloneFlags::CLONE_NEWUTS),
    ]
    .into_iter()
    .filter_map(|(path, name, flag)| path.map(|p| (p, name, flag)))
    .collect();
    if pins.is_empty() {
        return Ok(wanted);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create namespace pin dir", &dir, e))?;
    let started = Instant::now();
    let mut created = PodNamespaces::default();
    let ipc_sysctls: Vec<(&String, &String)> = sysctls
        .iter()
        .filter(|(k, _)| ipc && !k.starts_with("net."))
        .collect();
    let made = make_pins(&pins, hostname.unwrap_or(""), &ipc_sysctls, &mut created);
    debug!(
        dir = %dir.display(),
        ok = made.is_ok(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "unshare(CLONE_NEWIPC|CLONE_NEWUTS) + bind mounts"
    );
    if let Err(e) = made {
        if let Err(cleanup) = unpin(&created) {
            warn!(error = %cleanup, "cleaning up half-made namespace pins");
        }
        return Err(e);
    }
    Ok(wanted)
}

/// Creates the pin files (noting each in `created`), then unshares and bind mounts on a
/// thread of its own.
fn make_pins(
    pins: &[(PathBuf, &str, CloneFlags)],
    hostname: &str,
    sysctls: &[(&String, &String)],
    created: &mut PodNamespaces,
) -> Result<()> {
    for (path, name, _) in pins {
        // A pin file already there is another pod's, or a leftover: never share it.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(path)
            .map_err(|e| Error::io("create namespace pin file", path, e))?;
        match *name {
            "ipc" => created.ipc = Some(path.clone()),
            _ => created.uts = Some(path.clone()),
        }
    }
    let flags = pins
        .iter()
        .fold(CloneFlags::empty(), |acc, (_, _, f)| acc | *f);
    let first = pins[0].0.clone();
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("crius-pod-ns".to_string())
            .spawn_scoped(scope, || -> Result<()> {
                unshare(flags)
                    .map_err(|e| Error::io("unshare the pod's namespaces", &first, e.into()))?;
                if flags.contains(CloneFlags::CLONE_NEWUTS) && !hostname.is_empty() {
                    nix::unistd::sethostname(hostname)
                        .map_err(|e| Error::io("set the pod's hostname", hostname, e.into()))?;
                }
                // Names were checked at RunPodSandbox (namespaced, no `/` or `..`).
                for (name, value) in sysctls {
                    write_sysctl(name, value)?;
                }
                for (path, name, _) in pins {
                    crius_net::pin_thread_namespace(name, path)
                        .map_err(|e| Error::io("pin namespace (bind mount)", path, e.into()))?;
                }
                Ok(())
            })
            .map_err(|e| Error::io("spawn namespace thread", &first, e))?
            .join()
            .unwrap_or_else(|_| {
                Err(Error::Internal(format!(
                    "namespace thread for {} panicked",
                    first.display()
                )))
            })
    })
}

/// Writes one sysctl as the calling thread's namespaces see it.
fn write_sysctl(name: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(name.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| Error::io("set pod sysctl", &path, e))
}

/// Sets the pod's `net.*` sysctls in its pinned network namespace.
pub(crate) fn set_net_sysctls(netns: &Path, sysctls: &HashMap<String, String>) -> Result<()> {
    let net: Vec<(&String, &String)> = sysctls
        .iter()
        .filter(|(k, _)| k.starts_with("net."))
        .collect();
    if net.is_empty() {
        return Ok(());
    }
    crius_net::in_netns(netns, || {
        net.iter()
            .try_for_each(|(name, value)| write_sysctl(name, value))
    })?
}

/// Unmounts and unlinks the pins; what is already gone is fine.
pub(crate) fn unpin(pins: &PodNamespaces) -> Result<()> {
    for path in [&pins.ipc, &pins.uts].into_iter().flatten() {
        // A pin is an nsfs bind mount like a netns pin, and goes the same way.
        crius_net::NetNs::from_path(path.clone())
            .remove()
            .map_err(Error::from)?;
    }
    Ok(())
}

/// Unpins whatever a pod's run dir holds (after a crash or for a pod without a record).
pub(crate) fn unpin_all_under(run_dir: &Path) -> Result<()> {
    let dir = pin_dir(run_dir);
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                crius_net::NetNs::from_path(e.path())
                    .remove()
                    .map_err(Error::from)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("list namespace pins", &dir, e)),
    }
}

/// Whether every pin still holds a namespace (false after a reboot emptied the mounts).
pub(crate) fn all_pinned(paths: &[&Option<PathBuf>]) -> bool {
    paths
        .iter()
        .filter_map(|p| p.as_ref())
        .all(|p| crius_net::NetNs::from_path(p.clone()).is_pinned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::fs::MetadataExt;

    fn ns_inode(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().st_ino()
    }

    /// Root only: makes real namespaces.
    #[test]
    fn pins_new_ipc_and_uts_namespaces_with_the_hostname_and_unpins_them() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pins = pin(
            dir.path(),
            true,
            Some("pinned-host"),
            &HashMap::from([("kernel.msgmax".to_string(), "4242".to_string())]),
        )
        .unwrap();
        let (ipc, uts) = (pins.ipc.clone().unwrap(), pins.uts.clone().unwrap());
        assert!(all_pinned(&[&pins.ipc, &pins.uts]));
        assert_ne!(ns_inode(&ipc), ns_inode(Path::new("/proc/self/ns/ipc")));
        assert_ne!(ns_inode(&uts), ns_inode(Path::new("/proc/self/ns/uts")));
        let out = std::process::Command::new("nsenter")
            .arg(format!("--uts={}", uts.display()))
            .arg("hostname")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pinned-host");
        let out = std::process::Command::new("nsenter")
            .arg(format!("--ipc={}", ipc.display()))
            .args(["cat", "/proc/sys/kernel/msgmax"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4242");
        // A second pod can never take the same pins.
        assert!(pin(dir.path(), true, None, &HashMap::new()).is_err());
        assert!(
            all_pinned(&[&pins.ipc, &pins.uts]),
            "a failed pin undid another's"
        );
        unpin(&pins).unwrap();
        assert!(!ipc.exists() && !uts.exists());
        unpin(&pins).unwrap();
    }

    #[test]
    fn host_namespaces_pin_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            pin(dir.path(), false, None, &HashMap::new()).unwrap(),
            PodNamespaces::default()
        );
        assert!(!dir.path().join("ns").exists());
    }
}
