//! The containerd shim v2 protocol, for `vm` runtime handlers (Kata's
//! `containerd-shim-kata-v2`, gVisor's `containerd-shim-runsc-v1`, and
//! `containerd-shim-runc-v2`, which speaks the same protocol and is what the tests run).
//!
//! One shim per pod: [`start_shim`] runs the binary's `start` command in the pod's bundle,
//! which forks the long-lived shim and prints the address of its ttrpc socket; [`Shim`] is
//! a client of that socket's task API, every call bounded by [`CALL_TIMEOUT`] except
//! `Wait`, which lasts as long as the process does (and fails when the shim goes away).
//! The shim publishes its events (TaskExit, TaskOOM) to the ttrpc address it was given in
//! `TTRPC_ADDRESS`; [`EventServer`] serves that address for crius.
//!
//! The wire format is containerd's own crates: `containerd-shim-protos` (the task and
//! events services) over `ttrpc`.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::bootstrap_api;
use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim_async::{create_events, Client, Events};
use ttrpc::r#async::TtrpcContext;

use crate::Error;

#[path = "../../../conmon/src/log.rs"]
#[allow(dead_code)]
mod cri_log;

/// How long one task API call (other than `Wait`) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `Shutdown` may take; a shim still there after it is killed.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the shim's `start` command may take to print its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The containerd namespace crius's shims run in (the runc shim keeps its runc state under
/// `/run/containerd/runc/<namespace>`), apart from any containerd on the node.
pub const NAMESPACE: &str = "crius";

/// What [`start_shim`] needs.
#[derive(Debug, Clone)]
pub struct ShimStart {
    /// The handler's name, for errors.
    pub handler: String,
    /// The shim v2 binary.
    pub binary: PathBuf,
    /// The pod id (the shim's id).
    pub id: String,
    /// The pod's bundle dir (the shim's working dir).
    pub bundle: PathBuf,
    /// crius's event socket: the shim's `-address` and `TTRPC_ADDRESS`.
    pub events_socket: PathBuf,
}

/// Runs `BINARY -namespace crius -address EVENTS -publish-binary /bin/false -id ID start`
/// in the bundle and returns the ttrpc address it prints. Shims of containerd 2.3 and
/// later refuse that call without their bootstrap parameters on stdin, which older ones
/// would misread as runtime options: the call is made without, then once more with them
/// when the shim says it wants them.
pub async fn start_shim(s: &ShimStart) -> Result<String, Error> {
    match start_once(s, None).await {
        Err(Error::ShimStart { msg, .. }) if msg.contains("deprecated API") => {
            let params = bootstrap_params(s)?;
            start_once(s, Some(params)).await
        }
        other => other,
    }
}

/// The bootstrap parameters (`containerd.runtime.bootstrap.v1.BootstrapParams`).
fn bootstrap_params(s: &ShimStart) -> Result<Vec<u8>, Error> {
    let events = s.events_socket.display().to_string();
    let params = bootstrap_api::BootstrapParams {
        instance_id: s.id.clone(),
        namespace: NAMESPACE.to_string(),
        containerd_ttrpc_address: events.clone(),
        containerd_grpc_address: events,
        containerd_binary: "/bin/false".to_string(),
        ..Default::default()
    };
    params
        .write_to_bytes()
        .map_err(|e| s.error(format!("encode bootstrap parameters: {e}")))
}

impl ShimStart {
    /// The shim binary run as containerd runs it for task `id` in the bundle, with the
    /// arguments `action` after the common ones; its output piped.
    fn command(&self, action: &[&str]) -> tokio::process::Command {
        let events = self.events_socket.display().to_string();
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.args(["-namespace", NAMESPACE, "-address", &events])
            .args(["-publish-binary", "/bin/false", "-id", &self.id])
            .args(action)
            .current_dir(&self.bundle)
            .env("TTRPC_ADDRESS", &events)
            .env("NAMESPACE", NAMESPACE)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// The error of a run of the shim binary.
    fn error(&self, msg: String) -> Error {
        Error::ShimStart {
            handler: self.handler.clone(),
            binary: self.binary.clone(),
            id: self.id.clone(),
            msg,
        }
    }
}

async fn start_once(s: &ShimStart, stdin: Option<Vec<u8>>) -> Result<String, Error> {
    use tokio::io::AsyncWriteExt;
    let fail = |msg: String| s.error(msg);
    let mut child = s
        .command(&["start"])
        .env("MAX_SHIM_VERSION", "2")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .map_err(|e| fail(format!("spawn: {e}")))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A shim that does not read it lets the write fail; its answer says more.
        let _ = pipe.write_all(&bytes).await;
    }
    let out = tokio::time::timeout(START_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| fail(format!("no address within {}s", START_TIMEOUT.as_secs())))?
        .map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!(
            "{}: {}",
            out.status,
            tail(&format!("{stdout} {stderr}"))
        )));
    }
    parse_start_output(&out.stdout).ok_or_else(|| {
        fail(format!(
            "printed no ttrpc address: {:?}",
            tail(stdout.trim())
        ))
    })
}

