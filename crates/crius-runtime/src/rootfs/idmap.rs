//! Id-mapped bind mounts: a spec mount with `uidMappings`/`gidMappings` (runtime-spec
//! 1.2, as runc 1.2+ reads them) shows its files with their owners shifted by those
//! mappings, so a pod in a user namespace of its own owns what host root made for it.
//!
//! The kernel lets only a holder of CAP_SYS_ADMIN over a file system's owner id-map one
//! of its mounts, and a container's init in its own user namespace holds none over the
//! host's. So the runtime makes each such mount in the host's user namespace before it
//! forks anything: a detached copy of the source (`open_tree`), id-mapped through a user
//! namespace that holds the mount's mappings (`mount_setattr` with MOUNT_ATTR_IDMAP).
//! The init inherits the descriptor and moves the mount onto its target (`move_mount`)
//! once that is resolved inside the rootfs, as it does for every other mount.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;
use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};

use crate::error::{Error, Result};
use crate::sync;

/// One id mapping as (container id, host id, size).
type Maps = Vec<(u32, u32, u32)>;

/// The id-mapped mounts of a spec, made in advance; indexed like `spec.mounts()`.
#[derive(Debug, Default)]
pub struct IdmappedMounts(Vec<Option<OwnedFd>>);

impl IdmappedMounts {
    /// Makes every mount of `spec` that asks to be id-mapped, with its source taken
    /// relative to `bundle` when relative. Runs in the runtime, before any fork.
    pub fn prepare(spec: &Spec, bundle: &Path) -> Result<IdmappedMounts> {
        let mut namespaces: Vec<((Maps, Maps), OwnedFd)> = Vec::new();
        let mut out = Vec::new();
        for m in spec.mounts().iter().flatten() {
            let Some(recursive_idmap) = wants_idmap(m)? else {
                out.push(None);
                continue;
            };
            let dest = m.destination().to_string_lossy().into_owned();
            let maps = (
                maps(m.uid_mappings().as_deref()),
                maps(m.gid_mappings().as_deref()),
            );
            let userns = match namespaces.iter().position(|(k, _)| *k == maps) {
                Some(i) => &namespaces[i].1,
                None => {
                    let fd = userns_with(&maps.0, &maps.1).map_err(|reason| Error::Mount {
                        dest: dest.clone(),
                        reason,
                    })?;
                    namespaces.push((maps, fd));
                    &namespaces[namespaces.len() - 1].1
                }
            };
            let src = super::bind_source(m, bundle, &dest)?;
            let recursive_bind = m.options().iter().flatten().any(|o| o == "rbind");
            let tree = open_tree(&src, recursive_bind).map_err(|e| Error::Mount {
                dest: dest.clone(),
                reason: format!("open_tree {}: {e}", src.display()),
            })?;
            let flags = if recursive_idmap {
                libc::AT_RECURSIVE
            } else {
                0
            };
            super::mount_setattr_userns(&tree, flags, libc::MOUNT_ATTR_IDMAP, userns).map_err(
                |e| Error::Mount {
                    dest: dest.clone(),
                    reason: format!("id-map {}: {e}", src.display()),
                },
            )?;
            out.push(Some(tree));
        }
        Ok(IdmappedMounts(out))
    }

    /// The id-mapped mount made for the spec's mount number `i`, if it asked for one.
    pub fn get(&self, i: usize) -> Option<&OwnedFd> {
        self.0.get(i).and_then(Option::as_ref)
    }
}

/// Whether mount `m` is to be id-mapped, and recursively ("ridmap"); an error for a
/// request the runtime cannot meet (not a bind, mappings missing on one side).
pub fn wants_idmap(m: &Mount) -> Result<Option<bool>> {
    let opts = m.options().clone().unwrap_or_default();
    let uids = m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty());
    let gids = m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty());
    let asked = opts.iter().any(|o| o == "idmap" || o == "ridmap");
    if !uids && !gids && !asked {
        return Ok(None);
    }
    let dest = m.destination().to_string_lossy().into_owned();
    if !(uids && gids) {
        return Err(Error::Mount {
            dest,
            reason: "an id-mapped mount needs both uidMappings and gidMappings".into(),
        });
    }
    let bind =
        m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
    if !bind {
        return Err(Error::Mount {
            dest,
            reason: "only bind mounts can be id-mapped".into(),
        });
    }
    Ok(Some(opts.iter().any(|o| o == "ridmap")))
}

