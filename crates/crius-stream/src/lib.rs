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

/// Entry points for the fuzz targets in `fuzz/` and their replay test: bytes as a client
/// would send them after the upgrade. None may panic, whatever the input.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::BytesMut;

    use crate::remotecommand::decode_channel_message;
    use crate::spdy::frame::Codec;
    use crate::ws::{decode_frame, encode_frame, Message, OP_BINARY, OP_TEXT};

    /// SPDY/3.1 frames, header blocks inflated; each one decoded is encoded again.
    pub fn spdy_frames(data: &[u8]) {
        let mut decoder = Codec::new();
        let mut encoder = Codec::new();
        let mut buf = BytesMut::from(data);
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            let mut out = Vec::new();
            let _ = encoder.encode(&frame, &mut out);
        }
    }

    /// Seeds for [`spdy_frames`]: what a kubectl exec sends (streams with their header
    /// blocks, data, settings, ping, window update, reset, go away).
    pub fn spdy_seeds() -> Vec<Vec<u8>> {
        use crate::spdy::frame::{Frame, Setting};
        let headers = |kind: &str| {
            vec![
                ("streamtype".to_string(), kind.to_string()),
                ("requestid".to_string(), "0".to_string()),
            ]
        };
        let frames = [
            vec![
                Frame::Settings {
                    entries: vec![Setting {
                        flags: 0,
                        id: 7,
                        value: 65536,
                    }],
                },
                Frame::SynStream {
                    stream_id: 1,
                    associated_to: 0,
                    priority: 0,
                    fin: false,
                    unidirectional: false,
                    headers: headers("error"),
                },
                Frame::SynStream {
                    stream_id: 3,
                    associated_to: 0,
                    priority: 0,
                    fin: false,
                    unidirectional: false,
                    headers: headers("stdin"),
                },
                Frame::Data {
                    stream_id: 3,
                    fin: true,
                    data: bytes::Bytes::from_static(b"echo hi\n"),
                },
            ],
            vec![
                Frame::Ping { id: 1 },
                Frame::WindowUpdate {
                    stream_id: 1,
                    delta: 4096,
                },
                Frame::Headers {
                    stream_id: 1,
                    fin: true,
                    headers: headers("resize"),
                },
                Frame::RstStream {
                    stream_id: 1,
                    status: 5,
                },
                Frame::GoAway {
                    last_good_stream_id: 3,
                    status: 0,
                },
            ],
        ];
        frames
            .iter()
            .map(|list| {
                let mut codec = Codec::new();
                let mut out = Vec::new();
                for frame in list {
                    let _ = codec.encode(frame, &mut out);
                }
                out
            })
            .collect()
    }

    /// Seeds for [`ws_frames`]: channel messages, plain and base64, masked and not, a
    /// fragmented message and the control frames.
    pub fn ws_seeds() -> Vec<Vec<u8>> {
        use crate::ws::{OP_CLOSE, OP_CONTINUATION, OP_PING};
        let key = Some([1, 2, 3, 4]);
        let mut masked = Vec::new();
        encode_frame(true, OP_BINARY, b"\x00echo hi\n", key, &mut masked);
        encode_frame(true, OP_TEXT, b"0ZWNobyBoaQo=", key, &mut masked);
        encode_frame(false, OP_BINARY, b"\x04{\"Width\":", key, &mut masked);
        encode_frame(
            true,
            OP_CONTINUATION,
            b"80,\"Height\":24}",
            key,
            &mut masked,
        );
        encode_frame(true, OP_PING, b"p", key, &mut masked);
        encode_frame(true, OP_CLOSE, &[3, 232], key, &mut masked);
        let mut plain = Vec::new();
        encode_frame(true, OP_BINARY, b"\x01out", None, &mut plain);
        encode_frame(true, OP_BINARY, &vec![2u8; 300], None, &mut plain);
        vec![masked, plain]
    }

    /// WebSocket frames as a server reads them (masked) and as a client does; data
    /// frames also as channel messages, plain and base64.
    pub fn ws_frames(data: &[u8]) {
        for masked in [true, false] {
            let mut buf = BytesMut::from(data);
            while let Ok(Some(frame)) = decode_frame(&mut buf, masked) {
                let mut out = Vec::new();
                encode_frame(frame.fin, frame.opcode, &frame.payload, None, &mut out);
                let message = match frame.opcode {
                    OP_TEXT => Message::Text(frame.payload),
                    OP_BINARY => Message::Binary(frame.payload),
                    _ => continue,
                };
                let _ = decode_channel_message(message.clone(), true);
                let _ = decode_channel_message(message, false);
            }
        }
    }
}
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