/// The last 300 characters of `s`, trimmed.
fn tail(s: &str) -> String {
    let s = s.trim();
    let start = s.char_indices().rev().nth(299).map_or(0, |(i, _)| i);
    s[start..].to_string()
}

/// The address in a shim's `start` output: a `BootstrapResult` (protobuf, containerd
/// 2.3 and later), JSON `{"version":2,"address":"unix:///path","protocol":"ttrpc"}`, or
/// the plain `unix:///path`.
pub fn parse_start_output(raw: &[u8]) -> Option<String> {
    if let Ok(r) = bootstrap_api::BootstrapResult::parse_from_bytes(raw) {
        if r.address.starts_with("unix:///") && (r.protocol.is_empty() || r.protocol == "ttrpc") {
            return Some(r.address);
        }
    }
    let out = String::from_utf8_lossy(raw);
    let out = out.trim();
    let address = match serde_json::from_str::<serde_json::Value>(out) {
        Ok(v) if v.is_object() => {
            if v["protocol"].as_str().is_some_and(|p| p != "ttrpc") {
                return None;
            }
            v["address"].as_str()?.to_string()
        }
        _ => out.to_string(),
    };
    let path = address.strip_prefix("unix://")?;
    (path.starts_with('/') && !path.contains(char::is_whitespace)).then_some(address)
}

/// The processes of the shim started for pod `id` with crius's event socket `events`,
/// found by their command line (a shim's long-lived part keeps the arguments of its
/// `start`): what is left to kill when a shim answered no `Connect`, so its pid is unknown.
pub fn shim_processes(events: &Path, id: &str) -> Vec<u32> {
    let events = events.as_os_str().as_encoded_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&events)
                && args
                    .windows(2)
                    .any(|w| w[0] == b"-id" && w[1] == id.as_bytes())
        })
        .collect()
}

/// Runs the shim's `delete` action for task `id` in its bundle, as containerd does for a
/// shim that died: the shim's own cleanup of what its runtime left of the task (runtime
/// state, cgroups, the rootfs mount), wherever that shim keeps it.
pub async fn delete_dead_shim(s: &ShimStart) -> Result<(), Error> {
    let fail = |msg: String| s.error(msg);
    let bundle = s.bundle.display().to_string();
    let child = s
        .command(&["-bundle", &bundle, "delete"])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("spawn delete: {e}")))?;
    let out = tokio::time::timeout(START_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| fail(format!("delete took over {}s", START_TIMEOUT.as_secs())))?
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!("delete: {}: {}", out.status, tail(&stderr))));
    }
    Ok(())
}

/// Processes with an argument at or under `dir`: what a shim ran in a bundle (its
/// runtime's `create --bundle DIR`), still running after the shim's caller died.
pub fn processes_naming(dir: &Path) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|b| *b == 0)
                    .any(|arg| Path::new(std::ffi::OsStr::from_bytes(arg)).starts_with(dir))
            })
        })
        .collect()
}

/// The paths of the unix sockets process `pid` has bound: where a shim whose address
/// crius never read serves, so that its socket file can be removed once it is gone.
pub fn bound_sockets(pid: u32) -> Vec<PathBuf> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|fd| {
            let link = std::fs::read_link(fd.ok()?.path()).ok()?;
            let link = link.to_str()?;
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    // Num RefCount Protocol Flags Type St Inode [Path]; abstract names start with '@'.
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields.get(7).filter(|p| p.starts_with('/'))?;
            inodes
                .contains(*fields.get(6)?)
                .then(|| PathBuf::from(path))
        })
        .collect()
}

/// The socket file behind a `unix://` address.
pub fn socket_path(address: &str) -> Option<PathBuf> {
    address.strip_prefix("unix://").map(PathBuf::from)
}

/// How a process ended, as the shim tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskExitStatus {
    /// The exit code (128 + signal for a signal).
    pub code: u32,
    /// When, in ns since the epoch (0 when unknown).
    pub at_ns: i64,
}

