//! Exec and attach over the remote command protocols: which streams a client opens, how the
//! command's stdio flows through them, and the status written on the error stream at the
//! end (a `metav1.Status` in JSON from v4 on, with the exit code of a failed command).
//!
//! The transport-neutral part is [`run`]: it wires a [`StreamRuntime`] to channels of
//! bytes. [`serve_spdy`] and [`serve_ws`] map those channels to SPDY streams or WebSocket
//! channel numbers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::spdy::session::{Session, StreamWriter};
use crate::ws::{Message, WsSession};
use crate::{AttachRequest, ExecRequest, Stdio, StreamRuntime, TerminalSize};

/// How long a client has to open all its streams after the upgrade.
pub(crate) const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output may keep flowing after the command ended.
const OUTPUT_DRAIN: Duration = Duration::from_secs(10);
/// How long to wait for the client to hang up after everything was sent.
const LINGER: Duration = Duration::from_secs(10);
/// Buffer of each in-memory stdio pipe.
const PIPE: usize = 64 * 1024;

/// The channels of the protocol, numbered as on a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Channel {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    Error = 3,
    Resize = 4,
}

impl Channel {
    fn from_stream_type(t: &str) -> Option<Channel> {
        Some(match t {
            "stdin" => Channel::Stdin,
            "stdout" => Channel::Stdout,
            "stderr" => Channel::Stderr,
            "error" => Channel::Error,
            "resize" => Channel::Resize,
            _ => return None,
        })
    }
}

/// A remote command protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

/// The SPDY subprotocols, in the server's order of preference.
pub(crate) const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The WebSocket subprotocols, in the server's order of preference.
pub(crate) const WS_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

impl Version {
    /// The version a subprotocol name stands for ("" is the oldest).
    pub fn from_protocol(name: &str) -> Option<Version> {
        Some(match name {
            "v5.channel.k8s.io" => Version::V5,
            "v4.channel.k8s.io" | "v4.base64.channel.k8s.io" => Version::V4,
            "v3.channel.k8s.io" => Version::V3,
            "v2.channel.k8s.io" => Version::V2,
            "channel.k8s.io" | "base64.channel.k8s.io" | "" => Version::V1,
            _ => return None,
        })
    }
}

/// What the command is.
pub(crate) enum Target {
    Exec(ExecRequest),
    Attach(AttachRequest),
}

impl Target {
    fn streams(&self) -> (bool, bool, bool, bool) {
        match self {
            Target::Exec(r) => (r.stdin, r.stdout, r.stderr && !r.tty, r.tty),
            Target::Attach(r) => (r.stdin, r.stdout, r.stderr && !r.tty, r.tty),
        }
    }
}

/// Output of the command side, for the transport to send.
#[derive(Debug)]
pub(crate) enum OutMsg {
    Data(Channel, Bytes),
    Close(Channel),
}

/// The client's side of the command, from the transport.
pub(crate) struct Inbound {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub resize: Option<mpsc::Receiver<Bytes>>,
    /// Fires when the client went away.
    pub gone: oneshot::Receiver<()>,
}

/// How the command ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Exited with this code (attach: the session ended normally, code 0).
    Exited(i32),
    /// The runtime failed.
    Failed(String),
}

/// The bytes of the error stream for `outcome`; empty when nothing is to be written.
pub(crate) fn status_message(version: Version, outcome: &Outcome) -> Vec<u8> {
    let failure = |reason: &str, message: String, causes: serde_json::Value, code: i32| {
        serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": {"causes": causes},
            "code": code,
        })
    };
    if version >= Version::V4 {
        let status = match outcome {
            Outcome::Exited(0) => serde_json::json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
            }),
            Outcome::Exited(code) => failure(
                "NonZeroExitCode",
                format!("command terminated with non-zero exit code: exit status {code}"),
                serde_json::json!([{"reason": "ExitCode", "message": (*code).clamp(0, 255).to_string()}]),
                500,
            ),
            Outcome::Failed(msg) => failure(
                "InternalError",
                format!("Internal error occurred: {msg}"),
                serde_json::json!([{"message": msg}]),
                500,
            ),
        };
        return serde_json::to_vec(&status).unwrap_or_default();
    }
    match outcome {
        Outcome::Exited(0) => Vec::new(),
        Outcome::Exited(code) => {
            format!("command terminated with non-zero exit code: exit status {code}").into_bytes()
        }
        Outcome::Failed(msg) => format!("Internal error occurred: {msg}").into_bytes(),
    }
}

/// Parses the resize stream: JSON objects `{"Width":80,"Height":24}`, one after another,
/// possibly cut anywhere by the transport.
#[derive(Default)]
pub(crate) struct ResizeDecoder {
    buf: Vec<u8>,
}

