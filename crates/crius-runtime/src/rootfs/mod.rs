//! The container's mount namespace: rootfs propagation, the spec's mounts,
//! /dev, pivot_root (or MS_MOVE), masked and read-only paths.

pub mod idmap;
pub mod resolve;

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxNamespaceType, Mount, Spec};

use crate::error::{Error, Result};
use resolve::{fd_path, resolve, resolve_parent, Create};

/// A mount's options, split into flags, propagation and filesystem data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
    /// "rro": read-only recursively, with mount_setattr.
    pub rro: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            rro: false,
        }
    }
}

/// Splits a spec mount's options as runc does.
pub fn parse_options(opts: &[String]) -> Result<Options> {
    let mut o = Options::default();
    for opt in opts {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let base = match opt.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                let rec = if opt.starts_with('r') {
                    MsFlags::MS_REC
                } else {
                    MsFlags::empty()
                };
                o.propagation.push(base | rec);
                continue;
            }
            "rro" => {
                o.rro = true;
                continue;
            }
            // Id-mapped mounts are made ahead, in `idmap`.
            "tmpcopyup" | "idmap" | "ridmap" => continue,
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
    }
    Ok(o)
}

fn is_bind(m: &Mount, o: &Options) -> bool {
    o.flags.contains(MsFlags::MS_BIND) || m.typ().as_deref() == Some("bind")
}

