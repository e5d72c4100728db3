//! Runtime handlers speaking the runc command line: `start`, `kill`,
//! `state`, `delete`, `update`. Creation and exec go through the monitor
//! (see [`crate::monitor`]), which holds the container's stdio.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tracing::{debug, Instrument};

use crate::Error;

/// How long one runtime command may run before it is killed.
pub const RUNTIME_TIMEOUT: Duration = Duration::from_secs(60);

/// A runc-CLI-compatible OCI runtime binary (runc, crun, crius-runtime).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeCli {
    /// The binary.
    pub path: PathBuf,
    /// `--root`: where the runtime keeps its state; `None` for its default.
    pub root: Option<PathBuf>,
    /// `--systemd-cgroup`: cgroups paths are systemd `slice:prefix:name`.
    pub systemd_cgroup: bool,
}

/// What the runtime reports about a container (`RUNTIME state`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RuntimeState {
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// The container's init pid (0 once stopped).
    #[serde(default)]
    pub pid: u32,
}

/// The facts of `RUNTIME features` the daemon uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeFeatures {
    /// Mount options it knows ("rro" makes a mount read-only recursively).
    pub mount_options: Vec<String>,
    /// Namespaces it can make ("user" for user namespaces).
    pub namespaces: Vec<String>,
    /// It makes id-mapped mounts from a mount's `uidMappings`/`gidMappings` (runc 1.2+).
    pub idmap_mounts: bool,
    /// What it says of the systemd cgroup driver (`linux.cgroup.systemd`); None when it
    /// says nothing.
    pub systemd_cgroup: Option<bool>,
    /// It printed a features document at all (runc 1.1+; Debian's crun 1.8 has none).
    pub answered: bool,
}

