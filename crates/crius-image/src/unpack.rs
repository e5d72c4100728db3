//! Unpacks one layer tar into a directory, in the form overlayfs reads.
//!
//! * `.wh.NAME` becomes an overlay whiteout: a character device 0/0 named NAME.
//! * `.wh..wh..opq` marks its directory opaque: `trusted.overlay.opaque=y`.
//! * Ownership, modes (setuid included), mtimes, xattrs (PAX `SCHILY.xattr.*`),
//!   hard links, symlinks, device nodes and FIFOs are kept.
//! * Nothing is written outside the destination: entries with `..`, absolute
//!   paths, or parents that are symlinks are refused (`Error::UnsafeLayerPath`),
//!   hard-link targets are checked the same way, and the final component is
//!   never followed (`O_NOFOLLOW`, `O_EXCL`, `*at` without follow).
//!
//! The destination is a private temporary directory only this code writes, so
//! checking each parent once with `lstat` and remembering it is enough.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::Error;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What unpacking left on disk, for fs_usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
}

struct DirMeta {
    path: PathBuf,
    mode: u32,
    mtime: u64,
}

/// Unpacks the tar stream `reader` into `dest` (an existing empty directory).
/// `layer` names the layer in errors.
pub fn unpack_layer<R: Read>(reader: R, dest: &Path, layer: &str) -> Result<UnpackStats, Error> {
    let mut u = Unpacker {
        dest,
        layer,
        known_dirs: HashSet::new(),
        dirs: Vec::new(),
        stats: UnpackStats::default(),
        buf: vec![0u8; COPY_BUF],
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| u.bad_archive(e))?;
    for entry in entries {
        let entry = entry.map_err(|e| u.bad_archive(e))?;
        u.entry(entry)?;
    }
    u.finish_dirs()?;
    Ok(u.stats)
}

struct Unpacker<'a> {
    dest: &'a Path,
    layer: &'a str,
    /// Relative directories verified (or created) as real directories.
    known_dirs: HashSet<PathBuf>,
    /// Directory metadata applied at the end (children change mtimes).
    dirs: Vec<DirMeta>,
    stats: UnpackStats,
    /// Reused for file contents: larger writes than io::copy's 8 KiB.
    buf: Vec<u8>,
}

const COPY_BUF: usize = 256 * 1024;

/// Copies `r` to `w` through `buf`.
fn copy_with(buf: &mut [u8], r: &mut impl Read, w: &mut impl std::io::Write) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Extended attributes and owner overrides from PAX headers.
struct Pax {
    xattrs: Vec<(String, Vec<u8>)>,
    uid: Option<u64>,
    gid: Option<u64>,
}

impl<'a> Unpacker<'a> {
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