fn mnt(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> std::result::Result<(), nix::errno::Errno> {
    mount(src, target, fstype, flags, data)
}

fn merr(dest: &str, what: &str, e: nix::errno::Errno) -> Error {
    Error::Mount {
        dest: dest.to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// Everything of the container's rootfs up to (and including) pivot_root.
/// Runs in the container's new mount namespace, still seeing the host's tree.
pub struct RootfsSetup<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    /// Host cgroup directories of the container, for a `cgroup` mount.
    pub cgroup_dirs: &'a [PathBuf],
    /// The hierarchies those directories are in, as the runtime saw them
    /// before the container's cgroup namespace.
    pub hierarchies: &'a [crate::cgroup::Hierarchy],
    pub in_userns: bool,
    /// The spec's id-mapped mounts, made by the runtime before the fork.
    pub idmapped: &'a idmap::IdmappedMounts,
    /// Passed before a `cgroup` mount: the cgroups exist and hold us then.
    pub cgroup_gate: &'a crate::cgroup::Gate<'a>,
}

impl RootfsSetup<'_> {
    /// Propagation, the rootfs bind, every mount, /dev.
    pub fn prepare(&self) -> Result<()> {
        let linux = self.spec.linux().as_ref();
        let prop = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
            None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
            Some(p) => {
                let o = parse_options(&[p.to_string()])?;
                *o.propagation.first().ok_or_else(|| {
                    Error::Spec(format!("rootfsPropagation {p:?} is not a propagation"))
                })? | MsFlags::MS_REC
            }
        };
        mnt(None, "/", None, prop, None).map_err(|e| merr("/", "set root propagation", e))?;
        let rootfs = self
            .rootfs
            .to_str()
            .ok_or_else(|| Error::Spec("rootfs path is not UTF-8".into()))?;
        // The parent goes private first: the rootfs bind then is a private
        // mount too, which pivot_root needs even under a shared "/".
        make_parent_mount_private(self.rootfs)?;
        mnt(
            Some(rootfs),
            rootfs,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(|e| merr(rootfs, "bind rootfs", e))?;

        let root = resolve::open_root(self.rootfs)?;
        let mut has_dev = false;
        for (i, m) in self.spec.mounts().iter().flatten().enumerate() {
            let dest = m.destination().to_string_lossy().into_owned();
            if !dest.starts_with('/') {
                return Err(Error::Mount {
                    dest,
                    reason: "destination must be absolute".into(),
                });
            }
            if dest == "/dev" {
                has_dev = !is_bind(m, &parse_options(m.options().as_deref().unwrap_or(&[]))?);
            }
            self.mount_one(&root, m, &dest, self.idmapped.get(i))?;
        }
        if has_dev {
            self.setup_dev(&root)?;
        }
        Ok(())
    }

    fn mount_one(
        &self,
        root: &OwnedFd,
        m: &Mount,
        dest: &str,
        idmapped: Option<&OwnedFd>,
    ) -> Result<()> {
        let o = parse_options(m.options().as_deref().unwrap_or(&[]))?;
        let typ = m.typ().as_deref().unwrap_or("");
        if typ == "cgroup" || typ == "cgroup2" {
            self.cgroup_gate.pass()?;
        }
        if (typ == "cgroup" || typ == "cgroup2") && crate::cgroup::unified(self.cgroup_dirs) {
            return self.mount_cgroup2(root, dest, &o);
        }
        if typ == "cgroup"
            || typ == "cgroup2"
                && self
                    .cgroup_dirs
                    .iter()
                    .any(|d| !d.join("cgroup.controllers").exists())
        {
            return self.mount_cgroups(root, dest, &o);
        }
        if is_bind(m, &o) {
            let src = bind_source(m, self.bundle, dest)?;
            return self.bind(root, dest, &src, &o, idmapped);
        }
        let target = resolve(root, dest, Create::Dir)?;
        let src = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| typ.to_string());
        match mount_fs(&target, &src, typ, &o) {
            Ok(()) => {}
            // sysfs cannot be mounted in a network namespace we do not own
            // (a joined one, or a user namespace's): bind the host's, as runc does.
            Err(nix::errno::Errno::EPERM) if typ == "sysfs" => {
                mnt(
                    Some("/sys"),
                    &fd_path(&target),
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )
                .map_err(|e| merr(dest, "bind /sys", e))?;
            }
            Err(e) => return Err(merr(dest, &format!("mount {typ}"), e)),
        }
        drop(target);
        after_new_mount(root, dest, &o)
    }

    /// Binds `src` (or the id-mapped tree made from it) onto `dest`, then
    /// applies the mount's other flags, "rro" and propagation.
    fn bind(
        &self,
        root: &OwnedFd,
        dest: &str,
        src: &Path,
        o: &Options,
        idmapped: Option<&OwnedFd>,
    ) -> Result<()> {
        // An id-mapped source is read through its mount: the path may pass dirs
        // that only host root can, which a user namespace's root cannot.
        let is_dir = match idmapped {
            Some(tree) => nix::sys::stat::fstat(tree)
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .map_err(|e| merr(dest, &format!("source {}", src.display()), e))?,
            None => std::fs::metadata(src)
                .map_err(|e| Error::Mount {
                    dest: dest.to_string(),
                    reason: format!("source {}: {e}", src.display()),
                })?
                .is_dir(),
        };
        let target = resolve(root, dest, if is_dir { Create::Dir } else { Create::File })?;
        let src_s = src.to_string_lossy();
        match idmapped {
            Some(tree) => idmap::move_onto(tree, &target)
                .map_err(|e| merr(dest, &format!("move id-mapped {src_s}"), e))?,
            None => mnt(
                Some(&src_s),
                &fd_path(&target),
                None,
                MsFlags::MS_BIND | (o.flags & MsFlags::MS_REC),
                None,
            )
            .map_err(|e| merr(dest, &format!("bind {src_s}"), e))?,
        }
        drop(target);
        let remount = o.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !remount.is_empty() || !o.propagation.is_empty() || o.rro {
            // The fd above names the directory under the new mount: resolve again.
            let on = resolve(root, dest, Create::No)?;
            let p = fd_path(&on);
            if !remount.is_empty() {
                let locked = locked_flags(&on);
                mnt(
                    None,
                    &p,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | remount | locked,
                    None,
                )
                .map_err(|e| merr(dest, "remount", e))?;
            }
            if o.rro {
                set_readonly_recursive(&on)
                    .map_err(|e| merr(dest, "make read-only recursively", e))?;
            }
            for p_flag in &o.propagation {
                mnt(None, &p, None, *p_flag, None).map_err(|e| merr(dest, "set propagation", e))?;
            }
        }
        Ok(())
    }

    /// A `cgroup` (or `cgroup2`) mount on a v2-only host. In a cgroup
    /// namespace of the container's own, a cgroup2 mount: the namespace was
    /// made once the container was in its cgroup, so that cgroup is the
    /// mount's root. Without one, or where the kernel refuses the mount (a
    /// user namespace that does not own the cgroup namespace), a bind of the
    /// container's own directory: the rest of the host's tree stays out of
    /// sight either way, as with the per-hierarchy binds of v1.
    fn mount_cgroup2(&self, root: &OwnedFd, dest: &str, o: &Options) -> Result<()> {
        let own_ns = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
        if own_ns {
            let target = resolve(root, dest, Create::Dir)?;
            match mount_fs(&target, "cgroup", "cgroup2", o) {
                Ok(()) => {
                    drop(target);
                    return after_new_mount(root, dest, o);
                }
                Err(nix::errno::Errno::EPERM | nix::errno::Errno::EBUSY) => {}
                Err(e) => return Err(merr(dest, "mount cgroup2", e)),
            }
        }
        let dir = self.cgroup_dirs.first().ok_or_else(|| Error::Mount {
            dest: dest.to_string(),
            reason: "no cgroup directory to bind".into(),
        })?;
        self.bind(root, dest, dir, o, None)
    }

    /// A `cgroup` mount on a v1 (or hybrid) host: a tmpfs with the
    /// container's own directory of each hierarchy bound in, read-only when asked.
    fn mount_cgroups(&self, root: &OwnedFd, dest: &str, o: &Options) -> Result<()> {
        let target = resolve(root, dest, Create::Dir)?;
        let ro = o.flags.contains(MsFlags::MS_RDONLY);
        let base_flags = o.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        mnt(
            Some("tmpfs"),
            &fd_path(&target),
            Some("tmpfs"),
            base_flags,
            Some("mode=755"),
        )
        .map_err(|e| merr(dest, "mount cgroup tmpfs", e))?;
        drop(target);
        // The tmpfs just mounted, ours alone: each hierarchy's dir is
        // resolved from it rather than from the rootfs again.
        let base = resolve(root, dest, Create::No)?;
        for h in self.hierarchies {
            let Some(name) = h.mount.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(dir) = self.cgroup_dirs.iter().find(|d| d.starts_with(&h.mount)) else {
                continue;
            };
            let sub = format!("{}/{name}", dest.trim_end_matches('/'));
            let t = resolve(&base, name, Create::Dir)?;
            let dir_s = dir.to_string_lossy();
            mnt(Some(&dir_s), &fd_path(&t), None, MsFlags::MS_BIND, None)
                .map_err(|e| merr(&sub, "bind cgroup", e))?;
            drop(t);
            let on = resolve(&base, name, Create::No)?;
            let flags = MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | base_flags
                | if ro {
                    MsFlags::MS_RDONLY
                } else {
                    MsFlags::empty()
                };
            mnt(None, &fd_path(&on), None, flags, None)
                .map_err(|e| merr(&sub, "remount cgroup", e))?;
            // "cpu,cpuacct" is also reachable as "cpu" and "cpuacct".
            if name.contains(',') {
                for part in name.split(',') {
                    let _ = nix::unistd::symlinkat(name, &base, part);
                }
            }
        }
        drop(base);
        if ro {
            let on = resolve(root, dest, Create::No)?;
            mnt(
                None,
                &fd_path(&on),
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base_flags,
                Some("mode=755"),
            )
            .map_err(|e| merr(dest, "remount cgroup tmpfs read-only", e))?;
        }
        Ok(())
    }

    /// The default device nodes, the spec's devices and the /dev symlinks.
    fn setup_dev(&self, root: &OwnedFd) -> Result<()> {
        let mut devices: Vec<LinuxDevice> = default_devices();
        for d in self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default()
        {
            devices.retain(|x| x.path() != d.path());
            devices.push(d);
        }
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0) };
        let res = devices.iter().try_for_each(|d| self.make_device(root, d));
        // SAFETY: as above, restoring the mask.
        unsafe { libc::umask(old) };
        res?;
        let dev = resolve(root, "/dev", Create::Dir)?;
        let links = [
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
            ("pts/ptmx", "ptmx"),
        ];
        for (target, name) in links {
            match nix::unistd::symlinkat(target, &dev, name) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(merr(&format!("/dev/{name}"), "symlink", e)),
            }
        }
        if Path::new("/proc/kcore").exists() {
            let _ = nix::unistd::symlinkat("/proc/kcore", &dev, "core");
        }
        Ok(())
    }

    fn make_device(&self, root: &OwnedFd, d: &LinuxDevice) -> Result<()> {
        let path = d.path().to_string_lossy().into_owned();
        if !path.starts_with("/dev/") {
            return Err(Error::Spec(format!("device {path} is not under /dev")));
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => return Err(Error::Spec(format!("device {path} has type 'a'"))),
        };
        if self.in_userns {
            // mknod is refused in a user namespace: bind the host's node.
            let t = resolve(root, &path, Create::File)?;
            return mnt(Some(&path), &fd_path(&t), None, MsFlags::MS_BIND, None)
                .map_err(|e| merr(&path, "bind device", e));
        }
        let (dir, name) = resolve_parent(root, &path)?;
        let c = CString::new(name.clone()).map_err(|_| Error::Spec(format!("device {path}")))?;
        let mode = kind | d.file_mode().unwrap_or(0o666);
        let dev = libc::makedev(d.major() as u32, d.minor() as u32);
        // SAFETY: valid dir descriptor and NUL-terminated name.
        let r = unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, dev) };
        if r < 0 {
            let e = nix::errno::Errno::last();
            if e == nix::errno::Errno::EEXIST {
                // A node of the image (or an earlier rule) is replaced.
                // SAFETY: as above.
                unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
                // SAFETY: as above.
                if unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, dev) } < 0 {
                    return Err(merr(&path, "mknod", nix::errno::Errno::last()));
                }
            } else {
                return Err(merr(&path, "mknod", e));
            }
        }
        let uid = d.uid().unwrap_or(0);
        let gid = d.gid().unwrap_or(0);
        // SAFETY: valid descriptor and name; AT_SYMLINK_NOFOLLOW keeps it on the node.
        if unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                c.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } < 0
        {
            return Err(merr(&path, "chown", nix::errno::Errno::last()));
        }
        Ok(())
    }
}

