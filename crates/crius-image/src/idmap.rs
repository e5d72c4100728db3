//! Id-mapped mounts: the layers of a pod in a user namespace of its own are seen through
//! mounts that shift their owners by the pod's mappings, so nothing of the image is ever
//! chowned (a file of host uid 0 appears as the pod's root).
//!
//! mount_setattr(2) takes the mapping as a user namespace fd; one is made for the call by
//! a short-lived child that unshares its user namespace and waits while its maps are
//! written.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::Error;

/// One line of a uid_map or gid_map: `size` ids from `container_id` in the namespace are
/// `host_id` onwards outside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdMap {
    /// First id inside the user namespace.
    pub container_id: u32,
    /// First id on the host.
    pub host_id: u32,
    /// How many ids.
    pub size: u32,
}

/// A pod's uid and gid mappings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMappings {
    /// uid_map lines.
    pub uids: Vec<IdMap>,
    /// gid_map lines.
    pub gids: Vec<IdMap>,
}

impl IdMappings {
    /// The host uid and gid that container root maps to (0 when unmapped; validation
    /// refuses mappings without container root).
    pub fn root(&self) -> (u32, u32) {
        let host = |maps: &[IdMap]| {
            maps.iter()
                .find(|m| m.container_id == 0)
                .map_or(0, |m| m.host_id)
        };
        (host(&self.uids), host(&self.gids))
    }
}

fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

fn idmap_err(path: &Path, e: io::Error) -> Error {
    Error::Mount {
        op: "id-map mount",
        target: path.to_path_buf(),
        source: e,
    }
}

/// A user namespace with `maps`, as an fd (it lives as long as the fd or a mount that
/// uses it).
pub fn user_namespace(maps: &IdMappings) -> io::Result<OwnedFd> {
    let (mut ready, mut go) = ([0; 2], [0; 2]);
    // SAFETY: pipe2 fills the two-int arrays on success.
    if unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; the fds of `ready` are ours and closed on this error.
    if unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing our own fds once.
        unsafe {
            libc::close(ready[0]);
            libc::close(ready[1]);
        }
        return Err(e);
    }
    // SAFETY: each fd from pipe2 is owned here exactly once.
    let (ready_r, ready_w, go_r, go_w) = unsafe {
        (
            OwnedFd::from_raw_fd(ready[0]),
            OwnedFd::from_raw_fd(ready[1]),
            OwnedFd::from_raw_fd(go[0]),
            OwnedFd::from_raw_fd(go[1]),
        )
    };
    // SAFETY: the child calls only unshare, write, read and _exit (async-signal-safe) on
    // fds and memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: async-signal-safe syscalls, then _exit; nothing returns.
        unsafe {
            // Its copy of the write end would keep its own read from ever ending.
            libc::close(go_w.as_raw_fd());
            let ok: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                1
            } else {
                0
            };
            libc::write(ready_w.as_raw_fd(), (&ok as *const u8).cast(), 1);
            let mut b = 0u8;
            libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(go_r);
    let result = (|| {
        let mut ok = 0u8;
        // SAFETY: reads one byte into a local from our pipe.
        let n = unsafe { libc::read(ready_r.as_raw_fd(), (&mut ok as *mut u8).cast(), 1) };
        if n != 1 || ok != 1 {
            return Err(io::Error::other(
                "the helper child could not unshare its user namespace",
            ));
        }
        let proc = format!("/proc/{pid}");
        fs::write(format!("{proc}/uid_map"), map_text(&maps.uids))?;
        fs::write(format!("{proc}/gid_map"), map_text(&maps.gids))?;
        Ok(OwnedFd::from(fs::File::open(format!("{proc}/ns/user"))?))
    })();
    // Closing `go` lets the child exit; reap it either way.
    drop(go_w);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; status is a local.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    result
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Attaches at `target` (an existing dir) a copy of the tree at `source` whose owners
/// are shifted by the user namespace `userns`.
pub fn mount_idmapped(source: &Path, target: &Path, userns: &OwnedFd) -> Result<(), Error> {
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| idmap_err(p, io::Error::from(io::ErrorKind::InvalidInput)))
    };
    let (src, dst) = (c(source)?, c(target)?);
    let empty = c(Path::new(""))?;
    // SAFETY: src is NUL-terminated; the result is checked and owned below.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(idmap_err(source, io::Error::last_os_error()));
    }
    // SAFETY: open_tree returned a new fd that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as libc::c_int) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: tree is a detached mount fd, attr a valid struct of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(idmap_err(source, io::Error::last_os_error()));
    }
    // SAFETY: tree is a detached mount; both paths are NUL-terminated.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(idmap_err(target, io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_the_host_id_of_container_zero() {
        let m = |c, h, s| IdMap {
            container_id: c,
            host_id: h,
            size: s,
        };
        let maps = IdMappings {
            uids: vec![m(1000, 5000, 10), m(0, 65536, 1000)],
            gids: vec![m(0, 70000, 65536)],
        };
        assert_eq!(maps.root(), (65536, 70000));
        assert_eq!(map_text(&maps.uids), "1000 5000 10\n0 65536 1000\n");
    }

    /// Needs root (a user namespace with maps written by its parent, and mounts).
    #[test]
    fn an_idmapped_mount_shows_host_root_as_the_mapped_id() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&dst).unwrap();
        fs::write(src.join("f"), "x").unwrap();
        let maps = IdMappings {
            uids: vec![IdMap {
                container_id: 0,
                host_id: 100_000,
                size: 65536,
            }],
            gids: vec![IdMap {
                container_id: 0,
                host_id: 200_000,
                size: 65536,
            }],
        };
        let ns = user_namespace(&maps).expect("user namespace");
        mount_idmapped(&src, &dst, &ns).expect("id-mapped mount");
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(dst.join("f")).unwrap();
        nix::mount::umount2(&dst, nix::mount::MntFlags::MNT_DETACH).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (100_000, 200_000));
    }
}