/// A process as `State` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// created, running, stopped, paused, unknown.
    pub status: String,
    /// The process's pid on the host (or in the VM).
    pub pid: u32,
    /// The exit, once stopped.
    pub exit: Option<TaskExitStatus>,
}

/// Stdio of a task or exec: fifo paths ("" for none).
#[derive(Debug, Clone, Default)]
pub struct TaskIo {
    /// The stdin fifo.
    pub stdin: String,
    /// The stdout fifo (the terminal's output with `terminal`).
    pub stdout: String,
    /// The stderr fifo.
    pub stderr: String,
    /// Run under a pseudo-terminal.
    pub terminal: bool,
}

/// The task service's names: v2 (containerd 1.x shims, Kata, gVisor) and v3
/// (containerd 2's). The messages are the same; crius asks for v2 first.
const TASK_SERVICES: [&str; 2] = ["containerd.task.v2.Task", "containerd.task.v3.Task"];

/// A connection to one pod's shim.
#[derive(Clone)]
pub struct Shim {
    handler: String,
    address: String,
    client: Client,
    service: &'static str,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim")
            .field("handler", &self.handler)
            .field("address", &self.address)
            .finish()
    }
}

fn timestamp_ns(
    t: &MessageField<containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp>,
) -> i64 {
    // Go's zero time (year 1) is what an unset exit time looks like: 0, not an overflow.
    t.as_ref()
        .and_then(|t| t.seconds.checked_mul(1_000_000_000))
        .zip(t.as_ref().map(|t| i64::from(t.nanos)))
        .and_then(|(s, n)| s.checked_add(n))
        .filter(|ns| *ns > 0)
        .unwrap_or(0)
}

impl Shim {
    /// Connects to the shim at `address` (bounded by [`CALL_TIMEOUT`]) and finds which
    /// version of the task service it serves, with a `Connect` for task `id`.
    pub async fn connect(handler: &str, address: &str, id: &str) -> Result<Shim, Error> {
        let client = tokio::time::timeout(CALL_TIMEOUT, Client::connect(address))
            .await
            .map_err(|_| Error::ShimTimeout {
                handler: handler.to_string(),
                call: "connect",
                id: address.to_string(),
                secs: CALL_TIMEOUT.as_secs(),
            })?
            .map_err(|e| Error::ShimCall {
                handler: handler.to_string(),
                call: "connect",
                id: address.to_string(),
                msg: e.to_string(),
            })?;
        let mut shim = Shim {
            handler: handler.to_string(),
            address: address.to_string(),
            client,
            service: TASK_SERVICES[0],
        };
        for service in TASK_SERVICES {
            shim.service = service;
            match shim.shim_pid(id).await {
                Err(Error::ShimCall { msg, .. }) if msg.starts_with("UNIMPLEMENTED") => continue,
                Err(e) => return Err(e),
                Ok(_) => return Ok(shim),
            }
        }
        Err(Error::ShimCall {
            handler: handler.to_string(),
            call: "connect",
            id: id.to_string(),
            msg: format!("the shim serves none of {TASK_SERVICES:?}"),
        })
    }

    /// One task API call over ttrpc: `req` encoded, the answer decoded, with containerd's
    /// namespace in the metadata; `wait` calls carry no deadline.
    async fn rpc<Q: Message, R: Message>(
        &self,
        method: &'static str,
        req: &Q,
        wait: bool,
    ) -> ttrpc::Result<R> {
        let payload = req
            .write_to_bytes()
            .map_err(|e| ttrpc::Error::Others(e.to_string()))?;
        let mut md = HashMap::new();
        md.insert(
            "containerd-namespace".to_string(),
            vec![NAMESPACE.to_string()],
        );
        md.insert(
            "containerd-namespace-ttrpc".to_string(),
            vec![NAMESPACE.to_string()],
        );
        let request = ttrpc::Request {
            service: self.service.to_string(),
            method: method.to_string(),
            payload,
            timeout_nano: if wait {
                0
            } else {
                CALL_TIMEOUT.as_nanos() as i64
            },
            metadata: ttrpc::context::to_pb(md),
            ..Default::default()
        };
        let response = self.client.request(request).await?;
        R::parse_from_bytes(&response.payload).map_err(|e| ttrpc::Error::Others(e.to_string()))
    }