/// A new mount of filesystem `typ` on `target`, with the options' flags and data.
fn mount_fs(
    target: &OwnedFd,
    src: &str,
    typ: &str,
    o: &Options,
) -> std::result::Result<(), nix::errno::Errno> {
    let data = o.data.join(",");
    mnt(
        Some(src),
        &fd_path(target),
        Some(typ),
        o.flags & !MsFlags::MS_REMOUNT,
        (!data.is_empty()).then_some(data.as_str()),
    )
}

/// "rro" and propagation on a mount just made at `dest`.
fn after_new_mount(root: &OwnedFd, dest: &str, o: &Options) -> Result<()> {
    if o.propagation.is_empty() && !o.rro {
        return Ok(());
    }
    let on = resolve(root, dest, Create::No)?;
    if o.rro {
        set_readonly_recursive(&on).map_err(|e| merr(dest, "make read-only recursively", e))?;
    }
    for p_flag in &o.propagation {
        mnt(None, &fd_path(&on), None, *p_flag, None)
            .map_err(|e| merr(dest, "set propagation", e))?;
    }
    Ok(())
}

fn default_devices() -> Vec<LinuxDevice> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, maj, min)| {
        let mut d = LinuxDevice::default();
        d.set_path(PathBuf::from(p));
        d.set_typ(LinuxDeviceType::C);
        d.set_major(maj);
        d.set_minor(min);
        d.set_file_mode(Some(0o666));
        d.set_uid(Some(0));
        d.set_gid(Some(0));
        d
    })
    .collect()
}

