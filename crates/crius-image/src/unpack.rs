//! Unpacks one layer tar into a directory, in the form overlayfs reads.
//!
//! * `.wh.NAME` becomes an overlay whiteout: a character device 0/0 named NAME.
//! * `.wh..wh..opq` marks its directory opaque: `trusted.overlay.opaque=y`.
//! * Ownership, modes (setuid/setgid included), mtimes, xattrs (PAX
//!   `SCHILY.xattr.*`), hard links, symlinks, device nodes, FIFOs and GNU
//!   sparse files (written with holes) are kept.
//!
//! Nothing outside the destination is ever changed, whatever the entries and
//! their order. Every entry's parent is opened with openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS), so a parent that is (or became) a symlink is refused
//! rather than followed, and every change is made through that directory's
//! descriptor with the `*at` call that does not follow the last component, or
//! on a descriptor of the new file itself (`O_NOFOLLOW`, `O_EXCL`). The pass
//! that sets directory modes and mtimes at the end opens each directory the
//! same way, so a directory replaced by a symlink since is skipped, never
//! followed. Entries with `..` or absolute paths are refused, and hard-link
//! targets are resolved the same way as parents.
//!
//! Bounds ([`LayerLimits`]): the bytes of the tar stream (plus what sparse
//! files expand to) and the number of entries, checked as they are read; the
//! header records in front of one entry (GNU long names, PAX records, sparse
//! maps) may take at most [`MAX_HEADER_BYTES`], since the tar crate reads them
//! into memory.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, makedev, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::Error;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Most bytes of header records (GNU long names and links, PAX records,
/// sparse maps) in front of one entry. PATH_MAX is 4 KiB and real PAX records
/// are a few hundred bytes; the tar crate holds them in memory.
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Default of `max_layer_size`: bytes of one decompressed layer.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 32 << 30;
/// Default of `max_layer_entries`: entries in one layer.
pub const DEFAULT_MAX_LAYER_ENTRIES: u64 = 2_000_000;

/// How large a layer may be; passing a bound fails the unpack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerLimits {
    /// Bytes of the decompressed tar stream plus what sparse files expand to.
    pub max_size: u64,
    /// Tar entries, header-only ones included.
    pub max_entries: u64,
}

impl Default for LayerLimits {
    fn default() -> Self {
        LayerLimits {
            max_size: DEFAULT_MAX_LAYER_SIZE,
            max_entries: DEFAULT_MAX_LAYER_ENTRIES,
        }
    }
}

/// What unpacking left on disk, for fs_usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
}

#[derive(Clone, Copy, Debug)]
struct DirMeta {
    mode: u32,
    mtime: u64,
}

/// Which bound a read passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trip {
    Size,
    Header,
}

/// Counts what the tar parser reads, refusing to go past the bounds.
struct Meter {
    read: Cell<u64>,
    /// Sparse expansion charged to the size bound.
    extra: Cell<u64>,
    /// Where the header records of the next entry started, while reading them.
    header_start: Cell<Option<u64>>,
    tripped: Cell<Option<Trip>>,
    max_size: u64,
}

impl Meter {
    fn trip(&self, t: Trip) -> io::Error {
        self.tripped.set(Some(t));
        io::Error::other(match t {
            Trip::Size => "layer size bound passed",
            Trip::Header => "header records bound passed",
        })
    }

    fn total(&self) -> u64 {
        self.read.get().saturating_add(self.extra.get())
    }

    fn charge(&self, bytes: u64) -> io::Result<()> {
        self.extra.set(self.extra.get().saturating_add(bytes));
        if self.total() > self.max_size {
            return Err(self.trip(Trip::Size));
        }
        Ok(())
    }
}

struct Metered<'m, R> {
    inner: R,
    meter: &'m Meter,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let m = self.meter;
        if let Some(t) = m.tripped.get() {
            return Err(m.trip(t));
        }
        let n = self.inner.read(buf)?;
        m.read.set(m.read.get() + n as u64);
        if m.total() > m.max_size {
            return Err(m.trip(Trip::Size));
        }
        if let Some(start) = m.header_start.get() {
            // one block of padding of the entry before, then the records
            if m.read.get() - start > MAX_HEADER_BYTES + 1024 {
                return Err(m.trip(Trip::Header));
            }
        }
        Ok(n)
    }
}

/// Unpacks the tar stream `reader` into `dest` (an existing empty directory).
/// `layer` names the layer (and its image) in errors.
pub fn unpack_layer<R: Read>(
    reader: R,
    dest: &Path,
    layer: &str,
    limits: &LayerLimits,
) -> Result<UnpackStats, Error> {
    let meter = Meter {
        read: Cell::new(0),
        extra: Cell::new(0),
        header_start: Cell::new(None),
        tripped: Cell::new(None),
        max_size: limits.max_size,
    };
    let root: OwnedFd = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dest)
        .map_err(|e| Error::io(dest, e))?
        .into();
    let mut u = Unpacker {
        root: Rc::new(root),
        dest,
        layer,
        cached: None,
        dirs: HashMap::new(),
        stats: UnpackStats::default(),
        buf: vec![0u8; COPY_BUF],
        meter: &meter,
    };
    let result = u.run(
        Metered {
            inner: reader,
            meter: &meter,
        },
        limits,
    );
    match (result, meter.tripped.get()) {
        (Err(_), Some(Trip::Size)) => Err(Error::LimitExceeded {
            what: format!("layer {layer}"),
            found: format!("more than {} bytes unpacked", limits.max_size),
            key: "max_layer_size",
            limit: limits.max_size,
        }),
        (Err(_), Some(Trip::Header)) => Err(Error::InvalidLayer {
            layer: layer.to_string(),
            reason: format!("header records of one entry take more than {MAX_HEADER_BYTES} bytes"),
        }),
        (r, _) => r.map(|()| u.stats),
    }
}

struct Unpacker<'a> {
    /// The destination, opened without following links.
    root: Rc<OwnedFd>,
    dest: &'a Path,
    layer: &'a str,
    /// The parent directory opened last: entries come grouped by directory.
    cached: Option<(PathBuf, Rc<OwnedFd>)>,
    /// Directory modes and mtimes applied at the end; the last entry wins.
    dirs: HashMap<PathBuf, DirMeta>,
    stats: UnpackStats,
    /// Reused for file contents: larger writes than io::copy's 8 KiB.
    buf: Vec<u8>,
    meter: &'a Meter,
}

const COPY_BUF: usize = 256 * 1024;