    /// The shim's ttrpc address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Runs one call, bounded by `limit` (none for `Wait`), errors naming handler, call and id.
    async fn call<T>(
        &self,
        call: &'static str,
        id: &str,
        limit: Option<Duration>,
        fut: impl std::future::Future<Output = ttrpc::Result<T>>,
    ) -> Result<T, Error> {
        let result = match limit {
            Some(limit) => {
                tokio::time::timeout(limit, fut)
                    .await
                    .map_err(|_| Error::ShimTimeout {
                        handler: self.handler.clone(),
                        call,
                        id: id.to_string(),
                        secs: limit.as_secs(),
                    })?
            }
            None => fut.await,
        };
        result.map_err(|e| match e {
            // ttrpc's own deadline (the one sent with the call) may fire first.
            ttrpc::Error::Others(msg) if msg.contains("deadline elapsed") && limit.is_some() => {
                Error::ShimTimeout {
                    handler: self.handler.clone(),
                    call,
                    id: id.to_string(),
                    secs: limit.unwrap_or_default().as_secs(),
                }
            }
            e => Error::ShimCall {
                handler: self.handler.clone(),
                call,
                id: id.to_string(),
                msg: ttrpc_message(&e),
            },
        })
    }

    /// The shim's own pid (`Connect`).
    pub async fn shim_pid(&self, id: &str) -> Result<u32, Error> {
        let req = api::ConnectRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let r = self
            .call(
                "connect",
                id,
                Some(CALL_TIMEOUT),
                self.rpc::<_, api::ConnectResponse>("Connect", &req, false),
            )
            .await?;
        Ok(r.shim_pid)
    }

