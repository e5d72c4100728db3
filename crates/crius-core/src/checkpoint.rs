//! CheckpointContainer and restores from a checkpoint archive, in CRI-O's way: the
//! kubelet asks for an archive at a path; a container whose image is such an archive's
//! path is restored from it.
//!
//! The archive is an uncompressed tar holding, at its root:
//!
//! | entry | what |
//! |---|---|
//! | `manifest.json` | format version, the container, pod and image it came from, and the SHA-256 of every other file |
//! | `config.dump` | the container's CRI config, image id and name, as JSON |
//! | `spec.dump` | the container's OCI runtime spec (`config.json`) |
//! | `rootfs-diff.tar` | the container's changes to its image: the overlay upper dir |
//! | `checkpoint/` | CRIU's images of the processes (`runc checkpoint --image-path`) |
//!
//! Reading one back accepts only those entries, as regular files and dirs under the
//! archive's root (no absolute paths, no `..`, no links or devices), and only when every
//! file matches the manifest: a truncated archive, one edited after it was written, or
//! one with entries the manifest does not list is refused. The manifest detects damage
//! and tampering that does not rewrite it; it is not a signature.
//!
//! CRIU must work on the node. Whether it does is probed once (`criu check`), and the
//! answer, with CRIU's own reason when not, is in `Status`'s verbose info and in the
//! error of any checkpoint or restore asked for.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::daemon::{remove_dir_all, Daemon};
use crate::error::{Error, Result};
use crate::model::{new_id, now_ns, ContainerState};

/// The archive's manifest, first entry of the tar.
pub const MANIFEST: &str = "manifest.json";
/// The container's CRI config and image.
pub const CONFIG_DUMP: &str = "config.dump";
/// The container's OCI spec.
pub const SPEC_DUMP: &str = "spec.dump";
/// The container's rootfs changes.
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
/// CRIU's images.
pub const CRIU_DIR: &str = "checkpoint";
/// The version of this layout.
const FORMAT_VERSION: u32 = 1;

/// What an archive says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The checkpointed container.
    pub container_id: String,
    /// Its pod.
    pub pod_id: String,
    /// The image it ran.
    pub image_id: String,
    /// When the checkpoint was taken (ns since the epoch).
    pub created_at: i64,
    /// Every other file of the archive, by path, with its SHA-256 in hex.
    pub files: BTreeMap<String, String>,
}

/// Whether CRIU can work here: its version, or why not.
pub(crate) type CriuProbe = std::result::Result<String, String>;

static CRIU: OnceCell<CriuProbe> = OnceCell::const_new();

/// Runs `criu check` once per daemon and keeps the answer.
pub(crate) async fn criu_probe() -> CriuProbe {
    CRIU.get_or_init(probe_criu).await.clone()
}

async fn probe_criu() -> CriuProbe {
    let run = |args: &'static [&'static str]| async move {
        let cmd = tokio::process::Command::new("criu")
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(20), cmd).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(format!("cannot run criu: {e}")),
            Err(_) => Err("`criu check` did not finish within 20s".to_string()),
        }
    };
    let version = run(&["--version"]).await?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Version: ").map(str::to_string))
        .unwrap_or_else(|| "unknown version".into());
    let out = run(&["check"]).await?;
    if out.status.success() {
        info!(criu = %version, "criu check passed: checkpoint and restore are available");
        return Ok(version);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let reason = criu_failure(&version, &text, &maps);
    warn!(%reason, "checkpoint and restore are unavailable");
    Err(reason)
}

/// Why `criu check` failed, from its output, with what the kernel's memory layout
/// explains about it.
fn criu_failure(version: &str, output: &str, maps: &str) -> String {
    let errors: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("Error"))
        .map(str::trim)
        .collect();
    let said = if errors.is_empty() {
        output
            .trim()
            .lines()
            .last()
            .unwrap_or("no output")
            .to_string()
    } else {
        errors.join(" | ")
    };
    let mut reason = format!("criu {version} `criu check` failed: {said}");
    if said.contains("vDSO") && maps.contains("[vvar_vclock]") {
        reason.push_str(
            " (this kernel maps a [vvar_vclock] area between [vvar] and [vdso], a layout \
             this criu does not know; a criu that knows it is needed)",
        );
    }
    reason
}