#[derive(Deserialize)]
struct WireSize {
    #[serde(rename = "Width", alias = "width", default)]
    width: u16,
    #[serde(rename = "Height", alias = "height", default)]
    height: u16,
}

impl ResizeDecoder {
    /// Adds bytes; returns the sizes completed by them.
    pub fn feed(&mut self, data: &[u8]) -> Vec<TerminalSize> {
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut used = 0;
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<WireSize>();
        loop {
            match it.next() {
                Some(Ok(s)) => {
                    used = it.byte_offset();
                    sizes.push(TerminalSize {
                        width: s.width,
                        height: s.height,
                    });
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    // Not JSON we understand: drop what is buffered and start over.
                    used = self.buf.len();
                    break;
                }
                None => {
                    used = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..used);
        sizes
    }
}

/// Runs the command with its stdio wired to the transport's channels, then writes the
/// status on the error channel. Returns when everything is queued for sending.
pub(crate) async fn run(
    runtime: Arc<dyn StreamRuntime>,
    target: Target,
    version: Version,
    inbound: Inbound,
    out: mpsc::Sender<OutMsg>,
) {
    let (_, want_stdout, want_stderr, _) = target.streams();
    let mut stdio = Stdio::default();
    let mut feeders = Vec::new();
    if let Some(mut rx) = inbound.stdin {
        let (mut ours, theirs) = tokio::io::duplex(PIPE);
        stdio.stdin = Some(theirs);
        feeders.push(tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                if ours.write_all(&data).await.is_err() {
                    return;
                }
            }
            let _ = ours.shutdown().await;
        }));
    }
    if let Some(mut rx) = inbound.resize {
        let (tx, sizes) = mpsc::channel(16);
        stdio.resize = Some(sizes);
        feeders.push(tokio::spawn(async move {
            let mut decoder = ResizeDecoder::default();
            while let Some(data) = rx.recv().await {
                for size in decoder.feed(&data) {
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    let mut pumps = Vec::new();
    for (wanted, channel) in [
        (want_stdout, Channel::Stdout),
        (want_stderr, Channel::Stderr),
    ] {
        if !wanted {
            continue;
        }
        let (mut ours, theirs) = tokio::io::duplex(PIPE);
        match channel {
            Channel::Stdout => stdio.stdout = Some(theirs),
            _ => stdio.stderr = Some(theirs),
        }
        let out = out.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            let mut open = true;
            loop {
                match ours.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        // Keep draining after the client is gone, so the command never blocks.
                        if open
                            && out
                                .send(OutMsg::Data(channel, Bytes::copy_from_slice(&buf[..n])))
                                .await
                                .is_err()
                        {
                            open = false;
                        }
                    }
                }
            }
            let _ = out.send(OutMsg::Close(channel)).await;
        }));
    }

    let mut gone = inbound.gone;
    let outcome = match target {
        Target::Exec(req) => {
            let id = req.container_id.clone();
            tokio::select! {
                r = runtime.exec(req, stdio) => match r {
                    Ok(code) => Outcome::Exited(code),
                    Err(e) => Outcome::Failed(format!("error executing command in container {id}: {e}")),
                },
                _ = &mut gone => {
                    debug!(container_id = %id, "exec client went away; ending the exec");
                    Outcome::Failed("client went away".into())
                }
            }
        }
        Target::Attach(req) => {
            let id = req.container_id.clone();
            tokio::select! {
                r = runtime.attach(req, stdio) => match r {
                    Ok(()) => Outcome::Exited(0),
                    Err(e) => Outcome::Failed(format!("error attaching to container {id}: {e}")),
                },
                _ = &mut gone => {
                    debug!(container_id = %id, "attach client went away");
                    Outcome::Failed("client went away".into())
                }
            }
        }
    };
    for f in feeders {
        f.abort();
    }
    for p in pumps {
        let abort = p.abort_handle();
        if tokio::time::timeout(OUTPUT_DRAIN, p).await.is_err() {
            warn!("command output still open after the command ended; cutting it off");
            abort.abort();
        }
    }
    if let Outcome::Failed(msg) = &outcome {
        debug!(error = %msg, "remote command failed");
    }
    let status = status_message(version, &outcome);
    if !status.is_empty() {
        let _ = out
            .send(OutMsg::Data(Channel::Error, Bytes::from(status)))
            .await;
    }
    let _ = out.send(OutMsg::Close(Channel::Error)).await;
}