/// Copies `r` to `w` through `buf`. With `sparse`, blocks of zeros become holes
/// (seeks) and the file is sized at the end.
fn copy_with(buf: &mut [u8], r: &mut impl Read, w: &mut File, sparse: bool) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if sparse && buf[..n].iter().all(|b| *b == 0) {
            w.seek(SeekFrom::Current(n as i64))?;
        } else {
            w.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
    if sparse {
        w.set_len(total)?;
    }
    Ok(total)
}

/// Extended attributes and owner overrides from PAX headers.
struct Pax {
    xattrs: Vec<(String, Vec<u8>)>,
    uid: Option<u64>,
    gid: Option<u64>,
}

fn nix_io(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// How parents and hard-link targets are resolved: below the root, through no
/// symlink at all, into no other mount.
fn beneath_no_symlinks() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

impl<'a> Unpacker<'a> {
    fn run<R: Read>(&mut self, reader: Metered<'_, R>, limits: &LayerLimits) -> Result<(), Error> {
        let mut archive = tar::Archive::new(reader);
        let mut entries = archive.entries().map_err(|e| self.bad_archive(e))?;
        let mut count = 0u64;
        loop {
            self.meter.header_start.set(Some(self.meter.read.get()));
            let next = entries.next();
            self.meter.header_start.set(None);
            let Some(entry) = next else { break };
            let mut entry = entry.map_err(|e| self.bad_archive(e))?;
            count += 1;
            if count > limits.max_entries {
                return Err(Error::LimitExceeded {
                    what: format!("layer {}", self.layer),
                    found: format!("more than {} entries", limits.max_entries),
                    key: "max_layer_entries",
                    limit: limits.max_entries,
                });
            }
            self.entry(&mut entry)?;
            // data of entries that carry no content (or that were skipped)
            io::copy(&mut entry, &mut io::sink()).map_err(|e| self.bad_archive(e))?;
        }
        self.finish_dirs()
    }

    fn bad_archive(&self, e: io::Error) -> Error {
        Error::InvalidLayer {
            layer: self.layer.to_string(),
            reason: e.to_string(),
        }
    }

    fn unsafe_path(&self, path: &Path, reason: &str) -> Error {
        Error::UnsafeLayerPath {
            layer: self.layer.to_string(),
            path: path.to_string_lossy().into_owned(),
            reason: reason.to_string(),
        }
    }

    fn io(&self, rel: &Path, e: io::Error) -> Error {
        Error::io(self.dest.join(rel), e)
    }

    /// Turns an archive path into a clean relative path, or refuses it.
    fn clean(&self, raw: &Path) -> Result<PathBuf, Error> {
        let mut out = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(p) => out.push(p),
                Component::CurDir => {}
                Component::ParentDir => return Err(self.unsafe_path(raw, "contains '..'")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.unsafe_path(raw, "absolute path"))
                }
            }
        }
        Ok(out)
    }

    /// Opens the directory `rel` below the root, refusing any symlink on the way.
    fn open_dir(&self, rel: &Path) -> nix::Result<OwnedFd> {
        openat2(
            self.root.as_fd(),
            rel,
            OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(beneath_no_symlinks()),
        )
    }

    /// The parent directory of an entry, opened without following links;
    /// missing parents are created (mode 0755, root-owned, as tar does).
    fn parent_dir(&mut self, raw: &Path, parent: &Path) -> Result<Rc<OwnedFd>, Error> {
        if parent.as_os_str().is_empty() {
            return Ok(self.root.clone());
        }
        if let Some((p, fd)) = &self.cached {
            if p == parent {
                return Ok(fd.clone());
            }
        }
        let fd = match self.open_dir(parent) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => self.make_dirs(raw, parent)?,
            Err(Errno::ELOOP) | Err(Errno::EXDEV) => {
                return Err(self.unsafe_path(raw, "parent directory is a symlink"))
            }
            Err(Errno::ENOTDIR) => return Err(self.unsafe_path(raw, "parent is not a directory")),
            Err(e) => return Err(self.io(parent, nix_io(e))),
        };
        let fd = Rc::new(fd);
        self.cached = Some((parent.to_path_buf(), fd.clone()));
        Ok(fd)
    }

    /// Creates the missing directories of `parent`, one component at a time.
    fn make_dirs(&mut self, raw: &Path, parent: &Path) -> Result<OwnedFd, Error> {
        let mut dir = self
            .root
            .try_clone()
            .map_err(|e| self.io(Path::new(""), e))?;
        let mut cur = PathBuf::new();
        for c in parent.components() {
            cur.push(c);
            let created = match mkdirat(dir.as_fd(), c.as_os_str(), Mode::from_bits_truncate(0o755))
            {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(Errno::ENOTDIR) => {
                    return Err(self.unsafe_path(raw, "parent is not a directory"))
                }
                Err(e) => return Err(self.io(&cur, nix_io(e))),
            };
            let next = match openat(
                dir.as_fd(),
                c.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::ELOOP) => {
                    return Err(self.unsafe_path(raw, "parent directory is a symlink"))
                }
                Err(Errno::ENOTDIR) => {
                    return Err(self.unsafe_path(raw, "parent is not a directory"))
                }
                Err(e) => return Err(self.io(&cur, nix_io(e))),
            };
            if created {
                // whatever the umask
                nix::sys::stat::fchmod(next.as_fd(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| self.io(&cur, nix_io(e)))?;
                self.stats.entries += 1;
            }
            dir = next;
        }
        Ok(dir)
    }

    /// Removes whatever sits at `name` in `dir`, unless it is a directory and
    /// `keep_dir`. Returns true when a directory was kept.
    fn clear(&mut self, dir: &OwnedFd, rel: &Path, keep_dir: bool) -> Result<bool, Error> {
        let name = file_name(rel);
        match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                if keep_dir {
                    return Ok(true);
                }
                // std's remove_dir_all opens each level with O_NOFOLLOW; the
                // /proc path starts at the checked parent's descriptor
                fs::remove_dir_all(fd_child_path(dir, name)).map_err(|e| self.io(rel, e))?;
                self.cached = None;
                self.dirs.retain(|d, _| !d.starts_with(rel));
                Ok(false)
            }
            Ok(_) => {
                unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| self.io(rel, nix_io(e)))?;
                Ok(false)
            }
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.io(rel, nix_io(e))),
        }
    }

    fn pax(&self, entry: &mut tar::Entry<'_, impl Read>) -> Result<Pax, Error> {
        let mut pax = Pax {
            xattrs: Vec::new(),
            uid: None,
            gid: None,
        };
        let exts = entry.pax_extensions().map_err(|e| self.bad_archive(e))?;
        let Some(exts) = exts else {
            return Ok(pax);
        };
        for ext in exts {
            let ext = ext.map_err(|e| self.bad_archive(e))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                // overlay's own attributes decide what lower layers show; only
                // the unpacker sets them (opaque dirs), never the archive.
                if name.starts_with("trusted.overlay.") {
                    continue;
                }
                pax.xattrs
                    .push((name.to_string(), ext.value_bytes().to_vec()));
            } else if key == "uid" {
                pax.uid = ext.value().ok().and_then(|v| v.trim().parse().ok());
            } else if key == "gid" {
                pax.gid = ext.value().ok().and_then(|v| v.trim().parse().ok());
            }
        }
        Ok(pax)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Error> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // describes the archive, not a file; never read into memory
            return Ok(());
        }
        let raw = entry.path().map_err(|e| self.bad_archive(e))?.into_owned();
        let rel = self.clean(&raw)?;
        let header = entry.header().clone();
        let pax = self.pax(entry)?;
        let uid = owner_id(pax.uid.unwrap_or_else(|| header.uid().unwrap_or(0)));
        let gid = owner_id(pax.gid.unwrap_or_else(|| header.gid().unwrap_or(0)));
        let (Some(uid), Some(gid)) = (uid, gid) else {
            return Err(self.unsafe_path(&raw, "owner id out of range"));
        };
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);

        if rel.as_os_str().is_empty() {
            // "./": the layer root itself
            if kind.is_dir() {
                self.dirs.insert(rel, DirMeta { mode, mtime });
                std::os::unix::fs::fchown(&*self.root, Some(uid), Some(gid))
                    .map_err(|e| self.io(Path::new(""), e))?;
            }
            return Ok(());
        }

        let name = file_name(&rel).to_owned();
        if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&raw, &rel, &name);
        }

        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let dir = self.parent_dir(&raw, &parent)?;
        match kind {
            tar::EntryType::Directory => {
                if !self.clear(&dir, &rel, true)? {
                    mkdirat(
                        dir.as_fd(),
                        name.as_os_str(),
                        Mode::from_bits_truncate(0o700),
                    )
                    .map_err(|e| self.io(&rel, nix_io(e)))?;
                    self.stats.entries += 1;
                }
                let d = openat(
                    dir.as_fd(),
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.io(&rel, nix_io(e)))?;
                std::os::unix::fs::fchown(&d, Some(uid), Some(gid))
                    .map_err(|e| self.io(&rel, e))?;
                for (n, v) in &pax.xattrs {
                    fset_xattr(d.as_fd(), n, v).map_err(|e| self.io(&rel, e))?;
                }
                self.dirs.insert(rel, DirMeta { mode, mtime });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.clear(&dir, &rel, false)?;
                let fd = openat(
                    dir.as_fd(),
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.io(&rel, nix_io(e)))?;
                let mut f = File::from(fd);
                let sparse = kind == tar::EntryType::GNUSparse;
                if sparse {
                    self.meter
                        .charge(entry.size())
                        .map_err(|e| self.bad_archive(e))?;
                }
                let mut buf = std::mem::take(&mut self.buf);
                let copied = copy_with(&mut buf, entry, &mut f, sparse);
                self.buf = buf;
                copied.map_err(|e| self.io(&rel, e))?;
                // chown clears setuid/setgid and file capabilities: chown first,
                // then the mode, then the xattrs.
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                    .map_err(|e| self.io(&rel, e))?;
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| self.io(&rel, e))?;
                for (n, v) in &pax.xattrs {
                    fset_xattr(f.as_fd(), n, v).map_err(|e| self.io(&rel, e))?;
                }
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
                f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
                    .map_err(|e| self.io(&rel, e))?;
                self.stats.entries += 1;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.bad_archive(e))?
                    .ok_or_else(|| self.unsafe_path(&raw, "symlink without target"))?
                    .into_owned();
                self.clear(&dir, &rel, false)?;
                symlinkat(target.as_os_str(), dir.as_fd(), name.as_os_str())
                    .map_err(|e| self.io(&rel, nix_io(e)))?;
                self.node_meta(&dir, &rel, uid, gid, None, &pax.xattrs, mtime)?;
                self.stats.entries += 1;
            }
            tar::EntryType::Link => {
                let raw_target = entry
                    .link_name()
                    .map_err(|e| self.bad_archive(e))?
                    .ok_or_else(|| self.unsafe_path(&raw, "hard link without target"))?
                    .into_owned();
                let target = self.clean(&raw_target)?;
                if target.as_os_str().is_empty() {
                    return Err(self.unsafe_path(&raw_target, "hard link to the layer root"));
                }
                let target_dir = self.link_target(&raw_target, &target)?;
                if target == rel {
                    return Ok(());
                }
                self.clear(&dir, &rel, false)?;
                // linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink
                linkat(
                    target_dir.as_fd(),
                    file_name(&target),
                    dir.as_fd(),
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| self.io(&rel, nix_io(e)))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.clear(&dir, &rel, false)?;
                mknodat(
                    dir.as_fd(),
                    name.as_os_str(),
                    sflag,
                    Mode::from_bits_truncate(mode & 0o777),
                    makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| self.io(&rel, nix_io(e)))?;
                self.node_meta(&dir, &rel, uid, gid, Some(mode), &pax.xattrs, mtime)?;
                self.stats.entries += 1;
            }
            // other metadata-only entries
            _ => {}
        }
        Ok(())
    }

    /// Owner, mode, xattrs and mtime of a symlink, device node or FIFO just
    /// made in `dir`: through `dir` without following the name, or through an
    /// `O_PATH | O_NOFOLLOW` descriptor of the node itself.
    #[allow(clippy::too_many_arguments)]
    fn node_meta(
        &self,
        dir: &OwnedFd,
        rel: &Path,
        uid: u32,
        gid: u32,
        mode: Option<u32>,
        xattrs: &[(String, Vec<u8>)],
        mtime: u64,
    ) -> Result<(), Error> {
        let name = file_name(rel);
        fchownat(
            dir.as_fd(),
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io(rel, nix_io(e)))?;
        if mode.is_some() || !xattrs.is_empty() {
            let node = openat(
                dir.as_fd(),
                name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.io(rel, nix_io(e)))?;
            // /proc/self/fd/N names exactly the node the descriptor holds
            let path = fd_path(&node);
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(|e| self.io(rel, e))?;
            }
            for (n, v) in xattrs {
                set_xattr_following(&path, n, v).map_err(|e| self.io(rel, e))?;
            }
        }
        let t = TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
        utimensat(dir.as_fd(), name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| self.io(rel, nix_io(e)))?;
        Ok(())
    }

    /// The directory holding a hard link's target, which must exist in this
    /// layer, reached without symlinks, and not be a directory.
    fn link_target(&self, raw: &Path, rel: &Path) -> Result<OwnedFd, Error> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = match self.open_dir(parent) {
            Ok(d) => d,
            Err(Errno::ELOOP) | Err(Errno::EXDEV) => {
                return Err(self.unsafe_path(raw, "hard link target goes through a symlink"))
            }
            Err(_) => {
                return Err(self.unsafe_path(raw, "hard link target does not exist in the layer"))
            }
        };
        match fstatat(dir.as_fd(), file_name(rel), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => Ok(dir),
            Ok(_) => Err(self.unsafe_path(raw, "hard link to a directory")),
            Err(_) => Err(self.unsafe_path(raw, "hard link target does not exist in the layer")),
        }
    }

    fn whiteout(&mut self, raw: &Path, rel: &Path, name: &OsStr) -> Result<(), Error> {
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if name.as_bytes() == OPAQUE_MARKER.as_bytes() {
            let dir = self.parent_dir(raw, &parent)?;
            fset_xattr(dir.as_fd(), OVERLAY_OPAQUE_XATTR, b"y").map_err(|e| self.io(&parent, e))?;
            return Ok(());
        }
        let hidden = &name.as_bytes()[WHITEOUT_PREFIX.len()..];
        if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(self.unsafe_path(raw, "invalid whiteout name"));
        }
        let target_rel = parent.join(OsStr::from_bytes(hidden));
        let dir = self.parent_dir(raw, &parent)?;
        self.clear(&dir, &target_rel, false)?;
        mknodat(
            dir.as_fd(),
            OsStr::from_bytes(hidden),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(|e| self.io(&target_rel, nix_io(e)))?;
        self.stats.entries += 1;
        Ok(())
    }

    /// Directory modes and mtimes last: children change the mtime, and a
    /// read-only mode would be applied before its contents exist. Each
    /// directory is opened again without following links: one that a later
    /// entry replaced or removed is skipped.
    fn finish_dirs(&mut self) -> Result<(), Error> {
        self.cached = None;
        for (path, d) in &self.dirs {
            let fd = if path.as_os_str().is_empty() {
                self.root.try_clone().map_err(|e| self.io(path, e))?
            } else {
                match self.open_dir(path) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT) | Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => continue,
                    Err(e) => return Err(self.io(path, nix_io(e))),
                }
            };
            let f = File::from(fd);
            f.set_permissions(fs::Permissions::from_mode(d.mode))
                .map_err(|e| self.io(path, e))?;
            let t = TimeSpec::new(i64::try_from(d.mtime).unwrap_or(0), 0);
            nix::sys::stat::futimens(f.as_fd(), &t, &t).map_err(|e| self.io(path, nix_io(e)))?;
        }
        Ok(())
    }
}

