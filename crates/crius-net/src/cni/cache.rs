//! Per-pod record of the network configuration and result used at ADD, so DEL and CHECK
//! use exactly what ADD used even after the config dir changed.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

const KIND: &str = "crius-cni-cache/v1";

/// What one pod's network was set up with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CacheEntry {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub netns: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    /// The network configuration list as loaded (single-plugin files already wrapped).
    pub config: Value,
    /// The file the list came from, for messages.
    pub config_path: PathBuf,
    /// The runtimeConfig values offered to capable plugins (port mappings, ...).
    pub runtime_args: Map<String, Value>,
    /// The final ADD result; `None` while ADD runs (a crash then still leaves DEL possible).
    pub result: Option<Value>,
}

impl CacheEntry {
    /// A fresh record of the given kind version.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        container_id: &str,
        if_name: &str,
        netns: &str,
        pod_name: &str,
        pod_namespace: &str,
        pod_uid: &str,
        config: Value,
        config_path: PathBuf,
        runtime_args: Map<String, Value>,
    ) -> Self {
        CacheEntry {
            kind: KIND.to_string(),
            container_id: container_id.to_string(),
            if_name: if_name.to_string(),
            netns: netns.to_string(),
            pod_name: pod_name.to_string(),
            pod_namespace: pod_namespace.to_string(),
            pod_uid: pod_uid.to_string(),
            config,
            config_path,
            runtime_args,
            result: None,
        }
    }
}

/// The cache file of pod `id` (ids are checked to be one safe path component first).
pub(crate) fn entry_path(cache_dir: &Path, id: &str) -> PathBuf {
    cache_dir.join(format!("{id}.json"))
}

/// Reads pod `id`'s entry; `None` when there is none.
pub(crate) fn read(cache_dir: &Path, id: &str) -> Result<Option<CacheEntry>> {
    let path = entry_path(cache_dir, id);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Cache { path, source }),
    };
    let entry: CacheEntry = serde_json::from_slice(&bytes).map_err(|e| Error::CacheCorrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if entry.kind != KIND {
        return Err(Error::CacheCorrupt {
            path,
            reason: format!("unknown kind {:?}", entry.kind),
        });
    }
    Ok(Some(entry))
}

/// Writes the entry so that a crash leaves either the old or the new file: temp file,
/// fsync, rename, fsync of the dir.
pub(crate) fn write(cache_dir: &Path, entry: &CacheEntry) -> Result<()> {
    let path = entry_path(cache_dir, &entry.container_id);
    let io_err = |source| Error::Cache {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(cache_dir).map_err(io_err)?;
    let bytes = serde_json::to_vec_pretty(entry).map_err(|e| io_err(e.into()))?;
    let tmp = cache_dir.join(format!(".{}.json.tmp", entry.container_id));
    let mut file = std::fs::File::create(&tmp).map_err(io_err)?;
    file.write_all(&bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io_err)?;
    std::fs::File::open(cache_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_err)?;
    Ok(())
}

/// The pod ids that have an entry, sorted; an absent dir has none.
pub(crate) fn list(cache_dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(cache_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Cache {
                path: cache_dir.to_path_buf(),
                source,
            })
        }
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            // Temp files start with '.', which pod ids never do.
            let id = name.strip_suffix(".json")?;
            (!id.is_empty() && !id.starts_with('.')).then(|| id.to_string())
        })
        .collect();
    ids.sort();
    Ok(ids)
}

/// Removes pod `id`'s entry; succeeds if it is already gone.
pub(crate) fn remove(cache_dir: &Path, id: &str) -> Result<()> {
    let path = entry_path(cache_dir, id);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Cache { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        assert_eq!(read(&cache, "abc").unwrap(), None);
        let mut entry = CacheEntry::new(
            "abc",
            "eth0",
            "/run/crius/netns/abc",
            "web",
            "default",
            "uid-1",
            json!({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}),
            PathBuf::from("/etc/cni/net.d/10.conflist"),
            Map::new(),
        );
        write(&cache, &entry).unwrap();
        assert_eq!(read(&cache, "abc").unwrap(), Some(entry.clone()));
        entry.result = Some(json!({"cniVersion":"1.0.0","ips":[]}));
        write(&cache, &entry).unwrap();
        assert_eq!(read(&cache, "abc").unwrap(), Some(entry));
        std::fs::write(cache.join(".other.json.tmp"), "{").unwrap();
        assert_eq!(list(&cache).unwrap(), ["abc"]);
        remove(&cache, "abc").unwrap();
        remove(&cache, "abc").unwrap();
        assert!(list(&cache).unwrap().is_empty());
        assert!(list(&dir.path().join("absent")).unwrap().is_empty());
        assert_eq!(read(&cache, "abc").unwrap(), None);
    }

    #[test]
    fn reports_corrupt_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.json"), "{").unwrap();
        let err = read(dir.path(), "x").unwrap_err();
        assert!(matches!(err, Error::CacheCorrupt { .. }));
        assert!(err.to_string().contains("x.json"));
    }
}