/// The flags of the mount under `fd` that a bind remount must keep
/// (the kernel refuses to drop them when they are locked).
fn locked_flags(fd: &OwnedFd) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::fstatvfs(fd) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(a) {
            out |= b;
        }
    }
    out
}

/// mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY) on the mount under `fd`.
pub fn set_readonly_recursive(fd: &OwnedFd) -> std::result::Result<(), nix::errno::Errno> {
    mount_setattr(fd, libc::AT_RECURSIVE, libc::MOUNT_ATTR_RDONLY)
}

/// A bind mount's source: absolute, or relative to the bundle.
pub(crate) fn bind_source(m: &Mount, bundle: &Path, dest: &str) -> Result<PathBuf> {
    m.source()
        .as_ref()
        .map(|s| {
            if s.is_absolute() {
                s.clone()
            } else {
                bundle.join(s)
            }
        })
        .ok_or_else(|| Error::Mount {
            dest: dest.to_string(),
            reason: "bind mount without a source".into(),
        })
}

/// mount_setattr on the mount of `fd` itself (AT_EMPTY_PATH), setting `attr_set`.
pub fn mount_setattr(
    fd: &OwnedFd,
    flags: libc::c_int,
    attr_set: u64,
) -> std::result::Result<(), nix::errno::Errno> {
    setattr(fd, flags, attr_set, None)
}

