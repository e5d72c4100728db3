//! Whether each runtime handler can run pods. `Status` and `RunPodSandbox` ask here, so a
//! handler whose binary is missing, not executable, or fails its probe is reported not
//! ready with the reason instead of failing every pod later.
//!
//! The cheap checks (the files exist, are regular files, are executable) run at every
//! question; the probe (running the binary's version command) runs once per version of the
//! binary: again when its inode, size or mtime change, or after a reload.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::config::RuntimeHandlerConfig;

/// How long a handler's probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which version of a binary a probe result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
}

/// The last probe of one handler.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// The binary the probe ran.
    file: FileId,
    /// Its verdict.
    result: Result<(), String>,
}

/// Probe results by handler name.
pub(crate) type Probes = HashMap<String, Probe>;

/// An executable regular file at `path`, or why not; `what` names it in the message.
fn executable(what: &str, path: &Path) -> Result<FileId, String> {
    if path.as_os_str().is_empty() {
        return Err(format!("no {what} is configured"));
    }
    // A bare name the config could not find (next to crius, in PATH) stays relative;
    // it must not be looked up in the daemon's working directory.
    if !path.is_absolute() {
        return Err(format!(
            "{what} {} not found (looked next to the crius executable and in PATH)",
            path.display()
        ));
    }
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{what} {} not found", path.display()),
        _ => format!("{what} {}: {e}", path.display()),
    })?;
    if !meta.is_file() {
        return Err(format!("{what} {} is not a regular file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{what} {} is not executable", path.display()));
    }
    Ok(FileId {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
    })
}

/// The checks that run nothing: the handler's binaries and config file are in place.
/// Returns the identity of the runtime (or shim) binary, the one the probe runs.
pub(crate) fn check_files(h: &RuntimeHandlerConfig) -> Result<FileId, String> {
    let vm = h.runtime_type == "vm";
    let file = executable(
        if vm { "shim binary" } else { "runtime binary" },
        &h.runtime_path,
    )?;
    if vm {
        if let Some(config) = &h.runtime_config_path {
            match std::fs::metadata(config) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(format!(
                        "runtime config {} is not a regular file",
                        config.display()
                    ))
                }
                Err(e) => return Err(format!("runtime config {}: {e}", config.display())),
            }
        }
    } else {
        executable("monitor binary", &h.monitor_path)?;
    }
    Ok(file)
}

/// Runs the handler's version command (`--version` for an OCI runtime, `-v` for a shim v2,
/// as containerd's shims take it), bounded by [`PROBE_TIMEOUT`]; it must exit 0.
async fn run_probe(h: &RuntimeHandlerConfig) -> Result<(), String> {
    let arg = if h.runtime_type == "vm" {
        "-v"
    } else {
        "--version"
    };
    let shown = format!("{} {arg}", h.runtime_path.display());
    let child = tokio::process::Command::new(&h.runtime_path)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("probe `{shown}` did not start: {e}"))?;
    let out = tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("probe `{shown}` timed out after {PROBE_TIMEOUT:?}"))?
        .map_err(|e| format!("probe `{shown}`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr.trim().chars().rev().take(300).collect();
    let tail: String = tail.chars().rev().collect();
    Err(format!("probe `{shown}` failed ({}): {tail}", out.status))
}

/// Whether handler `h` is ready: the file checks now, and the probe of this version of its
/// binary (from `probes`, or run now and returned for the caller to keep).
pub(crate) async fn readiness(
    h: &RuntimeHandlerConfig,
    cached: Option<&Probe>,
) -> (Result<(), String>, Option<Probe>) {
    let file = match check_files(h) {
        Ok(f) => f,
        Err(e) => return (Err(e), None),
    };
    if let Some(p) = cached.filter(|p| p.file == file) {
        return (p.result.clone(), None);
    }
    let result = run_probe(h).await;
    if let Err(e) = &result {
        tracing::warn!(runtime = %h.runtime_path.display(), error = %e, "runtime handler probe failed");
    }
    (result.clone(), Some(Probe { file, result }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn handler(kind: &str, path: &Path, monitor: &Path) -> RuntimeHandlerConfig {
        RuntimeHandlerConfig {
            runtime_path: path.to_path_buf(),
            runtime_type: kind.to_string(),
            runtime_root: None,
            runtime_config_path: None,
            monitor_path: monitor.to_path_buf(),
            allowed_annotations: Vec::new(),
        }
    }

    fn script(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[tokio::test]
    async fn each_way_a_handler_is_unusable_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ok = script(dir.path(), "ok", "exit 0", 0o755);
        let plain = script(dir.path(), "plain", "exit 0", 0o644);
        let failing = script(dir.path(), "fail", "echo broken >&2; exit 3", 0o755);
        let missing = dir.path().join("missing");
        let bare = Path::new("crius-runtime");
        let rows: [(&str, &Path, &Path, Option<&str>); 8] = [
            ("oci", &ok, &ok, None),
            ("oci", &missing, &ok, Some("runtime binary")),
            (
                "oci",
                bare,
                &ok,
                Some("not found (looked next to the crius executable"),
            ),
            ("oci", &plain, &ok, Some("is not executable")),
            ("oci", dir.path(), &ok, Some("is not a regular file")),
            ("oci", &ok, &missing, Some("monitor binary")),
            ("vm", &failing, &missing, Some("broken")),
            ("vm", &ok, &missing, None),
        ];
        for (kind, path, monitor, want) in rows {
            let (result, _) = readiness(&handler(kind, path, monitor), None).await;
            match (want, &result) {
                (None, Ok(())) => {}
                (Some(w), Err(e)) if e.contains(w) => {}
                _ => panic!("{kind} {path:?} {monitor:?}: {result:?}, want {want:?}"),
            }
        }
        let mut vm = handler("vm", &ok, &missing);
        vm.runtime_config_path = Some(missing.clone());
        let (result, _) = readiness(&vm, None).await;
        assert!(result.unwrap_err().contains("runtime config"));
    }

    #[tokio::test]
    async fn a_probe_is_kept_until_the_binary_changes() {
        let dir = tempfile::tempdir().unwrap();
        let bin = script(dir.path(), "rt", "exit 0", 0o755);
        let h = handler("vm", &bin, Path::new(""));
        let (first, probe) = readiness(&h, None).await;
        assert!(first.is_ok());
        let probe = probe.expect("a first probe is returned to keep");
        let (_, again) = readiness(&h, Some(&probe)).await;
        assert!(again.is_none(), "same binary: no new probe");
        // A new binary (new inode) is probed again.
        std::fs::remove_file(&bin).unwrap();
        script(dir.path(), "rt", "exit 1", 0o755);
        let (result, again) = readiness(&h, Some(&probe)).await;
        assert!(result.is_err() && again.is_some(), "{result:?}");
    }

    #[tokio::test]
    async fn a_hanging_probe_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let bin = script(dir.path(), "hang", "exec sleep 60", 0o755);
        let started = std::time::Instant::now();
        let (result, _) = readiness(&handler("vm", &bin, Path::new("")), None).await;
        assert!(result.unwrap_err().contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(15));
    }
}