/// `path` as a clean absolute path inside one of `dirs`; the error says which rule fails.
pub(crate) fn allowed_path(path: &str, dirs: &[PathBuf], what: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    if path.is_empty() || !p.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "{what} {path:?} must be an absolute path"
        )));
    }
    if p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || p.file_name().is_none()
    {
        return Err(Error::InvalidArgument(format!(
            "{what} {path:?} must name a file without . or .. components"
        )));
    }
    // Symlinks in the parent must not lead out of the allowed dirs either.
    let parent = p.parent().unwrap_or(Path::new("/"));
    let real_parent = parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf());
    let inside = dirs.iter().any(|d| {
        let real = d.canonicalize().unwrap_or_else(|_| d.clone());
        p.starts_with(d) && real_parent.starts_with(&real)
    });
    if !inside {
        let list = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Error::InvalidArgument(format!(
            "{what} {path:?} is outside the allowed checkpoint dirs ({list}; key checkpoint_dirs)"
        )));
    }
    Ok(p.to_path_buf())
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Every regular file under `dir`, relative, sorted; links and devices are refused.
fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(dir.join(&rel))? {
            let e = e?;
            let ft = e.file_type()?;
            let r = rel.join(e.file_name());
            if ft.is_dir() {
                stack.push(r);
            } else if ft.is_file() {
                out.push(r);
            } else {
                return Err(std::io::Error::other(format!(
                    "{} is neither a file nor a dir",
                    dir.join(&r).display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Packs the staged parts in `staging` (see the module doc) into the archive at `dest`,
/// written to a temporary name and renamed, so a failure leaves no archive.
pub(crate) fn write_archive(staging: &Path, mut manifest: Manifest, dest: &Path) -> Result<()> {
    let files = files_under(staging).map_err(|e| Error::io("read checkpoint parts", staging, e))?;
    for f in &files {
        let sum =
            sha256_file(&staging.join(f)).map_err(|e| Error::io("hash", staging.join(f), e))?;
        manifest.files.insert(f.to_string_lossy().into_owned(), sum);
    }
    let partial = dest.with_file_name(format!(
        ".{}.partial",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = (|| -> std::io::Result<()> {
        let file = std::fs::File::create(&partial)?;
        let mut tar = tar::Builder::new(file);
        tar.mode(tar::HeaderMode::Deterministic);
        let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(json.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, MANIFEST, json.as_slice())?;
        for f in &files {
            tar.append_path_with_name(staging.join(f), f)?;
        }
        let file = tar.into_inner()?;
        file.sync_all()?;
        std::fs::rename(&partial, dest)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::io("write checkpoint archive", dest, e));
    }
    Ok(())
}

/// Whether `rel` is a path an archive may hold: `checkpoint/...` or one of the named files.
fn allowed_entry(rel: &Path) -> bool {
    let mut comps = rel.components();
    match comps.next() {
        Some(Component::Normal(first)) => {
            let rest_ok = rel.components().all(|c| matches!(c, Component::Normal(_)));
            rest_ok
                && (first == CRIU_DIR
                    || (comps.next().is_none()
                        && [MANIFEST, CONFIG_DUMP, SPEC_DUMP, ROOTFS_DIFF]
                            .iter()
                            .any(|n| first == *n)))
        }
        _ => false,
    }
}

/// Unpacks the archive at `path` into the empty dir `into` and checks it against its
/// manifest (see the module doc). The reason, when it is refused, names the entry.
pub(crate) fn read_archive(path: &Path, into: &Path) -> std::result::Result<Manifest, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mut archive = tar::Archive::new(file);
    let mut sums: BTreeMap<String, String> = BTreeMap::new();
    let mut manifest_bytes = None;
    let entries = archive
        .entries()
        .map_err(|e| format!("is not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("is truncated or damaged: {e}"))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = PathBuf::from(name.trim_end_matches('/'));
        if !allowed_entry(&rel) {
            return Err(format!(
                "holds the entry {name:?}, which is not part of a checkpoint archive or leaves its root"
            ));
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(into.join(&rel)).map_err(|e| e.to_string())?;
                continue;
            }
            tar::EntryType::Regular => {}
            other => {
                return Err(format!(
                    "holds {name:?} of type {other:?}; only files and dirs may be"
                ))
            }
        }
        let mut data = Vec::new();
        let mut hasher = Sha256::new();
        if rel == Path::new(MANIFEST) {
            entry
                .read_to_end(&mut data)
                .map_err(|e| format!("is truncated in {name:?}: {e}"))?;
            manifest_bytes = Some(data);
            continue;
        }
        let dest = into.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .map_err(|e| format!("entry {name:?} given twice or not writable: {e}"))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| format!("is truncated in {name:?}: {e}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
        sums.insert(
            rel.to_string_lossy().into_owned(),
            hex::encode(hasher.finalize()),
        );
    }
    let bytes = manifest_bytes.ok_or_else(|| format!("has no {MANIFEST}"))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("has an unreadable {MANIFEST}: {e}"))?;
    if manifest.version != FORMAT_VERSION {
        return Err(format!(
            "is of format version {}, not {FORMAT_VERSION}",
            manifest.version
        ));
    }
    for (f, sum) in &manifest.files {
        match sums.get(f) {
            None => {
                return Err(format!(
                    "lacks {f:?}, which its manifest lists (truncated?)"
                ))
            }
            Some(s) if s != sum => {
                return Err(format!(
                    "has {f:?} that does not match its manifest (altered)"
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = sums.keys().find(|k| !manifest.files.contains_key(*k)) {
        return Err(format!("holds {extra:?}, which its manifest does not list"));
    }
    for needed in [CONFIG_DUMP, SPEC_DUMP] {
        if !sums.contains_key(needed) {
            return Err(format!("has no {needed}"));
        }
    }
    Ok(manifest)
}

/// The container's CRI config and image as `config.dump` holds them.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ConfigDump {
    pub image_id: String,
    pub image_name: String,
    pub config: serde_json::Value,
}

impl Daemon {
    /// CheckpointContainer: the running container `id`, checkpointed with CRIU and left
    /// running, into an archive at `location` (see the module doc).
    pub async fn checkpoint_container(&self, id: &str, location: &str) -> Result<()> {
        let dest = allowed_path(location, &self.config().checkpoint_dirs, "checkpoint path")?;
        let ctr = self.container_entry(id)?;
        let _op = ctr.entry.op.lock().await;
        let rec = ctr.entry.get();
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}; only a running container can be checkpointed",
                rec.id, rec.state
            )));
        }
        if dest.exists() {
            return Err(Error::AlreadyExists(format!(
                "checkpoint path {} exists already",
                dest.display()
            )));
        }
        if let Err(reason) = criu_probe().await {
            return Err(Error::FailedPrecondition(format!(
                "cannot checkpoint container {}: checkpoint is unavailable on this node: {reason}",
                rec.id
            )));
        }
        let pod = self.pod_entry(&rec.pod_id)?.get();
        let (runtime, _, _) = self.runtime_handler(&pod.runtime_handler)?;
        let staging = self.config().root_dir.join("checkpoints").join(format!(
            "{}-{}",
            rec.id,
            &new_id()[..12]
        ));
        let work = staging.with_extension("work");
        let result = async {
            for d in [&staging, &work] {
                std::fs::create_dir_all(d).map_err(|e| Error::io("make checkpoint dir", d, e))?;
            }
            let started = std::time::Instant::now();
            runtime
                .checkpoint(&rec.id, &staging.join(CRIU_DIR), &work)
                .await
                .map_err(|e| Error::from(e).at_step("checkpoint container with CRIU"))?;
            let dir = self.container_dir(&rec.id);
            std::fs::copy(dir.join("config.json"), staging.join(SPEC_DUMP))
                .map_err(|e| Error::io("copy spec", dir.join("config.json"), e))?;
            let dump = ConfigDump {
                image_id: rec.image_id.clone(),
                image_name: rec.image_name.clone(),
                config: serde_json::to_value(&rec.config)
                    .map_err(|e| Error::Internal(format!("container config as JSON: {e}")))?,
            };
            let json = serde_json::to_vec_pretty(&dump)
                .map_err(|e| Error::Internal(format!("config.dump: {e}")))?;
            std::fs::write(staging.join(CONFIG_DUMP), json)
                .map_err(|e| Error::io("write", staging.join(CONFIG_DUMP), e))?;
            tar_dir(&dir.join("upper"), &staging.join(ROOTFS_DIFF))?;
            let manifest = Manifest {
                version: FORMAT_VERSION,
                container_id: rec.id.clone(),
                pod_id: rec.pod_id.clone(),
                image_id: rec.image_id.clone(),
                created_at: now_ns(),
                files: BTreeMap::new(),
            };
            write_archive(&staging, manifest, &dest)?;
            info!(container_id = %rec.id, archive = %dest.display(), elapsed = ?started.elapsed(), "container checkpointed");
            Ok(())
        }
        .await;
        for d in [&staging, &work] {
            if let Err(e) = remove_dir_all(d) {
                warn!(dir = %d.display(), error = %e, "checkpoint staging dir left behind");
            }
        }
        result
    }

    /// CreateContainer whose image is a checkpoint archive's path: the archive is
    /// checked and unpacked, CRIU asked for; the unpacked copy goes again either way.
    pub(crate) async fn restore_container(&self, pod_id: &str, image: &str) -> Result<String> {
        let into = self
            .config()
            .root_dir
            .join("checkpoints")
            .join(format!("restore-{}", &new_id()[..16]));
        let result = self.open_checkpoint(image, &into).await;
        if let Err(e) = remove_dir_all(&into) {
            warn!(dir = %into.display(), error = %e, "restore dir left behind");
        }
        let manifest = result?;
        Err(Error::Unimplemented(format!(
            "restoring container {} (pod {}) from {image} into pod {pod_id}: CRIU works here, \
             but the restore through the monitor",
            manifest.container_id, manifest.pod_id
        )))
    }

    /// The first steps of a restore: the archive named as a container's image checked
    /// and unpacked into `into`, then CRIU asked for. Runs before anything is made for
    /// the container, so a refusal leaves nothing.
    pub(crate) async fn open_checkpoint(&self, image: &str, into: &Path) -> Result<Manifest> {
        let path = allowed_path(image, &self.config().checkpoint_dirs, "checkpoint archive")?;
        std::fs::create_dir_all(into).map_err(|e| Error::io("make restore dir", into, e))?;
        let manifest = {
            let (path, into) = (path.clone(), into.to_path_buf());
            tokio::task::spawn_blocking(move || read_archive(&path, &into))
                .await
                .map_err(|e| Error::Internal(format!("archive reader: {e}")))?
        }
        .map_err(|reason| {
            Error::InvalidArgument(format!("checkpoint archive {} {reason}", path.display()))
        })?;
        if let Err(reason) = criu_probe().await {
            return Err(Error::FailedPrecondition(format!(
                "cannot restore from checkpoint archive {}: checkpoint is unavailable on this node: {reason}",
                path.display()
            )));
        }
        Ok(manifest)
    }
}

/// Tars `dir` (the rootfs changes) into the file `dest`; an empty tar when `dir` is absent.
fn tar_dir(dir: &Path, dest: &Path) -> Result<()> {
    let result = (|| -> std::io::Result<()> {
        let file = std::fs::File::create(dest)?;
        let mut tar = tar::Builder::new(file);
        tar.follow_symlinks(false);
        if dir.is_dir() {
            tar.append_dir_all(".", dir)?;
        }
        tar.into_inner()?.sync_all()
    })();
    result.map_err(|e| Error::io("archive rootfs changes", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            version: FORMAT_VERSION,
            container_id: "c".into(),
            pod_id: "p".into(),
            image_id: "sha256:x".into(),
            created_at: 1,
            files: BTreeMap::new(),
        }
    }

    fn staged(t: &Path) -> PathBuf {
        let s = t.join("staging");
        std::fs::create_dir_all(s.join("checkpoint/sub")).unwrap();
        std::fs::write(s.join(CONFIG_DUMP), "{}").unwrap();
        std::fs::write(s.join(SPEC_DUMP), "{\"ociVersion\":\"1\"}").unwrap();
        std::fs::write(s.join(ROOTFS_DIFF), vec![0u8; 1024]).unwrap();
        std::fs::write(s.join("checkpoint/pages-1.img"), vec![7u8; 100_000]).unwrap();
        std::fs::write(s.join("checkpoint/sub/x.img"), "x").unwrap();
        s
    }

    #[test]
    fn an_archive_reads_back_as_written() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("c.tar");
        write_archive(&staged(t.path()), manifest(), &dest).unwrap();
        assert!(!t.path().join(".c.tar.partial").exists());
        let out = t.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let m = read_archive(&dest, &out).unwrap();
        assert_eq!(m.files.len(), 5);
        assert_eq!(
            std::fs::read(out.join("checkpoint/pages-1.img")).unwrap(),
            vec![7u8; 100_000]
        );
    }

    fn refused(bytes: &[u8]) -> String {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.tar");
        std::fs::write(&p, bytes).unwrap();
        let out = t.path().join("out");
        std::fs::create_dir(&out).unwrap();
        read_archive(&p, &out).unwrap_err()
    }

    #[test]
    fn truncated_altered_and_escaping_archives_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("c.tar");
        write_archive(&staged(t.path()), manifest(), &dest).unwrap();
        let good = std::fs::read(&dest).unwrap();

        let cut = refused(&good[..good.len() / 2]);
        assert!(cut.contains("truncated") || cut.contains("lacks"), "{cut}");
        let at_boundary = refused(&good[..good.len() - 512 * 4]);
        assert!(
            at_boundary.contains("truncated") || at_boundary.contains("lacks"),
            "{at_boundary}"
        );

        let mut altered = good.clone();
        let at = altered.windows(4).position(|w| w == b"ociV").unwrap();
        altered[at] = b'X';
        assert!(refused(&altered).contains("does not match its manifest"));

        // An entry that leaves the root, written with a raw header.
        let mut evil = Vec::new();
        {
            let mut b = tar::Builder::new(&mut evil);
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..9].copy_from_slice(b"../escape");
            h.set_size(1);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            b.finish().unwrap();
        }
        let msg = refused(&evil);
        assert!(msg.contains("leaves its root"), "{msg}");
        assert!(!t.path().join("escape").exists());

        let text = refused(b"not a tar at all, just text");
        assert!(
            text.contains("truncated") || text.contains("has no manifest.json"),
            "{text}"
        );
    }

    #[test]
    fn paths_must_be_clean_and_inside_the_allowed_dirs() {
        let t = tempfile::tempdir().unwrap();
        let dirs = vec![t.path().to_path_buf()];
        let inside = t.path().join("a.tar");
        allowed_path(inside.to_str().unwrap(), &dirs, "p").unwrap();
        for bad in [
            "".to_string(),
            "relative.tar".to_string(),
            "/etc/passwd".to_string(),
            format!("{}/../x.tar", t.path().display()),
        ] {
            assert!(allowed_path(&bad, &dirs, "p").is_err(), "{bad}");
        }
        // A symlink inside the allowed dir that points out of it.
        std::os::unix::fs::symlink("/etc", t.path().join("link")).unwrap();
        let via = t.path().join("link/x.tar");
        assert!(allowed_path(via.to_str().unwrap(), &dirs, "p").is_err());
    }

    #[test]
    fn a_vdso_failure_on_a_kernel_with_vvar_vclock_is_explained() {
        let out = "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n\
                   Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed";
        let r = criu_failure("3.17.1", out, "7f-7f r--p 0 00:00 0 [vvar_vclock]\n");
        assert!(r.contains("Unexpected rt vDSO area bounds"), "{r}");
        assert!(r.contains("[vvar_vclock]"), "{r}");
        let r = criu_failure("3.17.1", out, "");
        assert!(!r.contains("vvar_vclock"), "{r}");
    }
}