    /// `Create`: makes the task `id` from the bundle (its rootfs already mounted there);
    /// returns its pid. `options` are the runtime's own options (an `Any`).
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        io: &TaskIo,
        options: Option<Any>,
    ) -> Result<u32, Error> {
        let req = api::CreateTaskRequest {
            id: id.to_string(),
            bundle: bundle.display().to_string(),
            terminal: io.terminal,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            options: options.into(),
            ..Default::default()
        };
        let r = self
            .call(
                "create",
                id,
                Some(CALL_TIMEOUT),
                self.rpc::<_, api::CreateTaskResponse>("Create", &req, false),
            )
            .await?;
        Ok(r.pid)
    }

    /// `Start` of a task (`exec_id` "") or an exec; returns its pid.
    pub async fn start(&self, id: &str, exec_id: &str) -> Result<u32, Error> {
        let req = api::StartRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let r = self
            .call(
                "start",
                id,
                Some(CALL_TIMEOUT),
                self.rpc::<_, api::StartResponse>("Start", &req, false),
            )
            .await?;
        Ok(r.pid)
    }

    /// `State` of a task or exec.
    pub async fn state(&self, id: &str, exec_id: &str) -> Result<TaskState, Error> {
        let req = api::StateRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let r = self
            .call(
                "state",
                id,
                Some(CALL_TIMEOUT),
                self.rpc::<_, api::StateResponse>("State", &req, false),
            )
            .await?;
        let status = format!("{:?}", r.status.enum_value_or_default()).to_lowercase();
        let exit = (status == "stopped").then(|| TaskExitStatus {
            code: r.exit_status,
            at_ns: timestamp_ns(&r.exited_at),
        });
        Ok(TaskState {
            status,
            pid: r.pid,
            exit,
        })
    }

    /// `Kill`: sends `signal` to the task's init (or every process with `all`) or an exec.
    pub async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<(), Error> {
        let req = api::KillRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal,
            all,
            ..Default::default()
        };
        self.call(
            "kill",
            id,
            Some(CALL_TIMEOUT),
            self.rpc::<_, api::Empty>("Kill", &req, false),
        )
        .await?;
        Ok(())
    }

    /// `Wait`: returns when the task or exec exits; unbounded, fails when the shim goes.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<TaskExitStatus, Error> {
        let req = api::WaitRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let r = self
            .call(
                "wait",
                id,
                None,
                self.rpc::<_, api::WaitResponse>("Wait", &req, true),
            )
            .await?;
        Ok(TaskExitStatus {
            code: r.exit_status,
            at_ns: timestamp_ns(&r.exited_at),
        })
    }

    /// `Delete` of a stopped task or exec: the shim forgets it (and, for a task, the
    /// runtime deletes its container).
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<TaskExitStatus, Error> {
        let req = api::DeleteRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let r = self
            .call(
                "delete",
                id,
                Some(CALL_TIMEOUT),
                self.rpc::<_, api::DeleteResponse>("Delete", &req, false),
            )
            .await?;
        Ok(TaskExitStatus {
            code: r.exit_status,
            at_ns: timestamp_ns(&r.exited_at),
        })
    }

    /// `Exec`: adds a process (`process` is the OCI process spec as JSON) to task `id`.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &[u8],
        io: &TaskIo,
    ) -> Result<(), Error> {
        let spec = Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: process.to_vec(),
            ..Default::default()
        };
        let req = api::ExecProcessRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            terminal: io.terminal,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            spec: MessageField::some(spec),
            ..Default::default()
        };
        self.call(
            "exec",
            id,
            Some(CALL_TIMEOUT),
            self.rpc::<_, api::Empty>("Exec", &req, false),
        )
        .await?;
        Ok(())
    }

    /// `ResizePty` of a task or exec with a terminal.
    pub async fn resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), Error> {
        let req = api::ResizePtyRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            width,
            height,
            ..Default::default()
        };
        self.call(
            "resize_pty",
            id,
            Some(CALL_TIMEOUT),
            self.rpc::<_, api::Empty>("ResizePty", &req, false),
        )
        .await?;
        Ok(())
    }

    /// `CloseIO`: closes the process's stdin.
    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), Error> {
        let req = api::CloseIORequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: true,
            ..Default::default()
        };
        self.call(
            "close_io",
            id,
            Some(CALL_TIMEOUT),
            self.rpc::<_, api::Empty>("CloseIO", &req, false),
        )
        .await?;
        Ok(())
    }

    /// `Pids`: the pids of the task's processes.
    pub async fn pids(&self, id: &str) -> Result<Vec<u32>, Error> {
        let req = api::PidsRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let r = self
            .call(
                "pids",
                id,
                Some(CALL_TIMEOUT),
                self.rpc::<_, api::PidsResponse>("Pids", &req, false),
            )
            .await?;
        Ok(r.processes.iter().map(|p| p.pid).collect())
    }

    /// `Stats`: the task's metrics as the shim encodes them (cgroup v1 or v2 `Metrics`).
    pub async fn stats(&self, id: &str) -> Result<Any, Error> {
        let req = api::StatsRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let r = self
            .call(
                "stats",
                id,
                Some(CALL_TIMEOUT),
                self.rpc::<_, api::StatsResponse>("Stats", &req, false),
            )
            .await?;
        Ok(r.stats.into_option().unwrap_or_default())
    }

    /// `Update`: new resources (the OCI `LinuxResources` as JSON).
    pub async fn update(&self, id: &str, resources: &[u8]) -> Result<(), Error> {
        let req = api::UpdateTaskRequest {
            id: id.to_string(),
            resources: MessageField::some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
                value: resources.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.call(
            "update",
            id,
            Some(CALL_TIMEOUT),
            self.rpc::<_, api::Empty>("Update", &req, false),
        )
        .await?;
        Ok(())
    }

    /// `Shutdown`: the shim exits once it runs no task. Its connection drops as it goes,
    /// which is success too.
    pub async fn shutdown(&self, id: &str) -> Result<(), Error> {
        let req = api::ShutdownRequest {
            id: id.to_string(),
            now: true,
            ..Default::default()
        };
        match self
            .call(
                "shutdown",
                id,
                Some(SHUTDOWN_TIMEOUT),
                self.rpc::<_, api::Empty>("Shutdown", &req, false),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::ShimCall { msg, .. }) if is_gone(&msg) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The message of a ttrpc error, without the enum's wrapping for a remote status.
fn ttrpc_message(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

/// Whether a call's error says the process or task is not there (any more).
pub fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::ShimCall { msg, .. } if msg.starts_with("NOT_FOUND") || msg.contains("not found"))
}

/// Whether a call's error says the connection to the shim is gone.
pub fn is_gone(msg: &str) -> bool {
    [
        "closed",
        "broken pipe",
        "reset by peer",
        "EOF",
        "eof",
        "Socket::connect",
        "connection refused",
        "No such file",
    ]
    .iter()
    .any(|w| msg.contains(w))
}

/// What the shim published, reduced to what crius acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimEvent {
    /// A task or exec exited.
    Exit {
        /// The container (task) id.
        id: String,
        /// The exec id, or the container id for its init process.
        exec_id: String,
        /// How it ended.
        status: TaskExitStatus,
    },
    /// A container's cgroup hit its memory limit and a process was killed.
    Oom {
        /// The container (task) id.
        id: String,
    },
}

/// The events service that shims publish to: decodes TaskExit and TaskOOM and hands them on.
struct EventSink {
    tx: tokio::sync::mpsc::UnboundedSender<ShimEvent>,
}