    /// Makes sure every parent of `rel` is a real directory inside dest,
    /// creating missing ones (mode 0755, root-owned, like tar does).
    fn ensure_parents(&mut self, raw: &Path, rel: &Path) -> Result<(), Error> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        if parent.as_os_str().is_empty() || self.known_dirs.contains(parent) {
            return Ok(());
        }
        let mut cur = PathBuf::new();
        for c in parent.components() {
            cur.push(c);
            if self.known_dirs.contains(&cur) {
                continue;
            }
            let full = self.dest.join(&cur);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.unsafe_path(raw, "parent directory is a symlink"));
                }
                Ok(_) => {
                    return Err(self.unsafe_path(raw, "parent is not a directory"));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&full).map_err(|e| self.io(&cur, e))?;
                    fs::set_permissions(&full, fs::Permissions::from_mode(0o755))
                        .map_err(|e| self.io(&cur, e))?;
                    self.stats.entries += 1;
                }
                Err(e) => return Err(self.io(&cur, e)),
            }
            self.known_dirs.insert(cur.clone());
        }
        Ok(())
    }

    /// Removes whatever sits at `rel`, unless it is a directory and `keep_dir`.
    /// Returns true when a directory was kept.
    fn clear(&mut self, rel: &Path, keep_dir: bool) -> Result<bool, Error> {
        let full = self.dest.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_dir() => {
                if keep_dir {
                    return Ok(true);
                }
                fs::remove_dir_all(&full).map_err(|e| self.io(rel, e))?;
                self.known_dirs.retain(|d| !d.starts_with(rel));
                Ok(false)
            }
            Ok(_) => {
                fs::remove_file(&full).map_err(|e| self.io(rel, e))?;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(rel, e)),
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

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), Error> {
        let raw = entry.path().map_err(|e| self.bad_archive(e))?.into_owned();
        let rel = self.clean(&raw)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        let pax = self.pax(&mut entry)?;
        let uid = pax.uid.unwrap_or_else(|| header.uid().unwrap_or(0));
        let gid = pax.gid.unwrap_or_else(|| header.gid().unwrap_or(0));
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);

        if rel.as_os_str().is_empty() {
            // "./": the layer root itself
            if kind.is_dir() {
                self.dirs.push(DirMeta {
                    path: rel,
                    mode,
                    mtime,
                });
                lchown(self.dest, uid, gid).map_err(|e| self.io(Path::new(""), e))?;
            }
            return Ok(());
        }

        let name = rel.file_name().unwrap_or_default().to_owned();
        let name_bytes = name.as_bytes();
        if name_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&raw, &rel, &name);
        }

        self.ensure_parents(&raw, &rel)?;
        let full = self.dest.join(&rel);
        match kind {
            tar::EntryType::Directory => {
                if !self.clear(&rel, true)? {
                    fs::create_dir(&full).map_err(|e| self.io(&rel, e))?;
                    fs::set_permissions(&full, fs::Permissions::from_mode(0o700))
                        .map_err(|e| self.io(&rel, e))?;
                    self.stats.entries += 1;
                }
                self.known_dirs.insert(rel.clone());
                lchown(&full, uid, gid).map_err(|e| self.io(&rel, e))?;
                self.set_xattrs(&rel, &pax.xattrs)?;
                self.dirs.push(DirMeta {
                    path: rel,
                    mode,
                    mtime,
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.clear(&rel, false)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&full)
                    .map_err(|e| self.io(&rel, e))?;
                let mut buf = std::mem::take(&mut self.buf);
                let copied = copy_with(&mut buf, &mut entry, &mut f);
                self.buf = buf;
                copied.map_err(|e| self.io(&rel, e))?;
                // chown clears setuid/setgid and file capabilities: chown first,
                // then the mode, then the xattrs.
                std::os::unix::fs::fchown(&f, Some(uid as u32), Some(gid as u32))
                    .map_err(|e| self.io(&rel, e))?;
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| self.io(&rel, e))?;
                self.set_xattrs(&rel, &pax.xattrs)?;
                set_file_mtime(&f, mtime).map_err(|e| self.io(&rel, e))?;
                self.stats.entries += 1;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.bad_archive(e))?
                    .ok_or_else(|| self.unsafe_path(&raw, "symlink without target"))?
                    .into_owned();
                self.clear(&rel, false)?;
                std::os::unix::fs::symlink(&target, &full).map_err(|e| self.io(&rel, e))?;
                lchown(&full, uid, gid).map_err(|e| self.io(&rel, e))?;
                self.set_xattrs(&rel, &pax.xattrs)?;
                set_path_mtime(&full, mtime).map_err(|e| self.io(&rel, e))?;
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
                self.check_existing_path(&raw_target, &target)?;
                let target_full = self.dest.join(&target);
                if target == rel {
                    return Ok(());
                }
                self.clear(&rel, false)?;
                // linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink
                fs::hard_link(&target_full, &full).map_err(|e| self.io(&rel, e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.clear(&rel, false)?;
                mknod(
                    &full,
                    sflag,
                    Mode::from_bits_truncate(mode & 0o777),
                    makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| self.io(&rel, e.into()))?;
                lchown(&full, uid, gid).map_err(|e| self.io(&rel, e))?;
                fs::set_permissions(&full, fs::Permissions::from_mode(mode))
                    .map_err(|e| self.io(&rel, e))?;
                self.set_xattrs(&rel, &pax.xattrs)?;
                set_path_mtime(&full, mtime).map_err(|e| self.io(&rel, e))?;
                self.stats.entries += 1;
            }
            // PAX global headers and other metadata-only entries
            _ => {}
        }
        Ok(())
    }

    /// The target of a hard link must exist in this layer, reached without symlinks.
    fn check_existing_path(&self, raw: &Path, rel: &Path) -> Result<(), Error> {
        let mut cur = PathBuf::new();
        let parent = rel.parent().unwrap_or(Path::new(""));
        for c in parent.components() {
            cur.push(c);
            if self.known_dirs.contains(&cur) {
                continue;
            }
            match fs::symlink_metadata(self.dest.join(&cur)) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.unsafe_path(raw, "hard link target goes through a symlink"))
                }
                _ => {
                    return Err(
                        self.unsafe_path(raw, "hard link target does not exist in the layer")
                    )
                }
            }
        }
        match fs::symlink_metadata(self.dest.join(rel)) {
            Ok(m) if !m.file_type().is_dir() => Ok(()),
            Ok(_) => Err(self.unsafe_path(raw, "hard link to a directory")),
            Err(_) => Err(self.unsafe_path(raw, "hard link target does not exist in the layer")),
        }
    }

    fn whiteout(&mut self, raw: &Path, rel: &Path, name: &OsStr) -> Result<(), Error> {
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if name.as_bytes() == OPAQUE_MARKER.as_bytes() {
            self.ensure_parents(raw, rel)?;
            let dir = self.dest.join(&parent);
            set_xattr(&dir, OVERLAY_OPAQUE_XATTR, b"y").map_err(|e| self.io(&parent, e))?;
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
        self.ensure_parents(raw, &target_rel)?;
        self.clear(&target_rel, false)?;
        let full = self.dest.join(&target_rel);
        mknod(&full, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| self.io(&target_rel, e.into()))?;
        self.stats.entries += 1;
        Ok(())
    }

    fn set_xattrs(&self, rel: &Path, xattrs: &[(String, Vec<u8>)]) -> Result<(), Error> {
        let full = self.dest.join(rel);
        for (name, value) in xattrs {
            set_xattr(&full, name, value).map_err(|e| self.io(rel, e))?;
        }
        Ok(())
    }

    /// Directory modes and mtimes last: children change the mtime, and a
    /// read-only mode would be applied before its contents exist.
    fn finish_dirs(&mut self) -> Result<(), Error> {
        for d in self.dirs.iter().rev() {
            let full = self.dest.join(&d.path);
            fs::set_permissions(&full, fs::Permissions::from_mode(d.mode))
                .map_err(|e| self.io(&d.path, e))?;
            set_path_mtime(&full, d.mtime).map_err(|e| self.io(&d.path, e))?;
        }
        Ok(())
    }
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `lsetxattr(2)`: sets an attribute on the path itself, never a symlink's target.
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both strings are NUL-terminated and live across the call; the value
    // pointer and length describe a valid slice.
    let rc = unsafe {
        libc::lsetxattr(
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
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
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

fn lchown(path: &Path, uid: u64, gid: u64) -> io::Result<()> {
    let uid = u32::try_from(uid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let gid = u32::try_from(gid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

fn set_file_mtime(f: &File, mtime: u64) -> io::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
}

fn set_path_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let t = TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// Bytes (allocated blocks) and inodes under `dir`, hard links counted once.
pub(crate) fn disk_usage(dir: &Path) -> io::Result<(u64, u64)> {
    let mut seen = HashSet::new();
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
        let r = unpack_layer(tar, dir.path(), "sha256:test");
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
}
