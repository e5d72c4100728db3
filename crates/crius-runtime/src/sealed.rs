//! The CVE-2019-5736 guard: a container must not be able to reach the
//! runtime's binary through /proc/<pid>/exe of a runtime process (say, by
//! making the runtime exec itself inside the container through a
//! `#!/proc/self/exe` script) and overwrite it.
//!
//! runc copies its binary into a sealed memfd on every start, which is much
//! of its start-up time. crius-runtime instead runs from a read-only view
//! of the same file: when its own executable is on a writable mount, it
//! clones that one file into a detached mount (open_tree), makes the mount
//! read-only (mount_setattr) and execs itself through it (execveat), once,
//! before any container work. The detached mount belongs to no namespace,
//! so nothing can remount it writable by path, and it goes away with the
//! last process that uses it. Installing the binary on a read-only mount
//! skips even that one exec. Kernels without open_tree get runc's sealed
//! memfd copy.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};

/// Whether our executable sits on a read-only mount (or in a sealed memfd).
pub fn is_sealed() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    match nix::sys::statvfs::fstatvfs(&f) {
        Ok(st) => st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) || is_memfd(&f),
        Err(_) => false,
    }
}

fn is_memfd(f: &std::fs::File) -> bool {
    // SAFETY: F_GET_SEALS on an open descriptor takes no pointer.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals > 0 && seals & libc::F_SEAL_WRITE != 0
}

/// Re-executes through a read-only view of our binary unless already on one.
/// Returns only when nothing had to be done, or on error.
pub fn ensure() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let fd = match readonly_clone() {
        Ok(fd) => fd,
        Err(_) => memfd_copy()?,
    };
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()).unwrap_or_default())
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.into_encoded_bytes();
            b.push(b'=');
            b.extend(v.into_encoded_bytes());
            CString::new(b).unwrap_or_default()
        })
        .collect();
    let e = nix::unistd::execveat(&fd, c"", &args, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH)
        .unwrap_err();
    Err(Error::sys(
        "re-exec through the read-only runtime binary",
        e,
    ))
}

fn readonly_clone() -> Result<OwnedFd> {
    // SAFETY: open_tree with a NUL-terminated path returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::sys(
            "open_tree of the runtime binary",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: the kernel returned this descriptor to us alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    crate::rootfs::mount_setattr(
        &fd,
        0,
        libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
    )
    .map_err(|e| Error::sys("make the runtime binary's mount read-only", e))?;
    Ok(fd)
}

fn memfd_copy() -> Result<OwnedFd> {
    let fd = nix::sys::memfd::memfd_create(
        c"crius-runtime",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| Error::sys("memfd_create", e))?;
    let mut src = std::fs::File::open("/proc/self/exe")
        .map_err(|e| Error::io("open", "/proc/self/exe", e))?;
    let mut dst = std::fs::File::from(fd);
    std::io::copy(&mut src, &mut dst).map_err(|e| Error::io("copy runtime binary", "memfd", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS with integer flags on our memfd.
    if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Error::sys("seal runtime copy", nix::errno::Errno::last()));
    }
    Ok(OwnedFd::from(dst))
}
