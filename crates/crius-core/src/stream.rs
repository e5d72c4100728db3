//! Streaming exec, attach and port-forward: what runs behind the streaming server's URLs.
//!
//! - Exec and attach go through the container's monitor, which runs the exec (`RUNTIME
//!   exec`, on a terminal of its own when asked) or holds the container's stdio, and relays
//!   frames; terminal sizes travel on the same session. The end of the client's stdin
//!   closes the exec's stdin, and the container's when it is `stdin_once`.
//! - In a container of a `vm` handler they go through the pod's shim instead
//!   (`crius_oci::shim_stream`): an exec process of the container's task, or the
//!   container's own fifos; the streaming server sees no difference.
//! - Port-forward connects to 127.0.0.1:PORT (then [::1]:PORT) from a thread inside the
//!   pod's network namespace; the socket keeps working from any thread after that.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crius_oci::monitor::MonitorClient;
use crius_oci::shim_stream::{self, StreamAttach, StreamExec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tracing::debug;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::model::{ContainerRecord, ContainerState, PodRecord, PodState};

/// How long a port-forward connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client's side of a streamed command, as the core sees it.
#[derive(Default)]
pub struct StreamIo {
    /// Input from the client; EOF when it closes its stdin.
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// The client's stdout.
    pub stdout: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// The client's stderr (unused with a terminal).
    pub stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Terminal sizes (columns, rows) from the client.
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
}

impl std::fmt::Debug for StreamIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamIo")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

impl Daemon {
    /// The record of a container that exists and runs: the precondition of Exec and Attach.
    pub fn running_container(&self, id: &str) -> Result<ContainerRecord> {
        let rec = self.container_entry(id)?.entry.get();
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running ({:?})",
                rec.id, rec.state
            )));
        }
        Ok(rec)
    }

    /// The pod of a container when its handler is a `vm` one (streams go through its shim).
    pub(crate) fn vm_pod_of(&self, rec: &ContainerRecord) -> Result<Option<PodRecord>> {
        let pod = self.pod_entry(&rec.pod_id)?.get();
        Ok(self.vm_of(&pod.runtime_handler).map(|_| pod))
    }

    /// The record of a pod that exists and is ready: the precondition of PortForward.
    pub fn ready_pod(&self, id: &str) -> Result<PodRecord> {
        let pod = self.pod_entry(id)?.get();
        if pod.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        Ok(pod)
    }

    /// Runs `cmd` in a running container with its stdio streamed; returns its exit code.
    /// Dropping the future kills the command.
    pub async fn exec_stream(
        &self,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        io: StreamIo,
    ) -> Result<i32> {
        if cmd.is_empty() {
            return Err(Error::InvalidArgument("exec command is empty".into()));
        }
        let rec = self.running_container(id)?;
        // A terminal merges stderr into stdout.
        let stderr = io.stderr.filter(|_| !tty);
        let started = Instant::now();
        let result = match self.vm_pod_of(&rec)? {
            Some(pod) => {
                let shim = self.shim_of(&pod).await?;
                let process = self.vm_exec_process(&rec.id, &cmd, tty)?;
                let exec_id = crate::vm::new_exec_id();
                let exec = StreamExec {
                    id: &rec.id,
                    exec_id: &exec_id,
                    process: &process,
                    tty,
                    dir: &self.container_run_dir(&rec.id),
                };
                shim_stream::exec_stream(&shim, exec, io.stdin, io.stdout, stderr, io.resize).await
            }
            None => {
                MonitorClient::new(&self.container_run_dir(&rec.id))
                    .exec_stream(&cmd, tty, io.stdin, io.stdout, stderr, io.resize)
                    .await
            }
        };
        debug!(
            container_id = %rec.id,
            ?cmd,
            tty,
            elapsed = ?started.elapsed(),
            result = ?result.as_ref().map_err(|e| e.to_string()),
            "exec (streaming)"
        );
        Ok(result?)
    }

    /// Relays a running container's stdio through its monitor until the container exits
    /// or the client detaches. Dropping the future ends the attach session.
    pub async fn attach_stream(&self, id: &str, io: StreamIo) -> Result<()> {
        let rec = self.running_container(id)?;
        // A container without an open stdin takes none; the client's input is dropped.
        let stdin = io.stdin.filter(|_| rec.config.stdin);
        let started = Instant::now();
        let result = match self.vm_pod_of(&rec)? {
            Some(pod) => {
                let shim = self.shim_of(&pod).await?;
                let output = self
                    .log_copiers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&rec.id)
                    .and_then(|c| c.subscribe());
                let Some(output) = output else {
                    // Its output has ended: the container is exiting.
                    return Ok(());
                };
                let stdin_fifo = self
                    .vm_stdins
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&rec.id)
                    .cloned();
                let attach = StreamAttach {
                    id: &rec.id,
                    output,
                    stdin_fifo,
                    stdin_once: rec.config.stdin_once,
                };
                shim_stream::attach_stream(&shim, attach, stdin, io.stdout, io.stderr, io.resize)
                    .await
            }
            None => {
                MonitorClient::new(&self.container_run_dir(&rec.id))
                    .attach_stdio(
                        stdin,
                        io.stdout,
                        io.stderr,
                        io.resize,
                        rec.config.stdin_once,
                    )
                    .await
            }
        };
        debug!(container_id = %rec.id, elapsed = ?started.elapsed(), ok = result.is_ok(), "attach ended");
        Ok(result?)
    }

    /// Connects to `port` on the loopback of a ready pod, inside its network namespace
    /// (or the host's for a host-network pod).
    pub async fn port_forward_connect(
        &self,
        pod_id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream> {
        let pod = self.ready_pod(pod_id)?;
        let netns = pod.netns.clone();
        let started = Instant::now();
        let connect = move || -> io::Result<std::net::TcpStream> {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
            match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
                Ok(s) => Ok(s),
                Err(e4) => {
                    std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e4)
                }
            }
        };
        let ns_for_thread = netns.clone();
        let joined = tokio::task::spawn_blocking(move || match &ns_for_thread {
            Some(ns) => crius_net::in_netns(ns, connect).map_err(Error::from),
            None => Ok(connect()),
        })
        .await
        .map_err(|e| Error::Internal(format!("port-forward connect thread: {e}")))?;
        let where_ = netns
            .as_ref()
            .map_or("the host network".to_string(), |p| p.display().to_string());
        debug!(pod_id = %pod.id, port, netns = %where_, elapsed = ?started.elapsed(), ok = matches!(joined, Ok(Ok(_))), "connect to pod port");
        let stream = joined?.map_err(|e| {
            Error::FailedPrecondition(format!(
                "connect to localhost:{port} in pod {} ({where_}): {e}",
                pod.id
            ))
        })?;
        stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream))
            .map_err(|e| Error::Internal(format!("port-forward socket for pod {}: {e}", pod.id)))
    }
}
