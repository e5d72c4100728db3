//! Running one CNI plugin binary: environment, stdin, timeout, and error decoding.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::error::{Error, Result};

/// The CNI_COMMAND values a runtime sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

/// The CNI_* parameters shared by every plugin of one call.
#[derive(Clone, Debug)]
pub(crate) struct CallEnv {
    pub container_id: String,
    pub netns: String,
    pub if_name: String,
    pub cni_path: String,
    pub cni_args: String,
    pub timeout: Duration,
}

/// The error a plugin prints on stdout when it fails (spec: "Error" result type).
#[derive(Debug, Deserialize)]
struct CniError {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Finds the executable for plugin `plugin_type` in the first plugin dir holding it.
pub(crate) fn find_plugin(plugin_type: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    for dir in dirs {
        let candidate = dir.join(plugin_type);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(Error::PluginNotFound {
        plugin: plugin_type.to_string(),
        dirs: join_dirs(dirs),
    })
}

/// The plugin dirs as one CNI_PATH value.
pub(crate) fn join_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// A value that may go into CNI_ARGS: that variable is `KEY=VALUE;KEY=VALUE`, so a `;` or
/// `=` in a pod's name would add or override keys that plugins act on (`IP=...`), and a NUL
/// cannot be in an environment variable at all.
pub fn is_safe_cni_arg(value: &str) -> bool {
    !value.contains([';', '=', '\0'])
}

/// CNI_ARGS as the kubelet's runtimes pass them; `IgnoreUnknown` lets plugins that know
/// none of the K8S_* keys accept them.
pub(crate) fn cni_args(namespace: &str, name: &str, id: &str, uid: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={id};K8S_POD_UID={uid}"
    )
}

/// Keeps messages bounded when a plugin prints a lot.
fn truncate(bytes: &[u8]) -> String {
    const MAX: usize = 4096;
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Decodes a failed plugin's stdout as a CNI error, if it is one.
fn decode_error(plugin: &str, stdout: &[u8]) -> Option<Error> {
    let err: CniError = serde_json::from_slice(stdout).ok()?;
    let msg = if err.details.is_empty() {
        err.msg
    } else {
        format!("{}: {}", err.msg, err.details)
    };
    Some(Error::PluginFailed {
        plugin: plugin.to_string(),
        code: err.code,
        msg,
    })
}

/// Runs `binary` with `command` and `stdin`, bounded by the timeout; returns its stdout.
///
/// The plugin runs in its own process group so that on timeout the plugin and anything
/// it started (iptables, ...) are killed together by that group's id.
pub(crate) async fn exec(
    command: Command,
    plugin: &str,
    binary: &Path,
    env: &CallEnv,
    stdin: &[u8],
) -> Result<Vec<u8>> {
    let started = Instant::now();
    let exec_err = |source| Error::PluginExec {
        path: binary.to_path_buf(),
        source,
    };
    let mut child = tokio::process::Command::new(binary)
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", &env.if_name)
        .env("CNI_PATH", &env.cni_path)
        .env("CNI_ARGS", &env.cni_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // No kill_on_drop: if the caller's future is dropped mid-call, a plugin killed
        // halfway through its iptables or IPAM changes would leave more mess than one
        // left to finish. The per-pod cache entry written before ADD lets teardown clean
        // up either way.
        .spawn()
        .map_err(exec_err)?;
    let pid = child.id();

    let mut child_stdin = child.stdin.take();
    let mut child_stdout = child.stdout.take();
    let mut child_stderr = child.stderr.take();
    let io = async {
        let write = async {
            if let Some(mut w) = child_stdin.take() {
                // A plugin may exit without reading stdin: a broken pipe is not our error.
                let _ = w.write_all(stdin).await;
                let _ = w.shutdown().await;
            }
        };
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(r) = child_stdout.as_mut() {
                r.read_to_end(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(buf)
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(r) = child_stderr.as_mut() {
                r.read_to_end(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(buf)
        };
        let ((), out, err, status) = tokio::join!(write, read_out, read_err, child.wait());
        Ok::<_, std::io::Error>((out?, err?, status?))
    };
    let outcome = tokio::time::timeout(env.timeout, io).await;
    let (stdout, stderr, status) = match outcome {
        Ok(done) => done.map_err(exec_err)?,
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                if let Err(e) = killpg(Pid::from_raw(pid), Signal::SIGKILL) {
                    warn!(plugin, pid, error = %e, "killing timed out CNI plugin");
                }
            }
            // Reap it; the group is dead, so this returns at once.
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            debug!(
                plugin,
                command = command.as_str(),
                container_id = %env.container_id,
                netns = %env.netns,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "CNI plugin timed out and was killed"
            );
            return Err(Error::PluginTimeout {
                plugin: plugin.to_string(),
                command: command.as_str(),
                pod: env.container_id.clone(),
                timeout: env.timeout,
            });
        }
    };
    debug!(
        plugin,
        binary = %binary.display(),
        command = command.as_str(),
        container_id = %env.container_id,
        netns = %env.netns,
        if_name = %env.if_name,
        cni_args = %env.cni_args,
        status = %status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        stderr = %truncate(&stderr),
        "ran CNI plugin"
    );
    if status.success() {
        return Ok(stdout);
    }
    if let Some(err) = decode_error(plugin, &stdout) {
        return Err(err);
    }
    let mut output = truncate(&stdout);
    let err_text = truncate(&stderr);
    if !err_text.is_empty() {
        if !output.is_empty() {
            output.push_str("; ");
        }
        output.push_str(&err_text);
    }
    Err(Error::PluginExited {
        plugin: plugin.to_string(),
        command: command.as_str(),
        pod: env.container_id.clone(),
        status: status.to_string(),
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_cni_args() {
        assert_eq!(
            cni_args("kube-system", "coredns-1", "abc123", "0f1e-uid"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-1;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=0f1e-uid"
        );
    }

    #[test]
    fn decodes_cni_errors() {
        let err = decode_error(
            "bridge",
            br#"{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"no bridge name"}"#,
        )
        .unwrap();
        match err {
            Error::PluginFailed { plugin, code, msg } => {
                assert_eq!(plugin, "bridge");
                assert_eq!(code, 7);
                assert_eq!(msg, "bad config: no bridge name");
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = decode_error("x", br#"{"code":100,"msg":"boom"}"#).unwrap();
        assert_eq!(err.to_string(), "CNI plugin x failed with code 100: boom");
        assert!(decode_error("x", b"panic: runtime error").is_none());
        assert!(decode_error("x", b"").is_none());
    }

    #[test]
    fn finds_plugins_in_dir_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let make = |dir: &Path, name: &str, mode: u32| {
            let p = dir.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        make(a.path(), "noexec", 0o644);
        make(b.path(), "noexec", 0o755);
        make(a.path(), "both", 0o755);
        make(b.path(), "both", 0o755);
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(
            find_plugin("noexec", &dirs).unwrap(),
            b.path().join("noexec")
        );
        assert_eq!(find_plugin("both", &dirs).unwrap(), a.path().join("both"));
        let err = find_plugin("missing", &dirs).unwrap_err();
        assert!(matches!(err, Error::PluginNotFound { .. }));
        assert!(err.to_string().contains(&a.path().display().to_string()));
    }

    #[test]
    fn truncates_long_output() {
        let long = "é".repeat(5000);
        let t = truncate(long.as_bytes());
        assert!(t.len() <= 4096 + 3);
        assert!(t.ends_with("..."));
    }
}
