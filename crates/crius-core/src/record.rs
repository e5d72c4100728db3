//! Records on disk: one JSON file per pod or container, written so a crash cannot tear it
//! (temp file, fsync, rename, fsync of the dir).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// A dir of JSON records named `<id>.json`.
#[derive(Debug, Clone)]
pub struct RecordDir {
    dir: PathBuf,
}

impl RecordDir {
    /// Opens (and creates) the dir.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        private_dir(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes the record atomically.
    pub fn write<T: Serialize>(&self, id: &str, value: &T) -> Result<()> {
        let data = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::Internal(format!("serialize record {id}: {e}")))?;
        write_atomic(&self.path(id), &data)
    }

    /// Removes the record; succeeds if it is already gone.
    pub fn remove(&self, id: &str) -> Result<()> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove record", path, e)),
        }
    }

    /// Loads every record that parses; files that do not are returned by name so the caller
    /// can log and collect them.
    pub fn load_all<T: DeserializeOwned>(&self) -> Result<(Vec<T>, Vec<PathBuf>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io("read", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read", &self.dir, e))?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&path)
                .ok()
                .and_then(|d| serde_json::from_slice(&d).ok())
            {
                Some(v) => good.push(v),
                None => bad.push(path),
            }
        }
        Ok((good, bad))
    }
}

/// [`crius_oci::private_dir`] with the core's error.
pub fn private_dir(dir: &Path) -> Result<()> {
    crius_oci::private_dir(dir).map_err(|e| Error::io("make private dir (0700)", dir, e))
}

/// Writes `data` to `path` via a temp file, fsync and rename, then fsyncs the parent dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no parent dir", path.display())))?;
    // Unique per writer: two writers of one record (an operation and an exit watcher) must
    // not rename each other's temp file away.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("record");
    let tmp = dir.join(format!(".{name}.{}-{seq}.tmp", std::process::id()));
    // 0600: a container's record holds its config, whose env may carry secrets.
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(data).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync dir", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_of_one_record_do_not_collide() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RecordDir::open(tmp.path()).unwrap();
        std::thread::scope(|s| {
            for n in 0..8 {
                let dir = &dir;
                s.spawn(move || {
                    for _ in 0..50 {
                        dir.write("same", &serde_json::json!({ "n": n })).unwrap();
                    }
                });
            }
        });
        let (good, bad): (Vec<serde_json::Value>, _) = dir.load_all().unwrap();
        assert_eq!(good.len(), 1);
        assert!(bad.is_empty());
        let leftovers = fs::read_dir(tmp.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp files are left behind");
    }

    #[test]
    fn records_round_trip_and_bad_files_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RecordDir::open(tmp.path().join("pods")).unwrap();
        dir.write("a", &serde_json::json!({"n": 1})).unwrap();
        dir.write("b", &serde_json::json!({"n": 2})).unwrap();
        fs::write(tmp.path().join("pods/c.json"), b"{torn").unwrap();
        let (mut good, bad): (Vec<serde_json::Value>, _) = dir.load_all().unwrap();
        good.sort_by_key(|v| v["n"].as_i64());
        assert_eq!(
            good,
            vec![serde_json::json!({"n": 1}), serde_json::json!({"n": 2})]
        );
        assert_eq!(bad, vec![tmp.path().join("pods/c.json")]);
        dir.remove("a").unwrap();
        dir.remove("a").unwrap();
        let (good, _): (Vec<serde_json::Value>, _) = dir.load_all().unwrap();
        assert_eq!(good.len(), 1);
    }
}
