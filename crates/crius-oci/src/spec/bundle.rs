//! Writing config.json into a bundle directory so a crash never leaves a
//! torn file behind.
//!
//! The file is renamed into place but not fsynced: the runtime reads it once, at
//! `create`, right after it is written, and after a power loss the container it
//! describes is gone anyway (everything is Exited after a reboot). An fsync here
//! cost 10-20 ms of every RunPodSandbox and CreateContainer.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oci_spec::runtime::Spec;
use tracing::debug;

use crate::Error;

/// Writes config.json into the bundle dir atomically: a temp file in the
/// same dir renamed over config.json (see the module docs on durability). The
/// file is 0600: the environment may hold secrets. Creates the bundle dir
/// when it is missing.
pub fn write_bundle(bundle: &Path, spec: &Spec) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let target = bundle.join("config.json");
    let io_err = |source| Error::BundleWrite {
        path: target.clone(),
        source,
    };
    let data = serde_json::to_vec(spec).map_err(|source| Error::SpecSerialize {
        bundle: bundle.to_path_buf(),
        source,
    })?;
    fs::create_dir_all(bundle).map_err(io_err)?;
    // pid + counter: two writers (threads or processes) never share a temp file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = bundle.join(format!(".config.json.{}.{seq}.tmp", std::process::id()));
    let result = (|| {
        // A leftover of a crashed daemon that had the same pid.
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&data)?;
        drop(f);
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    debug!(path = %target.display(), bytes = data.len(), elapsed = ?started.elapsed(), "wrote bundle config");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_and_replaces_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("b");
        let mut spec = Spec::default();
        spec.set_hostname(Some("one".into()));
        write_bundle(&bundle, &spec).unwrap();
        let read: Spec =
            serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
        assert_eq!(read.hostname().as_deref(), Some("one"));
        let mode = fs::metadata(bundle.join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        spec.set_hostname(Some("two".into()));
        write_bundle(&bundle, &spec).unwrap();
        let read: Spec =
            serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
        assert_eq!(read.hostname().as_deref(), Some("two"));
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(&bundle)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["config.json".to_string()]);
    }

    #[test]
    fn concurrent_writers_leave_one_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let bundle = bundle.clone();
                std::thread::spawn(move || {
                    let mut spec = Spec::default();
                    spec.set_hostname(Some(format!("h{i}")));
                    for _ in 0..20 {
                        write_bundle(&bundle, &spec).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let read: Spec =
            serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
        assert!(read.hostname().as_deref().unwrap().starts_with('h'));
        assert_eq!(
            fs::read_dir(&bundle).unwrap().count(),
            1,
            "no temp files left"
        );
    }

    #[test]
    fn unwritable_bundle_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "x").unwrap();
        let err = write_bundle(&file, &Spec::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not-a-dir/config.json"), "{err}");
    }
}