/// mount_setattr as above with the user namespace `userns` (for MOUNT_ATTR_IDMAP).
pub fn mount_setattr_userns(
    fd: &OwnedFd,
    flags: libc::c_int,
    attr_set: u64,
    userns: &OwnedFd,
) -> std::result::Result<(), nix::errno::Errno> {
    setattr(fd, flags, attr_set, Some(userns))
}

fn setattr(
    fd: &OwnedFd,
    flags: libc::c_int,
    attr_set: u64,
    userns: Option<&OwnedFd>,
) -> std::result::Result<(), nix::errno::Errno> {
    let attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    // SAFETY: `attr` is a valid mount_attr of the size passed; "" with
    // AT_EMPTY_PATH names the descriptor's own mount.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// pivot_root needs the mount the rootfs is on not to be shared.
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // The mount holding the rootfs (its own, when it is a mount point as
    // an overlay is): the rest of the tree keeps its propagation.
    let parent = rootfs;
    let mut best: Option<PathBuf> = None;
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = PathBuf::from(mp.replace("\\040", " "));
        if parent.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|b| mp.as_os_str().len() > b.as_os_str().len())
        {
            best = Some(mp);
        }
    }
    let mp = best.unwrap_or_else(|| PathBuf::from("/"));
    mnt(None, &mp.to_string_lossy(), None, MsFlags::MS_PRIVATE, None)
        .map_err(|e| merr(&mp.to_string_lossy(), "make rootfs parent private", e))
}

/// Makes the rootfs the root: pivot_root and drop the old root, or, with
/// `no_pivot`, move it over / and chroot.
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<()> {
    let r = rootfs.to_string_lossy();
    nix::unistd::chdir(rootfs).map_err(|e| merr(&r, "chdir", e))?;
    if no_pivot {
        mnt(Some(&r), "/", None, MsFlags::MS_MOVE, None)
            .map_err(|e| merr(&r, "move rootfs to /", e))?;
        nix::unistd::chroot(".").map_err(|e| merr(&r, "chroot", e))?;
    } else {
        // Held to step onto the old root once it is stacked over the new one: "." would
        // name the new root's own mount, and making that a slave would cut the
        // container's shared mounts off from their host peers.
        let old_root = nix::fcntl::open(
            "/",
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| merr("/", "open old root", e))?;
        nix::unistd::pivot_root(".", ".").map_err(|e| merr(&r, "pivot_root", e))?;
        nix::unistd::fchdir(&old_root).map_err(|e| merr("/", "chdir to old root", e))?;
        drop(old_root);
        // The old root must not take our unmount to the host.
        mnt(None, ".", None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
            .map_err(|e| merr("/", "make old root slave", e))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| merr("/", "unmount old root", e))?;
    }
    nix::unistd::chdir("/").map_err(|e| merr("/", "chdir", e))?;
    Ok(())
}

