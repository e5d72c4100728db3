//! Unpacked layers on disk, one directory per chain id:
//! `layers/<hex>/diff` (the content overlayfs uses) and `layers/<hex>/layer.json`.
//!
//! A layer is unpacked into `layers/.tmp-*`, flushed to disk, and renamed to its
//! final name only when complete and verified, so a crash or a failed pull
//! never leaves a directory a later pull would trust.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::index::{sync_dir, temp_sibling};
use crate::Error;

/// What layer.json records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerMeta {
    pub chain_id: String,
    pub diff_id: String,
    pub parent: Option<String>,
    /// Digest of the blob as the registry served it (compressed).
    pub digest: String,
    pub media_type: String,
    /// Size of the compressed blob.
    pub size: u64,
    /// Bytes allocated by the unpacked content.
    pub usage_bytes: u64,
    /// Inodes used by the unpacked content.
    pub usage_inodes: u64,
}

/// The `layers/` directory.
#[derive(Clone, Debug)]
pub struct LayerStore {
    dir: PathBuf,
}

/// The hex part of a sha256 digest, refusing anything else (it becomes a file name).
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// "sha256:<hex>" of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Chain ids: chain[0] = diff[0]; chain[n] = sha256(chain[n-1] + " " + diff[n]).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => sha256_digest(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A layer being unpacked; removed on drop unless committed.
pub struct TempLayer {
    dir: PathBuf,
    committed: bool,
}

impl TempLayer {
    /// Where the content goes.
    pub fn diff(&self) -> PathBuf {
        self.dir.join("diff")
    }
}

impl Drop for TempLayer {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(dir = %self.dir.display(), error = %e, "cannot remove unfinished layer");
                }
            }
        }
    }
}

impl LayerStore {
    /// Opens (creates) `dir` and removes unfinished layers left by a crash.
    pub fn open(dir: PathBuf) -> Result<LayerStore, Error> {
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name();
            let path = entry.path();
            let unfinished =
                name.to_string_lossy().starts_with(".tmp-") || !path.join("layer.json").exists();
            if unfinished {
                debug!(path = %path.display(), "removing unfinished layer");
                if let Err(e) = fs::remove_dir_all(&path) {
                    warn!(path = %path.display(), error = %e, "cannot remove unfinished layer");
                }
            }
        }
        Ok(LayerStore { dir })
    }

    /// The directory of `layers/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, Error> {
        let hex = digest_hex(chain_id).ok_or_else(|| Error::CorruptStore {
            path: self.dir.clone(),
            reason: format!("invalid chain id {chain_id:?}"),
        })?;
        Ok(self.dir.join(hex))
    }

    /// The unpacked content of a committed layer.
    pub fn diff_dir(&self, chain_id: &str) -> Result<PathBuf, Error> {
        Ok(self.layer_dir(chain_id)?.join("diff"))
    }

    /// A relative path from `layers/` to the content (for long overlay option strings).
    pub fn diff_rel(&self, chain_id: &str) -> Result<PathBuf, Error> {
        let hex = digest_hex(chain_id).ok_or_else(|| Error::CorruptStore {
            path: self.dir.clone(),
            reason: format!("invalid chain id {chain_id:?}"),
        })?;
        Ok(PathBuf::from(hex).join("diff"))
    }

    /// True when the layer is complete on disk.
    pub fn exists(&self, chain_id: &str) -> bool {
        self.layer_dir(chain_id)
            .map(|d| d.join("layer.json").exists())
            .unwrap_or(false)
    }

    /// layer.json of a committed layer.
    pub fn meta(&self, chain_id: &str) -> Result<LayerMeta, Error> {
        let path = self.layer_dir(chain_id)?.join("layer.json");
        let data = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&data).map_err(|e| Error::CorruptStore {
            path,
            reason: e.to_string(),
        })
    }

    /// Starts a layer: a fresh temp dir with an empty `diff/`.
    pub fn begin(&self, chain_id: &str) -> Result<TempLayer, Error> {
        let final_dir = self.layer_dir(chain_id)?;
        let dir = temp_sibling(&final_dir, "layer");
        fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let layer = TempLayer {
            dir,
            committed: false,
        };
        fs::create_dir(layer.diff()).map_err(|e| Error::io(layer.diff(), e))?;
        Ok(layer)
    }

    /// Flushes the content, records `meta` and renames the layer into place.
    pub fn commit(&self, mut layer: TempLayer, meta: &LayerMeta) -> Result<(), Error> {
        let final_dir = self.layer_dir(&meta.chain_id)?;
        let data = serde_json::to_vec_pretty(meta).map_err(|e| Error::CorruptStore {
            path: layer.dir.clone(),
            reason: e.to_string(),
        })?;
        // layer.json is inside the temp dir: the syncfs below flushes it with the content
        let meta_path = layer.dir.join("layer.json");
        fs::write(&meta_path, &data).map_err(|e| Error::io(&meta_path, e))?;
        let start = std::time::Instant::now();
        syncfs(&layer.dir)?;
        debug!(dir = %layer.dir.display(), elapsed = ?start.elapsed(), "syncfs");
        match fs::rename(&layer.dir, &final_dir) {
            Ok(()) => {}
            // someone committed the same layer first (another process): keep theirs
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST))
                    && final_dir.join("layer.json").exists() => {}
            Err(e) => return Err(Error::io(&final_dir, e)),
        }
        if !final_dir.join("layer.json").exists() {
            return Err(Error::CorruptStore {
                path: final_dir,
                reason: "layer vanished after commit".into(),
            });
        }
        layer.committed = !layer.dir.exists();
        sync_dir(&self.dir)
    }

    /// Renames a layer out of the store (it stops existing at once) and
    /// returns where it went, for deletion; None when it was not there.
    /// Leftovers of a crash are `.tmp-*` dirs, removed at the next open.
    pub fn detach(&self, chain_id: &str) -> Result<Option<PathBuf>, Error> {
        let dir = self.layer_dir(chain_id)?;
        let doomed = temp_sibling(&dir, "rm");
        match fs::rename(&dir, &doomed) {
            Ok(()) => Ok(Some(doomed)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&dir, e)),
        }
    }

    /// Deletes a layer; succeeds when it is already gone.
    #[cfg(test)]
    pub fn remove(&self, chain_id: &str) -> Result<(), Error> {
        match self.detach(chain_id)? {
            Some(doomed) => fs::remove_dir_all(&doomed).map_err(|e| Error::io(&doomed, e)),
            None => Ok(()),
        }
    }

    /// Chain ids of every committed layer.
    pub fn all(&self) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = format!("sha256:{name}");
            if digest_hex(&id).is_some() && entry.path().join("layer.json").exists() {
                out.push(id);
            }
        }
        Ok(out)
    }
}