/// Serves exec or attach on an upgraded SPDY connection.
pub(crate) async fn serve_spdy(
    session: Session,
    version: Version,
    target: Target,
    runtime: Arc<dyn StreamRuntime>,
) {
    let (mut incoming, closer) = session.split();
    let (stdin, stdout, stderr, tty) = target.streams();
    let mut expected = vec![Channel::Error];
    if stdin {
        expected.push(Channel::Stdin);
    }
    if stdout {
        expected.push(Channel::Stdout);
    }
    if stderr {
        expected.push(Channel::Stderr);
    }
    if tty && version >= Version::V3 {
        expected.push(Channel::Resize);
    }
    let mut writers: HashMap<Channel, StreamWriter> = HashMap::new();
    let mut readers: HashMap<Channel, mpsc::Receiver<Bytes>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while !expected.iter().all(|c| writers.contains_key(c)) {
        let stream = match tokio::time::timeout_at(deadline, incoming.recv()).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                debug!("client closed the connection before opening its streams");
                return;
            }
            Err(_) => {
                warn!(
                    timeout = ?STREAM_CREATION_TIMEOUT,
                    got = writers.len(),
                    wanted = expected.len(),
                    "client did not open its streams in time"
                );
                closer.close(Duration::from_secs(1)).await;
                return;
            }
        };
        let channel = stream
            .header("streamtype")
            .and_then(Channel::from_stream_type);
        match channel {
            Some(c) if expected.contains(&c) && !writers.contains_key(&c) => {
                if stream.tx.reply().await.is_err() {
                    return;
                }
                writers.insert(c, stream.tx);
                readers.insert(c, stream.rx);
            }
            _ => {
                debug!(stream = stream.id, kind = ?stream.header("streamtype"), "unexpected stream refused");
                stream.tx.reset().await;
            }
        }
    }

    // Streams opened later are refused; the end of `incoming` means the client is gone.
    let (gone_tx, gone) = oneshot::channel();
    let watcher = tokio::spawn(async move {
        while let Some(s) = incoming.recv().await {
            s.tx.reset().await;
        }
        let _ = gone_tx.send(());
    });

    let (out_tx, mut out_rx) = mpsc::channel::<OutMsg>(64);
    let sender = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            match msg {
                OutMsg::Data(c, data) => {
                    if let Some(w) = writers.get(&c) {
                        // A reset stream drops its data; the others go on.
                        let _ = w.write(data).await;
                    }
                }
                OutMsg::Close(c) => {
                    if let Some(w) = writers.get(&c) {
                        w.finish().await;
                    }
                }
            }
        }
    });
    let inbound = Inbound {
        stdin: readers.remove(&Channel::Stdin),
        resize: readers.remove(&Channel::Resize),
        gone,
    };
    drop(readers);
    run(runtime, target, version, inbound, out_tx).await;
    let _ = sender.await;
    watcher.abort();
    closer.close(LINGER).await;
}

/// Serves exec or attach on an upgraded WebSocket connection.
pub(crate) async fn serve_ws(
    session: WsSession,
    protocol: &str,
    target: Target,
    runtime: Arc<dyn StreamRuntime>,
) {
    let version = Version::from_protocol(protocol).unwrap_or(Version::V1);
    let base64 = protocol.contains("base64");
    let (stdin, stdout, stderr, tty) = target.streams();
    let sender = session.sender();
    let (mut incoming, closer) = session.split();

    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
    let (resize_tx, resize_rx) = mpsc::channel::<Bytes>(16);
    let (gone_tx, gone) = oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut stdin_tx = stdin.then_some(stdin_tx);
        let resize_tx = tty.then_some(resize_tx);
        while let Some(msg) = incoming.recv().await {
            let (channel, data) = match decode_channel_message(msg, base64) {
                Some(x) => x,
                None => continue,
            };
            if version >= Version::V5 && channel == 255 {
                // Close signal: [255, channel]. Only stdin is closed by a client.
                if data.first() == Some(&(Channel::Stdin as u8)) {
                    stdin_tx = None;
                }
                continue;
            }
            match channel {
                0 => {
                    if let Some(tx) = &stdin_tx {
                        if !data.is_empty() && tx.send(data).await.is_err() {
                            stdin_tx = None;
                        }
                    }
                }
                4 => {
                    if let Some(tx) = &resize_tx {
                        let _ = tx.send(data).await;
                    }
                }
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });

    // The first message tells the client the connection is ready, as the kubelet does.
    let first = if stdout {
        Channel::Stdout
    } else if stderr {
        Channel::Stderr
    } else {
        Channel::Error
    };
    let _ = send_channel(&sender, first as u8, &[], base64).await;

    let (out_tx, mut out_rx) = mpsc::channel::<OutMsg>(64);
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            if let OutMsg::Data(c, data) = msg {
                let _ = send_channel(&sender, c as u8, &data, base64).await;
            }
        }
    });
    let inbound = Inbound {
        stdin: stdin.then_some(stdin_rx),
        resize: tty.then_some(resize_rx),
        gone,
    };
    run(runtime, target, version, inbound, out_tx).await;
    let _ = writer.await;
    reader.abort();
    closer.close(LINGER).await;
}

