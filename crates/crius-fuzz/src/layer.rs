//! The layer unpacker on a tar stream of any bytes, into a fresh directory on a tmpfs
//! (`/dev/shm`, or `$CRIUS_FUZZ_DIR`), beside a sentinel tree it must leave as it was.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crius_image::unpack::{unpack_layer, LayerLimits};

/// Small bounds, so one input cannot fill the tmpfs or take long.
const LIMITS: LayerLimits = LayerLimits {
    max_size: 8 << 20,
    max_entries: 4096,
};

/// The scratch directory of this process: `BASE/crius-fuzz-PID`.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("CRIUS_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/shm"));
        let dir = base.join(format!("crius-fuzz-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        dir
    })
}

/// Removes this process's scratch dir (once no more inputs will run).
pub fn remove_scratch() {
    let dir = scratch();
    let layer = dir.join("layer");
    if layer.exists() {
        clear(&layer);
    }
    let _ = fs::remove_dir_all(dir);
}

/// What a tree looks like: (path, mode, uid, size, mtime, content) of each entry.
type Snapshot = Vec<(PathBuf, u32, u32, u64, i64, Vec<u8>)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let content = if meta.is_file() {
            fs::read(&path).unwrap_or_default()
        } else {
            Vec::new()
        };
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&path) {
                let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
                names.sort();
                stack.extend(names);
            }
        }
        out.push((
            path,
            meta.mode(),
            meta.uid(),
            meta.size(),
            meta.mtime(),
            content,
        ));
    }
    out.sort();
    out
}

/// Makes `base/outside`: a dir, a file and a symlink a hostile layer would aim at.
fn make_sentinel(base: &Path) -> PathBuf {
    let outside = base.join("outside");
    if !outside.exists() {
        fs::create_dir(&outside).expect("sentinel dir");
        fs::write(outside.join("file"), b"sentinel").expect("sentinel file");
        fs::set_permissions(outside.join("file"), fs::Permissions::from_mode(0o644))
            .expect("sentinel mode");
        std::os::unix::fs::symlink("file", outside.join("link")).expect("sentinel link");
    }
    outside
}

/// Unpacks `data` as a layer; panics if anything outside the layer dir changed.
pub fn unpack(data: &[u8]) {
    let base = scratch();
    let outside = make_sentinel(base);
    let before = snapshot(&outside);
    let base_meta = fs::metadata(base)
        .map(|m| (m.mode(), m.uid(), m.gid()))
        .ok();
    let dest = base.join("layer");
    fs::create_dir(&dest).unwrap_or_else(|e| panic!("cannot make {}: {e}", dest.display()));
    let _ = unpack_layer(data, &dest, "sha256:fuzz", &LIMITS);
    // The layer's own tree is gone before the comparison.
    clear(&dest);
    let after = snapshot(&outside);
    let mut names: Vec<_> = fs::read_dir(base)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    names.sort();
    let base_after = fs::metadata(base)
        .map(|m| (m.mode(), m.uid(), m.gid()))
        .ok();
    if names != ["outside"] || base_meta != base_after {
        for name in names.iter().filter(|n| *n != "outside") {
            let _ = fs::remove_dir_all(base.join(name));
            let _ = fs::remove_file(base.join(name));
        }
        panic!("unpacking changed the dir holding the layer: entries {names:?}, {base_meta:?} -> {base_after:?}");
    }
    if before != after {
        let changed: Vec<_> = after
            .iter()
            .filter(|a| !before.contains(a))
            .map(|a| a.0.display().to_string())
            .chain(
                before
                    .iter()
                    .filter(|b| !after.contains(b))
                    .map(|b| format!("{} (gone or changed)", b.0.display())),
            )
            .collect();
        // Leave a clean scratch dir for the next input before failing.
        let _ = fs::remove_dir_all(&outside);
        panic!("unpacking changed things outside the layer: {changed:?}");
    }
}

/// Removes the layer dir, whatever modes or attributes its entries were given.
fn clear(dest: &Path) {
    if fs::remove_dir_all(dest).is_ok() {
        return;
    }
    // A dir without write or search permission for its owner stops remove_dir_all even
    // for root only with the immutable flag, which tar cannot set; make everything
    // writable and try again.
    let mut stack = vec![dest.to_path_buf()];
    while let Some(path) = stack.pop() {
        if let Ok(meta) = fs::symlink_metadata(&path) {
            if meta.is_dir() {
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o700));
                if let Ok(entries) = fs::read_dir(&path) {
                    stack.extend(entries.flatten().map(|e| e.path()));
                }
            }
        }
    }
    fs::remove_dir_all(dest).unwrap_or_else(|e| panic!("cannot clear {}: {e}", dest.display()));
}
