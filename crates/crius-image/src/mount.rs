//! Container root file systems: one overlayfs mount per container.
//!
//! lowerdir = the image's layers (top first), upperdir and workdir inside the
//! container dir, mounted at `container_dir/rootfs`. An image volume is the same
//! overlay with no upper dir, mounted read-only.
//!
//! mount(2) takes the options as one string of at most a page. When the
//! absolute lowerdir list does not fit, the mount is made with the new mount
//! API, one `lowerdir+` per layer (Linux 6.8+), and failing that from a forked
//! child whose working directory is `layers/`, with short relative paths.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use tracing::debug;

use crate::Error;

/// Names inside the container dir.
pub const ROOTFS: &str = "rootfs";
pub const UPPER: &str = "upper";
pub const WORK: &str = "work";

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

fn mount_err(op: &'static str, target: &Path, e: impl Into<io::Error>) -> Error {
    Error::Mount {
        op,
        target: target.to_path_buf(),
        source: e.into(),
    }
}

/// Paths that would break the option string (overlay splits on ',' and ':').
fn check_option_path(p: &Path) -> Result<(), Error> {
    let b = p.as_os_str().as_bytes();
    if b.iter().any(|c| matches!(c, b',' | b':' | b'\\' | b'\n')) {
        return Err(mount_err(
            "mount overlay",
            p,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "path contains ',', ':' or '\\'",
            ),
        ));
    }
    Ok(())
}

/// True when `path` is a mount point (its device differs from its parent's).
fn is_mountpoint(path: &Path) -> bool {
    let (Ok(m), Some(parent)) = (fs::symlink_metadata(path), path.parent()) else {
        return false;
    };
    fs::metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}

/// Mounts the overlay. `layers_dir` holds the layers; `lowers` are paths
/// relative to it, top layer first.
pub fn mount_overlay(
    layers_dir: &Path,
    lowers: &[PathBuf],
    container_dir: &Path,
) -> Result<PathBuf, Error> {
    let rootfs = container_dir.join(ROOTFS);
    let upper = container_dir.join(UPPER);
    let work = container_dir.join(WORK);
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        check_option_path(d)?;
    }
    mount_layers(layers_dir, lowers, Some((&upper, &work)), &rootfs)?;
    Ok(rootfs)
}

/// Where the id-mapped layers of one rootfs are attached while its overlay is mounted.
const IDMAPPED_LAYERS: &str = "idmapped-layers";

/// Mounts the overlay of a pod in a user namespace of its own at `target`: each layer is
/// attached id-mapped by `maps` (so the image's root-owned files are the pod root's, with
/// nothing chowned), the overlay is made over those, and they are detached again (the
/// overlay keeps its own references). `userns` is a user namespace with `maps` already
/// made (the pod's), else one is made for the call. The upper and work dirs in `container_dir` belong
/// to the pod's root, so what it writes is owned by its mapped ids on disk.
pub fn mount_overlay_idmapped(
    layers_dir: &Path,
    lowers: &[PathBuf],
    container_dir: &Path,
    target: &Path,
    maps: &crate::idmap::IdMappings,
    userns: Option<std::os::fd::OwnedFd>,
) -> Result<(), Error> {
    if is_mountpoint(target) {
        debug!(target = %target.display(), "overlay already mounted");
        return Ok(());
    }
    let upper = container_dir.join(UPPER);
    let work = container_dir.join(WORK);
    let (uid, gid) = maps.root();
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        check_option_path(d)?;
        std::os::unix::fs::chown(d, Some(uid), Some(gid)).map_err(|e| Error::io(d, e))?;
    }
    let start = Instant::now();
    let userns = match userns {
        Some(fd) => fd,
        None => crate::idmap::user_namespace(maps)
            .map_err(|e| mount_err("make a user namespace for id-mapped layers", target, e))?,
    };
    let staging = container_dir.join(IDMAPPED_LAYERS);
    let mut names = Vec::with_capacity(lowers.len());
    let result = (|| {
        for (i, lower) in lowers.iter().enumerate() {
            let name = PathBuf::from(i.to_string());
            let at = staging.join(&name);
            fs::create_dir_all(&at).map_err(|e| Error::io(&at, e))?;
            crate::idmap::mount_idmapped(&layers_dir.join(lower), &at, &userns)?;
            names.push(name);
        }
        mount_layers(&staging, &names, Some((&upper, &work)), target)
    })();
    for name in &names {
        let at = staging.join(name);
        if let Err(e) = umount2(&at, MntFlags::MNT_DETACH) {
            tracing::warn!(path = %at.display(), error = %e, "id-mapped layer not detached");
        }
    }
    if let Err(e) = fs::remove_dir_all(&staging) {
        debug!(path = %staging.display(), error = %e, "id-mapped layer dirs not removed");
    }
    debug!(
        target = %target.display(),
        layers = lowers.len(),
        elapsed = ?start.elapsed(),
        ok = result.is_ok(),
        "mount id-mapped overlay"
    );
    result
}

