//! Network namespaces pinned by a bind mount, and running code inside one.
//!
//! `unshare(CLONE_NEWNET)` and `setns` change only the calling thread. In a multi-threaded
//! (tokio) process that thread could go on to run unrelated tasks in the wrong namespace,
//! so every namespace switch here happens on a dedicated short-lived thread that exits
//! right after: the rest of the process never leaves the host namespace.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};
use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::link;

/// A network namespace known by a path: a pin made by [`NetNs::create`], or any nsfs file
/// such as `/proc/<pid>/ns/net`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetNs {
    path: PathBuf,
}

impl NetNs {
    /// New network namespace pinned by a bind mount at pin_dir/name, loopback up (netlink).
    ///
    /// The pin outlives the process, so the namespace stays alive with no process in it
    /// until [`NetNs::remove`]. Fails with [`Error::NetNsExists`] if the pin file is already
    /// there, rather than silently sharing a namespace between two pods.
    pub fn create(pin_dir: &Path, name: &str) -> Result<NetNs> {
        let path = pin_dir.join(name);
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(Error::NetNsCreate {
                path,
                op: "validate name",
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "name must be one path component",
                ),
            });
        }
        std::fs::create_dir_all(pin_dir).map_err(|source| Error::NetNsCreate {
            path: path.clone(),
            op: "create pin dir",
            source,
        })?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::NetNsExists { path });
            }
            Err(source) => {
                return Err(Error::NetNsCreate {
                    path,
                    op: "create pin file",
                    source,
                });
            }
        }
        crius_fault::point!("netns.pin_file_made");

        let started = Instant::now();
        let thread_path = path.clone();
        let outcome = std::thread::Builder::new()
            .name("crius-netns-new".to_string())
            .spawn(move || create_in_thread(&thread_path))
            .map_err(|source| Error::NetNsCreate {
                path: path.clone(),
                op: "spawn thread",
                source,
            })
            .and_then(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(Error::NetNsThreadPanicked { path: path.clone() }))
            });
        debug!(
            path = %path.display(),
            ok = outcome.is_ok(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "unshare(CLONE_NEWNET) + lo up + bind mount"
        );
        let ns = NetNs { path };
        if let Err(err) = outcome {
            // Leave nothing behind: a half-made pin would make the next create fail.
            if let Err(cleanup) = ns.remove() {
                tracing::warn!(error = %cleanup, "cleaning up failed network namespace pin");
            }
            return Err(err);
        }
        info!(path = %ns.path.display(), "network namespace created");
        Ok(ns)
    }

    /// Refers to an existing namespace file (a pin made earlier, or `/proc/<pid>/ns/net`),
    /// e.g. when the daemon restores its pods after a restart.
    pub fn from_path(path: PathBuf) -> NetNs {
        NetNs { path }
    }

    /// The path handed to CNI plugins as CNI_NETNS and to the OCI spec.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path currently refers to a live network namespace (an nsfs mount), so
    /// restore and garbage collection can tell a pin from a stale empty file.
    pub fn is_pinned(&self) -> bool {
        is_nsfs(&self.path)
    }

    /// The pins in `pin_dir` (live or stale), so restore after a restart can remove the
    /// ones no pod owns. An absent dir has none.
    pub fn list(pin_dir: &Path) -> Result<Vec<NetNs>> {
        let entries = match std::fs::read_dir(pin_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::NetNsEnter {
                    path: pin_dir.to_path_buf(),
                    op: "list pin dir",
                    source,
                })
            }
        };
        let mut pins: Vec<NetNs> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| NetNs { path: e.path() })
            .collect();
        pins.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(pins)
    }

    /// Unmounts and unlinks the pin; succeeds if already gone.
    pub fn remove(&self) -> Result<()> {
        let started = Instant::now();
        // A pin may be stacked if something bound it twice: unmount until nothing is left.
        for _ in 0..16 {
            match umount2(&self.path, MntFlags::MNT_DETACH) {
                Ok(()) => continue,
                Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
                Err(e) => {
                    return Err(Error::NetNsRemove {
                        path: self.path.clone(),
                        op: "umount",
                        source: e.into(),
                    })
                }
            }
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::NetNsRemove {
                    path: self.path.clone(),
                    op: "unlink",
                    source,
                })
            }
        }
        debug!(
            path = %self.path.display(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "umount2(MNT_DETACH) + unlink network namespace pin"
        );
        Ok(())
    }

    /// Runs `f` on a thread inside this namespace; see [`in_netns`].
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        in_netns(&self.path, f)
    }
}

/// Whether `path` is an nsfs file (a namespace pin or a /proc/<pid>/ns entry).
pub(crate) fn is_nsfs(path: &Path) -> bool {
    statfs(path)
        .map(|s| s.filesystem_type() == NSFS_MAGIC)
        .unwrap_or(false)
}

/// Pins the calling thread's namespace `kind` (`net`, `ipc`, `uts`, ...) by bind-mounting
/// its namespace file onto the existing file `path`: the namespace then lives with no
/// process in it until `path` is unmounted. The thread's own file, not the process's: an
/// `unshare` changes only the thread that made it.
pub fn pin_thread_namespace(kind: &str, path: &Path) -> nix::Result<()> {
    let source = format!("/proc/self/task/{}/ns/{kind}", nix::unistd::gettid());
    mount(
        Some(source.as_str()),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
}

/// Body of the short-lived thread that makes the namespace: it leaves the host namespace
/// and dies with the new one, so no other code ever runs there by accident.
fn create_in_thread(path: &Path) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::NetNsCreate {
        path: path.to_path_buf(),
        op: "unshare(CLONE_NEWNET)",
        source: e.into(),
    })?;
    link::set_link_up("lo").map_err(|reason| Error::Loopback {
        path: path.to_path_buf(),
        reason,
    })?;
    pin_thread_namespace("net", path).map_err(|e| Error::NetNsCreate {
        path: path.to_path_buf(),
        op: "bind mount",
        source: e.into(),
    })
}

/// Runs `f` in the network namespace at `path` and returns its value.
///
/// `f` runs on a new thread that joins the namespace with `setns` and exits when `f`
/// returns, so the caller's threads (tokio workers included) never change namespace.
/// Sockets made inside `f` stay bound to that namespace after it returns. A panic in `f`
/// is passed on to the caller.
pub fn in_netns<T, F>(path: &Path, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let ns_file = File::open(path).map_err(|source| Error::NetNsEnter {
        path: path.to_path_buf(),
        op: "open",
        source,
    })?;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("crius-netns-run".to_string())
            .spawn_scoped(scope, move || -> Result<T> {
                setns(&ns_file, CloneFlags::CLONE_NEWNET).map_err(|e| Error::NetNsEnter {
                    path: path.to_path_buf(),
                    op: "setns(CLONE_NEWNET)",
                    source: e.into(),
                })?;
                debug!(path = %path.display(), "setns(CLONE_NEWNET) on a dedicated thread");
                Ok(f())
            })
            .map_err(|source| Error::NetNsEnter {
                path: path.to_path_buf(),
                op: "spawn thread",
                source,
            })?;
        match handle.join() {
            Ok(outcome) => outcome,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