fn maps(m: Option<&[LinuxIdMapping]>) -> Maps {
    m.unwrap_or_default()
        .iter()
        .map(|m| (m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A detached copy of the mount (tree, with `recursive`) at `src`.
fn open_tree(src: &Path, recursive: bool) -> std::result::Result<OwnedFd, nix::errno::Errno> {
    let c = std::ffi::CString::new(src.as_os_str().as_encoded_bytes())
        .map_err(|_| nix::errno::Errno::EINVAL)?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: open_tree with a NUL-terminated path returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the kernel returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Moves the detached mount `tree` onto the directory or file `target` (an O_PATH
/// descriptor inside the rootfs).
pub fn move_onto(tree: &OwnedFd, target: &OwnedFd) -> std::result::Result<(), nix::errno::Errno> {
    // SAFETY: both descriptors are open; "" with the EMPTY_PATH flags names them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// A user namespace holding these mappings, kept by its descriptor: a child unshares
/// one, the runtime writes its maps and opens it, and the child exits.
fn userns_with(uids: &Maps, gids: &Maps) -> std::result::Result<OwnedFd, String> {
    let (parent, child) = sync::pair().map_err(|e| e.to_string())?;
    // SAFETY: the runtime is single-threaded; the child only unshares, talks on its
    // socket and exits.
    let pid = match unsafe { nix::unistd::fork() } {
        Err(e) => return Err(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(parent);
            let code = match nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
                Ok(()) => {
                    let _ = child.send("userns");
                    // Until the runtime has opened the namespace and closes its end.
                    let _ = child.recv();
                    0
                }
                Err(e) => {
                    let _ = child.send(&format!("err:unshare user namespace: {e}"));
                    1
                }
            };
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child: pid }) => pid,
    };
    drop(child);
    let result = (|| {
        parent.expect("userns").map_err(|e| e.to_string())?;
        for (file, m) in [("uid_map", uids), ("gid_map", gids)] {
            let text: String = m.iter().map(|(c, h, n)| format!("{c} {h} {n}\n")).collect();
            std::fs::write(format!("/proc/{pid}/{file}"), &text).map_err(|e| {
                format!(
                    "the kernel refused the mount's {file} {:?}: {e}",
                    text.trim()
                )
            })?;
        }
        std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map(OwnedFd::from)
            .map_err(|e| format!("open the mount's user namespace: {e}"))
    })();
    drop(parent);
    let _ = waitpid(pid, None);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxIdMappingBuilder, MountBuilder};

    fn mount(typ: &str, opts: &[&str], uids: bool, gids: bool) -> Mount {
        let map = vec![LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(100000u32)
            .size(65536u32)
            .build()
            .unwrap()];
        let mut m = MountBuilder::default()
            .destination("/data")
            .typ(typ)
            .source("/tmp")
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap();
        if uids {
            m.set_uid_mappings(Some(map.clone()));
        }
        if gids {
            m.set_gid_mappings(Some(map));
        }
        m
    }

    #[test]
    fn which_mounts_are_id_mapped() {
        assert_eq!(
            wants_idmap(&mount("bind", &["rbind"], false, false)).unwrap(),
            None
        );
        assert_eq!(
            wants_idmap(&mount("bind", &["rbind"], true, true)).unwrap(),
            Some(false)
        );
        assert_eq!(
            wants_idmap(&mount("none", &["rbind", "ridmap"], true, true)).unwrap(),
            Some(true)
        );
        for (m, why) in [
            (mount("bind", &["rbind"], true, false), "both"),
            (mount("bind", &["idmap"], false, false), "both"),
            (mount("tmpfs", &[], true, true), "only bind mounts"),
        ] {
            let e = wants_idmap(&m).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
