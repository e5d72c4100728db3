//! `crius wipe`: removes every image, pod and container record the daemon keeps.

use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context};

use crate::config::Config;
use crate::mounts;

/// Removes `root` and `runroot` (detaching mounts below them first). Refuses while a
/// daemon serves the socket, and without `force` only says what it would do.
pub fn wipe(config: &Config, force: bool) -> anyhow::Result<()> {
    let c = &config.crius;
    let dirs = [&c.runroot, &c.root];
    for dir in dirs {
        if dir.components().count() < 3 {
            bail!("refusing to wipe {}: too close to /", dir.display());
        }
    }
    if !force {
        bail!(
            "crius wipe removes {} and {} with every image, pod and container; run `crius wipe --force` to do it",
            c.root.display(),
            c.runroot.display()
        );
    }
    if UnixStream::connect(&c.api.listen).is_ok() {
        bail!(
            "crius is still serving {}; stop it before wiping",
            c.api.listen.display()
        );
    }
    for dir in dirs {
        remove_tree(dir)?;
    }
    Ok(())
}

fn remove_tree(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        println!("{} does not exist", dir.display());
        return Ok(());
    }
    let detached = mounts::detach_all_under(dir)
        .with_context(|| format!("cannot list mounts under {}", dir.display()))?;
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    println!("removed {} ({detached} mounts detached)", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_force_nothing_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.crius.root = dir.path().join("lib/crius");
        config.crius.runroot = dir.path().join("run/crius");
        std::fs::create_dir_all(config.crius.root.join("images")).unwrap();
        let err = wipe(&config, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        assert!(config.crius.root.join("images").exists());
    }

    #[test]
    fn with_force_both_dirs_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.crius.root = dir.path().join("lib/crius");
        config.crius.runroot = dir.path().join("run/crius");
        config.crius.api.listen = dir.path().join("run/crius/crius.sock");
        std::fs::create_dir_all(config.crius.root.join("images/blobs")).unwrap();
        std::fs::write(config.crius.root.join("images/blobs/x"), "x").unwrap();
        std::fs::create_dir_all(&config.crius.runroot).unwrap();
        wipe(&config, true).unwrap();
        assert!(!config.crius.root.exists());
        assert!(!config.crius.runroot.exists());
    }

    #[test]
    fn refuses_top_level_dirs() {
        let mut config = Config::default();
        config.crius.root = "/var".into();
        let err = wipe(&config, true).unwrap_err().to_string();
        assert!(err.contains("too close to /"), "{err}");
    }
}
