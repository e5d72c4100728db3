//! The image store: on-disk layout, the image index, lookups and removal.
//!
//! ```text
//! ROOT/images.json                 image index (id, repo tags, repo digests, layers)
//! ROOT/blobs/sha256/<hex>          manifests, indexes, configs
//! ROOT/layers/<chain hex>/diff     unpacked layer content (overlay lowerdir)
//! ROOT/layers/<chain hex>/layer.json
//! ROOT/empty                       lowerdir for images without layers
//! ```

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::index::{self, ImageRecord};
use crate::layers::{digest_hex, LayerStore};
use crate::mount;
use crate::progress::PullProgress;
use crate::pull::normalize_auth_keys;
use crate::reference::{self, ImageName};
use crate::registries::Registries;
use crate::{Credentials, Error, FsUsage, Image, ImageStoreConfig};

/// Shared state behind every `ImageStore` clone.
pub struct Inner {
    pub(crate) config: ImageStoreConfig,
    pub(crate) root: PathBuf,
    pub(crate) layers: LayerStore,
    /// Registries config and credentials: replaced as one on reload.
    access: RwLock<Arc<Access>>,
    images: Mutex<Vec<ImageRecord>>,
    layer_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pins: Mutex<HashMap<String, usize>>,
    /// Registry clients by endpoint and credentials.
    pub(crate) clients: Mutex<HashMap<String, oci_client::Client>>,
    /// Insecure hosts and whether they answered over plain HTTP (true) or HTTPS.
    pub(crate) plain_http_hosts: Mutex<HashMap<String, bool>>,
    pub(crate) downloads: Semaphore,
    pub(crate) download_count: AtomicU64,
    /// HTTP clients for manifests, by `insecure` (accepts any certificate).
    pub(crate) manifest_http: [std::sync::OnceLock<reqwest::Client>; 2],
}

/// The image store. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// How a name matched a record (removal treats tags differently).
enum Match {
    Id,
    Tag(String),
    Digest,
}

/// Releases layer pins when a pull ends, and takes out of the store the
/// layers of the pull that no image records (it failed or was cancelled), so
/// a failed pull leaves nothing behind.
pub(crate) struct PinGuard<'a> {
    inner: &'a Inner,
    chains: Vec<String>,
}

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        let mut pins = lock(&self.inner.pins);
        for c in &self.chains {
            if let Some(n) = pins.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(c);
                }
            }
        }
        drop(pins);
        let mut locks = lock(&self.inner.layer_locks);
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        drop(locks);
        self.inner.discard_unrecorded(&self.chains);
    }
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where registries are and how to log in to them: what a reload replaces.
pub(crate) struct Access {
    pub(crate) registries: Registries,
    /// Credentials per canonical registry host.
    pub(crate) auths: HashMap<String, Credentials>,
    /// containers-auth.json, read at each pull so a `podman login` takes effect at once.
    pub(crate) auth_file: Option<PathBuf>,
}

impl Access {
    fn load(config: &ImageStoreConfig) -> Result<Access, Error> {
        Ok(Access {
            registries: Registries::load(
                config.registries_conf.as_deref(),
                &config.insecure_registries,
            )?,
            auths: normalize_auth_keys(&config.registry_auths),
            auth_file: config.auth_file.clone(),
        })
    }
}

impl Inner {
    /// The registries config and credentials in force now.
    pub(crate) fn access(&self) -> Arc<Access> {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn layer_lock(&self, chain_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.layer_locks)
            .entry(chain_id.to_string())
            .or_default()
            .clone()
    }

    /// Deletes those of `chains` that no image record uses and no pull holds.
    fn discard_unrecorded(&self, chains: &[String]) {
        let images = lock(&self.images);
        let pins = lock(&self.pins);
        let mut doomed = Vec::new();
        for c in chains {
            if pins.contains_key(c) || images.iter().any(|r| r.layers.contains(c)) {
                continue;
            }
            match self.layers.detach(c) {
                Ok(Some(dir)) => doomed.push(dir),
                Ok(None) => {}
                Err(e) => warn!(chain_id = %c, error = %e, "cannot remove layer of a failed pull"),
            }
        }
        drop(pins);
        drop(images);
        for dir in doomed {
            debug!(dir = %dir.display(), "removing layer of a failed pull");
            if let Err(e) = fs::remove_dir_all(&dir) {
                warn!(dir = %dir.display(), error = %e, "cannot delete layer of a failed pull");
            }
        }
    }

