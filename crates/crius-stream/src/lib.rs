//! The streaming server of crius: what the one-time URLs returned by the CRI `Exec`,
//! `Attach` and `PortForward` calls point at.
//!
//! The CRI call validates the request and registers it with [`StreamServer`], which answers
//! with a URL holding a random single-use token that expires after a minute. The client
//! (kubelet, kubectl through the API server, crictl, critest) then upgrades an HTTP request
//! to that URL to one of the protocols of Kubernetes' streaming package:
//!
//! - SPDY/3.1 with the remote command subprotocols `v4.channel.k8s.io`, `v3.channel.k8s.io`,
//!   `v2.channel.k8s.io` and `channel.k8s.io` (one SPDY stream per stdin, stdout, stderr,
//!   error and resize), or `portforward.k8s.io` (a data and an error stream per connection
//!   to a pod port);
//! - WebSocket with `v5.channel.k8s.io`, `v4.channel.k8s.io`, `channel.k8s.io` and their
//!   base64 variants (one byte of channel number before each message), and port forwarding
//!   as SPDY tunnelled through a WebSocket (`SPDY/3.1+portforward.k8s.io`).
//!
//! What runs behind a stream is up to a [`StreamRuntime`]: crius-cri gives one that calls
//! the core (exec and attach through the container's monitor, a socket in the pod's netns).

mod error;
mod portforward;
mod remotecommand;
mod server;
pub(crate) mod spdy;
mod tokens;
pub(crate) mod ws;

use std::future::Future;
use std::pin::Pin;

use tokio::io::DuplexStream;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub use error::{Error, Result};
pub use server::{StreamConfig, StreamServer};

/// A command to run in a container, with its stdio streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The container.
    pub container_id: String,
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Run it on a terminal.
    pub tty: bool,
    /// Stream the client's input to it.
    pub stdin: bool,
    /// Stream its stdout.
    pub stdout: bool,
    /// Stream its stderr (never with `tty`).
    pub stderr: bool,
}

/// An attach to a running container's stdio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    /// The container.
    pub container_id: String,
    /// The container has a terminal.
    pub tty: bool,
    /// Stream the client's input to it.
    pub stdin: bool,
    /// Stream its stdout.
    pub stdout: bool,
    /// Stream its stderr (never with `tty`).
    pub stderr: bool,
}

/// Forwarding of connections to ports of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardRequest {
    /// The pod sandbox.
    pub pod_id: String,
    /// The ports the client named in the CRI call (informational: each stream names its
    /// port).
    pub ports: Vec<u16>,
}

/// A registered request, waiting for its URL to be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    /// `/exec/<token>`.
    Exec(ExecRequest),
    /// `/attach/<token>`.
    Attach(AttachRequest),
    /// `/portforward/<token>`.
    PortForward(PortForwardRequest),
}

impl StreamRequest {
    /// The first path segment of its URL.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamRequest::Exec(_) => "exec",
            StreamRequest::Attach(_) => "attach",
            StreamRequest::PortForward(_) => "portforward",
        }
    }
}

/// A terminal size from the client's resize stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// The client's side of a command's stdio, as the runtime sees it. Each present stream is
/// one end of an in-memory pipe: read `stdin` (EOF when the client closes its input), write
/// `stdout` and `stderr` (drop or shut them down when done).
#[derive(Debug, Default)]
pub struct Stdio {
    /// Input from the client.
    pub stdin: Option<DuplexStream>,
    /// Output to the client's stdout.
    pub stdout: Option<DuplexStream>,
    /// Output to the client's stderr.
    pub stderr: Option<DuplexStream>,
    /// Terminal size changes (tty only).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

/// Errors a runtime reports; shown to the client in the error stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The futures a runtime returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What runs behind the streams: implemented by crius-cri on top of the core.
pub trait StreamRuntime: Send + Sync + 'static {
    /// Runs an exec and returns its exit code. Dropping the future ends the exec.
    fn exec(&self, req: ExecRequest, stdio: Stdio) -> BoxFuture<Result<i32, BoxError>>;
    /// Relays the container's stdio until it exits or the client goes away (the future is
    /// then dropped).
    fn attach(&self, req: AttachRequest, stdio: Stdio) -> BoxFuture<Result<(), BoxError>>;
    /// Connects to `port` on the pod's loopback, inside its network namespace.
    fn port_forward(&self, pod_id: String, port: u16) -> BoxFuture<Result<TcpStream, BoxError>>;
}
