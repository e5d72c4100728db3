//! What containerd shims v2 (`vm` runtime handlers) leave on the host for a test daemon's
//! pods and containers, outside the daemon's own dirs: the runc state the runc shim keeps
//! under [`SHIM_RUNC_ROOT`], the ttrpc sockets under [`SHIM_SOCKET_DIR`] and shim
//! processes. Everything here is found from ids of that one daemon (its records, bundles
//! and log) and its event socket, never by a pattern over other processes or files.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crius_oci::shim::{bound_sockets, shim_processes, NAMESPACE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

/// Where the runc shim keeps the runc state of crius's tasks (`/run/containerd/runc/` and
/// the namespace crius's shims run in).
pub const SHIM_RUNC_ROOT: &str = "/run/containerd/runc/crius";

/// Where containerd shims v2 bind their ttrpc sockets.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// The socket a containerd shim v2 serves task `id` on when started with the event
/// address `events`: the SHA-256 of the address, the namespace and the id, as the shims
/// compute it.
pub fn shim_socket(events: &Path, id: &str) -> PathBuf {
    let key = events.join(NAMESPACE).join(id);
    let hash = Sha256::digest(key.as_os_str().as_encoded_bytes());
    Path::new(SHIM_SOCKET_DIR).join(hex::encode(hash))
}

/// Whether `id` looks like a pod or container id (64 hex digits).
fn is_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The names (ids) of the entries of `dir` that look like ids, with any `.json` cut.
fn ids_in_dir(dir: &Path) -> impl Iterator<Item = String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_suffix(".json").unwrap_or(&name).to_string();
            is_id(&id).then_some(id)
        })
}

/// The ids of the pods and containers a daemon with `root` and `runroot` has on disk (its
/// records and dirs), with those its `log` names (`pod_id=`, `container_id=`): pods
/// removed through the CRI are only in the log.
pub fn daemon_ids(root: &Path, runroot: &Path, log: &str) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = [
        root.join("records/pods"),
        root.join("records/containers"),
        root.join("pods"),
        root.join("containers"),
        runroot.join("pods"),
        runroot.join("containers"),
    ]
    .iter()
    .flat_map(|d| ids_in_dir(d))
    .collect();
    for key in ["pod_id=", "container_id="] {
        for (at, _) in log.match_indices(key) {
            let rest = &log[at + key.len()..];
            if let Some(id) = rest.get(..64).filter(|id| is_id(id)) {
                ids.insert(id.to_string());
            }
        }
    }
    ids
}