fn file_name(rel: &Path) -> &OsStr {
    rel.file_name().unwrap_or_default()
}

fn owner_id(id: u64) -> Option<u32> {
    u32::try_from(id).ok()
}

/// `/proc/self/fd/N`: the file a descriptor holds, for calls that have no
/// descriptor form.
fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `/proc/self/fd/N/NAME`: NAME inside the directory a descriptor holds.
fn fd_child_path(dir: &impl AsRawFd, name: &OsStr) -> PathBuf {
    fd_path(dir).join(name)
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `fsetxattr(2)` on an open file or directory.
fn fset_xattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let n = cname(name)?;
    // SAFETY: the fd is open, the name is NUL-terminated and the value pointer and
    // length describe a valid slice, all live across the call.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `setxattr(2)` on a `/proc/self/fd/N` path: the magic link leads to the very
/// node the descriptor holds (a symlink stays the symlink).
fn set_xattr_following(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = cname(name)?;
    // SAFETY: both strings are NUL-terminated and live across the call; the value
    // pointer and length describe a valid slice.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `lgetxattr(2)` of a small value (None when unset), to inspect unpacked layers.
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = cpath(path)?;
    let n = cname(name)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: the strings are NUL-terminated, the buffer is valid for its length.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODATA) {
            return Ok(None);
        }
        return Err(e);
    }
    buf.truncate(rc as usize);
    Ok(Some(buf))
}