/// Mounts an image's layers alone at `target`, read-only: no upper dir, so nothing can be
/// written through it (an image volume). `lowers` as for [`mount_overlay`].
pub fn mount_read_only(layers_dir: &Path, lowers: &[PathBuf], target: &Path) -> Result<(), Error> {
    mount_layers(layers_dir, lowers, None, target)
}

/// The overlay of `lowers` at `target`, with `upper` (upper dir, work dir) writable, or
/// read-only without.
fn mount_layers(
    layers_dir: &Path,
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<(), Error> {
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    check_option_path(target)?;
    if is_mountpoint(target) {
        debug!(target = %target.display(), "overlay already mounted");
        return Ok(());
    }
    check_option_path(layers_dir)?;
    let mut lowers = lowers.to_vec();
    // Without an upper dir overlayfs wants two lower dirs at least.
    if upper.is_none() && lowers.len() < 2 {
        lowers.push(PathBuf::from("../empty"));
    }
    let lowers = &lowers[..];
    let abs: Vec<PathBuf> = lowers.iter().map(|l| layers_dir.join(l)).collect();
    // volatile: a container's upper dir needs no durability (after a crash or reboot the
    // container is Exited and never mounted again), and without it every unmount syncs
    // the whole filesystem under the store, 10-20 ms per RemoveContainer.
    let (tail, flags) = match upper {
        Some((upper, work)) => (
            format!(
                ",upperdir={},workdir={},volatile",
                upper.display(),
                work.display()
            ),
            MsFlags::empty(),
        ),
        None => (String::new(), MsFlags::MS_RDONLY),
    };
    let rootfs = target;
    let options = format!("lowerdir={}{tail}", join_paths(&abs));
    let start = Instant::now();
    let result = if options.len() < page_size() {
        mount(
            Some("overlay"),
            rootfs,
            Some("overlay"),
            flags,
            Some(options.as_str()),
        )
        .map_err(|e| mount_err("mount overlay", rootfs, e))
    } else {
        match mount_with_fsconfig(&abs, upper, rootfs) {
            Ok(()) => Ok(()),
            Err(e) => {
                debug!(error = %e, "new mount API failed, using relative paths from layers/");
                let rel_options = format!("lowerdir={}{tail}", join_paths(lowers));
                if rel_options.len() >= page_size() {
                    return Err(mount_err(
                        "mount overlay",
                        rootfs,
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                                "{} layers do not fit in one mount option string",
                                lowers.len()
                            ),
                        ),
                    ));
                }
                mount_from_dir(layers_dir, &rel_options, flags, rootfs)
            }
        }
    };
    debug!(
        target = %rootfs.display(),
        layers = lowers.len(),
        read_only = upper.is_none(),
        elapsed = ?start.elapsed(),
        ok = result.is_ok(),
        "mount overlay"
    );
    result
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOUNT_ATTR_RDONLY: libc::c_uint = 1;

struct Fd(libc::c_int);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fsconfig_string(fs_fd: &Fd, key: &str, value: &[u8]) -> io::Result<()> {
    let k = cstr(key.as_bytes())?;
    let v = cstr(value)?;
    // SAFETY: fs_fd is an open fs context; key and value are NUL-terminated.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs_fd.0,
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            v.as_ptr(),
            0,
        )
    })?;
    Ok(())
}