/// The `state.json` runc keeps in a container's state dir `dir` (null when unreadable).
fn runc_state(dir: &Path) -> serde_json::Value {
    fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// A container's bundle, from its runc state (its config's `bundle=` label).
fn bundle_of(state: &serde_json::Value) -> Option<PathBuf> {
    state["config"]["labels"]
        .as_array()?
        .iter()
        .filter_map(|l| l.as_str()?.strip_prefix("bundle="))
        .map(PathBuf::from)
        .next()
}

/// Whether the init a container's runc state names is gone (no process with its pid and
/// start time); `None` when the state names none.
fn init_gone(state: &serde_json::Value) -> Option<bool> {
    let pid = state["init_process_pid"].as_u64()?;
    let start = state["init_process_start"].as_u64()?;
    Some(process_start(pid as u32) != Some(start))
}

/// The start time of process `pid` (field 22 of its stat), if it lives.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count after its end.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The ids of the runc shim's tasks whose bundle lies under `dir`: a test daemon's tasks
/// whose pod or container it no longer knows.
pub fn tasks_with_bundle_under(dir: &Path) -> BTreeSet<String> {
    ids_in_dir(Path::new(SHIM_RUNC_ROOT))
        .filter(|id| {
            bundle_of(&runc_state(&Path::new(SHIM_RUNC_ROOT).join(id)))
                .is_some_and(|b| b.starts_with(dir))
        })
        .collect()
}

/// The runc binary the runc shim ran for a task in `bundle`: the name the shim wrote to
/// the bundle's `runtime` file (its `BinaryName` option), else `runc`, found in `path`
/// (the daemon's, and so the shim's, `PATH`).
fn shim_runc(bundle: Option<&Path>, path: &str) -> PathBuf {
    let name = bundle
        .and_then(|b| fs::read_to_string(b.join("runtime")).ok())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "runc".to_string());
    if name.contains('/') {
        return PathBuf::from(name);
    }
    std::env::split_paths(path)
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Deletes runc container `id` kept under `root` with `binary` (`delete --force`: its
/// processes killed, its cgroups and state removed). When runc refuses and the state
/// says the container's init is gone, the state dir is removed instead. One note of what
/// was done, or of why not.
pub fn delete_runc_container(binary: &Path, root: &Path, id: &str) -> String {
    let bin = binary.to_string_lossy();
    let root_arg = root.to_string_lossy();
    let err = match crate::run_quiet(&bin, &["--root", &root_arg, "delete", "--force", id]) {
        Ok(_) => return format!("deleted leftover container {id} ({bin} --root {root_arg})"),
        Err(err) => err,
    };
    let dir = root.join(id);
    match init_gone(&runc_state(&dir)) {
        Some(true) => match fs::remove_dir_all(&dir) {
            Ok(()) => format!(
                "removed the state dir {} of leftover container {id}, whose init is gone ({err:#})",
                dir.display()
            ),
            Err(e) => format!("cannot remove {}: {e} (after {err:#})", dir.display()),
        },
        _ => format!("cannot delete leftover container {id}: {err:#}"),
    }
}

/// Whether a process listens on the unix socket at `path`.
pub fn has_listener(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// Removes what shims left of the tasks `ids` of the daemon whose event socket is
/// `events` and whose `PATH` is `path`: its shims still running (killed by pid), the
/// runc state of those tasks, and the shims' sockets once no process listens on them.
/// Notes say what was done and what could not be.
pub fn clean(events: &Path, path: &str, ids: &BTreeSet<String>) -> Vec<String> {
    let mut notes = Vec::new();
    let mut sockets: BTreeSet<PathBuf> = ids.iter().map(|id| shim_socket(events, id)).collect();
    let mut pids: Vec<u32> = ids
        .iter()
        .flat_map(|id| shim_processes(events, id))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    for &pid in &pids {
        sockets.extend(bound_sockets(pid).into_iter().filter(|s| s != events));
        if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
            notes.push(format!("killed leftover shim {pid}"));
        }
    }
    // A killed shim is reaped by its parent (init): wait until it is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| process_start(*p).is_some()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let root = Path::new(SHIM_RUNC_ROOT);
    for id in ids {
        let dir = root.join(id);
        if dir.exists() {
            let runc = shim_runc(bundle_of(&runc_state(&dir)).as_deref(), path);
            notes.push(delete_runc_container(&runc, root, id));
        }
    }
    for socket in sockets {
        if !socket.exists() {
            continue;
        }
        if has_listener(&socket) {
            notes.push(format!(
                "shim socket {} still has a listener",
                socket.display()
            ));
            continue;
        }
        match fs::remove_file(&socket) {
            Ok(()) => notes.push(format!("removed leftover shim socket {}", socket.display())),
            Err(e) => notes.push(format!("cannot remove {}: {e}", socket.display())),
        }
    }
    notes
}

/// What shims left on the host of the tasks `ids` (with event socket `events`) and of the
/// tasks whose bundle lies under `dir`: runc state dirs, sockets and shim processes.
pub fn leftovers(events: &Path, dir: &Path, ids: &BTreeSet<String>) -> Vec<String> {
    let mut left = Vec::new();
    let mut all = ids.clone();
    all.extend(tasks_with_bundle_under(dir));
    for id in &all {
        let state = Path::new(SHIM_RUNC_ROOT).join(id);
        if state.exists() {
            left.push(format!("shim's runc state {}", state.display()));
        }
        let socket = shim_socket(events, id);
        if socket.exists() {
            left.push(format!("shim socket {} of {id}", socket.display()));
        }
        for pid in shim_processes(events, id) {
            left.push(format!("shim process {pid} of {id}"));
        }
    }
    left
}
