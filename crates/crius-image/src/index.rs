//! The image index (images.json) and the crash-safe file writes the store uses.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::{Error, Image};

/// One image as recorded on disk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// "sha256:<hex>" of the config blob.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Compressed layers + config, as the registry served them.
    pub size: u64,
    #[serde(default)]
    pub pinned: bool,
    /// Digest of the image manifest (not the index).
    pub manifest: String,
    /// Chain ids of the layers, bottom first.
    pub layers: Vec<String>,
}

impl ImageRecord {
    /// The public view.
    pub fn image(&self) -> Image {
        Image {
            id: self.id.clone(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: self.repo_digests.clone(),
            size: self.size,
            pinned: self.pinned,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<ImageRecord>,
}

const INDEX_VERSION: u32 = 1;

/// Reads images.json; a missing file is an empty store.
pub fn load(path: &Path) -> Result<Vec<ImageRecord>, Error> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let file: IndexFile = serde_json::from_slice(&data).map_err(|e| Error::CorruptStore {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if file.version != INDEX_VERSION {
        return Err(Error::CorruptStore {
            path: path.to_path_buf(),
            reason: format!("unknown index version {}", file.version),
        });
    }
    Ok(file.images)
}

/// Writes images.json atomically.
pub fn save(path: &Path, images: &[ImageRecord]) -> Result<(), Error> {
    let file = IndexFile {
        version: INDEX_VERSION,
        images: images.to_vec(),
    };
    let data = serde_json::to_vec_pretty(&file).map_err(|e| Error::CorruptStore {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &data)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a temporary sibling of `path`, unique in this process.
pub fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{tag}-{name}-{}-{n}", std::process::id()))
}

/// Temp file, fsync, rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    write_atomic_nodirsync(path, data)?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// Temp file, fsync, rename over `path`; the caller fsyncs the directory
/// (once for several files).
pub fn write_atomic_nodirsync(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = temp_sibling(path, "w");
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(data).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsync a directory, so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
