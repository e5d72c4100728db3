//! Resolving a path inside the container's rootfs, one component at a time
//! from directory descriptors: symlinks are followed inside the rootfs only
//! (an absolute one restarts at the rootfs), a `..` that would climb above
//! the rootfs is an error, and missing components are made on the way. The
//! result is an `O_PATH` descriptor, so the mount that follows lands on
//! exactly the inode checked, whatever renames happen meanwhile
//! (CVE-2021-30465 and its kin).

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use crate::error::{Error, Result};

/// What to make when the path's last component is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    No,
    Dir,
    File,
}

const MAX_SYMLINKS: usize = 40;

fn openat_path(dir: &OwnedFd, name: &str) -> std::result::Result<OwnedFd, Errno> {
    let c = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c` is a valid NUL-terminated string and `dir` an open descriptor.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> std::result::Result<libc::stat, Errno> {
    // SAFETY: zeroed is a valid bit pattern for the plain C struct `stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let empty = c"";
    // SAFETY: `st` is a valid out pointer; AT_EMPTY_PATH with "" stats the descriptor itself.
    let r = unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            empty.as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(st)
}

fn readlink(fd: &OwnedFd) -> std::result::Result<String, Errno> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let empty = c"";
    // SAFETY: `buf` is writable for its length; "" with an O_PATH symlink fd reads that link.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            empty.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(Errno::last());
    }
    buf.truncate(n as usize);
    String::from_utf8(buf).map_err(|_| Errno::EINVAL)
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd> {
    fd.try_clone()
        .map_err(|e| Error::Other(format!("dup: {e}")))
}

/// Resolves `path` under `root` (an open directory), making what is missing
/// as `create` says (parents always as directories, mode 0755).
pub fn resolve(root: &OwnedFd, path: &str, create: Create) -> Result<OwnedFd> {
    let mut queue: VecDeque<String> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect();
    let mut stack = vec![dup(root)?];
    let mut links = 0;
    let mut seen = String::new();
    let escape = |at: &str| Error::MountEscape {
        dest: path.to_string(),
        at: if at.is_empty() {
            "/".into()
        } else {
            at.to_string()
        },
    };
    let mut last: Option<OwnedFd> = None;
    while let Some(c) = queue.pop_front() {
        last = None;
        if c == "." {
            continue;
        }
        if c == ".." {
            if stack.len() == 1 {
                return Err(escape(&seen));
            }
            stack.pop();
            continue;
        }
        let is_last = queue.is_empty();
        let cur = stack.last().expect("stack holds the root");
        let fd = match openat_path(cur, &c) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create != Create::No => {
                make(cur, &c, if is_last { create } else { Create::Dir })
                    .map_err(|e| Error::sys(format!("create {path} in rootfs at {c}"), e))?;
                openat_path(cur, &c).map_err(|e| Error::sys(format!("open {path} in rootfs"), e))?
            }
            Err(e) => return Err(Error::sys(format!("resolve {path} in rootfs at {c}"), e)),
        };
        let st = fstat(&fd).map_err(|e| Error::sys(format!("stat {path} in rootfs"), e))?;
        seen.push('/');
        seen.push_str(&c);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::sys(
                        format!("resolve {path} in rootfs"),
                        Errno::ELOOP,
                    ));
                }
                let target =
                    readlink(&fd).map_err(|e| Error::sys(format!("readlink {seen}"), e))?;
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                for t in target.split('/').filter(|t| !t.is_empty()).rev() {
                    queue.push_front(t.to_string());
                }
                if target.split('/').all(|t| t.is_empty()) && is_last {
                    last = Some(dup(stack.last().expect("root"))?);
                }
            }
            libc::S_IFDIR => {
                if is_last {
                    last = Some(dup(&fd)?);
                }
                stack.push(fd);
            }
            _ => {
                if !is_last {
                    return Err(Error::sys(
                        format!("resolve {path} in rootfs at {seen}"),
                        Errno::ENOTDIR,
                    ));
                }
                last = Some(fd);
            }
        }
    }
    match last {
        Some(fd) => Ok(fd),
        None => dup(stack.last().expect("root")),
    }
}

/// Resolves the parent of `path` (made as directories) and returns it with the last name.
pub fn resolve_parent(root: &OwnedFd, path: &str) -> Result<(OwnedFd, String)> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = match trimmed.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", trimmed),
    };
    if name.is_empty() || name == ".." || name == "." {
        return Err(Error::Spec(format!("path {path:?} names no file")));
    }
    Ok((resolve(root, parent, Create::Dir)?, name.to_string()))
}

fn make(dir: &OwnedFd, name: &str, what: Create) -> std::result::Result<(), Errno> {
    let c = CString::new(name).map_err(|_| Errno::EINVAL)?;
    let r = match what {
        // SAFETY: valid descriptor and NUL-terminated name.
        Create::Dir => unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) },
        Create::File => {
            // SAFETY: valid descriptor and NUL-terminated name; the fd is closed below.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd >= 0 {
                // SAFETY: we own fd.
                unsafe { libc::close(fd) };
                0
            } else {
                -1
            }
        }
        Create::No => return Err(Errno::ENOENT),
    };
    if r < 0 {
        let e = Errno::last();
        if e != Errno::EEXIST {
            return Err(e);
        }
    }
    Ok(())
}

/// The `/proc/self/fd/N` path naming `fd`, for syscalls that take paths.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Opens a directory as the root for [`resolve`].
pub fn open_root(path: &std::path::Path) -> Result<OwnedFd> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("open rootfs", path, e))?;
    Ok(OwnedFd::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real(fd: &OwnedFd) -> std::path::PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap()
    }

    #[test]
    fn symlinks_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("etc")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../etc", r.join("etc/up")).unwrap();
        symlink("../../../../tmp", r.join("out")).unwrap();
        let root = open_root(&r).unwrap();
        assert_eq!(
            real(&resolve(&root, "/abs", Create::No).unwrap()),
            r.join("etc")
        );
        assert_eq!(
            real(&resolve(&root, "etc/up/up", Create::No).unwrap()),
            r.join("etc")
        );
        let made = resolve(&root, "/abs/new/dir", Create::Dir).unwrap();
        assert_eq!(real(&made), r.join("etc/new/dir"));
        let f = resolve(&root, "/abs/file", Create::File).unwrap();
        assert_eq!(real(&f), r.join("etc/file"));
        let err = resolve(&root, "/out/x", Create::Dir).unwrap_err();
        assert!(matches!(err, Error::MountEscape { .. }), "{err}");
        assert!(!t.path().join("tmp").exists());
        let err = resolve(&root, "../x", Create::No).unwrap_err();
        assert!(matches!(err, Error::MountEscape { .. }), "{err}");
        assert!(resolve(&root, "/missing", Create::No).is_err());
    }
}