/// fsopen/fsconfig/fsmount/move_mount with one `lowerdir+` per layer; read-only without
/// `upper` (upper dir, work dir).
fn mount_with_fsconfig(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> io::Result<()> {
    let name = cstr(b"overlay")?;
    // SAFETY: name is NUL-terminated; the result is checked.
    let fs_fd = Fd(
        check(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?
            as libc::c_int,
    );
    fsconfig_string(&fs_fd, "source", b"overlay")?;
    for l in lowers {
        fsconfig_string(&fs_fd, "lowerdir+", l.as_os_str().as_bytes())?;
    }
    if let Some((upper, work)) = upper {
        fsconfig_string(&fs_fd, "upperdir", upper.as_os_str().as_bytes())?;
        fsconfig_string(&fs_fd, "workdir", work.as_os_str().as_bytes())?;
    }
    let attrs = if upper.is_some() {
        0
    } else {
        MOUNT_ATTR_RDONLY
    };
    // SAFETY: fs_fd is an open fs context; null key/value are what CMD_CREATE takes.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs_fd.0,
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: fs_fd is a created fs context.
    let mnt_fd =
        Fd(
            check(unsafe { libc::syscall(libc::SYS_fsmount, fs_fd.0, FSMOUNT_CLOEXEC, attrs) })?
                as libc::c_int,
        );
    let empty = cstr(b"")?;
    let to = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: mnt_fd is a detached mount; both paths are NUL-terminated.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt_fd.0,
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// mount(2) from a forked child whose cwd is `dir`, so relative lowerdirs are
/// short. The daemon's own cwd (shared by all its threads) never changes.
fn mount_from_dir(dir: &Path, options: &str, flags: MsFlags, target: &Path) -> Result<(), Error> {
    let err = |e: io::Error| mount_err("mount overlay", target, e);
    let c_dir = cstr(dir.as_os_str().as_bytes()).map_err(err)?;
    let c_target = cstr(target.as_os_str().as_bytes()).map_err(err)?;
    let c_opts = cstr(options.as_bytes()).map_err(err)?;
    let c_type = cstr(b"overlay").map_err(err)?;
    // SAFETY: the child only calls chdir, mount and _exit (async-signal-safe)
    // on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: async-signal-safe syscalls on pre-built C strings, then _exit.
        unsafe {
            if libc::chdir(c_dir.as_ptr()) != 0 {
                libc::_exit(*libc::__errno_location());
            }
            let rc = libc::mount(
                c_type.as_ptr(),
                c_target.as_ptr(),
                c_type.as_ptr(),
                flags.bits(),
                c_opts.as_ptr().cast(),
            );
            libc::_exit(if rc == 0 {
                0
            } else {
                *libc::__errno_location()
            });
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; status is a local.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(err(e));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else if libc::WIFEXITED(status) {
        Err(err(io::Error::from_raw_os_error(libc::WEXITSTATUS(status))))
    } else {
        Err(err(io::Error::other("mount helper child was killed")))
    }
}

/// Unmounts container_dir/rootfs and removes rootfs, upper and work.
/// Succeeds when they are already gone.
pub fn unmount_overlay(container_dir: &Path) -> Result<(), Error> {
    let rootfs = container_dir.join(ROOTFS);
    unmount_all(&rootfs)?;
    for name in [ROOTFS, UPPER, WORK] {
        let p = container_dir.join(name);
        match fs::remove_dir_all(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Ok(())
}

/// Unmounts a read-only overlay made by [`mount_read_only`] and removes its mount point.
/// Succeeds when it is already gone.
pub fn unmount_read_only(target: &Path) -> Result<(), Error> {
    unmount_all(target)?;
    match fs::remove_dir(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(target, e)),
    }
}

/// Unmounts whatever is mounted at `target`, stacked mounts included.
fn unmount_all(target: &Path) -> Result<(), Error> {
    let rootfs = target;
    let start = Instant::now();
    loop {
        match umount2(rootfs, MntFlags::empty()) {
            Ok(()) => continue, // stacked mounts: repeat until nothing is mounted
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
            Err(nix::errno::Errno::EBUSY) => {
                umount2(rootfs, MntFlags::MNT_DETACH)
                    .map_err(|e| mount_err("unmount", rootfs, e))?;
            }
            Err(e) => return Err(mount_err("unmount", rootfs, e)),
        }
    }
    debug!(target = %rootfs.display(), elapsed = ?start.elapsed(), "unmount overlay");
    Ok(())
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// The real path of `sub` inside `root`, resolved by the kernel as if `root` were `/`
/// (openat2 with RESOLVE_IN_ROOT): `..` and symlinks, absolute ones included, never lead
/// out of it, and no other mount is entered. Meant for a read-only tree crius owns (an
/// image volume), so the answer cannot change after it is given.
pub fn resolve_in_root(root: &Path, sub: &Path) -> io::Result<PathBuf> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::OpenOptionsExt;

    let root_dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)?;
    let c_sub = cstr(sub.as_os_str().as_bytes())?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV,
    };
    // SAFETY: root_dir is an open directory, c_sub is NUL-terminated and `how` is a
    // live open_how of the size passed; the result is checked.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_dir.as_raw_fd(),
            c_sub.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let real = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    let root_real = fs::canonicalize(root)?;
    if !real.starts_with(&root_real) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} resolves outside {}", sub.display(), root.display()),
        ));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Two lower dirs under `layers/`, upper/work/rootfs in `ctr/`.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix("crius-mount-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let layers = dir.path().join("layers");
        for (name, content) in [("a", "lower-a"), ("b", "lower-b")] {
            fs::create_dir_all(layers.join(name).join("diff")).unwrap();
            fs::write(layers.join(name).join("diff/f"), content).unwrap();
            fs::write(layers.join(name).join("diff").join(name), "").unwrap();
        }
        let ctr = dir.path().join("ctr");
        for d in [ROOTFS, UPPER, WORK] {
            fs::create_dir_all(ctr.join(d)).unwrap();
        }
        (dir, layers, ctr)
    }

    /// Unmounts on drop, so a failed assertion leaves no mount behind.
    struct Unmount<'a>(&'a Path);

    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = unmount_overlay(self.0);
        }
    }

    fn check_and_unmount(ctr: &Path) {
        let guard = Unmount(ctr);
        let rootfs = ctr.join(ROOTFS);
        assert_eq!(fs::read_to_string(rootfs.join("f")).unwrap(), "lower-b");
        assert!(rootfs.join("a").exists() && rootfs.join("b").exists());
        drop(guard);
        assert!(!rootfs.exists());
    }

    #[test]
    fn relative_lowerdirs_from_a_forked_child() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let (_dir, layers, ctr) = setup();
        let opts = format!(
            "lowerdir=b/diff:a/diff,upperdir={},workdir={}",
            ctr.join(UPPER).display(),
            ctr.join(WORK).display()
        );
        mount_from_dir(&layers, &opts, MsFlags::empty(), &ctr.join(ROOTFS)).unwrap();
        check_and_unmount(&ctr);
        for d in [ROOTFS, UPPER, WORK] {
            fs::create_dir_all(ctr.join(d)).unwrap();
        }
        // the daemon's own working directory did not move
        assert_ne!(std::env::current_dir().unwrap(), layers);
        // a failing mount reports the errno from the child
        let err = mount_from_dir(
            &layers,
            "lowerdir=nope/diff",
            MsFlags::empty(),
            &ctr.join(ROOTFS),
        )
        .unwrap_err();
        assert!(err.to_string().contains("mount overlay"), "{err}");
    }

    #[test]
    fn lowerdir_plus_with_the_new_mount_api() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let (_dir, layers, ctr) = setup();
        let lowers = [layers.join("b/diff"), layers.join("a/diff")];
        match mount_with_fsconfig(
            &lowers,
            Some((&ctr.join(UPPER), &ctr.join(WORK))),
            &ctr.join(ROOTFS),
        ) {
            Ok(()) => check_and_unmount(&ctr),
            // kernels before 6.8 have no lowerdir+
            Err(e)
                if e.raw_os_error() == Some(libc::EINVAL)
                    || e.raw_os_error() == Some(libc::ENOSYS) =>
            {
                eprintln!("skipped: kernel lacks lowerdir+ ({e})");
            }
            Err(e) => panic!("fsconfig mount failed: {e}"),
        }
    }

    #[test]
    fn a_read_only_overlay_shows_the_layers_and_takes_no_writes() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let (dir, layers, _ctr) = setup();
        fs::create_dir_all(dir.path().join("empty")).unwrap();
        let target = dir.path().join("vol");
        struct Gone<'a>(&'a Path);
        impl Drop for Gone<'_> {
            fn drop(&mut self) {
                let _ = unmount_read_only(self.0);
            }
        }
        let guard = Gone(&target);
        // One layer: the store's empty dir makes the second lower overlayfs needs.
        mount_read_only(&layers, &[PathBuf::from("a/diff")], &target).unwrap();
        assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "lower-a");
        let err = fs::write(target.join("new"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        unmount_read_only(&target).unwrap();
        assert!(!target.exists());
        // Two layers, the top one winning.
        let lowers = [PathBuf::from("b/diff"), PathBuf::from("a/diff")];
        mount_read_only(&layers, &lowers, &target).unwrap();
        assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "lower-b");
        assert!(fs::remove_file(target.join("a")).is_err());
        drop(guard);
        assert!(!target.exists());
    }

    #[test]
    fn sub_paths_resolve_inside_the_root_whatever_their_links_say() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("srv/www")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "inside").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("srv/up")).unwrap();
        std::os::unix::fs::symlink("www", root.join("srv/rel")).unwrap();
        let real = fs::canonicalize(&root).unwrap();
        let r = |p: &str| resolve_in_root(&root, Path::new(p));
        assert_eq!(r("srv/www").unwrap(), real.join("srv/www"));
        assert_eq!(r("srv/rel").unwrap(), real.join("srv/www"));
        // An absolute link and a climb past the top both stay in the root.
        assert_eq!(r("abs/passwd").unwrap(), real.join("etc/passwd"));
        assert_eq!(r("srv/up/etc").unwrap(), real.join("etc"));
        assert_eq!(r("../../etc").unwrap(), real.join("etc"));
        assert_eq!(
            r("srv/missing").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
