//! Exec, Attach and PortForward: validate the request, check the container or pod, and
//! answer with a one-time URL of the streaming server (crius-stream). What runs when the
//! client uses the URL is [`CoreStreams`], which calls the core.

use std::sync::Arc;

use crius_core::{Daemon, StreamIo};
use crius_cri_api::v1 as cri;
use crius_stream::{
    AttachRequest, BoxError, BoxFuture, ExecRequest, PortForwardRequest, Stdio, StreamConfig,
    StreamRuntime, StreamServer,
};
use tokio::sync::{mpsc, OnceCell};
use tonic::Status;

use crate::status::{invalid, stream_status, to_status};

/// Starts the streaming server on the configured address and port.
pub async fn start_streaming(daemon: Arc<Daemon>) -> Result<StreamServer, crius_stream::Error> {
    let config = daemon.config();
    let stream_config = StreamConfig {
        address: config.stream_address.clone(),
        port: config.stream_port,
        ..StreamConfig::default()
    };
    StreamServer::start(stream_config, Arc::new(CoreStreams { daemon })).await
}

/// The streaming server the RPCs hand URLs out for: the one the daemon started, or one
/// started on first use when the daemon could not start it.
pub(crate) struct Streaming {
    daemon: Arc<Daemon>,
    server: OnceCell<StreamServer>,
}

impl Streaming {
    pub(crate) fn new(daemon: Arc<Daemon>, server: Option<StreamServer>) -> Self {
        Streaming {
            daemon,
            server: OnceCell::new_with(server),
        }
    }

    async fn server(&self) -> Result<&StreamServer, Status> {
        self.server
            .get_or_try_init(|| start_streaming(self.daemon.clone()))
            .await
            .map_err(stream_status)
    }
}

/// Checks the stream flags shared by Exec and Attach.
fn check_streams(
    rpc: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<(), Status> {
    if !(stdin || stdout || stderr) {
        return Err(invalid(format!(
            "{rpc}: one of stdin, stdout, or stderr must be set"
        )));
    }
    if tty && stderr {
        return Err(invalid(format!(
            "{rpc}: tty and stderr cannot both be true"
        )));
    }
    Ok(())
}

/// Exec.
pub(crate) async fn exec(
    daemon: &Daemon,
    streaming: &Streaming,
    req: cri::ExecRequest,
) -> Result<cri::ExecResponse, Status> {
    if req.container_id.is_empty() {
        return Err(invalid("Exec needs a container_id"));
    }
    if req.cmd.is_empty() {
        return Err(invalid("Exec needs a command (cmd is empty)"));
    }
    check_streams("Exec", req.stdin, req.stdout, req.stderr, req.tty)?;
    let rec = daemon
        .running_container(&req.container_id)
        .map_err(to_status)?;
    let url = streaming
        .server()
        .await?
        .get_exec(ExecRequest {
            container_id: rec.id,
            cmd: req.cmd,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        })
        .map_err(stream_status)?;
    Ok(cri::ExecResponse { url })
}

/// Attach.
pub(crate) async fn attach(
    daemon: &Daemon,
    streaming: &Streaming,
    req: cri::AttachRequest,
) -> Result<cri::AttachResponse, Status> {
    if req.container_id.is_empty() {
        return Err(invalid("Attach needs a container_id"));
    }
    check_streams("Attach", req.stdin, req.stdout, req.stderr, req.tty)?;
    let rec = daemon
        .running_container(&req.container_id)
        .map_err(to_status)?;
    let url = streaming
        .server()
        .await?
        .get_attach(AttachRequest {
            container_id: rec.id,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        })
        .map_err(stream_status)?;
    Ok(cri::AttachResponse { url })
}

/// PortForward.
pub(crate) async fn port_forward(
    daemon: &Daemon,
    streaming: &Streaming,
    req: cri::PortForwardRequest,
) -> Result<cri::PortForwardResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("PortForward needs a pod_sandbox_id"));
    }
    let ports = req
        .port
        .iter()
        .map(|p| {
            u16::try_from(*p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid(format!("PortForward: invalid port {p}")))
        })
        .collect::<Result<Vec<u16>, Status>>()?;
    let pod = daemon.ready_pod(&req.pod_sandbox_id).map_err(to_status)?;
    let url = streaming
        .server()
        .await?
        .get_port_forward(PortForwardRequest {
            pod_id: pod.id,
            ports,
        })
        .map_err(stream_status)?;
    Ok(cri::PortForwardResponse { url })
}

/// Runs streams on the core.
struct CoreStreams {
    daemon: Arc<Daemon>,
}

fn core_io(stdio: Stdio) -> StreamIo {
    let resize = stdio.resize.map(|mut sizes| {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(s) = sizes.recv().await {
                if tx.send((s.width, s.height)).await.is_err() {
                    break;
                }
            }
        });
        rx
    });
    StreamIo {
        stdin: stdio
            .stdin
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        stdout: stdio
            .stdout
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
        stderr: stdio
            .stderr
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
        resize,
    }
}

impl StreamRuntime for CoreStreams {
    fn exec(&self, req: ExecRequest, stdio: Stdio) -> BoxFuture<Result<i32, BoxError>> {
        let daemon = self.daemon.clone();
        Box::pin(async move {
            daemon
                .exec_stream(&req.container_id, req.cmd, req.tty, core_io(stdio))
                .await
                .map_err(|e| Box::new(e) as BoxError)
        })
    }

    fn attach(&self, req: AttachRequest, stdio: Stdio) -> BoxFuture<Result<(), BoxError>> {
        let daemon = self.daemon.clone();
        Box::pin(async move {
            daemon
                .attach_stream(&req.container_id, core_io(stdio))
                .await
                .map_err(|e| Box::new(e) as BoxError)
        })
    }

    fn port_forward(
        &self,
        pod_id: String,
        port: u16,
    ) -> BoxFuture<Result<tokio::net::TcpStream, BoxError>> {
        let daemon = self.daemon.clone();
        Box::pin(async move {
            daemon
                .port_forward_connect(&pod_id, port)
                .await
                .map_err(|e| Box::new(e) as BoxError)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn stream_flags_are_checked_like_the_kubelet_does() {
        assert_eq!(
            check_streams("Exec", false, false, false, false)
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        let err = check_streams("Exec", false, true, true, true).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("tty and stderr"));
        assert!(check_streams("Exec", true, true, false, true).is_ok());
        assert!(check_streams("Attach", false, false, true, false).is_ok());
    }
}