/// linux.rootfsPropagation on the new "/", recursively, once it is the root
/// (before, it would have gone to the old root).
pub fn apply_root_propagation(spec: &Spec) -> Result<()> {
    let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .filter(|p| !p.is_empty())
    else {
        return Ok(());
    };
    let o = parse_options(std::slice::from_ref(&p))?;
    for flag in o.propagation {
        mnt(None, "/", None, flag | MsFlags::MS_REC, None)
            .map_err(|e| merr("/", &format!("rootfs propagation {p}"), e))?;
    }
    Ok(())
}

/// After pivot: masked paths, read-only paths and a read-only rootfs.
pub fn finalize(spec: &Spec) -> Result<()> {
    let root = resolve::open_root(Path::new("/"))?;
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
    {
        let Ok(fd) = resolve(&root, &p, Create::No) else {
            continue;
        };
        let is_dir = std::fs::metadata(fd_path(&fd)).is_ok_and(|m| m.is_dir());
        let res = if is_dir {
            mnt(
                Some("tmpfs"),
                &fd_path(&fd),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )
        } else {
            mnt(
                Some("/dev/null"),
                &fd_path(&fd),
                None,
                MsFlags::MS_BIND,
                None,
            )
        };
        res.map_err(|e| merr(&p, "mask", e))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default()
    {
        let Ok(fd) = resolve(&root, &p, Create::No) else {
            continue;
        };
        let fp = fd_path(&fd);
        mnt(
            Some(&fp),
            &fp,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(|e| merr(&p, "bind read-only path", e))?;
        drop(fd);
        let on = resolve(&root, &p, Create::No)?;
        let locked = locked_flags(&on);
        mnt(
            None,
            &fd_path(&on),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | locked,
            None,
        )
        .map_err(|e| merr(&p, "remount read-only", e))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let locked = locked_flags(&root);
        mnt(
            None,
            "/",
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
            None,
        )
        .map_err(|e| merr("/", "remount rootfs read-only", e))?;
    }
    Ok(())
}

/// Binds the terminal's slave onto /dev/console.
pub fn mount_console(slave_path: &str) -> Result<()> {
    let root = resolve::open_root(Path::new("/"))?;
    let t = resolve(&root, "/dev/console", Create::File)?;
    mnt(Some(slave_path), &fd_path(&t), None, MsFlags::MS_BIND, None)
        .map_err(|e| merr("/dev/console", "bind", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_split() {
        let o = parse_options(&s(&[
            "rbind",
            "rprivate",
            "nosuid",
            "ro",
            "size=65536k",
            "mode=755",
        ]))
        .unwrap();
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID | MsFlags::MS_RDONLY
        );
        assert_eq!(o.propagation, [MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert_eq!(o.data, ["size=65536k", "mode=755"]);
        let o = parse_options(&s(&["ro", "rw", "rro", "slave"])).unwrap();
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.rro);
        assert_eq!(o.propagation, [MsFlags::MS_SLAVE]);
        let o = parse_options(&s(&["rshared"])).unwrap();
        assert_eq!(o.propagation, [MsFlags::MS_SHARED | MsFlags::MS_REC]);
        // Id-mapping is no mount flag: made ahead by `idmap`.
        assert_eq!(
            parse_options(&s(&["idmap", "ridmap"])).unwrap(),
            Options::default()
        );
    }
}
