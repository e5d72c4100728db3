//! Dirs only root may enter.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Makes `dir` (and any missing parent) with mode 0700, and sets 0700 on it if it was
/// already there (made by an older version with a wider mode). What the state dirs hold
/// (rootfs with setuid binaries and device nodes, records whose env carries secrets, the
/// monitor's socket) is for root alone; the mode is set explicitly so that no umask
/// widens it.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    dir_with_mode(dir, 0o700)
}

/// Makes `dir` (and any missing parent) with `mode` and sets `mode` on it if it was there.
pub fn dir_with_mode(dir: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_and_tightens_dirs_to_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let new = tmp.path().join("a/b");
        private_dir(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
        let old = tmp.path().join("old");
        fs::create_dir(&old).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&old).unwrap();
        assert_eq!(mode(&old), 0o700);
        dir_with_mode(&old, 0o711).unwrap();
        assert_eq!(mode(&old), 0o711);
    }
}