#[async_trait::async_trait]
impl Events for EventSink {
    async fn forward(
        &self,
        _ctx: &TtrpcContext,
        req: containerd_shim_protos::shim::events::ForwardRequest,
    ) -> ttrpc::Result<containerd_shim_protos::protobuf::well_known_types::empty::Empty> {
        let Some(envelope) = req.envelope.into_option() else {
            return Ok(Default::default());
        };
        let Some(event) = envelope.event.into_option() else {
            return Ok(Default::default());
        };
        let name = event.type_url.rsplit('/').next().unwrap_or_default();
        let decoded = match name {
            "containerd.events.TaskExit" => {
                TaskExit::parse_from_bytes(&event.value)
                    .ok()
                    .map(|e| ShimEvent::Exit {
                        status: TaskExitStatus {
                            code: e.exit_status,
                            at_ns: timestamp_ns(&e.exited_at),
                        },
                        id: e.container_id,
                        exec_id: e.id,
                    })
            }
            "containerd.events.TaskOOM" => TaskOOM::parse_from_bytes(&event.value)
                .ok()
                .map(|e| ShimEvent::Oom { id: e.container_id }),
            _ => None,
        };
        tracing::debug!(topic = %envelope.topic, event = ?decoded, "shim event");
        if let Some(ev) = decoded {
            let _ = self.tx.send(ev);
        }
        Ok(Default::default())
    }
}

/// crius's ttrpc socket for shim events (the shims' `TTRPC_ADDRESS`).
pub struct EventServer {
    server: ttrpc::asynchronous::Server,
}

impl EventServer {
    /// Serves the events service at `path` (replacing a stale socket); events arrive on the
    /// returned channel.
    pub async fn serve(
        path: &Path,
    ) -> Result<(EventServer, tokio::sync::mpsc::UnboundedReceiver<ShimEvent>), Error> {
        let _ = std::fs::remove_file(path);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let service = create_events(Arc::new(EventSink { tx }));
        let fail = |msg: String| Error::ShimCall {
            handler: String::new(),
            call: "serve events",
            id: path.display().to_string(),
            msg,
        };
        let mut server = ttrpc::asynchronous::Server::new()
            .bind(&format!("unix://{}", path.display()))
            .map_err(|e| fail(e.to_string()))?
            .register_service(service);
        server.start().await.map_err(|e| fail(e.to_string()))?;
        Ok((EventServer { server }, rx))
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        let _ = self.server.shutdown().await;
    }
}