    /// Keeps removal from deleting these layers while a pull uses them.
    pub(crate) fn pin_layers(&self, chains: &[String]) -> PinGuard<'_> {
        let mut pins = lock(&self.pins);
        for c in chains {
            *pins.entry(c.clone()).or_default() += 1;
        }
        PinGuard {
            inner: self,
            chains: chains.to_vec(),
        }
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, Error> {
        let hex = digest_hex(digest).ok_or_else(|| Error::CorruptStore {
            path: self.root.join("blobs"),
            reason: format!("invalid digest {digest:?}"),
        })?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    /// Writes a blob unless present; true when written (its dir needs an fsync).
    fn put_blob(&self, digest: &str, data: &[u8]) -> Result<bool, Error> {
        let path = self.blob_path(digest)?;
        if path.exists() {
            return Ok(false);
        }
        index::write_atomic_nodirsync(&path, data)?;
        Ok(true)
    }

    /// Records that `name` now refers to an image already in the store with all
    /// its layers, if it is. Returns None when content must be fetched.
    pub(crate) fn record_existing_id(
        &self,
        name: &ImageName,
        id: &str,
        top_digest: &str,
        blobs: &[(&str, &[u8])],
    ) -> Result<Option<Image>, Error> {
        let mut images = lock(&self.images);
        let Some(rec) = images.iter().find(|r| r.id == id) else {
            return Ok(None);
        };
        if !rec.layers.iter().all(|l| self.layers.exists(l)) {
            return Ok(None);
        }
        let mut rec = rec.clone();
        rec.repo_tags = name.tagged().into_iter().collect();
        rec.repo_digests = vec![name.with_digest(top_digest)];
        // still under the same lock: removal cannot take the layers meanwhile
        self.record_locked(&mut images, rec, blobs).map(Some)
    }

    /// Adds or merges `rec` into the index (tags move from other images) and
    /// writes `blobs` first, all under the index lock so removal cannot race.
    pub(crate) fn record_with_blobs(
        &self,
        rec: ImageRecord,
        blobs: &[(&str, &[u8])],
    ) -> Result<Image, Error> {
        let mut images = lock(&self.images);
        self.record_locked(&mut images, rec, blobs)
    }

    fn record_locked(
        &self,
        images: &mut Vec<ImageRecord>,
        rec: ImageRecord,
        blobs: &[(&str, &[u8])],
    ) -> Result<Image, Error> {
        let mut wrote = false;
        for (digest, data) in blobs {
            wrote |= self.put_blob(digest, data)?;
        }
        if wrote {
            index::sync_dir(&self.root.join("blobs/sha256"))?;
        }
        crius_fault::point!("pull.blobs_written");
        let mut next = images.clone();
        for other in next.iter_mut().filter(|r| r.id != rec.id) {
            other.repo_tags.retain(|t| !rec.repo_tags.contains(t));
        }
        let merged = match next.iter_mut().find(|r| r.id == rec.id) {
            Some(existing) => {
                for t in &rec.repo_tags {
                    if !existing.repo_tags.contains(t) {
                        existing.repo_tags.push(t.clone());
                    }
                }
                for d in &rec.repo_digests {
                    if !existing.repo_digests.contains(d) {
                        existing.repo_digests.push(d.clone());
                    }
                }
                existing.pinned |= rec.pinned;
                existing.layers = rec.layers.clone();
                existing.manifest = rec.manifest.clone();
                existing.clone()
            }
            None => {
                next.push(rec.clone());
                rec
            }
        };
        index::save(&self.index_path(), &next)?;
        crius_fault::point!("pull.recorded");
        *images = next;
        Ok(merged.image())
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    /// Finds the record `name_or_id` refers to.
    fn find(&self, images: &[ImageRecord], name_or_id: &str) -> Result<(usize, Match), Error> {
        let not_found = || Error::ImageNotFound {
            image: name_or_id.to_string(),
            registry: None,
        };
        let s = name_or_id.trim();
        if s.is_empty() {
            return Err(Error::InvalidReference {
                reference: name_or_id.to_string(),
                reason: "empty image name".into(),
            });
        }
        let bare = s.strip_prefix("sha256:").unwrap_or(s);
        let is_hex =
            !bare.is_empty() && bare.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if is_hex && bare.len() == 64 {
            let id = format!("sha256:{bare}");
            return images
                .iter()
                .position(|r| r.id == id)
                .map(|i| (i, Match::Id))
                .ok_or_else(not_found);
        }
        if !s.starts_with("sha256:") {
            if let Ok(candidates) = self.access().registries.candidates(s) {
                for name in candidates {
                    if let Some(d) = &name.digest {
                        let want = name.with_digest(d);
                        if let Some(i) = images.iter().position(|r| r.repo_digests.contains(&want))
                        {
                            return Ok((i, Match::Digest));
                        }
                    } else if let Some(tag) = name.tagged() {
                        if let Some(i) = images.iter().position(|r| r.repo_tags.contains(&tag)) {
                            return Ok((i, Match::Tag(tag)));
                        }
                    }
                }
            }
        }
        if is_hex {
            let prefix = format!("sha256:{bare}");
            let hits: Vec<usize> = images
                .iter()
                .enumerate()
                .filter(|(_, r)| r.id.starts_with(&prefix))
                .map(|(i, _)| i)
                .collect();
            return match hits.as_slice() {
                [i] => Ok((*i, Match::Id)),
                [] => Err(not_found()),
                _ => Err(Error::AmbiguousImage {
                    prefix: bare.to_string(),
                }),
            };
        }
        // not an id: it must at least be a valid reference
        reference::parse(s)?;
        Err(not_found())
    }

    /// Takes layers and blobs no image refers to (and no pull holds) out of
    /// the store; returns the detached layer dirs for the caller to delete
    /// once it has released the index lock.
    fn collect_garbage(&self, images: &[ImageRecord]) -> Vec<PathBuf> {
        let mut doomed = Vec::new();
        let mut used_layers: HashSet<&str> = HashSet::new();
        let mut used_blobs: HashSet<String> = HashSet::new();
        for r in images {
            used_layers.extend(r.layers.iter().map(String::as_str));
            used_blobs.insert(r.id.clone());
            used_blobs.insert(r.manifest.clone());
            for d in &r.repo_digests {
                if let Some((_, digest)) = d.rsplit_once('@') {
                    used_blobs.insert(digest.to_string());
                }
            }
        }
        match self.layers.all() {
            Ok(all) => {
                let pins = lock(&self.pins);
                for chain in all {
                    if used_layers.contains(chain.as_str()) || pins.contains_key(&chain) {
                        continue;
                    }
                    debug!(chain_id = %chain, "removing unused layer");
                    match self.layers.detach(&chain) {
                        Ok(Some(dir)) => doomed.push(dir),
                        Ok(None) => {}
                        Err(e) => warn!(chain_id = %chain, error = %e, "cannot remove layer"),
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list layers"),
        }
        let blob_dir = self.root.join("blobs/sha256");
        if let Ok(entries) = fs::read_dir(&blob_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") || used_blobs.contains(&format!("sha256:{name}")) {
                    continue;
                }
                if let Err(err) = fs::remove_file(e.path()) {
                    warn!(blob = %name, error = %err, "cannot remove blob");
                }
            }
        }
        doomed
    }
}

impl ImageStore {
    /// Opens (creating) the store under `config.root`, loads the index and
    /// registries.conf, and removes what an interrupted pull left behind.
    pub fn open(config: ImageStoreConfig) -> Result<Self, Error> {
        let root = config.root.clone();
        for d in [root.join("blobs/sha256"), root.join("empty")] {
            fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        let blob_dir = root.join("blobs/sha256");
        for e in fs::read_dir(&blob_dir)
            .map_err(|e| Error::io(&blob_dir, e))?
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_file(e.path());
            }
        }
        let layers = LayerStore::open(root.join("layers"))?;
        let images = index::load(&root.join("images.json"))?;
        let access = Access::load(&config)?;
        info!(
            root = %root.display(),
            images = images.len(),
            registries_conf = ?access.registries.sources,
            "image store open"
        );
        let inner = Inner {
            access: RwLock::new(Arc::new(access)),
            downloads: Semaphore::new(config.max_concurrent_downloads.max(1)),
            config,
            root,
            layers,
            images: Mutex::new(images),
            layer_locks: Mutex::new(HashMap::new()),
            pins: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            plain_http_hosts: Mutex::new(HashMap::new()),
            download_count: AtomicU64::new(0),
            manifest_http: Default::default(),
        };
        let store = ImageStore {
            inner: Arc::new(inner),
        };
        // records whose layers are gone (a crash mid-removal) are dropped
        {
            let inner = &store.inner;
            let mut images = lock(&inner.images);
            let before = images.len();
            images.retain(|r| {
                let whole = r.layers.iter().all(|l| inner.layers.exists(l));
                if !whole {
                    warn!(id = %r.id, "dropping image record with missing layers");
                }
                whole
            });
            if images.len() != before {
                index::save(&inner.index_path(), &images)?;
            }
            // Layers and blobs no record owns are what a crash left: a pull killed after
            // committing layers and before recording its image, or a removal killed after
            // saving the index and before deleting the layers. The store is one
            // process's, so no pull is in flight to own them yet.
            let doomed = inner.collect_garbage(&images);
            drop(images);
            for dir in doomed {
                info!(dir = %dir.display(), "removing a layer no image records");
                if let Err(e) = fs::remove_dir_all(&dir) {
                    warn!(dir = %dir.display(), error = %e, "cannot delete a layer no image records");
                }
            }
        }
        Ok(store)
    }

    /// Pulls `reference` (short names resolved through registries.conf),
    /// trying mirrors first, and records it under the name asked for.
    pub async fn pull(&self, reference: &str, auth: Option<&Credentials>) -> Result<Image, Error> {
        self.inner
            .pull(reference, auth, PullProgress::new(reference))
            .await
    }

    /// [`ImageStore::pull`], with `progress` following its layers as they arrive.
    pub async fn pull_with_progress(
        &self,
        reference: &str,
        auth: Option<&Credentials>,
        progress: Arc<PullProgress>,
    ) -> Result<Image, Error> {
        self.inner.pull(reference, auth, progress).await
    }

    /// Every image in the store.
    pub fn list(&self) -> Vec<Image> {
        lock(&self.inner.images)
            .iter()
            .map(ImageRecord::image)
            .collect()
    }

    /// By full id ("sha256:..." or bare hex), unique id prefix, repo tag (short
    /// names normalized), or repo digest. `Error::ImageNotFound` when absent.
    pub fn resolve(&self, name_or_id: &str) -> Result<Image, Error> {
        let images = lock(&self.inner.images);
        let (i, _) = self.inner.find(&images, name_or_id)?;
        Ok(images[i].image())
    }

    /// The image's OCI config (entrypoint, env, user, ...).
    pub fn image_config(&self, id: &str) -> Result<oci_spec::image::ImageConfiguration, Error> {
        let image_id = self.resolve(id)?.id;
        let path = self.inner.blob_path(&image_id)?;
        let data = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&data).map_err(|e| Error::CorruptStore {
            path,
            reason: e.to_string(),
        })
    }

    /// A tag removes only that tag while others remain; an id or digest
    /// removes the image. Unused layers and blobs go with it.
    pub fn remove(&self, name_or_id: &str) -> Result<(), Error> {
        let mut images = lock(&self.inner.images);
        let (i, how) = self.inner.find(&images, name_or_id)?;
        let mut next = images.clone();
        let removed_whole = match how {
            Match::Tag(tag) if next[i].repo_tags.len() > 1 => {
                next[i].repo_tags.retain(|t| *t != tag);
                false
            }
            _ => {
                next.remove(i);
                true
            }
        };
        index::save(&self.inner.index_path(), &next)?;
        crius_fault::point!("remove_image.index_saved");
        *images = next;
        info!(image = name_or_id, whole = removed_whole, "image removed");
        if removed_whole {
            let doomed = self.inner.collect_garbage(&images);
            crius_fault::point!("remove_image.layers_detached");
            drop(images);
            for dir in doomed {
                if let Err(e) = fs::remove_dir_all(&dir) {
                    warn!(dir = %dir.display(), error = %e, "cannot delete removed layer");
                }
            }
        }
        Ok(())
    }

    /// Marks an image pinned (kubelet never garbage-collects pinned images).
    pub fn set_pinned(&self, name_or_id: &str, pinned: bool) -> Result<(), Error> {
        let mut images = lock(&self.inner.images);
        let (i, _) = self.inner.find(&images, name_or_id)?;
        let mut next = images.clone();
        next[i].pinned = pinned;
        index::save(&self.inner.index_path(), &next)?;
        *images = next;
        Ok(())
    }

    /// Bytes and inodes used by the store, and the mount point holding it.
    pub fn fs_usage(&self) -> Result<FsUsage, Error> {
        let root = &self.inner.root;
        let mut used_bytes = 0u64;
        let mut inodes_used = 0u64;
        for chain in self.inner.layers.all()? {
            match self.inner.layers.meta(&chain) {
                Ok(m) => {
                    used_bytes += m.usage_bytes;
                    inodes_used += m.usage_inodes;
                }
                Err(e) => warn!(chain_id = %chain, error = %e, "layer without usage record"),
            }
            inodes_used += 2; // the layer dir and layer.json
            used_bytes += 8192;
        }
        for dir in [root.join("blobs"), root.join("empty")] {
            let (b, i) = crate::unpack::disk_usage(&dir).map_err(|e| Error::io(&dir, e))?;
            used_bytes += b;
            inodes_used += i;
        }
        if let Ok(m) = fs::metadata(self.inner.index_path()) {
            used_bytes += std::os::unix::fs::MetadataExt::blocks(&m) * 512;
            inodes_used += 1;
        }
        Ok(FsUsage {
            mountpoint: mountpoint_of(root)?,
            used_bytes,
            inodes_used,
        })
    }

    /// overlayfs: lowerdirs = the image's layers, upper/work inside
    /// container_dir; mounted at container_dir/rootfs, which is returned.
    pub fn mount_rootfs(&self, image_id: &str, container_dir: &Path) -> Result<PathBuf, Error> {
        let lowers = self.lowers(image_id)?;
        mount::mount_overlay(self.inner.layers.dir(), &lowers, container_dir)
    }

    /// Mounts a container's rootfs at `target` for a pod in a user namespace of its own:
    /// the image's layers id-mapped by `maps` (through `userns` when the pod's user
    /// namespace exists already), upper and work dirs in `container_dir`.
    pub fn mount_rootfs_idmapped(
        &self,
        image_id: &str,
        container_dir: &Path,
        target: &Path,
        maps: &crate::idmap::IdMappings,
        userns: Option<std::os::fd::OwnedFd>,
    ) -> Result<(), Error> {
        let lowers = self.lowers(image_id)?;
        mount::mount_overlay_idmapped(
            self.inner.layers.dir(),
            &lowers,
            container_dir,
            target,
            maps,
            userns,
        )
    }

    /// Mounts an image's layers alone, read-only, at `target` (an image volume).
    pub fn mount_image_volume(&self, image_id: &str, target: &Path) -> Result<(), Error> {
        let lowers = self.lowers(image_id)?;
        mount::mount_read_only(self.inner.layers.dir(), &lowers, target)
    }

    /// Unmounts an image volume and removes its mount point; succeeds if already gone.
    pub fn unmount_image_volume(target: &Path) -> Result<(), Error> {
        mount::unmount_read_only(target)
    }

    /// An image's layer dirs relative to the layer store, top first (the empty dir for
    /// an image without layers).
    fn lowers(&self, image_id: &str) -> Result<Vec<PathBuf>, Error> {
        let layers = {
            let images = lock(&self.inner.images);
            let (i, _) = self.inner.find(&images, image_id)?;
            images[i].layers.clone()
        };
        let mut lowers = Vec::with_capacity(layers.len().max(1));
        for chain in layers.iter().rev() {
            lowers.push(self.inner.layers.diff_rel(chain)?);
        }
        if lowers.is_empty() {
            lowers.push(PathBuf::from("../empty"));
        }
        Ok(lowers)
    }

    /// Unmounts and removes rootfs/upper/work under container_dir; succeeds if already gone.
    pub fn unmount_rootfs(container_dir: &Path) -> Result<(), Error> {
        mount::unmount_overlay(container_dir)
    }

    /// Applies the registry part of `config` (SIGHUP): registries.conf (re-read, also from a
    /// new path), insecure registries, credentials and the auth file's path; the root and
    /// download limit stay.
    /// On error the config in force stays.
    pub fn reload_registries(&self, config: &ImageStoreConfig) -> Result<(), Error> {
        let fresh = Access::load(config)?;
        info!(registries_conf = ?fresh.registries.sources, "registries reloaded");
        *self.inner.access.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        lock(&self.inner.clients).clear();
        lock(&self.inner.plain_http_hosts).clear();
        Ok(())
    }

    /// How many layer downloads this store has started (tests check deduplication).
    pub fn download_count(&self) -> u64 {
        self.inner.download_count.load(Ordering::Relaxed)
    }

    /// The unpacked layer directories of an image, bottom layer first.
    pub fn layer_paths(&self, name_or_id: &str) -> Result<Vec<PathBuf>, Error> {
        let images = lock(&self.inner.images);
        let (i, _) = self.inner.find(&images, name_or_id)?;
        images[i]
            .layers
            .iter()
            .map(|c| self.inner.layers.diff_dir(c))
            .collect()
    }

    /// Where the store lives.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }
}

/// The mount point of the file system holding `path` (longest match in mountinfo).
fn mountpoint_of(path: &Path) -> Result<PathBuf, Error> {
    let canonical = fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("/proc/self/mountinfo", e))?;
    let mut best = PathBuf::from("/");
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = PathBuf::from(unescape_mountinfo(mp));
        if canonical.starts_with(&mp) && mp.components().count() > best.components().count() {
            best = mp;
        }
    }
    Ok(best)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pull killed after committing a layer and before recording its image, and a
    /// removal killed before deleting blobs, leave content no image records; the next
    /// open takes it out and keeps what records use.
    #[test]
    fn layers_and_blobs_no_image_records_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = ImageStoreConfig::new(dir.path().join("images"));
        let store = ImageStore::open(config.clone()).unwrap();
        let binary = dir.path().join("pause");
        fs::write(&binary, b"\x7fELF not really").unwrap();
        let pause = store
            .install_pause_image("registry.k8s.io/pause:3.10", &binary)
            .unwrap();
        let orphan = format!("sha256:{}", "7".repeat(64));
        let layer = store.inner.layers.begin(&orphan).unwrap();
        fs::write(layer.diff().join("f"), "x").unwrap();
        let meta = crate::layers::LayerMeta {
            chain_id: orphan.clone(),
            diff_id: orphan.clone(),
            parent: None,
            digest: orphan.clone(),
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            size: 1,
            usage_bytes: 1,
            usage_inodes: 1,
        };
        store.inner.layers.commit(layer, &meta).unwrap();
        let blob = dir.path().join("images/blobs/sha256").join("8".repeat(64));
        fs::write(&blob, "{}").unwrap();
        drop(store);

        let store = ImageStore::open(config).unwrap();
        assert!(!store.inner.layers.exists(&orphan), "orphan layer kept");
        assert!(!blob.exists(), "orphan blob kept");
        assert_eq!(store.list(), vec![pause.clone()]);
        for path in store.layer_paths(&pause.id).unwrap() {
            assert!(path.join("pause").exists(), "{}", path.display());
        }
        store.image_config(&pause.id).unwrap();
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
