//! A container's record under `--root`: `<root>/<id>/state.json` and the
//! exec fifo whose presence means "created, not started".

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// runc's default state root, which ours mirrors.
pub const DEFAULT_ROOT: &str = "/run/crius-runtime";
/// The fifo the init blocks on until `start` opens it.
pub const EXEC_FIFO: &str = "exec.fifo";
const STATE_FILE: &str = "state.json";

/// What the runtime remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// The init's start time (field 22 of /proc/PID/stat), so a reused pid is
    /// never taken for the container.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// Absolute cgroup directories the container was put in, one per hierarchy.
    pub cgroup_dirs: Vec<PathBuf>,
    /// The spec it was created from: exec takes its defaults from it and
    /// delete runs its poststop hooks.
    pub spec: Spec,
}

/// The OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// runc's `state` output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateJson<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: &'a str,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a HashMap<String, String>>,
    pub owner: &'a str,
}

/// The directory of container `id` under `root`.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

impl Record {
    /// Reads the record of `id`; [`Error::NotFound`] when there is none.
    pub fn load(root: &Path, id: &str) -> Result<Record> {
        crate::spec::check_id(id)?;
        let path = dir(root, id).join(STATE_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io("read state", path, e)),
        };
        serde_json::from_slice(&text)
            .map_err(|e| Error::Other(format!("state of {id} in {}: {e}", path.display())))
    }

    /// Writes the record atomically (temp file, rename). No fsync: the state
    /// root is volatile (/run), as runc's is, and a record that a crash tore
    /// belongs to a container the crash ended too.
    pub fn save(&self, root: &Path) -> Result<()> {
        let d = dir(root, &self.id);
        let tmp = d.join("state.json.tmp");
        let data = serde_json::to_vec(self).map_err(|e| Error::Other(format!("state: {e}")))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("write state", &tmp, e))?;
        f.write_all(&data)
            .map_err(|e| Error::io("write state", &tmp, e))?;
        std::fs::rename(&tmp, d.join(STATE_FILE))
            .map_err(|e| Error::io("write state", d.join(STATE_FILE), e))
    }

    /// Whether the init is still the process we started (and not a zombie).
    pub fn init_alive(&self) -> bool {
        self.pid > 0 && process_start_time(self.pid).is_some_and(|t| t == self.start_time)
    }

    /// The container's status, from its init and its exec fifo.
    pub fn status(&self, root: &Path) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if dir(root, &self.id).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if crate::cgroup::is_frozen(&self.cgroup_dirs) {
            return Status::Paused;
        }
        Status::Running
    }

    /// runc's `state` JSON for this record.
    pub fn state_json(&self, root: &Path) -> String {
        let status = self.status(root);
        let st = StateJson {
            oci_version: self.spec.version(),
            id: &self.id,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status: status.as_str(),
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            annotations: self.spec.annotations().as_ref(),
            owner: "",
        };
        serde_json::to_string_pretty(&st).unwrap_or_default()
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks), `None` when the
/// process is gone or a zombie.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state).
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// The ids of every container under `root`.
pub fn list(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_read() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }
}