/// Splits a channel message into its channel number and payload.
pub(crate) fn decode_channel_message(msg: Message, base64: bool) -> Option<(u8, Bytes)> {
    match msg {
        Message::Binary(mut data) => {
            if data.is_empty() {
                return None;
            }
            let channel = data[0];
            Some((channel, data.split_off(1)))
        }
        Message::Text(data) => {
            if !base64 || data.is_empty() {
                return None;
            }
            let channel = data[0].wrapping_sub(b'0');
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(&data[1..])
                .ok()?;
            Some((channel, Bytes::from(decoded)))
        }
    }
}

/// Builds the message for `data` on `channel`.
pub(crate) fn encode_channel_message(channel: u8, data: &[u8], base64: bool) -> Bytes {
    if base64 {
        let mut s = vec![b'0' + channel];
        s.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(data)
                .as_bytes(),
        );
        Bytes::from(s)
    } else {
        let mut v = Vec::with_capacity(data.len() + 1);
        v.push(channel);
        v.extend_from_slice(data);
        Bytes::from(v)
    }
}

async fn send_channel(
    sender: &crate::ws::WsSender,
    channel: u8,
    data: &[u8],
    base64: bool,
) -> std::io::Result<()> {
    let msg = encode_channel_message(channel, data, base64);
    if base64 {
        sender.text(msg).await
    } else {
        sender.binary(msg).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_status_carries_the_exit_code() {
        let s: serde_json::Value =
            serde_json::from_slice(&status_message(Version::V4, &Outcome::Exited(3))).unwrap();
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");

        let ok: serde_json::Value =
            serde_json::from_slice(&status_message(Version::V5, &Outcome::Exited(0))).unwrap();
        assert_eq!(ok["status"], "Success");

        let failed: serde_json::Value = serde_json::from_slice(&status_message(
            Version::V4,
            &Outcome::Failed("no such container".into()),
        ))
        .unwrap();
        assert_eq!(failed["reason"], "InternalError");
        assert!(failed["message"]
            .as_str()
            .unwrap()
            .contains("no such container"));
    }

    #[test]
    fn old_versions_write_plain_text_and_only_on_failure() {
        assert!(status_message(Version::V2, &Outcome::Exited(0)).is_empty());
        let msg = String::from_utf8(status_message(Version::V3, &Outcome::Exited(2))).unwrap();
        assert!(msg.contains("exit status 2"), "{msg}");
    }

    #[test]
    fn resize_events_are_parsed_across_cuts() {
        let mut d = ResizeDecoder::default();
        assert!(d.feed(br#"{"Width":80,"He"#).is_empty());
        assert_eq!(
            d.feed(b"ight\":24}\n{\"Width\":100,\"Height\":50}\n"),
            vec![
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 50
                }
            ]
        );
        assert!(d.feed(b"garbage").is_empty());
        assert_eq!(
            d.feed(br#"{"width":1,"height":2}"#),
            vec![TerminalSize {
                width: 1,
                height: 2
            }]
        );
    }

    #[test]
    fn channel_messages_round_trip_in_both_codecs() {
        for base64 in [false, true] {
            let m = encode_channel_message(1, b"hello\n", base64);
            let msg = if base64 {
                Message::Text(m)
            } else {
                Message::Binary(m)
            };
            assert_eq!(
                decode_channel_message(msg, base64),
                Some((1, Bytes::from_static(b"hello\n")))
            );
        }
        assert_eq!(
            encode_channel_message(2, b"ab", true),
            Bytes::from_static(b"2YWI=")
        );
        assert_eq!(
            decode_channel_message(Message::Binary(Bytes::new()), false),
            None
        );
        assert_eq!(
            decode_channel_message(Message::Text(Bytes::from_static(b"0abc")), false),
            None
        );
    }

    #[test]
    fn protocol_names_map_to_versions() {
        assert_eq!(
            Version::from_protocol("v5.channel.k8s.io"),
            Some(Version::V5)
        );
        assert_eq!(
            Version::from_protocol("v4.base64.channel.k8s.io"),
            Some(Version::V4)
        );
        assert_eq!(Version::from_protocol(""), Some(Version::V1));
        assert_eq!(Version::from_protocol("v9.channel.k8s.io"), None);
    }
}