/// syncfs(2) on the file system holding `path`: one call flushes every file
/// just unpacked, instead of an fsync per file.
fn syncfs(path: &Path) -> Result<(), Error> {
    let f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the fd is open for the duration of the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(Error::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn digest_hex_refuses_path_tricks() {
        assert!(digest_hex(&format!("sha256:{}", "0".repeat(64))).is_some());
        assert!(digest_hex("sha256:../../etc").is_none());
        assert!(digest_hex(&format!("sha512:{}", "0".repeat(64))).is_none());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_none());
    }

    #[test]
    fn unfinished_layers_are_removed_at_open_and_commit_renames() {
        let root = tempfile::tempdir().unwrap();
        let store = LayerStore::open(root.path().join("layers")).unwrap();
        let id = format!("sha256:{}", "1".repeat(64));
        let t = store.begin(&id).unwrap();
        fs::write(t.diff().join("f"), "x").unwrap();
        let tmpdir = t.dir.clone();
        std::mem::forget(t); // simulate a crash: no Drop
                             // a directory without layer.json is also unfinished
        fs::create_dir(store.dir().join("2".repeat(64))).unwrap();
        let store = LayerStore::open(root.path().join("layers")).unwrap();
        assert!(!tmpdir.exists());
        assert!(!store.dir().join("2".repeat(64)).exists());
        assert!(!store.exists(&id));

        let t = store.begin(&id).unwrap();
        fs::write(t.diff().join("f"), "x").unwrap();
        let meta = LayerMeta {
            chain_id: id.clone(),
            diff_id: id.clone(),
            parent: None,
            digest: id.clone(),
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            size: 1,
            usage_bytes: 1,
            usage_inodes: 1,
        };
        store.commit(t, &meta).unwrap();
        assert!(store.exists(&id));
        assert_eq!(store.meta(&id).unwrap(), meta);
        assert_eq!(
            fs::read(store.diff_dir(&id).unwrap().join("f")).unwrap(),
            b"x"
        );
        assert_eq!(store.all().unwrap(), vec![id.clone()]);
        store.remove(&id).unwrap();
        assert!(!store.exists(&id));
        store.remove(&id).unwrap();
    }
}