/// The options `Any` that passes a VM runtime its config file, as containerd's CRI does
/// for Kata (`runtimeoptions.v1.Options`, field 2 `config_path`).
pub fn config_path_options(path: &Path) -> Any {
    let path = path.display().to_string();
    let mut value = Vec::with_capacity(path.len() + 4);
    // Field 2, wire type 2 (length-delimited), then the varint length and the bytes.
    value.push((2 << 3) | 2);
    let mut len = path.len();
    while len >= 0x80 {
        value.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    value.push(len as u8);
    value.extend_from_slice(path.as_bytes());
    Any {
        type_url: "runtimeoptions.v1.Options".into(),
        value,
        ..Default::default()
    }
}

/// Makes the fifo at `path` (mode 0600), replacing none.
pub fn make_fifo(path: &Path) -> Result<(), Error> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        Error::MonitorFile {
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        }
    })?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(Error::MonitorFile {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Copies a task's stdout and stderr fifos into its CRI log, one thread per stream, until
/// the shim closes them (the process exited), and hands each chunk to the attached clients
/// ([`LogCopier::subscribe`]). The fifos are opened non-blocking and held open for writing
/// by crius itself until [`LogCopier::writers_attached`], so neither the open nor a read
/// before the shim opened its end sees an end of file.
pub struct LogCopier {
    own_writers: Vec<std::fs::File>,
    threads: Vec<std::thread::JoinHandle<()>>,
    writer: Arc<std::sync::Mutex<cri_log::LogWriter>>,
    /// The attached clients; only the copy threads hold it, so it goes (and every
    /// client's channel ends) when both streams have ended.
    attached: std::sync::Weak<Attached>,
}

/// A chunk of a container's output for an attached client: (from stderr, bytes).
pub type OutputChunk = (bool, Vec<u8>);

/// How many chunks an attached client may lag behind before output is dropped for it
/// (the container's output and its log never wait for a slow client).
const ATTACH_BACKLOG: usize = 256;

type Attached = std::sync::Mutex<Vec<tokio::sync::mpsc::Sender<OutputChunk>>>;

impl LogCopier {
    /// Starts copying `fifos` (stream, path) into the log at `log` (none: discard), with
    /// the log cut at `max` bytes.
    pub fn start(
        fifos: &[(bool, PathBuf)],
        log: Option<PathBuf>,
        max: Option<u64>,
    ) -> Result<LogCopier, Error> {
        let writer = Arc::new(std::sync::Mutex::new(
            cri_log::LogWriter::open(log.clone(), max).map_err(|e| Error::MonitorFile {
                path: log.clone().unwrap_or_default(),
                source: e,
            })?,
        ));
        let mut own_writers = Vec::new();
        let mut threads = Vec::new();
        let attached: Arc<Attached> = Arc::default();
        for (stderr, path) in fifos {
            let open_err = |e| Error::MonitorFile {
                path: path.clone(),
                source: e,
            };
            let reader = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
                .map_err(open_err)?;
            own_writers.push(
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(path)
                    .map_err(open_err)?,
            );
            set_blocking(&reader).map_err(open_err)?;
            let stream = if *stderr {
                cri_log::Stream::Stderr
            } else {
                cri_log::Stream::Stdout
            };
            let (writer, attached) = (writer.clone(), attached.clone());
            let name = path.display().to_string();
            threads.push(
                std::thread::Builder::new()
                    .name("shim-log".into())
                    .spawn(move || copy_stream(reader, stream, &writer, &attached, &name))
                    .map_err(open_err)?,
            );
        }
        Ok(LogCopier {
            own_writers,
            threads,
            writer,
            attached: Arc::downgrade(&attached),
        })
    }

    /// The output from now on, for an attached client; `None` once the output has ended.
    /// The channel ends with the output.
    pub fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<OutputChunk>> {
        let attached = self.attached.upgrade()?;
        let (tx, rx) = tokio::sync::mpsc::channel(ATTACH_BACKLOG);
        attached.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        Some(rx)
    }

    /// Reopens the log file (ReopenContainerLog, after the kubelet rotated it).
    pub fn reopen_log(&self) -> std::io::Result<()> {
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reopen()
    }

    /// The shim holds the fifos open now: crius lets go of its own write ends, so the
    /// copy ends when the shim closes them.
    pub fn writers_attached(&mut self) {
        self.own_writers.clear();
    }

    /// Waits until both streams hit their end (the process and its shim side closed them).
    pub fn join(mut self) {
        self.own_writers.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Collects what a process writes into fifos (an exec's stdout and stderr), up to
/// [`CAPTURE_MAX`] bytes each; opened like [`LogCopier`]'s.
pub struct FifoCapture {
    own_writers: Vec<std::fs::File>,
    threads: Vec<std::thread::JoinHandle<Vec<u8>>>,
}

/// The most bytes kept of one exec stream (the monitor's bound).
pub const CAPTURE_MAX: usize = 16 << 20;

impl FifoCapture {
    /// Starts reading each of `fifos`.
    pub fn start(fifos: &[PathBuf]) -> Result<FifoCapture, Error> {
        let mut own_writers = Vec::new();
        let mut threads = Vec::new();
        for path in fifos {
            let open_err = |e| Error::MonitorFile {
                path: path.clone(),
                source: e,
            };
            let mut reader = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
                .map_err(open_err)?;
            own_writers.push(
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(path)
                    .map_err(open_err)?,
            );
            set_blocking(&reader).map_err(open_err)?;
            threads.push(
                std::thread::Builder::new()
                    .name("shim-exec".into())
                    .spawn(move || {
                        let mut out = Vec::new();
                        let mut buf = vec![0u8; cri_log::CHUNK];
                        loop {
                            match reader.read(&mut buf) {
                                Ok(0) => return out,
                                Ok(n) => {
                                    let room = CAPTURE_MAX.saturating_sub(out.len());
                                    out.extend_from_slice(&buf[..n.min(room)]);
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                                Err(_) => return out,
                            }
                        }
                    })
                    .map_err(open_err)?,
            );
        }
        Ok(FifoCapture {
            own_writers,
            threads,
        })
    }

    /// The shim holds the fifos: reading ends when it closes them.
    pub fn writers_attached(&mut self) {
        self.own_writers.clear();
    }

    /// What each fifo carried, in order, once all are closed.
    pub fn join(mut self) -> Vec<Vec<u8>> {
        self.own_writers.clear();
        self.threads
            .drain(..)
            .map(|t| t.join().unwrap_or_default())
            .collect()
    }
}

/// The shim's own log: a fifo named `log` in its working dir, which containerd's shims
/// open at start and will not run without. crius reads it into its log (debug), one
/// thread per shim that ends when the shim exits.
pub struct ShimLog {
    own_writer: Option<std::fs::File>,
}

impl ShimLog {
    /// Makes (or reuses) `bundle/log` and starts reading it.
    pub fn open(bundle: &Path, id: &str) -> Result<ShimLog, Error> {
        let path = bundle.join("log");
        if !path.exists() {
            make_fifo(&path)?;
        }
        let open_err = |e| Error::MonitorFile {
            path: path.clone(),
            source: e,
        };
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(open_err)?;
        let own_writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(open_err)?;
        set_blocking(&reader).map_err(open_err)?;
        let id = id.to_string();
        std::thread::Builder::new()
            .name("shim-log".into())
            .spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(reader).lines() {
                    match line {
                        Ok(line) => tracing::debug!(pod_id = %id, "shim: {line}"),
                        Err(_) => return,
                    }
                }
            })
            .map_err(open_err)?;
        Ok(ShimLog {
            own_writer: Some(own_writer),
        })
    }

    /// The shim has opened its end: the reader ends when the shim exits.
    pub fn attached(mut self) {
        self.own_writer = None;
    }
}

fn set_blocking(f: &std::fs::File) -> std::io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function's caller owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn copy_stream(
    mut reader: std::fs::File,
    stream: cri_log::Stream,
    writer: &std::sync::Mutex<cri_log::LogWriter>,
    attached: &Attached,
    name: &str,
) {
    let mut buf = vec![0u8; cri_log::CHUNK];
    let is_stderr = matches!(stream, cri_log::Stream::Stderr);
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = w.write(stream, &buf[..n]) {
                    tracing::warn!(fifo = %name, error = %e, "container log not written");
                }
                drop(w);
                let mut clients = attached.lock().unwrap_or_else(|e| e.into_inner());
                clients.retain(|tx| match tx.try_send((is_stderr, buf[..n].to_vec())) {
                    Ok(()) => true,
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        tracing::debug!(fifo = %name, "attached client lags; output dropped for it");
                        true
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(fifo = %name, error = %e, "container output not read");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sockets_a_process_bound_are_found_by_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bound.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let found = bound_sockets(std::process::id());
        assert!(found.contains(&path), "{found:?}");
        assert!(!bound_sockets(std::process::id())
            .iter()
            .any(|p| p.ends_with("other.sock")));
    }

    #[test]
    fn processes_naming_a_dir_are_those_with_an_argument_under_it() {
        let dir = tempfile::tempdir().unwrap();
        // Not the last command, so the shell stays (with its arguments) and waits.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; true", "sh"])
            .arg(dir.path().join("bundle"))
            .spawn()
            .unwrap();
        // Until the child has run sh, its command line is this test's.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut found = processes_naming(dir.path());
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            found = processes_naming(dir.path());
        }
        let other = processes_naming(&dir.path().join("elsewhere"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, vec![child.id()]);
        assert_eq!(other, Vec::<u32>::new());
    }

    #[test]
    fn start_output_plain_and_json() {
        assert_eq!(
            parse_start_output(b"unix:///run/containerd/s/abc\n").as_deref(),
            Some("unix:///run/containerd/s/abc")
        );
        assert_eq!(
            parse_start_output(
                br#"{"version":2,"address":"unix:///run/x.sock","protocol":"ttrpc"}"#
            )
            .as_deref(),
            Some("unix:///run/x.sock")
        );
        for bad in [
            "",
            "garbage",
            "unix://relative",
            "unix:///a b",
            r#"{"address":"unix:///x","protocol":"grpc"}"#,
        ] {
            assert_eq!(parse_start_output(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn start_output_as_bootstrap_result() {
        let r = bootstrap_api::BootstrapResult {
            version: 3,
            address: "unix:///run/containerd/s/x".into(),
            protocol: "ttrpc".into(),
            ..Default::default()
        };
        let raw = r.write_to_bytes().unwrap();
        assert_eq!(
            parse_start_output(&raw).as_deref(),
            Some("unix:///run/containerd/s/x")
        );
    }

    #[test]
    fn config_path_options_encode_field_two() {
        let any = config_path_options(Path::new("/etc/kata/configuration.toml"));
        assert_eq!(any.value[0], 0x12);
        assert_eq!(any.value[1] as usize, "/etc/kata/configuration.toml".len());
        assert!(any.value.ends_with(b"/etc/kata/configuration.toml"));
    }
}
