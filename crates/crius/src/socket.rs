//! The CRI socket: claimed at start (a stale one from a crashed run replaced, a live one
//! refused), mode 0660, and removed at exit.
//!
//! [`CriSocket`] keeps its own handle on the listening socket until it has unlinked the
//! path: while the daemon winds down, a new daemon probing the path still finds it live
//! and refuses, so it can never replace a socket that the old one would then unlink.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tracing::{debug, info, warn};

/// A bound CRI socket and the directories made for it.
#[derive(Debug)]
pub struct CriSocket {
    path: PathBuf,
    /// Keeps the socket listening (connections queue, unanswered) until it is unlinked.
    held: UnixListener,
    /// Directories created for the socket, outermost first.
    created_dirs: Vec<PathBuf>,
}

/// Creates `path`'s parent directories (remembering which were new), replaces a stale
/// socket, refuses a live one, binds, and sets mode 0660.
pub fn bind(path: &Path) -> anyhow::Result<(UnixListener, CriSocket)> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => bail!("socket path {} has no parent directory", path.display()),
    };
    let created_dirs = create_dirs(parent)?;
    let claimed = claim(path).and_then(|listener| match listener.try_clone() {
        Ok(held) => Ok((listener, held)),
        Err(err) => {
            let _ = std::fs::remove_file(path);
            Err(err).with_context(|| format!("cannot duplicate socket {}", path.display()))
        }
    });
    match claimed {
        Ok((listener, held)) => Ok((
            listener,
            CriSocket {
                path: path.to_path_buf(),
                held,
                created_dirs,
            },
        )),
        Err(err) => {
            remove_dirs(&created_dirs);
            Err(err)
        }
    }
}

fn claim(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            bail!("{} exists and is not a socket", path.display())
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => bail!("another crius is already serving {}", path.display()),
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::ConnectionRefused | ErrorKind::NotFound
                ) =>
            {
                info!(socket = %path.display(), "removing stale socket from an earlier run");
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
            }
            Err(err) => {
                return Err(err).with_context(|| format!("cannot probe socket {}", path.display()))
            }
        },
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot stat {}", path.display())),
    }
    let listener = match UnixListener::bind(path) {
        Ok(listener) => listener,
        Err(err) if err.kind() == ErrorKind::AddrInUse => {
            bail!("another crius is already serving {}", path.display())
        }
        Err(err) => {
            return Err(err).with_context(|| format!("cannot bind socket {}", path.display()))
        }
    };
    if let Err(err) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)) {
        let _ = std::fs::remove_file(path);
        return Err(err)
            .with_context(|| format!("cannot set mode 0660 on socket {}", path.display()));
    }
    debug!(socket = %path.display(), "socket bound, mode 0660");
    Ok(listener)
}

/// Creates `dir` and its missing ancestors; returns those it made, outermost first.
fn create_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(d) = cursor {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cursor = d.parent();
    }
    missing.reverse();
    for (i, d) in missing.iter().enumerate() {
        if let Err(err) = std::fs::create_dir(d) {
            if err.kind() != ErrorKind::AlreadyExists {
                remove_dirs(&missing[..i]);
                return Err(err)
                    .with_context(|| format!("cannot create socket directory {}", d.display()));
            }
        }
    }
    if !dir.is_dir() {
        bail!("socket directory {} is not a directory", dir.display());
    }
    Ok(missing)
}

/// Removes `dirs` innermost first, each only if empty.
fn remove_dirs(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        if let Err(err) = std::fs::remove_dir(d) {
            debug!(dir = %d.display(), %err, "left directory in place");
        }
    }
}

impl CriSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unlinks the socket, then stops listening.
    pub fn remove(self) {
        if let Err(err) = std::fs::remove_file(&self.path) {
            if err.kind() != ErrorKind::NotFound {
                warn!(socket = %self.path.display(), %err, "cannot remove socket");
            }
        }
        drop(self.held);
    }

    /// Unlinks the socket and the directories made for it (when empty): a failed start
    /// leaves nothing behind.
    pub fn remove_all(self) {
        let dirs = self.created_dirs.clone();
        self.remove();
        remove_dirs(&dirs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_with_mode_0660_in_new_dirs_and_cleans_them_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/crius.sock");
        let (_listener, socket) = bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        socket.remove_all();
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn a_live_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crius.sock");
        let (_listener, _socket) = bind(&path).unwrap();
        let err = bind(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("another crius is already serving {}", path.display())
        );
        assert!(path.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crius.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (listener, socket) = bind(&path).unwrap();
        UnixStream::connect(&path).unwrap();
        drop(listener);
        socket.remove();
        assert!(!path.exists());
    }

    #[test]
    fn a_regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crius.sock");
        std::fs::write(&path, "data").unwrap();
        let err = bind(&path).unwrap_err().to_string();
        assert!(err.contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn the_socket_stays_claimed_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crius.sock");
        let (listener, first) = bind(&path).unwrap();
        // The server has stopped accepting, but the daemon is still winding down.
        drop(listener);
        let err = bind(&path).unwrap_err().to_string();
        assert!(err.starts_with("another crius is already serving"), "{err}");
        first.remove();
        assert!(!path.exists());
        let (_listener, _second) = bind(&path).unwrap();
    }

    #[test]
    fn an_uncreatable_dir_is_a_one_line_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let err = bind(&dir.path().join("file/sub/crius.sock")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("cannot create socket directory"), "{msg}");
        assert!(!msg.contains('\n'));
    }
}