impl RuntimeFeatures {
    /// Reads the JSON `RUNTIME features` prints; what does not parse counts as absent.
    pub fn parse(json: &[u8]) -> RuntimeFeatures {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Enabled {
            enabled: Option<bool>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct MountExtensions {
            idmap: Option<Enabled>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Cgroup {
            systemd: Option<bool>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct Linux {
            namespaces: Vec<String>,
            mount_extensions: Option<MountExtensions>,
            cgroup: Option<Cgroup>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct Features {
            mount_options: Vec<String>,
            linux: Option<Linux>,
        }
        let (f, answered): (Features, bool) = match serde_json::from_slice(json) {
            Ok(f) => (f, true),
            Err(_) => (Features::default(), false),
        };
        let linux = f.linux.unwrap_or_default();
        RuntimeFeatures {
            answered,
            mount_options: f.mount_options,
            namespaces: linux.namespaces,
            systemd_cgroup: linux.cgroup.and_then(|c| c.systemd),
            idmap_mounts: linux
                .mount_extensions
                .and_then(|m| m.idmap)
                .and_then(|i| i.enabled)
                .unwrap_or(false),
        }
    }

    /// It can run a pod in a user namespace of its own with id-mapped mounts.
    pub fn user_namespaces(&self) -> bool {
        self.idmap_mounts && self.namespaces.iter().any(|n| n == "user")
    }
}

/// What a finished runtime command printed.
struct Output {
    stdout: Vec<u8>,
    stderr: String,
}

impl RuntimeCli {
    /// The runtime's global flags, placed before the subcommand.
    pub fn global_args(&self) -> Vec<OsString> {
        let mut v = Vec::new();
        if let Some(root) = &self.root {
            v.push("--root".into());
            v.push(root.clone().into());
        }
        if self.systemd_cgroup {
            v.push("--systemd-cgroup".into());
        }
        v
    }

    /// Runs `RUNTIME <globals> <command> <args>` with a timeout; `Err` when it
    /// exits non-zero, with its stderr message.
    async fn run(
        &self,
        command: &str,
        args: &[OsString],
        id: &str,
        stdin: Option<Vec<u8>>,
    ) -> Result<Output, Error> {
        let _running = crius_metrics::metrics().runtime_process();
        let span = tracing::info_span!(
            "runtime",
            command,
            container_id = id,
            otel.name = %format_args!("runtime {command}"),
        );
        self.run_command(command, args, id, stdin)
            .instrument(span)
            .await
    }

    async fn run_command(
        &self,
        command: &str,
        args: &[OsString],
        id: &str,
        stdin: Option<Vec<u8>>,
    ) -> Result<Output, Error> {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.args(self.global_args())
            .arg(command)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| Error::RuntimeSpawn {
            runtime: self.path.clone(),
            command: command.to_string(),
            container: id.to_string(),
            source,
        })?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A runtime that exits early closes the pipe: its own error says why.
            let _ = pipe.write_all(&data).await;
            drop(pipe);
        }
        let out = tokio::time::timeout(RUNTIME_TIMEOUT, child.wait_with_output()).await;
        let elapsed = started.elapsed();
        let out = match out {
            Ok(Ok(out)) => out,
            Ok(Err(source)) => {
                return Err(Error::RuntimeSpawn {
                    runtime: self.path.clone(),
                    command: command.to_string(),
                    container: id.to_string(),
                    source,
                })
            }
            Err(_) => {
                debug!(runtime = %self.path.display(), command, ?args, ?elapsed, "runtime command timed out");
                return Err(Error::RuntimeTimeout {
                    runtime: self.path.clone(),
                    command: command.to_string(),
                    container: id.to_string(),
                    timeout: RUNTIME_TIMEOUT,
                });
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        debug!(
            runtime = %self.path.display(),
            command,
            ?args,
            ?elapsed,
            status = ?out.status.code(),
            "runtime command"
        );
        if !out.status.success() {
            let msg = stderr_message(&stderr);
            return Err(Error::RuntimeFailed {
                runtime: self.path.clone(),
                command: command.to_string(),
                container: id.to_string(),
                msg: if msg.is_empty() {
                    format!("exited with {}", out.status)
                } else {
                    msg
                },
            });
        }
        Ok(Output {
            stdout: out.stdout,
            stderr,
        })
    }

    fn not_found(&self, err: Error, id: &str) -> Error {
        match err {
            Error::RuntimeFailed { ref msg, .. } if is_not_found(msg) => Error::ContainerNotFound {
                container: id.to_string(),
                runtime: self.path.clone(),
            },
            other => other,
        }
    }

    /// Starts a created container (`RUNTIME start ID`).
    pub async fn start(&self, id: &str) -> Result<(), Error> {
        self.run("start", &[id.into()], id, None)
            .await
            .map_err(|e| self.not_found(e, id))?;
        Ok(())
    }

    /// Sends `signal` to the container's init, or with `all` to all its processes.
    pub async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), Error> {
        let mut args: Vec<OsString> = Vec::new();
        if all {
            args.push("--all".into());
        }
        args.push(id.into());
        args.push(signal.to_string().into());
        self.run("kill", &args, id, None)
            .await
            .map_err(|e| self.not_found(e, id))?;
        Ok(())
    }

    /// The container's state; [`Error::ContainerNotFound`] when the runtime does not know it.
    pub async fn state(&self, id: &str) -> Result<RuntimeState, Error> {
        let out = self
            .run("state", &[id.into()], id, None)
            .await
            .map_err(|e| self.not_found(e, id))?;
        serde_json::from_slice(&out.stdout).map_err(|e| Error::RuntimeOutput {
            runtime: self.path.clone(),
            command: "state".into(),
            container: id.to_string(),
            reason: format!("{e}; stderr: {}", out.stderr.trim()),
        })
    }

    /// What the runtime says it can do (`RUNTIME features`, runc 1.1+): the mount options
    /// it knows, the namespaces it can make, and whether it makes id-mapped mounts. A
    /// runtime without the `features` command can do none of these.
    pub async fn features(&self) -> RuntimeFeatures {
        match self.run("features", &[], "", None).await {
            Ok(out) => RuntimeFeatures::parse(&out.stdout),
            Err(e) => {
                debug!(runtime = %self.path.display(), error = %e, "runtime features unknown");
                RuntimeFeatures::default()
            }
        }
    }

    /// Checkpoints a running container with CRIU and leaves it running
    /// (`RUNTIME checkpoint --leave-running`): CRIU's images go to `image_dir`, its log
    /// (`dump.log`) to `work_dir`. On failure the error carries the tail of that log,
    /// which says why CRIU could not.
    pub async fn checkpoint(
        &self,
        id: &str,
        image_dir: &Path,
        work_dir: &Path,
    ) -> Result<(), Error> {
        let args: Vec<OsString> = vec![
            "--leave-running".into(),
            "--file-locks".into(),
            "--image-path".into(),
            image_dir.into(),
            "--work-path".into(),
            work_dir.into(),
            id.into(),
        ];
        match self.run("checkpoint", &args, id, None).await {
            Ok(_) => Ok(()),
            Err(Error::RuntimeFailed {
                runtime,
                command,
                container,
                msg,
            }) => {
                let log = std::fs::read_to_string(work_dir.join("dump.log")).unwrap_or_default();
                let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
                let tail = if errors.is_empty() {
                    String::new()
                } else {
                    format!("; CRIU: {}", errors.join(" | "))
                };
                Err(self.not_found(
                    Error::RuntimeFailed {
                        runtime,
                        command,
                        container,
                        msg: format!("{msg}{tail}"),
                    },
                    id,
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the container (`--force` kills it first); Ok when it is already gone.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let mut args: Vec<OsString> = Vec::new();
        if force {
            args.push("--force".into());
        }
        args.push(id.into());
        match self.run("delete", &args, id, None).await {
            Ok(_) => Ok(()),
            Err(Error::RuntimeFailed { msg, .. }) if is_not_found(&msg) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Updates the container's cgroup limits (`RUNTIME update --resources - ID`).
    pub async fn update(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), Error> {
        let json = serde_json::to_vec(resources).map_err(|e| Error::RuntimeOutput {
            runtime: self.path.clone(),
            command: "update".into(),
            container: id.to_string(),
            reason: format!("serializing resources: {e}"),
        })?;
        self.run(
            "update",
            &["--resources".into(), "-".into(), id.into()],
            id,
            Some(json),
        )
        .await
        .map_err(|e| self.not_found(e, id))?;
        Ok(())
    }
}

/// Whether a runtime's error message says the container does not exist
/// (runc: "container does not exist"; crun: "... No such file or directory"
/// about its state dir).
fn is_not_found(msg: &str) -> bool {
    msg.contains("does not exist")
        || (msg.contains("No such file or directory") && msg.contains("status"))
}

/// The message of a runtime's stderr: the last non-empty line, with runc's
/// logrus framing (`time=... level=error msg="..."`) taken off.
pub(crate) fn stderr_message(stderr: &str) -> String {
    let Some(line) = stderr.lines().rev().find(|l| !l.trim().is_empty()) else {
        return String::new();
    };
    let line = line.trim();
    if let Some(start) = line.find("msg=\"") {
        let rest = &line[start + 5..];
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => break,
                },
                '"' => return out,
                c => out.push(c),
            }
        }
        return out;
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logrus_framing_is_removed() {
        let s = "time=\"2024-01-01T00:00:00Z\" level=error msg=\"container does not exist\"\n";
        assert_eq!(stderr_message(s), "container does not exist");
        let s = "time=\"x\" level=error msg=\"exec: \\\"/nope\\\": stat /nope: no such file or directory\"";
        assert_eq!(
            stderr_message(s),
            "exec: \"/nope\": stat /nope: no such file or directory"
        );
    }

    #[test]
    fn plain_last_line_is_kept() {
        assert_eq!(stderr_message("warning\nreal error\n\n"), "real error");
        assert_eq!(stderr_message(""), "");
    }

    #[test]
    fn not_found_messages() {
        assert!(is_not_found("container does not exist"));
        assert!(is_not_found(
            "error opening file `/run/crun/x/status`: No such file or directory"
        ));
        assert!(!is_not_found("permission denied"));
    }

    #[test]
    fn global_args_in_order() {
        let rt = RuntimeCli {
            path: "/usr/sbin/runc".into(),
            root: Some("/run/r".into()),
            systemd_cgroup: true,
        };
        assert_eq!(
            rt.global_args(),
            ["--root", "/run/r", "--systemd-cgroup"].map(OsString::from)
        );
    }

    #[test]
    fn features_say_what_the_runtime_can_do() {
        // runc 1.5: user namespaces with id-mapped mounts.
        let new = br#"{"mountOptions":["rbind","rro"],"linux":{"namespaces":["mount","user"],
            "mountExtensions":{"idmap":{"enabled":true}}}}"#;
        let f = RuntimeFeatures::parse(new);
        assert!(f.mount_options.iter().any(|o| o == "rro"));
        assert!(f.idmap_mounts && f.user_namespaces());
        // runc 1.1: user namespaces, but no id-mapped mounts.
        let old = br#"{"mountOptions":["rbind"],"linux":{"namespaces":["mount","user"]}}"#;
        let f = RuntimeFeatures::parse(old);
        assert!(!f.idmap_mounts && !f.user_namespaces());
        let off =
            br#"{"linux":{"namespaces":["user"],"mountExtensions":{"idmap":{"enabled":false}}}}"#;
        assert!(!RuntimeFeatures::parse(off).user_namespaces());
        // The systemd cgroup driver: said yes, said no, or not said at all.
        let systemd = |json: &[u8]| RuntimeFeatures::parse(json).systemd_cgroup;
        assert_eq!(
            systemd(br#"{"linux":{"cgroup":{"systemd":true}}}"#),
            Some(true)
        );
        assert_eq!(
            systemd(br#"{"linux":{"cgroup":{"systemd":false}}}"#),
            Some(false)
        );
        assert_eq!(systemd(br#"{"linux":{"cgroup":{"v2":true}}}"#), None);
        assert_eq!(systemd(old), None);
        assert_eq!(
            RuntimeFeatures::parse(b"not json"),
            RuntimeFeatures::default()
        );
    }
}