/// Bytes (allocated blocks) and inodes under `dir`, hard links counted once.
pub(crate) fn disk_usage(dir: &Path) -> io::Result<(u64, u64)> {
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = fs::symlink_metadata(&d)?;
        if seen.insert((m.dev(), m.ino())) {
            bytes += m.blocks() * 512;
            inodes += 1;
        }
        if !m.file_type().is_dir() {
            continue;
        }
        for e in fs::read_dir(&d)? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                let m = e.metadata()?;
                if seen.insert((m.dev(), m.ino())) {
                    bytes += m.blocks() * 512;
                    inodes += 1;
                }
            }
        }
    }
    Ok((bytes, inodes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;
    use std::path::Path;

    /// Builds a tar in memory from (path, kind) rows.
    struct TarBuilder {
        b: tar::Builder<Vec<u8>>,
    }

    impl TarBuilder {
        fn new() -> Self {
            TarBuilder {
                b: tar::Builder::new(Vec::new()),
            }
        }
        fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_000_000);
            h.set_size(0);
            h
        }
        /// Writes the raw name bytes, bypassing the tar crate's own path checks.
        fn raw_name(h: &mut tar::Header, name: &str) {
            let bytes = name.as_bytes();
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..bytes.len()].copy_from_slice(bytes);
        }
        fn dir(mut self, name: &str, mode: u32) -> Self {
            let mut h = Self::header(tar::EntryType::Directory, mode);
            Self::raw_name(&mut h, name);
            h.set_cksum();
            self.b.append(&h, io::empty()).unwrap();
            self
        }
        fn file(mut self, name: &str, data: &[u8], mode: u32, uid: u64) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, mode);
            Self::raw_name(&mut h, name);
            h.set_size(data.len() as u64);
            h.set_uid(uid);
            h.set_gid(uid);
            h.set_cksum();
            self.b.append(&h, data).unwrap();
            self
        }
        fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Self {
            let mut h = Self::header(kind, 0o777);
            Self::raw_name(&mut h, name);
            let t = target.as_bytes();
            let old = h.as_old_mut();
            old.linkname = [0; 100];
            old.linkname[..t.len()].copy_from_slice(t);
            h.set_cksum();
            self.b.append(&h, io::empty()).unwrap();
            self
        }
        fn device(mut self, name: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
            let mut h = Self::header(kind, 0o666);
            Self::raw_name(&mut h, name);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            h.set_cksum();
            self.b.append(&h, io::empty()).unwrap();
            self
        }
        fn file_with_xattr(mut self, name: &str, xname: &str, xval: &[u8]) -> Self {
            let key = format!("SCHILY.xattr.{xname}");
            self.b
                .append_pax_extensions([(key.as_str(), xval)])
                .unwrap();
            self.file(name, b"x", 0o644, 0)
        }
        fn bytes(self) -> Vec<u8> {
            self.b.into_inner().unwrap()
        }
    }

    fn unpack(tar: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, Error>) {
        let dir = tempfile::tempdir().unwrap();
        let r = unpack_layer(tar, dir.path(), "sha256:test", &LayerLimits::default());
        (dir, r)
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn tar_slip_with_dotdot_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        let name = format!("../../../../../../../..{}", victim.display());
        let tar = TarBuilder::new().file(&name, b"pwned", 0o644, 0).bytes();
        let (_d, r) = unpack(&tar);
        match r {
            Err(Error::UnsafeLayerPath { reason, .. }) => {
                assert!(reason.contains(".."), "{reason}")
            }
            other => panic!("expected UnsafeLayerPath, got {other:?}"),
        }
        assert!(!victim.exists());
        let tar = TarBuilder::new()
            .file("a/../../x", b"pwned", 0o644, 0)
            .bytes();
        assert!(matches!(unpack(&tar).1, Err(Error::UnsafeLayerPath { .. })));
    }

    #[test]
    fn absolute_paths_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("abs");
        let tar = TarBuilder::new()
            .file(&victim.display().to_string(), b"pwned", 0o644, 0)
            .bytes();
        let (_d, r) = unpack(&tar);
        assert!(matches!(r, Err(Error::UnsafeLayerPath { .. })), "{r:?}");
        assert!(!victim.exists());
    }

    #[test]
    fn writing_through_a_symlink_that_leads_out_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let tar = TarBuilder::new()
            .link(
                tar::EntryType::Symlink,
                "escape",
                &outside.path().display().to_string(),
            )
            .file("escape/pwned", b"pwned", 0o644, 0)
            .bytes();
        let (_d, r) = unpack(&tar);
        match r {
            Err(Error::UnsafeLayerPath { path, reason, .. }) => {
                assert_eq!(path, "escape/pwned");
                assert!(reason.contains("symlink"), "{reason}");
            }
            other => panic!("expected UnsafeLayerPath, got {other:?}"),
        }
        assert!(!outside.path().join("pwned").exists());

        // relative symlink climbing out, then a hard link through it
        let tar = TarBuilder::new()
            .link(tar::EntryType::Symlink, "up", "../../../../../../etc")
            .link(tar::EntryType::Link, "stolen", "up/passwd")
            .bytes();
        let (d, r) = unpack(&tar);
        assert!(matches!(r, Err(Error::UnsafeLayerPath { .. })), "{r:?}");
        assert!(!d.path().join("stolen").exists());
    }

    #[test]
    fn a_later_entry_replaces_a_symlink_instead_of_following_it() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("t");
        fs::write(&target, "original").unwrap();
        let tar = TarBuilder::new()
            .link(tar::EntryType::Symlink, "f", &target.display().to_string())
            .file("f", b"new", 0o644, 0)
            .bytes();
        let (d, r) = unpack(&tar);
        r.unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "original");
        assert_eq!(fs::read_to_string(d.path().join("f")).unwrap(), "new");
    }

    #[test]
    fn files_dirs_symlinks_hardlinks_and_modes_are_kept() {
        let tar = TarBuilder::new()
            .dir("bin/", 0o755)
            .file("bin/busybox", b"#!binary", 0o4755, 0)
            .link(tar::EntryType::Link, "bin/ls", "bin/busybox")
            .link(tar::EntryType::Link, "./bin/cat", "./bin/busybox")
            .link(tar::EntryType::Symlink, "bin/sh", "busybox")
            .dir("ro/", 0o555)
            .file("ro/f", b"data", 0o400, 1234)
            .file("deep/implicit/parent", b"p", 0o644, 0)
            .bytes();
        let (d, r) = unpack(&tar);
        r.unwrap();
        let p = d.path();
        let bb = fs::metadata(p.join("bin/busybox")).unwrap();
        assert_eq!(bb.nlink(), 3);
        assert_eq!(fs::metadata(p.join("bin/ls")).unwrap().ino(), bb.ino());
        assert_eq!(fs::metadata(p.join("bin/cat")).unwrap().ino(), bb.ino());
        assert_eq!(bb.mode() & 0o7777, 0o4755);
        assert_eq!(bb.mtime(), 1_000_000);
        assert_eq!(
            fs::read_link(p.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(fs::metadata(p.join("ro")).unwrap().mode() & 0o7777, 0o555);
        assert_eq!(fs::metadata(p.join("ro")).unwrap().mtime(), 1_000_000);
        let f = fs::metadata(p.join("ro/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o400);
        if is_root() {
            assert_eq!((f.uid(), f.gid()), (1234, 1234));
        }
        assert_eq!(fs::read(p.join("deep/implicit/parent")).unwrap(), b"p");
        assert_eq!(fs::metadata(p.join("deep")).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn hard_link_to_missing_target_is_refused() {
        let tar = TarBuilder::new()
            .link(tar::EntryType::Link, "a", "does/not/exist")
            .bytes();
        assert!(matches!(unpack(&tar).1, Err(Error::UnsafeLayerPath { .. })));
        let tar = TarBuilder::new()
            .link(tar::EntryType::Link, "a", "/etc/passwd")
            .bytes();
        assert!(matches!(unpack(&tar).1, Err(Error::UnsafeLayerPath { .. })));
    }

    #[test]
    fn whiteouts_become_overlay_char_devices_and_opaque_xattrs() {
        if !is_root() {
            eprintln!("skipped: whiteouts need root (mknod, trusted xattrs)");
            return;
        }
        let tar = TarBuilder::new()
            .dir("etc/", 0o755)
            .file("etc/.wh.removed.conf", b"", 0o644, 0)
            .dir("var/cache/", 0o755)
            .file("var/cache/.wh..wh..opq", b"", 0o644, 0)
            .file("var/cache/kept", b"k", 0o644, 0)
            .file("gone/.wh..wh..opq", b"", 0o644, 0)
            .file(".wh.toplevel", b"", 0o644, 0)
            .bytes();
        let (d, r) = unpack(&tar);
        r.unwrap();
        let p = d.path();
        let wh = fs::symlink_metadata(p.join("etc/removed.conf")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!p.join("etc/.wh.removed.conf").exists());
        assert!(fs::symlink_metadata(p.join("toplevel"))
            .unwrap()
            .file_type()
            .is_char_device());
        assert_eq!(
            get_xattr(&p.join("var/cache"), OVERLAY_OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        assert!(!p.join("var/cache/.wh..wh..opq").exists());
        assert!(p.join("var/cache/kept").exists());
        assert_eq!(
            get_xattr(&p.join("gone"), OVERLAY_OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
    }

    #[test]
    fn whiteout_names_cannot_escape() {
        let tar = TarBuilder::new().file("a/.wh...", b"", 0o644, 0).bytes();
        assert!(matches!(unpack(&tar).1, Err(Error::UnsafeLayerPath { .. })));
    }

    #[test]
    fn device_nodes_fifos_and_xattrs() {
        if !is_root() {
            eprintln!("skipped: device nodes need root");
            return;
        }
        let tar = TarBuilder::new()
            .dir("dev/", 0o755)
            .device("dev/null", tar::EntryType::Char, 1, 3)
            .device("dev/loopx", tar::EntryType::Block, 7, 200)
            .device("fifo", tar::EntryType::Fifo, 0, 0)
            .file_with_xattr("cap", "user.crius-test", b"hello")
            .file_with_xattr("sneaky", "trusted.overlay.redirect", b"/etc")
            .bytes();
        let (d, r) = unpack(&tar);
        r.unwrap();
        let p = d.path();
        let null = fs::symlink_metadata(p.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        let blk = fs::symlink_metadata(p.join("dev/loopx")).unwrap();
        assert!(blk.file_type().is_block_device());
        assert_eq!(blk.rdev(), makedev(7, 200));
        assert!(fs::symlink_metadata(p.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(
            get_xattr(&p.join("cap"), "user.crius-test").unwrap(),
            Some(b"hello".to_vec())
        );
        assert_eq!(
            get_xattr(&p.join("sneaky"), "trusted.overlay.redirect").unwrap(),
            None
        );
    }

    #[test]
    fn garbage_is_an_invalid_layer() {
        let (_d, r) = unpack(&[0x42u8; 1024]);
        assert!(matches!(r, Err(Error::InvalidLayer { .. })), "{r:?}");
    }

    /// A tree outside the layer that no layer may change: a file with an
    /// xattr, a directory, and what lstat says of each (ctime included, so a
    /// chmod or chown to the same value still shows).
    struct Sentinel {
        top: tempfile::TempDir,
    }

    type Snapshot = Vec<(PathBuf, Vec<i64>, Vec<u8>, Vec<u8>)>;

    impl Sentinel {
        fn new() -> Self {
            let top = tempfile::tempdir().unwrap();
            let s = top.path().join("sentinel");
            fs::create_dir(&s).unwrap();
            fs::create_dir(s.join("d")).unwrap();
            fs::write(s.join("f"), b"secret").unwrap();
            fs::write(s.join("d/g"), b"deeper").unwrap();
            fs::set_permissions(s.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
            fs::set_permissions(s.join("d"), fs::Permissions::from_mode(0o700)).unwrap();
            if is_root() {
                let path = s.join("f");
                let p = cpath(&path).unwrap();
                let n = cname("trusted.crius-sentinel").unwrap();
                // SAFETY: valid NUL-terminated strings and a valid value slice.
                let rc =
                    unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
                assert_eq!(rc, 0, "{}", io::Error::last_os_error());
            }
            fs::create_dir_all(top.path().join("layer/diff")).unwrap();
            Sentinel { top }
        }

        fn dir(&self) -> PathBuf {
            self.top.path().join("sentinel")
        }

        fn dest(&self) -> PathBuf {
            self.top.path().join("layer/diff")
        }

        /// Empties the layer dir for the next sequence.
        fn reset_dest(&self) {
            let d = self.dest();
            fs::remove_dir_all(&d).unwrap();
            fs::create_dir(&d).unwrap();
        }

        fn snapshot(&self) -> Snapshot {
            let mut out = Vec::new();
            let mut stack = vec![self.top.path().to_path_buf(), self.dir()];
            stack.extend(fs::read_dir(self.dir()).unwrap().map(|e| e.unwrap().path()));
            stack.push(self.dir().join("d/g"));
            for p in stack {
                let m = fs::symlink_metadata(&p).unwrap();
                let content = if m.file_type().is_file() {
                    fs::read(&p).unwrap()
                } else {
                    Vec::new()
                };
                let mut xattrs = vec![0u8; 4096];
                let cp = cpath(&p).unwrap();
                // SAFETY: valid path and buffer of the given length.
                let n = unsafe { libc::llistxattr(cp.as_ptr(), xattrs.as_mut_ptr().cast(), 4096) };
                xattrs.truncate(n.max(0) as usize);
                let stat = vec![
                    i64::from(m.mode()),
                    i64::from(m.uid()),
                    i64::from(m.gid()),
                    m.size() as i64,
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.ino() as i64,
                ];
                out.push((p, stat, content, xattrs));
            }
            out
        }
    }

    /// One tar entry of the hostile sequences.
    #[derive(Clone, Debug)]
    enum Kind {
        Dir,
        File,
        Symlink(String),
        HardLink(String),
        Char,
        Fifo,
    }

    fn raw_entry(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: &Kind,
        mode: u32,
        uid: u64,
        mtime: u64,
        xattr: Option<&str>,
    ) {
        if let Some(x) = xattr {
            let key = format!("SCHILY.xattr.{x}");
            b.append_pax_extensions([(key.as_str(), b"v".as_slice())])
                .unwrap();
        }
        let (ty, link, data): (tar::EntryType, Option<&str>, &[u8]) = match kind {
            Kind::Dir => (tar::EntryType::Directory, None, b""),
            Kind::File => (tar::EntryType::Regular, None, b"layer data"),
            Kind::Symlink(t) => (tar::EntryType::Symlink, Some(t), b""),
            Kind::HardLink(t) => (tar::EntryType::Link, Some(t), b""),
            Kind::Char => (tar::EntryType::Char, None, b""),
            Kind::Fifo => (tar::EntryType::Fifo, None, b""),
        };
        let mut h = TarBuilder::header(ty, mode);
        TarBuilder::raw_name(&mut h, name);
        if let Some(t) = link {
            let old = h.as_old_mut();
            old.linkname = [0; 100];
            old.linkname[..t.len()].copy_from_slice(t.as_bytes());
        }
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        if matches!(kind, Kind::Char) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    /// xorshift64: reproducible sequences without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
            &v[(self.next() % v.len() as u64) as usize]
        }
    }

    #[test]
    fn no_sequence_of_entries_changes_anything_outside_the_layer() {
        if !is_root() {
            eprintln!("skipped: needs root (owners, device nodes, trusted xattrs)");
            return;
        }
        let s = Sentinel::new();
        let abs_dir = s.dir().display().to_string();
        let abs_file = s.dir().join("f").display().to_string();
        let names = [
            "a",
            "a/b",
            "a/b/c",
            "b",
            "b/f",
            "a/.wh..wh..opq",
            "a/.wh.b",
            ".wh.a",
            "a/b/.wh..wh..opq",
            "./a",
            "b/.wh.f",
        ];
        let targets = [
            abs_dir.clone(),
            abs_file.clone(),
            "../../sentinel".to_string(),
            "../../../sentinel".to_string(),
            "../../../../sentinel/f".to_string(),
            "../../sentinel/d".to_string(),
            "a".to_string(),
        ];
        let xattrs = [None, Some("trusted.crius-test"), Some("user.crius-test")];
        let before = s.snapshot();
        let mut rng = Rng(0x5eed_c0ff_ee12_3457);
        let (mut ok, mut refused) = (0, 0);
        for round in 0..1500 {
            let mut b = tar::Builder::new(Vec::new());
            let mut seq = Vec::new();
            for _ in 0..(1 + rng.next() % 10) {
                let name = *rng.pick(&names);
                let kind = match rng.next() % 7 {
                    0 | 1 => Kind::Dir,
                    2 => Kind::File,
                    3 => Kind::Symlink(rng.pick(&targets).clone()),
                    4 => Kind::HardLink(rng.pick(&names).to_string()),
                    5 => Kind::Char,
                    _ => Kind::Fifo,
                };
                let mode = (rng.next() % 0o10000) as u32;
                let uid = rng.next() % 3000;
                let mtime = rng.next() % 2_000_000_000;
                let xattr = *rng.pick(&xattrs);
                raw_entry(&mut b, name, &kind, mode, uid, mtime, xattr);
                seq.push((name, kind, mode, uid, xattr));
            }
            let tar = b.into_inner().unwrap();
            match unpack_layer(
                tar.as_slice(),
                &s.dest(),
                "sha256:hostile",
                &LayerLimits::default(),
            ) {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            }
            let after = s.snapshot();
            assert_eq!(before, after, "round {round} changed the sentinel: {seq:?}");
            s.reset_dest();
        }
        eprintln!("{ok} layers unpacked, {refused} refused, sentinel unchanged");
        assert!(ok > 100 && refused > 100, "{ok} {refused}");
    }

    /// The cases the random sequences are meant to find, spelled out.
    #[test]
    fn replacing_a_directory_by_a_link_never_leads_the_fixups_out() {
        if !is_root() {
            eprintln!("skipped: needs root (owners, trusted xattrs)");
            return;
        }
        let s = Sentinel::new();
        let before = s.snapshot();
        let out = s.dir().display().to_string();
        let cases: Vec<Vec<(&str, Kind, u32)>> = vec![
            // the directory's mode and mtime are applied at the end
            vec![
                ("d", Kind::Dir, 0o777),
                ("d", Kind::Symlink(out.clone()), 0o777),
            ],
            vec![
                ("d", Kind::Dir, 0o777),
                ("d", Kind::Symlink("../../sentinel".into()), 0o777),
            ],
            // writing, whiteouts and opaque markers through the new symlink
            vec![
                ("d", Kind::Dir, 0o755),
                ("d", Kind::Symlink(out.clone()), 0o777),
                ("d/f", Kind::File, 0o4777),
            ],
            vec![
                ("d", Kind::Dir, 0o755),
                ("d", Kind::Symlink(out.clone()), 0o777),
                ("d/.wh.f", Kind::File, 0o644),
            ],
            vec![
                ("d", Kind::Symlink(out.clone()), 0o777),
                ("d/.wh..wh..opq", Kind::File, 0o644),
            ],
            vec![
                ("d", Kind::Symlink(out.clone()), 0o777),
                ("d/d", Kind::Dir, 0o777),
            ],
            // hard links through a symlink, and over a directory
            vec![
                ("s", Kind::Symlink(out.clone()), 0o777),
                ("h", Kind::HardLink("s/f".into()), 0o777),
            ],
            vec![
                ("f", Kind::File, 0o644),
                ("d", Kind::Dir, 0o777),
                ("d", Kind::HardLink("f".into()), 0o777),
            ],
            // metadata of a symlink entry itself
            vec![("s", Kind::Symlink(format!("{out}/f")), 0o777)],
            // a directory entry where a symlink stands
            vec![
                ("s", Kind::Symlink(out.clone()), 0o777),
                ("s", Kind::Dir, 0o777),
            ],
            vec![
                ("s", Kind::Symlink(out.clone()), 0o777),
                ("s", Kind::Char, 0o666),
            ],
            vec![
                ("s", Kind::Symlink(format!("{out}/f")), 0o777),
                ("s", Kind::File, 0o777),
            ],
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut b = tar::Builder::new(Vec::new());
            for (name, kind, mode) in case {
                raw_entry(
                    &mut b,
                    name,
                    kind,
                    *mode,
                    4321,
                    12345,
                    Some("trusted.crius-test"),
                );
            }
            let tar = b.into_inner().unwrap();
            let r = unpack_layer(
                tar.as_slice(),
                &s.dest(),
                "sha256:hostile",
                &LayerLimits::default(),
            );
            assert_eq!(
                before,
                s.snapshot(),
                "case {i} {case:?} changed the sentinel ({r:?})"
            );
            s.reset_dest();
        }
    }

    #[test]
    fn setuid_and_setgid_bits_survive_the_owner_change() {
        if !is_root() {
            eprintln!("skipped: needs root (owners)");
            return;
        }
        let tar = TarBuilder::new()
            .file("suid", b"x", 0o4755, 1234)
            .file("sgid", b"x", 0o2711, 1234)
            .dir("sticky/", 0o1777)
            .bytes();
        let (d, r) = unpack(&tar);
        r.unwrap();
        let m = |n: &str| fs::symlink_metadata(d.path().join(n)).unwrap();
        assert_eq!(m("suid").mode() & 0o7777, 0o4755);
        assert_eq!(m("sgid").mode() & 0o7777, 0o2711);
        assert_eq!((m("sgid").uid(), m("sgid").gid()), (1234, 1234));
        assert_eq!(m("sticky").mode() & 0o7777, 0o1777);
    }

    fn limits(max_size: u64, max_entries: u64) -> LayerLimits {
        LayerLimits {
            max_size,
            max_entries,
        }
    }

    #[test]
    fn a_layer_larger_than_its_bound_fails_while_reading() {
        let big = vec![7u8; 3 << 20];
        let tar = TarBuilder::new().file("big", &big, 0o644, 0).bytes();
        let d = tempfile::tempdir().unwrap();
        let r = unpack_layer(
            tar.as_slice(),
            d.path(),
            "sha256:big of image x",
            &limits(1 << 20, 100),
        );
        match r {
            Err(Error::LimitExceeded {
                key,
                limit,
                ref what,
                ..
            }) => {
                assert_eq!((key, limit), ("max_layer_size", 1 << 20));
                assert!(what.contains("sha256:big of image x"), "{what}");
                let msg = r.unwrap_err().to_string();
                assert!(msg.contains("crius.image.max_layer_size"), "{msg}");
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
        // the bound counts the stream: the file was cut short, never finished
        let written = fs::metadata(d.path().join("big"))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(written <= 1 << 20, "{written}");
        // a layer just under the bound passes
        let d = tempfile::tempdir().unwrap();
        unpack_layer(
            tar.as_slice(),
            d.path(),
            "l",
            &limits(tar.len() as u64, 100),
        )
        .unwrap();
    }

    #[test]
    fn a_layer_with_more_entries_than_its_bound_fails() {
        let mut t = TarBuilder::new();
        for i in 0..20 {
            t = t.file(&format!("f{i}"), b"", 0o644, 0);
        }
        let tar = t.bytes();
        let d = tempfile::tempdir().unwrap();
        let r = unpack_layer(tar.as_slice(), d.path(), "l", &limits(1 << 30, 10));
        assert!(
            matches!(
                r,
                Err(Error::LimitExceeded {
                    key: "max_layer_entries",
                    limit: 10,
                    ..
                })
            ),
            "{r:?}"
        );
        let d = tempfile::tempdir().unwrap();
        unpack_layer(tar.as_slice(), d.path(), "l", &limits(1 << 30, 20)).unwrap();
    }

    #[test]
    fn huge_header_records_are_refused_before_they_fill_memory() {
        // a GNU long name of 4 MiB
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        TarBuilder::raw_name(&mut h, "././@LongLink");
        h.set_size(4 << 20);
        h.set_cksum();
        b.append(&h, vec![b'a'; 4 << 20].as_slice()).unwrap();
        let mut f = TarBuilder::header(tar::EntryType::Regular, 0o644);
        TarBuilder::raw_name(&mut f, "short");
        f.set_cksum();
        b.append(&f, io::empty()).unwrap();
        let tar = b.into_inner().unwrap();
        let (_d, r) = unpack(&tar);
        match r {
            Err(Error::InvalidLayer { reason, .. }) => {
                assert!(reason.contains("header"), "{reason}")
            }
            other => panic!("expected InvalidLayer, got {other:?}"),
        }
        // PAX records of 2 MiB
        let mut b = tar::Builder::new(Vec::new());
        let big = vec![b'x'; 2 << 20];
        b.append_pax_extensions([("comment", big.as_slice())])
            .unwrap();
        b.append(&f, io::empty()).unwrap();
        let (_d, r) = unpack(&b.into_inner().unwrap());
        assert!(matches!(r, Err(Error::InvalidLayer { .. })), "{r:?}");
        // a global PAX header is not read into memory at all, whatever its size
        let mut b = tar::Builder::new(Vec::new());
        let mut g = tar::Header::new_ustar();
        g.set_entry_type(tar::EntryType::XGlobalHeader);
        TarBuilder::raw_name(&mut g, "pax_global_header");
        g.set_size(big.len() as u64);
        g.set_cksum();
        b.append(&g, big.as_slice()).unwrap();
        b.append(&f, io::empty()).unwrap();
        let (d, r) = unpack(&b.into_inner().unwrap());
        r.unwrap();
        assert!(d.path().join("short").exists());
    }

    #[test]
    fn long_names_and_pax_paths_unpack() {
        let comp = "n".repeat(200);
        let long = format!("{comp}/{comp}/{comp}/file");
        let mut b = tar::Builder::new(Vec::new());
        // the tar crate writes a GNU long name for this
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &long, b"long".as_slice()).unwrap();
        // and a PAX path record for this one
        let pax_path = format!("{comp}/pax-{comp}");
        b.append_pax_extensions([("path", pax_path.as_bytes())])
            .unwrap();
        let mut f = TarBuilder::header(tar::EntryType::Regular, 0o600);
        TarBuilder::raw_name(&mut f, "ignored-name");
        f.set_size(3);
        f.set_cksum();
        b.append(&f, b"pax".as_slice()).unwrap();
        let (d, r) = unpack(&b.into_inner().unwrap());
        r.unwrap();
        assert_eq!(fs::read(d.path().join(&long)).unwrap(), b"long");
        assert_eq!(fs::read(d.path().join(&pax_path)).unwrap(), b"pax");
        assert!(!d.path().join("ignored-name").exists());
        // a component longer than NAME_MAX is an error, not a panic
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "x".repeat(300), io::empty()).unwrap();
        let (_d, r) = unpack(&b.into_inner().unwrap());
        assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    }

    /// A GNU sparse entry: `data` stored at `offset` of a file of `real` bytes.
    fn sparse_tar(real: u64, offset: u64, data: &[u8]) -> Vec<u8> {
        fn octal(dst: &mut [u8], v: u64) {
            let s = format!("{v:0width$o}", width = dst.len() - 1);
            dst[..s.len()].copy_from_slice(s.as_bytes());
            dst[s.len()] = 0;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        TarBuilder::raw_name(&mut h, "sparse");
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        {
            let gnu = h.as_gnu_mut().unwrap();
            octal(&mut gnu.sparse[0].offset, offset);
            octal(&mut gnu.sparse[0].numbytes, data.len() as u64);
            octal(&mut gnu.realsize, real);
        }
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn sparse_files_keep_their_holes_and_count_their_full_size() {
        let real = 64u64 << 20;
        let tar = sparse_tar(real, real - 4096, &[b'z'; 4096]);
        let (d, r) = unpack(&tar);
        r.unwrap();
        let p = d.path().join("sparse");
        let m = fs::metadata(&p).unwrap();
        assert_eq!(m.len(), real);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "{} blocks: the hole was written",
            m.blocks()
        );
        let data = fs::read(&p).unwrap();
        assert!(data[..(real - 4096) as usize].iter().all(|b| *b == 0));
        assert!(data[(real - 4096) as usize..].iter().all(|b| *b == b'z'));
        // what it expands to counts against the size bound
        let d = tempfile::tempdir().unwrap();
        let r = unpack_layer(tar.as_slice(), d.path(), "l", &limits(32 << 20, 10));
        assert!(
            matches!(
                r,
                Err(Error::LimitExceeded {
                    key: "max_layer_size",
                    ..
                })
            ),
            "{r:?}"
        );
    }
}
